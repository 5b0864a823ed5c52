"""Fixed-point conversion kernels: float64 <-> int64 with ``frac_bits`` fractional bits.

A fixed-point value ``k`` (int64) stands for ``k * 2**-frac_bits``. Its magnitude is kept at most
``MAX_MAGNITUDE = 2**53 - 1`` so that every value converts to float64 exactly; the limit also leaves
10 bits of headroom in int64 for the intermediate products of the momentum step.
"""

import numba as nb
import numpy as np

from .lanes import MAX_MAGNITUDE, MAX_MAGNITUDE_F  # noqa: F401
from .rans import CPU
from .threads import light

fixed_in_range = CPU.fixed_in_range
rounded_product = CPU.rounded_product


@light
@nb.njit(parallel=True, cache=True)
def to_fixed_kernel(x, scale, out, errs):
    """out[i] = round(x[i] * scale), ties to even; errs[i] = 1 where x[i] is NaN/inf or out of range.

    Only ``errs`` is written where a lane is bad; the caller checks ``errs`` before using ``out``.
    """
    for i in nb.prange(x.shape[0]):
        y = rounded_product(scale, x[i])
        if fixed_in_range(y):
            out[i] = np.int64(y)
        else:
            errs[i] = 1


@light
@nb.njit(parallel=True, cache=True)
def to_float_kernel(k, resolution, out):
    """out[i] = k[i] * resolution (a power of two): exact for |k[i]| <= 2**53, the floats of numpy's
    ``k.astype(float64) * resolution`` in one pass without the temporary array."""
    for i in nb.prange(k.shape[0]):
        out[i] = np.float64(k[i]) * resolution
