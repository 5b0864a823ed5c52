"""Column sums of a 2-D float64 array in a fixed order: out[j] = ((0 + a[0, j]) + a[1, j]) + ...

The bias gradients of the BLAS MLP. One vectorised pass over the rows (AVX2: four columns at a time),
serial, so the order of every sum is the row order whatever the thread count. For the paper's 200 x 50
blocks numpy's ``np.sum(a, axis=0)`` gives the same floats (it adds the rows in turn there, though it
sums pairwise where the rows are single numbers) at 3x the time, most of it the cost of a general
reduction call.
"""

import numba as nb
import numpy as np


@nb.njit(error_model="numpy", cache=True)
def _column_sums(a, out):
    out[:] = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j] += a[i, j]


def column_sums(a, out):
    """out[j] = sum over i of a[i, j], added in row order (a: float64[B, m], out: float64[m])."""
    if a.ndim != 2 or out.shape != (a.shape[1],) or a.dtype != np.float64 or out.dtype != np.float64:
        raise ValueError(f"column_sums needs float64 a[B, m] and out[m], got {a.dtype}{a.shape} and "
                         f"{out.dtype}{out.shape}")
    _column_sums(a, out)
