"""Per-lane integer arithmetic, written once and built for each target (CPU @njit, CUDA device).

``build_lanes(jit, mulhi_shr)`` defines every lane function with the given decorator and returns them in
a namespace: ``rans.CPU`` is built with ``njit(inline="always")`` and the LLVM intrinsic of ``wide.py``,
and ``kernels/cuda.py`` builds the same source with ``cuda.jit(device=True, inline=True)`` and the
portable limb product. So the CPU and GPU compute the same integers by construction, and tests check
that they agree bit for bit. The only float operations are single multiplications and a rounding to
the nearest integer, ties to even (the CPU's ``rint`` instruction, or the explicit ``round_half_even``
below on the GPU), which are exact in IEEE float64 on both targets. No sum is formed, so no fused
multiply-add can change a result.

rANS for "uniform over M" (see ``rans.py`` for the constants and the maths):
    push:  s <- (s // f) * 2**31 + s % f + c(x)   (after emitting a 16-bit word if s >= f * 2**32)
    pop:   x <- symbol of slot s % 2**31;  s <- f * (s >> 31) + slot - c(x)   (then a word if s < 2**47)
Exact rational multiply x -> x * n/d (within one unit), and its inverse, through the buffer:
    y = pop_n, z = x n + y, x' = z // d, push_d(z % d)     (inverse: z = x d + pop_d, push_n(z % n))
Momentum step lanes (forward, and the two halves of the reverse step) on top of those.

Division by a per-step constant f is a multiplication by a "magic" reciprocal (Granlund & Montgomery,
PLDI 1994, theorem 4.2): with sh = ceil(log2 f) and m = ceil(2**(N + sh) / f),
    floor(v / f) = floor(v m / 2**(N + sh))   for every 0 <= v < 2**N,
exactly, with no correction step. N = 63 (a 64 x 64 -> 128-bit product, ``mulhi_shr``) for heads and
dividends; N = 31 (m < 2**32, so an int64 product) for the slot of a pop. A code tuple carries the
magic numbers of its base, so the hot loop has no division and no data-dependent branch.
"""

import math
from types import SimpleNamespace

import numpy as np

PREC_BITS = 31
TOTAL = 1 << PREC_BITS
SLOT_MASK = TOTAL - 1
WORD_BITS = 16
WORD_MASK = (1 << WORD_BITS) - 1
STATE_LOWER = 1 << 47
EMIT_SHIFT = 47 - PREC_BITS + WORD_BITS
MAX_BASE = 1 << 16
MAX_MAGNITUDE = (1 << 53) - 1
MAX_MAGNITUDE_F = float(MAX_MAGNITUDE)
FAST_LIMIT = (1 << 46) - 1    # |x| <= FAST_LIMIT: x * M + (M - 1) < 2**62 for every base M <= 2**16
LIMB_BITS = 31                # the portable 128-bit product works on 31-bit limbs (products < 2**62)
LIMB_MASK = (1 << LIMB_BITS) - 1
# code tuple fields (see uniform_code)
C_BASE, C_Q, C_R, C_M, C_K, C_MQ, C_KQ, C_MQ1, C_KQ1, C_SQ, C_TQ, C_SQ1, C_TQ1 = range(13)
CODE_LEN = 13

ERR_OK = 0
ERR_GRAD_NOT_FINITE = 1
ERR_VELOCITY_RANGE = 2
ERR_WEIGHT_RANGE = 3
ERR_BUFFER_UNDERFLOW = 4
ERR_BUFFER_FULL = 5


