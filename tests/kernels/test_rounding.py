"""The two builds of the one rounding the steps use: the CPU's ``rint`` instruction and the portable
``round_half_even`` of the CUDA build give the same float for every input, and both are Python's
``round`` (ties to even) wherever that is defined."""

import math

import numba as nb
import numpy as np
from hypothesis import given, strategies as st

from exactrev.kernels.lanes import build_lanes
from exactrev.kernels.rans import CPU

PORTABLE = build_lanes(nb.njit(inline="always"))  # the CUDA build's lane functions, compiled for the CPU
cpu_product, portable_product = CPU.rounded_product, PORTABLE.rounded_product


@nb.njit(cache=True)
def _both(coef, x, fast, portable):
    for i in range(x.shape[0]):
        fast[i] = cpu_product(coef[i], x[i])
        portable[i] = portable_product(coef[i], x[i])


def _round_both(coef, x):
    coef, x = np.asarray(coef, np.float64), np.asarray(x, np.float64)
    fast, portable = np.empty_like(x), np.empty_like(x)
    _both(coef, x, fast, portable)
    return fast, portable


def _edges():
    halves = np.arange(-6, 7) + 0.5
    big = 2.0 ** 52
    return np.concatenate([halves, -halves, [0.0, -0.0, 0.49999999999999994, -0.49999999999999994,
                                             big - 0.5, -(big - 0.5), big, big + 1, 2.0 ** 60, -2.0 ** 60,
                                             np.nextafter(big, 0), 1e300, -1e300, 5e-324]])


def test_edges_agree_with_ties_to_even():
    x = _edges()
    fast, portable = _round_both(np.ones_like(x), x)
    assert np.array_equal(fast, portable)  # -0.0 and 0.0 compare equal: both become the integer 0
    for xi, fi in zip(x, fast):
        assert fi == float(round(xi)), (xi, fi)


def test_non_finite_pass_through():
    x = np.array([np.nan, np.inf, -np.inf])
    fast, portable = _round_both(np.ones(3), x)
    assert np.isnan(fast[0]) and np.isnan(portable[0])
    assert list(fast[1:]) == [math.inf, -math.inf] == list(portable[1:])


FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(st.tuples(st.floats(-1e6, 1e6, allow_nan=False), FINITE), min_size=1, max_size=64))
def test_random_products_agree(pairs):
    coef, x = (np.array(col, np.float64) for col in zip(*pairs))
    fast, portable = _round_both(coef, x)
    assert np.array_equal(fast, portable, equal_nan=True)
    with np.errstate(over="ignore"):
        p = coef * x
    finite = np.isfinite(p)
    assert np.array_equal(fast[finite], np.array([float(round(v)) for v in p[finite]]))
