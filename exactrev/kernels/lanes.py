"""Per-lane integer arithmetic, written once and built for each target (CPU @njit, CUDA device).

``build_lanes(jit)`` defines every lane function with the given decorator and returns them in a
namespace: ``CPU = build_lanes(njit(inline="always"))`` here, and ``kernels/cuda.py`` builds the same
source with ``cuda.jit(device=True, inline=True)``. So the CPU and GPU compute the same integers by
construction, and tests check that they agree bit for bit. The only float operations are single
multiplications and the explicit round-half-even below, which are correctly rounded in IEEE float64 on
both targets. No sum is formed, so no fused multiply-add can change a result.

rANS for "uniform over M" (see ``rans.py`` for the constants and the maths):
    push:  s <- (s // f) * 2**31 + s % f + c(x)   (after emitting a 16-bit word if s >= f * 2**32)
    pop:   x <- symbol of slot s % 2**31;  s <- f * (s >> 31) + slot - c(x)   (then a word if s < 2**47)
Exact rational multiply x -> x * n/d (within one unit), and its inverse, through the buffer:
    y = pop_n, z = x n + y, x' = z // d, push_d(z % d)     (inverse: z = x d + pop_d, push_n(z % n))
Momentum step lanes (forward, and the two halves of the reverse step) on top of those.
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
RANGE_GUARD_F = float(1 << 55)  # a float estimate of a quotient above this is certainly out of range

ERR_OK = 0
ERR_GRAD_NOT_FINITE = 1
ERR_VELOCITY_RANGE = 2
ERR_WEIGHT_RANGE = 3
ERR_BUFFER_UNDERFLOW = 4


def build_lanes(jit):
    """Build every lane function with decorator ``jit``; returns a SimpleNamespace of them."""

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
    def nonneg_divmod(a, b, inv_b):
        """floor_divmod for 0 <= a < 2**63, b >= 2**15: the estimate truncates (no floor needed)."""
        return exact_quotient(np.int64(np.float64(a) * inv_b), a, b)

    @jit
    def uniform_code(base):
        """(base, q, r, 1/base, 1/q, 1/(q+1)) with q = 2**31 // base, r = 2**31 % base."""
        q = np.int64(TOTAL) // base
        r = np.int64(TOTAL) - q * base
        return (base, q, r, 1.0 / base, 1.0 / q, 1.0 / (q + 1))

    @jit
    def code_at(ci, cf, k):
        """Row k of a code table (see ``rans.code_table``) as a code tuple."""
        return (ci[k, 0], ci[k, 1], ci[k, 2], cf[k, 0], cf[k, 1], cf[k, 2])

    @jit
    def freq_start(x, code):
        q, r = code[1], code[2]
        if x < r:
            return q + 1, x * (q + 1), code[5]
        return q, x * q + r, code[4]

    @jit
    def push_symbol(s, x, code):
        """Push x (0 <= x < base) on head s. Returns (head, emitted, word): push ``word`` first if emitted."""
        f, c, inv_f = freq_start(x, code)
        emitted = np.int64(0)
        word = np.int64(0)
        if (s >> EMIT_SHIFT) >= f:
            word = s & WORD_MASK
            s = s >> WORD_BITS
            emitted = np.int64(1)
        quo, rem = nonneg_divmod(s, f, inv_f)
        return (quo << PREC_BITS) + rem + c, emitted, word

    @jit
    def pop_symbol_head(s, code):
        """Decode a symbol from head s. Returns (x, head, needs_word); finish with refill if needs_word."""
        q, r = code[1], code[2]
        slot = s & SLOT_MASK
        wide = r * (q + 1)
        if slot < wide:
            x = nonneg_divmod(slot, q + 1, code[5])[0]
        else:
            x = r + nonneg_divmod(slot - wide, q, code[4])[0]
        f, c, _ = freq_start(x, code)
        s = f * (s >> PREC_BITS) + slot - c
        needs = np.int64(1) if s < STATE_LOWER else np.int64(0)
        return x, s, needs

    @jit
    def refill(s, word):
        """Complete a pop that needed a word: s <- s * 2**16 + word."""
        return (s << WORD_BITS) | word

    @jit
    def stack_top(words, counts, i):
        """Top word of lane i's stack (0 for an empty stack; callers check counts before using it)."""
        c = counts[i]
        if c > 0:
            return np.int64(words[c - 1, i])
        return np.int64(0)

    @jit
    def commit_stack(words, counts, i, dcount, wrote, word):
        """Apply a lane's stack change: the top word was consumed if dcount - wrote == -1, then
        ``word`` is written on top when ``wrote``."""
        c = counts[i] + dcount
        if wrote:
            words[c - 1, i] = np.uint16(word)
        counts[i] = c

    @jit
    def pop_lane(s, count, top, code):
        """Pop from one lane: (symbol, head, words_read 0 or 1, err)."""
        y, s, needs = pop_symbol_head(s, code)
        if needs:
            if count == 0:
                return y, s, np.int64(0), ERR_BUFFER_UNDERFLOW
            return y, refill(s, top), np.int64(1), ERR_OK
        return y, s, np.int64(0), ERR_OK

    @jit
    def rational_multiply_lane(x, s, count, top, code_num, code_den):
        """x -> x n/d within one unit; returns (x', s, dcount, wrote, word, err).

        z = x n + pop_n, x' = z // d, push_d(z % d); for |x| > FAST_LIMIT, where x n could overflow,
        the same integers come from x = hi d + lo: x' = hi n + (lo n + pop_n) // d.
        """
        n, d = code_num[0], code_den[0]
        fast = np.uint64(x + FAST_LIMIT) <= np.uint64(2 * FAST_LIMIT)  # |x| <= FAST_LIMIT, one test
        if not fast and (x > MAX_MAGNITUDE or x < -MAX_MAGNITUDE):
            return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
        y, s, read, err = pop_lane(s, count, top, code_num)
        if err != ERR_OK:
            return x, s, np.int64(0), np.int64(0), np.int64(0), err
        if fast:
            q, r = floor_divmod(x * n + y, d, code_den[3])
        else:
            hi, lo = floor_divmod(x, d, code_den[3])
            q, r = floor_divmod(lo * n + y, d, code_den[3])
            q += hi * n
        s, wrote, word = push_symbol(s, r, code_den)
        return q, s, wrote - read, wrote, word, np.int64(ERR_OK)

    @jit
    def rational_divide_lane(x, s, count, top, code_num, code_den):
        """The exact inverse of rational_multiply_lane: z = x d + pop_d, x' = z // n, push_n(z % n).

        err is ERR_VELOCITY_RANGE when |x'| would exceed MAX_MAGNITUDE, or an underflow.
        """
        n, d = code_num[0], code_den[0]
        if x > MAX_MAGNITUDE or x < -MAX_MAGNITUDE:
            return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
        if abs(x) <= FAST_LIMIT:
            if not abs(np.float64(x) * code_num[3] * np.float64(d)) < RANGE_GUARD_F:
                return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
            r, s, read, err = pop_lane(s, count, top, code_den)
            if err != ERR_OK:
                return x, s, np.int64(0), np.int64(0), np.int64(0), err
            q, y = floor_divmod(x * d + r, n, code_num[3])
        else:
            hi, rem = floor_divmod(x, n, code_num[3])
            if abs(hi) > MAX_MAGNITUDE // d + 1:
                return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
            r, s, read, err = pop_lane(s, count, top, code_den)
            if err != ERR_OK:
                return x, s, np.int64(0), np.int64(0), np.int64(0), err
            lo, y = floor_divmod(rem * d + r, n, code_num[3])
            q = hi * d + lo
        if abs(q) > MAX_MAGNITUDE:
            return x, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
        s, wrote, word = push_symbol(s, y, code_num)
        return q, s, wrote - read, wrote, word, np.int64(ERR_OK)

    @jit
    def round_half_even(x):
        """Nearest integer to the float x, ties to even, as a float (exact for |x| < 2**52)."""
        f = math.floor(x)
        diff = x - f
        if diff > 0.5 or (diff == 0.5 and f - 2.0 * math.floor(f * 0.5) == 1.0):
            return f + 1.0
        return f

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
        return round_half_even(p)

    @jit
    def momentum_forward_lane(w, v, s, count, top, code_num, code_den, omg_scale, lr, grad):
        """Forward step of one weight: returns (w', v', s, dcount, wrote, word, err)."""
        if not math.isfinite(grad):
            return w, v, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_GRAD_NOT_FINITE)
        x, s, dcount, wrote, word, err = rational_multiply_lane(v, s, count, top, code_num, code_den)
        if err != ERR_OK:
            return w, v, s, dcount, wrote, word, err
        gterm = rounded_product(omg_scale, grad)
        if not fixed_in_range(gterm):
            return w, v, s, dcount, wrote, word, np.int64(ERR_VELOCITY_RANGE)
        x = x - np.int64(gterm)
        if abs(x) > MAX_MAGNITUDE:
            return w, v, s, dcount, wrote, word, np.int64(ERR_VELOCITY_RANGE)
        dw = rounded_product(lr, x)
        if not fixed_in_range(dw) or abs(w + np.int64(dw)) > MAX_MAGNITUDE:
            return w, v, s, dcount, wrote, word, np.int64(ERR_WEIGHT_RANGE)
        return w + np.int64(dw), x, s, dcount, wrote, word, np.int64(ERR_OK)

    @jit
    def weights_back_lane(w, v, lr):
        """First half of a reverse step: (w - round(a v), err)."""
        dw = rounded_product(lr, v)
        if not fixed_in_range(dw) or abs(w - np.int64(dw)) > MAX_MAGNITUDE:
            return w, np.int64(ERR_WEIGHT_RANGE)
        return w - np.int64(dw), np.int64(ERR_OK)

    @jit
    def velocity_back_lane(v, s, count, top, code_num, code_den, omg_scale, grad):
        """Second half: v <- (v + round((1-g) grad scale)) / g; returns (v', s, dcount, wrote, word, err)."""
        if not math.isfinite(grad):
            return v, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_GRAD_NOT_FINITE)
        gterm = rounded_product(omg_scale, grad)
        if not fixed_in_range(gterm) or abs(v + np.int64(gterm)) > MAX_MAGNITUDE:
            return v, s, np.int64(0), np.int64(0), np.int64(0), np.int64(ERR_VELOCITY_RANGE)
        return rational_divide_lane(v + np.int64(gterm), s, count, top, code_num, code_den)

    @jit
    def nearest_multiply(x, n, d, inv_d):
        """round(x n/d), ties to even, exactly and without overflow."""
        hi, lo = floor_divmod(x, d, inv_d)
        q, r = floor_divmod(lo * n, d, inv_d)
        if 2 * r > d or (2 * r == d and q % 2 == 1):
            q += 1
        return hi * n + q

    return SimpleNamespace(**{k: v for k, v in locals().items() if callable(v) and k != "jit"})
