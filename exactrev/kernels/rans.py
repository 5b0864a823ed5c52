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
most one. Every division is by a per-base constant and is done as a multiplication by the base's
magic reciprocal, exact without correction (``lanes.py``); the code tuple carries those reciprocals.

The functions are defined once in ``lanes.py`` for both targets; these are the CPU (``@njit``,
inlined) builds, part of the public API for users' own Numba code. Nothing here validates.
"""

import numba as nb
import numpy as np

from .lanes import (CODE_LEN, EMIT_SHIFT, MAX_BASE, PREC_BITS, SLOT_MASK, STATE_LOWER, TOTAL,  # noqa: F401
                    WORD_BITS, WORD_MASK, build_lanes)
from .wide import mulhi_shr



@nb.njit(inline="always", cache=True)
def rint(x):
    """Round to nearest, ties to even (one instruction: LLVM's rint in the default rounding mode)."""
    return np.rint(x)


CPU = build_lanes(nb.njit(inline="always", cache=True), mulhi_shr, rint)

floor_divmod = CPU.floor_divmod
uniform_code = CPU.uniform_code
code_at = CPU.code_at
push_symbol = CPU.push_symbol
pop_symbol_head = CPU.pop_symbol_head
refill = CPU.refill


@nb.njit(cache=True)
def code_table(bases):
    """Codes for an array of bases as an int64[G, CODE_LEN] table (row k: ``uniform_code(bases[k])``)."""
    ci = np.empty((bases.shape[0], CODE_LEN), np.int64)
    for k in range(bases.shape[0]):
        c = uniform_code(bases[k])
        for j in range(CODE_LEN):
            ci[k, j] = c[j]
    return ci
