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
def uniform_params(base):
    """(q, r) with q = 2**31 // base, r = 2**31 % base: the quantised uniform distribution over base."""
    q = np.int64(TOTAL) // base
    return q, np.int64(TOTAL) - q * base


@nb.njit(inline="always", cache=True)
def _freq_start(x, q, r):
    if x < r:
        return q + 1, x * (q + 1)
    return q, x * q + r


@nb.njit(inline="always", cache=True)
def push_symbol(s, x, q, r):
    """Push symbol x (0 <= x < base) onto head s.

    Returns (new_head, emitted, word): when ``emitted`` is 1, ``word`` (0..2**16-1) must be pushed on
    the lane's word stack *before* anything else is.
    """
    f, c = _freq_start(x, q, r)
    emitted = np.int64(0)
    word = np.int64(0)
    if (s >> EMIT_SHIFT) >= f:  # s >= f * 2**32, without overflowing when f = 2**31
        word = s & WORD_MASK
        s = s >> WORD_BITS
        emitted = np.int64(1)
    s = ((s // f) << PREC_BITS) + (s % f) + c
    return s, emitted, word


@nb.njit(inline="always", cache=True)
def pop_symbol_head(s, q, r):
    """First half of a pop: decode a symbol from head s without touching the word stack.

    Returns (x, reduced_head, needs_word). When ``needs_word`` is 1 the caller must finish with
    ``reduced_head << 16 | top_word`` (see :func:`refill`).
    """
    slot = s & SLOT_MASK
    wide = r * (q + 1)
    if slot < wide:
        x = slot // (q + 1)
    else:
        x = r + (slot - wide) // q
    f, c = _freq_start(x, q, r)
    s = f * (s >> PREC_BITS) + slot - c
    needs = np.int64(1) if s < STATE_LOWER else np.int64(0)
    return x, s, needs


@nb.njit(inline="always", cache=True)
def refill(s, word):
    """Complete a pop that needed a word: s <- s * 2**16 + word."""
    return (s << WORD_BITS) | word
