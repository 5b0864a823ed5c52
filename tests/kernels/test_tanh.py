"""The vectorised tanh of kernels/tanh.py: within 3 ulp of the C library's tanh everywhere, odd to the
bit, NaN and infinities handled, the slope 1 - tanh**2 from the same floats, and refused outputs."""

import math
from fractions import Fraction

import numba as nb
import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev.kernels.tanh import SMALL_BELOW, exp_minus, fma, power_of_two, tanh_and_slope


def _tanh(x):
    x = np.asarray(x, np.float64)
    a, slope = np.empty_like(x), np.empty_like(x)
    tanh_and_slope(x, a, slope)
    return a, slope


def _ulps(got, x):
    want = np.array([math.tanh(v) for v in x.ravel()]).reshape(x.shape)
    return np.abs(got - want) / np.spacing(np.abs(want))


def test_within_three_ulp_over_the_whole_range_and_at_the_branch_point():
    x = np.concatenate([np.linspace(-25, 25, 200001), np.geomspace(1e-300, 20, 20001),
                        [SMALL_BELOW, np.nextafter(SMALL_BELOW, 0), 19.0, 40.0, 1e300]])
    a, slope = _tanh(x)
    assert _ulps(a, x).max() <= 3.0
    assert np.mean(_ulps(a, x)) < 0.6
    np.testing.assert_array_equal(slope, 1.0 - a * a)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=50))
def test_random_values_are_within_three_ulp_and_odd_to_the_bit(values):
    x = np.array(values)
    a, _ = _tanh(x)
    assert _ulps(a, x).max() <= 3.0
    minus, _ = _tanh(-x)
    np.testing.assert_array_equal(minus, -a)


def test_specials():
    a, _ = _tanh(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0]))
    assert np.isnan(a[0]) and list(a[1:3]) == [1.0, -1.0]
    assert a[3] == 0.0 and math.copysign(1.0, a[3]) == 1.0 and math.copysign(1.0, a[4]) == -1.0


def test_shapes_are_kept_and_bad_outputs_refused():
    z = np.linspace(-2, 2, 12).reshape(3, 4)
    a, slope = _tanh(z)
    assert a.shape == (3, 4)
    np.testing.assert_allclose(a, np.tanh(z), rtol=1e-15)
    with pytest.raises(ValueError, match="slope must be a C-contiguous float64 array of shape"):
        tanh_and_slope(z, np.empty((3, 4)), np.empty((4, 3)).T)
    with pytest.raises(ValueError, match="a must be"):
        tanh_and_slope(z, np.empty((3, 4), np.float32), np.empty((3, 4)))


@nb.njit
def _powers(exponents, out):
    for i in range(exponents.shape[0]):
        out[i] = power_of_two(exponents[i])


def test_power_of_two_is_exact_over_the_normal_exponents():
    e = np.arange(-1022, 1024, dtype=np.int32)
    out = np.empty(e.shape[0])
    _powers(e, out)
    np.testing.assert_array_equal(out, [math.ldexp(1.0, int(k)) for k in e])


@nb.njit
def _fmas(a, b, c, out):
    for i in range(a.shape[0]):
        out[i] = fma(a[i], b[i], c[i])


finite = st.floats(min_value=-1e150, max_value=1e150, allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=20))
def test_fma_rounds_the_exact_product_and_sum_once(triples):
    a, b, c = (np.array(col) for col in zip(*triples))
    out = np.empty(a.shape[0])
    _fmas(a, b, c, out)
    want = [float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in triples]  # correctly rounded
    np.testing.assert_array_equal(out, want)


def test_fma_is_not_a_multiply_then_an_add():
    a = 1.0 + 2.0 ** -30
    out = np.empty(1)
    _fmas(np.array([a]), np.array([a]), np.array([-(1.0 + 2.0 ** -29)]), out)
    assert out[0] == 2.0 ** -60  # a * a rounded first would give 0


@nb.njit
def _exp_minus_all(y, out):
    for i in range(y.shape[0]):
        out[i] = exp_minus(y[i])


def test_exp_minus_is_within_two_ulp_down_to_the_subnormals():
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.uniform(0, 30, 50000), rng.uniform(0, 750, 50000), np.geomspace(1e-300, 800, 5001),
                        [0.0, 708.0, 709.0, 744.0, 745.0, 745.13, 746.0, 1e300]])
    out = np.empty_like(y)
    _exp_minus_all(y, out)
    want = np.exp(-y)
    nonzero = want > 0
    assert (np.abs(out - want)[nonzero] / np.spacing(want[nonzero])).max() <= 2.0
    np.testing.assert_array_equal(out[~nonzero], 0.0)


def test_exp_minus_specials():
    out = np.empty(3)
    _exp_minus_all(np.array([0.0, np.inf, np.nan]), out)
    assert out[0] == 1.0 and out[1] == 0.0 and np.isnan(out[2])
