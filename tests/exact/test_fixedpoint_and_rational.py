"""FixedFormat conversions and rational momenta."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev import FixedFormat, FixedPointRangeError, HyperparameterError, as_momentum
from exactrev.exact.rational import MAX_DENOMINATOR, bits_per_multiplication


@given(st.integers(0, 52), st.lists(st.integers(-(2 ** 53 - 1), 2 ** 53 - 1), min_size=1, max_size=50))
def test_fixed_to_float_to_fixed_is_exact(frac_bits, ints):
    fmt = FixedFormat(frac_bits)
    k = np.array(ints, np.int64)
    np.testing.assert_array_equal(fmt.to_fixed(fmt.to_float(k)), k)


@given(st.integers(0, 52), st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=60), st.booleans())
def test_to_float_gives_numpys_floats_in_the_input_shape(frac_bits, ints, two_d):
    fmt = FixedFormat(frac_bits)
    k = np.array(ints, np.int64)
    if two_d and k.size % 2 == 0:
        k = k.reshape(2, -1).T  # not contiguous
    got = fmt.to_float(k)
    assert got.shape == k.shape and got.dtype == np.float64
    np.testing.assert_array_equal(got, k.astype(np.float64) * fmt.resolution)


def test_to_float_refuses_an_array_that_is_not_int64():
    with pytest.raises(TypeError, match="int64"):
        FixedFormat().to_float(np.zeros(3, np.int32))


@given(st.lists(st.floats(-2000, 2000), min_size=1, max_size=50))
def test_to_fixed_rounds_to_nearest(xs):
    fmt = FixedFormat()
    x = np.array(xs)
    k = fmt.to_fixed(x)
    assert np.all(np.abs(fmt.to_float(k) - x) <= fmt.resolution / 2)


def test_range_edges():
    fmt = FixedFormat(42)
    edge = fmt.max_value
    k = fmt.to_fixed([edge, -edge])
    assert list(k) == [2 ** 53 - 1, -(2 ** 53 - 1)]
    with pytest.raises(FixedPointRangeError, match=r"x\[1\]"):
        fmt.to_fixed([0.0, edge + fmt.resolution], name="x")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_or_huge_values_are_refused_naming_the_index(bad):
    with pytest.raises(FixedPointRangeError, match=r"w\[2\]"):
        FixedFormat().to_fixed([0.0, 1.0, bad, 2.0], name="w")


def test_bad_formats_and_dtypes():
    with pytest.raises(ValueError):
        FixedFormat(53)
    with pytest.raises(TypeError):
        FixedFormat().to_float(np.zeros(3))


@pytest.mark.parametrize("g, frac", [(0.9, Fraction(9, 10)), (0.5, Fraction(1, 2)),
                                     (1.0, Fraction(1)), (Fraction(58983, 65536), Fraction(58983, 65536))])
def test_as_momentum(g, frac):
    assert as_momentum(g) == frac


@given(st.floats(1e-4, 1.0))
def test_float_momenta_get_bounded_denominators(g):
    frac = as_momentum(g, tolerance=None)
    assert frac.denominator <= MAX_DENOMINATOR
    assert abs(float(frac) - g) <= 1.0 / MAX_DENOMINATOR


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, np.nan, np.inf, Fraction(1, 2 ** 17), "0.9", True])
def test_bad_momenta_are_refused(bad):
    with pytest.raises(HyperparameterError):
        as_momentum(bad)


@pytest.mark.parametrize("g", [0.999999, np.float64(1 - 1e-6), 1 - 1e-5])
def test_a_momentum_whose_complement_cannot_be_kept_within_1_percent_is_refused_by_default(g):
    with pytest.raises(HyperparameterError, match="1/65536"):
        as_momentum(g)
    assert as_momentum(g, tolerance=None) <= 1   # the nearest fraction, when asked for explicitly


def test_messages_show_numpy_scalars_as_plain_numbers():
    with pytest.raises(HyperparameterError) as info:
        as_momentum(np.float64(np.inf))
    assert "np.float64" not in str(info.value) and "inf" in str(info.value)


def test_bits_per_multiplication():
    assert bits_per_multiplication(Fraction(9, 10)) == pytest.approx(0.152003, abs=1e-6)