def build_lanes(jit, mulhi_shr=None, rint=None):
    """Build every lane function with decorator ``jit``; returns a SimpleNamespace of them.

    ``mulhi_shr(a, b, k)``: floor(floor(a b / 2**64) / 2**k) for a, b read as unsigned 64-bit; a
    target's fast version (``wide.mulhi_shr`` on the CPU), or None for the portable limb version.
    ``rint(x)``: the nearest integer to the float x, ties to even, as a float (NaN and infinities pass
    through); a target's instruction (``np.rint`` on the CPU), or None for the portable
    ``round_half_even``. Both are exact, so they give the same floats for every input (tested).
    """

    @jit
    def portable_mulhi_shr(a, b, k):
        """mulhi_shr from 31-bit limbs: every partial product and column sum stays below 2**63."""
        a0, a1, a2 = a & LIMB_MASK, (a >> 31) & LIMB_MASK, (a >> 62) & 3
        b0, b1, b2 = b & LIMB_MASK, (b >> 31) & LIMB_MASK, (b >> 62) & 3
        t0 = a0 * b0
        t1 = a0 * b1 + a1 * b0 + (t0 >> 31)
        t2 = a0 * b2 + a1 * b1 + a2 * b0 + (t1 >> 31)
        t3 = a1 * b2 + a2 * b1 + (t2 >> 31)
        t4 = a2 * b2 + (t3 >> 31)
        high = ((t2 & LIMB_MASK) >> 2) | ((t3 & LIMB_MASK) << 29) | (t4 << 60)
        if k == 0:
            return high
        return (high >> k) & (np.int64(0x7FFFFFFFFFFFFFFF) >> (k - 1))

    if mulhi_shr is None:
        mulhi_shr = portable_mulhi_shr

    @jit
    def exact_quotient(q, a, b):
        """(q, r) with a = q b + r and 0 <= r < b, from an estimate q of a // b off by a few units."""
        r = a - q * b
        while r < 0:
            q -= 1
            r += b
        while r >= b:
            q += 1
            r -= b
        return q, r

    @jit
    def floor_divmod(a, b, inv_b):
        """Exact (a // b, a % b) from the estimate a * inv_b (inv_b = 1.0 / b).

        Valid where the estimate fits int64: |a| <= 2**62, or 0 <= a < 2**63 with b >= 2**15.
        """
        return exact_quotient(np.int64(math.floor(np.float64(a) * inv_b)), a, b)

    @jit
    def ceil_log2(f):
        """ceil(log2 f) for 1 <= f <= 2**31: the bit length of f - 1 (exact: f - 1 < 2**53)."""
        return np.int64(math.frexp(np.float64(f - 1))[1])

    @jit
    def magic63(f):
        """(m, sh) with floor(v / f) = mulhi_shr(2 v, m, sh) for 0 <= v < 2**63, 1 <= f <= 2**31.

        m = ceil(2**(63 + sh) / f) < 2**64 (stored as its int64 bits), by long division in base 2**32.
        """
        sh = ceil_log2(f)
        t = np.int64(1) << (31 + sh)
        a = t // f
        u = (t - a * f) << 32
        c = u // f
        up = np.int64(1) if u - c * f > 0 else np.int64(0)
        return (a << 32) + c + up, sh

    @jit
    def magic31(f):
        """(m, 31 + sh) with floor(v / f) = (v m) >> (31 + sh) for 0 <= v < 2**31, 1 <= f <= 2**31.

        m <= 2**32 + 1, so v m fits int64, also for -2**31 < v < 0 (then the result is negative).
        """
        sh = ceil_log2(f)
        return ((np.int64(1) << (31 + sh)) - 1) // f + 1, 31 + sh

    @jit
    def uniform_code(base):
        """The code of "uniform over base", 1 <= base <= 2**16, as an int64 13-tuple (fields C_*):

        (base, q, r, magic63(base), magic63(q), magic63(q + 1), magic31(q), magic31(q + 1)), each magic a
        pair, with q = 2**31 // base and r = 2**31 % base. For base 1 (q = 2**31, r = 0) the q + 1 entries
        are never used and hold those of q.
        """
        q = np.int64(TOTAL) // base
        r = np.int64(TOTAL) - q * base
        q1 = min(q + 1, np.int64(TOTAL))
        mb, kb = magic63(base)
        mq, kq = magic63(q)
        mq1, kq1 = magic63(q1)
        sq, tq = magic31(q)
        sq1, tq1 = magic31(q1)
        return (base, q, r, mb, kb, mq, kq, mq1, kq1, sq, tq, sq1, tq1)

    @jit
    def code_at(ci, k):
        """Row k of a code table (see ``rans.code_table``) as a code tuple."""
        return (ci[k, 0], ci[k, 1], ci[k, 2], ci[k, 3], ci[k, 4], ci[k, 5], ci[k, 6], ci[k, 7], ci[k, 8],
                ci[k, 9], ci[k, 10], ci[k, 11], ci[k, 12])

    @jit
    def floor_divmod_code(z, code):
        """Exact (z // base, z % base) for any int64 z: for z < 0, z // b = ~(~z // b), and ~z >= 0."""
        sign = z >> 63
        q = mulhi_shr((z ^ sign) << 1, code[C_M], code[C_K]) ^ sign
        return q, z - q * code[C_BASE]

    @jit
    def freq_start(x, code):
        """(f, c, m, sh) of symbol x: its slot count and first slot, and magic63(f). No branch."""
        q, r = code[C_Q], code[C_R]
        wide = x < r
        m = code[C_MQ1] if wide else code[C_MQ]
        sh = code[C_KQ1] if wide else code[C_KQ]
        return q + np.int64(wide), x * q + min(x, r), m, sh

    @jit
    def push_needs_word(s, f):
        """True when head s must emit its low 16 bits before a symbol of frequency f is pushed."""
        return (s >> EMIT_SHIFT) >= f

    @jit
    def push_tail(s, f, c, m, sh):
        """The push proper, s <- (s // f) 2**31 + s % f + c, once any word is emitted (s < f 2**32)."""
        quo = mulhi_shr(s << 1, m, sh)
        return (quo << PREC_BITS) + (s - quo * f) + c

    @jit
    def push_symbol(s, x, code):
        """Push x (0 <= x < base) on head s. Returns (head, emitted, word): push ``word`` first if emitted."""
        f, c, m, sh = freq_start(x, code)
        emitted = np.int64(0)
        word = np.int64(0)
        if push_needs_word(s, f):
            word = s & WORD_MASK
            s = s >> WORD_BITS
            emitted = np.int64(1)
        return push_tail(s, f, c, m, sh), emitted, word

    @jit
    def pop_symbol_head(s, code):
        """Decode a symbol from head s. Returns (x, head, needs_word); finish with refill if needs_word.

        The first r symbols own q + 1 slots each and the rest q, so the symbol of a slot is
        x = max(slot // (q + 1), (slot - r) // q): the first term is exact below r (q + 1), the second
        above, and each is at most x on the other side.
        """
        slot = s & SLOT_MASK
        x = max((slot * code[C_SQ1]) >> code[C_TQ1], ((slot - code[C_R]) * code[C_SQ]) >> code[C_TQ])
        f, c, _, _ = freq_start(x, code)
        s = f * (s >> PREC_BITS) + slot - c
        needs = np.int64(1) if s < STATE_LOWER else np.int64(0)
        return x, s, needs

    @jit
    def refill(s, word):
        """Complete a pop that needed a word: s <- s * 2**16 + word."""
        return (s << WORD_BITS) | word

    @jit
    def stack_top(words, counts, i):
        """Top word of lane i's stack; 0 for an empty stack: the virtual zero word under every stack,
        which an exact multiply may borrow inside one operation (module docstring)."""
        c = counts[i]
        if c > 0:
            return np.int64(words[c - 1, i])
        return np.int64(0)

    @jit
    def commit_stack(words, counts, i, dcount, wrote, word):
        """Apply a lane's stack change: the top word was consumed if dcount - wrote == -1, then
        ``word`` is written on top when ``wrote``."""
        c = counts[i] + dcount
        if wrote and c > 0:  # at c == 0 the word emitted is the borrowed virtual zero: nothing to keep
            words[c - 1, i] = np.uint16(word)
        counts[i] = c

    @jit
    def push_in_place(words, c, i, s, x, code):
        """Push x on lane i whose stack holds c words: returns (head, c), writing words[c, i] if a word is
        emitted. The emit is a branch (taken about once per 16 / log2(base) pushes), not a select."""
        f, start, m, sh = freq_start(x, code)
        if push_needs_word(s, f):
            if c >= 0:  # c == -1: the word is the virtual zero just borrowed (pop_borrowing)
                words[c, i] = np.uint16(s & WORD_MASK)
            c += 1
            s = s >> WORD_BITS
        return push_tail(s, f, start, m, sh), c

    @jit
    def pop_in_place(words, c, i, s, code):
        """Pop from lane i whose stack holds c words: (symbol, head, c, err). Reads words[c - 1, i] only
        when the head needs it; err is ERR_BUFFER_UNDERFLOW when the stack is empty then. Writes nothing."""
        y, s, needs = pop_symbol_head(s, code)
        if needs:
            if c == 0:
                return y, s, c, np.int64(ERR_BUFFER_UNDERFLOW)
            c -= 1
            s = refill(s, np.int64(words[c, i]))
        return y, s, c, np.int64(ERR_OK)

    @jit
    def pop_borrowing(words, c, i, s, code):
        """pop_in_place that may borrow the virtual zero word under an empty stack: (symbol, head, c)
        with c == -1 after a borrow. Only for the first half of an exact multiply or divide, whose push
        emits that same zero word again or else ends below the floor (an underflow)."""
        y, s, needs = pop_symbol_head(s, code)
        if needs:
            word = np.int64(words[c - 1, i]) if c > 0 else np.int64(0)
            c -= 1
            s = refill(s, word)
        return y, s, c

    @jit
    def pop_lane(s, count, top, code):
        """Pop from one lane given its top word (0 for an empty stack, see ``stack_top``):
        (symbol, head, words_read 0 or 1). At count 0 the word read is the virtual zero."""
        y, s, needs = pop_symbol_head(s, code)
        if needs:
            return y, refill(s, top), np.int64(1)
        return y, s, np.int64(0)

    @jit
    def fast_range(x):
        """|x| <= FAST_LIMIT, in one unsigned comparison."""
        return np.uint64(x + FAST_LIMIT) <= np.uint64(2 * FAST_LIMIT)

    @jit
    def out_of_range(x):
        return x > MAX_MAGNITUDE or x < -MAX_MAGNITUDE

    @jit
    def multiply_quotient(x, y, code_num, code_den):
        """(z // d, z % d) for z = x n + y, |x| <= MAX_MAGNITUDE, 0 <= y < n. Where x n could overflow
        (|x| > FAST_LIMIT) the same integers come from x = hi d + lo: z // d = hi n + (lo n + y) // d."""
        n = code_num[C_BASE]
        if fast_range(x):
            return floor_divmod_code(x * n + y, code_den)
        hi, lo = floor_divmod_code(x, code_den)
        q, r = floor_divmod_code(lo * n + y, code_den)
        return q + hi * n, r

    @jit
    def divide_quotient(x, r, code_num, code_den):
        """(z // n, z % n, err) for z = x d + r, |x| <= MAX_MAGNITUDE, 0 <= r < d; err is
        ERR_VELOCITY_RANGE when |z // n| > MAX_MAGNITUDE (then the other two are meaningless)."""
        d = code_den[C_BASE]
        if fast_range(x):
            q, y = floor_divmod_code(x * d + r, code_num)
        else:
            hi, rem = floor_divmod_code(x, code_num)
            if abs(hi) > MAX_MAGNITUDE // d + 1:  # hi d would overflow: certainly out of range
                return x, r, np.int64(ERR_VELOCITY_RANGE)
            lo, y = floor_divmod_code(rem * d + r, code_num)
            q = hi * d + lo
        if abs(q) > MAX_MAGNITUDE:
            return q, y, np.int64(ERR_VELOCITY_RANGE)
        return q, y, np.int64(ERR_OK)

    @jit
    def rational_multiply_lane(x, s, count, top, code_num, code_den):
        """x -> x n/d within one unit: y = pop_n, z = x n + y, x' = z // d, push_d(z % d).

        Returns (x', s, dcount, wrote, word, err) for a caller that commits the stack change itself
        (see ``commit_stack``); x and s are returned unchanged with an error.
        """
        if out_of_range(x):
            return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
        y, s1, read = pop_lane(s, count, top, code_num)
        q, r = multiply_quotient(x, y, code_num, code_den)
        s1, wrote, word = push_symbol(s1, r, code_den)
        if count + wrote - read < 0:
            return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_BUFFER_UNDERFLOW)
        return q, s1, wrote - read, wrote, word, np.int64(ERR_OK)

    @jit
    def rational_divide_lane(x, s, count, top, code_num, code_den):
        """The exact inverse of rational_multiply_lane: z = x d + pop_d, x' = z // n, push_n(z % n).

        err is ERR_VELOCITY_RANGE when |x'| would exceed MAX_MAGNITUDE, or an underflow (x and s are then
        returned unchanged).
        """
        if out_of_range(x):
            return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
        r, s1, read = pop_lane(s, count, top, code_den)
        q, y, err = divide_quotient(x, r, code_num, code_den)
        if err != ERR_OK:
            return x, s, np.int64(0), np.int64(0), np.int64(0), err
        s1, wrote, word = push_symbol(s1, y, code_num)
        if count + wrote - read < 0:
            return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_BUFFER_UNDERFLOW)
        return q, s1, wrote - read, wrote, word, np.int64(ERR_OK)

    @jit
    def rational_multiply_in_place(x, s, words, c, i, code_num, code_den):
        """rational_multiply_lane on lane i of a stack array: (x', s, c, err). Reads a word only when the
        pop needs one and writes one only when the push emits; with an error nothing is written and the
        caller keeps x, s and c. ERR_BUFFER_FULL when the stack has no free row (c >= words.shape[0]):
        the lane never reads or writes outside ``words``."""
        if c >= words.shape[0] or c < 0:
            return x, s, c, np.int64(ERR_BUFFER_FULL)
        if out_of_range(x):
            return x, s, c, np.int64(ERR_VELOCITY_RANGE)
        y, s1, c1 = pop_borrowing(words, c, i, s, code_num)
        q, r = multiply_quotient(x, y, code_num, code_den)
        s1, c1 = push_in_place(words, c1, i, s1, r, code_den)
        if c1 < 0:
            return x, s, c, np.int64(ERR_BUFFER_UNDERFLOW)
        return q, s1, c1, np.int64(ERR_OK)

    @jit
    def rational_divide_in_place(x, s, words, c, i, code_num, code_den):
        """rational_divide_lane on lane i of a stack array, as rational_multiply_in_place."""
        if c >= words.shape[0] or c < 0:
            return x, s, c, np.int64(ERR_BUFFER_FULL)
        if out_of_range(x):
            return x, s, c, np.int64(ERR_VELOCITY_RANGE)
        r, s1, c1 = pop_borrowing(words, c, i, s, code_den)
        q, y, err = divide_quotient(x, r, code_num, code_den)
        if err != ERR_OK:
            return x, s, c, err
        s1, c1 = push_in_place(words, c1, i, s1, y, code_num)
        if c1 < 0:
            return x, s, c, np.int64(ERR_BUFFER_UNDERFLOW)
        return q, s1, c1, np.int64(ERR_OK)

    @jit
    def round_half_even(x):
        """Nearest integer to the float x, ties to even, as a float (exact for |x| < 2**52)."""
        f = math.floor(x)
        diff = x - f
        if diff > 0.5 or (diff == 0.5 and f - 2.0 * math.floor(f * 0.5) == 1.0):
            return f + 1.0
        return f

    if rint is None:
        rint = round_half_even

    @jit
    def fixed_in_range(y):
        """True when the rounded float y is finite and fits the fixed-point range."""
        return abs(y) <= MAX_MAGNITUDE_F

    @jit
    def rounded_product(coef, x):
        """round(coef * x) as a float: the one rounded product every step uses (NaN/inf pass through)."""
        p = coef * np.float64(x)
        if not abs(p) < 4503599627370496.0:  # 2**52: already an integer, or NaN/inf
            return p
        return rint(p)

    @jit
    def weights_back_lane(w, v, lr):
        """First half of a reverse step: (w - round(a v), err)."""
        dw = rounded_product(lr, v)
        if not fixed_in_range(dw) or abs(w - np.int64(dw)) > MAX_MAGNITUDE:
            return w, np.int64(ERR_WEIGHT_RANGE)
        return w - np.int64(dw), np.int64(ERR_OK)

    @jit
    def gradient_term_lane(v, omg_scale, grad, sign):
        """v + sign round((1-g) grad scale), sign +1 or -1: (v', err); err for a NaN or infinite grad
        or a result outside the fixed-point range (v returned unchanged)."""
        if not math.isfinite(grad):
            return v, np.int64(ERR_GRAD_NOT_FINITE)
        gterm = rounded_product(omg_scale, grad)
        if not fixed_in_range(gterm):
            return v, np.int64(ERR_VELOCITY_RANGE)
        x = v + np.int64(sign) * np.int64(gterm)
        if abs(x) > MAX_MAGNITUDE:
            return v, np.int64(ERR_VELOCITY_RANGE)
        return x, np.int64(ERR_OK)

    @jit
    def kick_lane(w, v, omg_scale, lr, grad):
        """The gradient's half of a forward step, after v <- v n/d: v <- v - round((1-g) grad scale),
        then w <- w + round(a v). Returns (w', v', err); w and v unchanged with an error."""
        x, err = gradient_term_lane(v, omg_scale, grad, -1)
        if err != ERR_OK:
            return w, v, err
        dw = rounded_product(lr, x)
        if not fixed_in_range(dw) or abs(w + np.int64(dw)) > MAX_MAGNITUDE:
            return w, v, np.int64(ERR_WEIGHT_RANGE)
        return w + np.int64(dw), x, np.int64(ERR_OK)

    @jit
    def kick_back_lane(w, v, omg_scale, lr, grad):
        """The exact inverse of kick_lane with the same grad: w <- w - round(a v), then
        v <- v + round((1-g) grad scale). Returns (w', v', err)."""
        wn, err = weights_back_lane(w, v, lr)
        if err != ERR_OK:
            return w, v, err
        x, err = gradient_term_lane(v, omg_scale, grad, 1)
        if err != ERR_OK:
            return w, v, err
        return wn, x, np.int64(ERR_OK)

    @jit
    def momentum_forward_lane(w, v, s, count, top, code_num, code_den, omg_scale, lr, grad):
        """Forward step of one weight: returns (w', v', s, dcount, wrote, word, err)."""
        if not math.isfinite(grad):
            return w, v, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_GRAD_NOT_FINITE)
        x, s, dcount, wrote, word, err = rational_multiply_lane(v, s, count, top, code_num, code_den)
        if err != ERR_OK:
            return w, v, s, dcount, wrote, word, err
        wn, x, err = kick_lane(w, x, omg_scale, lr, grad)
        if err != ERR_OK:
            return w, v, s, dcount, wrote, word, err
        return wn, x, s, dcount, wrote, word, np.int64(ERR_OK)

    @jit
    def velocity_back_lane(v, s, count, top, code_num, code_den, omg_scale, grad):
        """Second half: v <- (v + round((1-g) grad scale)) / g; returns (v', s, dcount, wrote, word, err)."""
        x, err = gradient_term_lane(v, omg_scale, grad, 1)
        if err != ERR_OK:
            return v, s, np.int64(0), np.int64(0), np.int64(0), err
        return rational_divide_lane(x, s, count, top, code_num, code_den)

    @jit
    def nearest_multiply(x, n, d, inv_d):
        """round(x n/d), ties to even, exactly and without overflow."""
        hi, lo = floor_divmod(x, d, inv_d)
        q, r = floor_divmod(lo * n, d, inv_d)
        if 2 * r > d or (2 * r == d and q % 2 == 1):
            q += 1
        return hi * n + q

    return SimpleNamespace(**{k: v for k, v in locals().items() if callable(v) and k != "jit"})
