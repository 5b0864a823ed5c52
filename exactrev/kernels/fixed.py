"""Fixed-point conversion kernels: float64 <-> int64 with ``frac_bits`` fractional bits.

A fixed-point value ``k`` (int64) stands for ``k * 2**-frac_bits``. Its magnitude is kept at most
``MAX_MAGNITUDE = 2**53 - 1`` so that every value converts to float64 exactly; the limit also leaves
10 bits of headroom in int64 for the intermediate products of the momentum step.
"""

import numba as nb
import numpy as np

MAX_MAGNITUDE = (1 << 53) - 1
MAX_MAGNITUDE_F = float(MAX_MAGNITUDE)  # exactly representable


@nb.njit(inline="always", cache=True)
def fixed_in_range(y):
    """True when the float y (already rounded) is finite and fits the fixed-point range."""
    return abs(y) <= MAX_MAGNITUDE_F  # False for NaN and inf


@nb.njit(parallel=True, cache=True)
def to_fixed_kernel(x, scale, out, errs):
    """out[i] = rint(x[i] * scale) with round-half-even; errs[i] = 1 where x[i] is NaN/inf or out of range.

    Only ``errs`` is written where a lane is bad; the caller checks ``errs`` before using ``out``.
    """
    for i in nb.prange(x.shape[0]):
        y = np.rint(x[i] * scale)
        if fixed_in_range(y):
            out[i] = np.int64(y)
        else:
            errs[i] = 1
