"""Lane-level streaming rANS for "uniform over M" symbols (Duda 2013; vectorised as in craystack).

Each lane (one per weight) holds a head state ``s`` in ``[STATE_LOWER, 2**63)`` and a LIFO stack of
16-bit words. A symbol ``x`` uniform on ``[0, M)`` is coded with a quantised distribution whose total is
``2**PREC_BITS``: with ``q = 2**31 // M`` and ``r = 2**31 % M`` the first ``r`` symbols get ``q + 1``
slots and the rest ``q``, so the code is exact for any ``M`` and costs ``log2(2**31 / f(x))`` bits,
within ``log2(1 + M / 2**31)`` of ``log2(M)``.

    push:  s <- (s // f) * 2**31 + s % f + c(x)        (after emitting a word if s >= f * 2**32)
    pop:   x <- symbol of slot s % 2**31;  s <- f * (s >> 31) + slot - c(x)  (then read a word if s < L)

Because ``STATE_LOWER = 2**47`` is a multiple of the total, push-renormalisation and pop-renormalisation
mirror each other for *any* ``M``, so bases may change from step to step and lane to lane. With
``M <= MAX_BASE = 2**16`` every ``f >= 2**15``, so each push emits at most one word and each pop reads at
most one: the functions below rely on that bound (the Python layer enforces it).

Divisions use per-base float reciprocals corrected to the exact quotient (:func:`floor_divmod`).
Everything here is int64 and ``@njit(inline="always")`` so that kernels (CPU or fused step kernels) can
call it per lane; nothing validates.
"""

import numba as nb
import numpy as np

PREC_BITS = 31
TOTAL = 1 << PREC_BITS
SLOT_MASK = TOTAL - 1
WORD_BITS = 16
WORD_MASK = (1 << WORD_BITS) - 1
STATE_LOWER = 1 << 47  # L: head lives in [L, 2**63); a multiple of TOTAL
EMIT_SHIFT = 47 - PREC_BITS + WORD_BITS  # push emits a word when s >= f * 2**EMIT_SHIFT
MAX_BASE = 1 << 16


@nb.njit(inline="always", cache=True)
def floor_divmod(a, b, inv_b):
    """Exact (a // b, a % b) for int64 a, b >= 1, from the float estimate a * inv_b (inv_b = 1.0 / b).

    Valid where the estimate fits int64: |a| <= 2**62, or 0 <= a < 2**63 with b >= 2**15 (the operands
    used here). The estimate is then within one of the quotient and the loops make the result exact.
    """
    q = np.int64(np.floor(np.float64(a) * inv_b))
    r = a - q * b
    while r < 0:
        q -= 1
        r += b
    while r >= b:
        q += 1
        r -= b
    return q, r


@nb.njit(inline="always", cache=True)
def uniform_code(base):
    """Per-base constants for coding "uniform over base": (base, q, r, 1/base, 1/q, 1/(q+1)).

    q = 2**31 // base and r = 2**31 % base: the first r symbols get q + 1 slots, the rest q.
    Compute once per base (per step and group), not per lane.
    """
    q = np.int64(TOTAL) // base
    r = np.int64(TOTAL) - q * base
    return (base, q, r, 1.0 / base, 1.0 / q, 1.0 / (q + 1))


@nb.njit(inline="always", cache=True)
def _freq_start(x, code):
    q, r = code[1], code[2]
    if x < r:
        return q + 1, x * (q + 1), code[5]
    return q, x * q + r, code[4]


@nb.njit(inline="always", cache=True)
def push_symbol(s, x, code):
    """Push symbol x (0 <= x < base) onto head s, ``code = uniform_code(base)``.

    Returns (new_head, emitted, word): when ``emitted`` is 1, ``word`` (0..2**16-1) must be pushed on
    the lane's word stack *before* anything else is.
    """
    f, c, inv_f = _freq_start(x, code)
    emitted = np.int64(0)
    word = np.int64(0)
    if (s >> EMIT_SHIFT) >= f:  # s >= f * 2**32, without overflowing when f = 2**31
        word = s & WORD_MASK
        s = s >> WORD_BITS
        emitted = np.int64(1)
    quo, rem = floor_divmod(s, f, inv_f)
    s = (quo << PREC_BITS) + rem + c
    return s, emitted, word


@nb.njit(inline="always", cache=True)
def pop_symbol_head(s, code):
    """First half of a pop: decode a symbol from head s without touching the word stack.

    Returns (x, reduced_head, needs_word). When ``needs_word`` is 1 the caller must finish with
    ``reduced_head << 16 | top_word`` (see :func:`refill`).
    """
    q, r = code[1], code[2]
    slot = s & SLOT_MASK
    wide = r * (q + 1)
    if slot < wide:
        x = floor_divmod(slot, q + 1, code[5])[0]
    else:
        x = r + floor_divmod(slot - wide, q, code[4])[0]
    f, c, _ = _freq_start(x, code)
    s = f * (s >> PREC_BITS) + slot - c
    needs = np.int64(1) if s < STATE_LOWER else np.int64(0)
    return x, s, needs


@nb.njit(inline="always", cache=True)
def refill(s, word):
    """Complete a pop that needed a word: s <- s * 2**16 + word."""
    return (s << WORD_BITS) | word


@nb.njit(cache=True)
def code_table(bases):
    """Codes for an array of bases, as (int64[G, 3], float64[G, 3]) tables; see :func:`code_at`."""
    ci = np.empty((bases.shape[0], 3), np.int64)
    cf = np.empty((bases.shape[0], 3), np.float64)
    for k in range(bases.shape[0]):
        c = uniform_code(bases[k])
        ci[k, 0], ci[k, 1], ci[k, 2] = c[0], c[1], c[2]
        cf[k, 0], cf[k, 1], cf[k, 2] = c[3], c[4], c[5]
    return ci, cf


@nb.njit(inline="always", cache=True)
def code_at(ci, cf, k):
    """Row k of a code table as the tuple that push_symbol and pop_symbol_head take."""
    return (ci[k, 0], ci[k, 1], ci[k, 2], cf[k, 0], cf[k, 1], cf[k, 2])
