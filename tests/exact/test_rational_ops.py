"""multiply/divide: exact rational scaling of fixed-point arrays through the buffer."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev import FixedPointRangeError, InfoBuffer
from exactrev.exact.bigint_buffer import BigIntBuffer
from exactrev.exact.rational_ops import divide, multiply


@given(st.integers(1, 200), st.integers(1, 2 ** 16), st.integers(1, 2 ** 16), st.integers(1, 50),
       st.integers(0, 2 ** 32))
def test_divide_undoes_multiply(n, a, b, steps, seed):
    frac = Fraction(min(a, b), max(a, b))
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2 ** 53) + 1, 2 ** 53, n)
    x0 = x.copy()
    buf = InfoBuffer(n)
    fresh = buf.copy()
    for _ in range(steps):
        multiply(x, frac, buf)
    assert np.all(np.abs(x - x0 * float(frac) ** steps) <= 1 + np.abs(x0) * 1e-9)
    for _ in range(steps):
        divide(x, frac, buf)
    np.testing.assert_array_equal(x, x0)
    assert buf == fresh


@given(st.integers(1, 2 ** 16), st.integers(1, 2 ** 16), st.integers(0, 2 ** 32))
def test_multiply_is_within_one_unit_of_the_exact_product(a, b, seed):
    frac = Fraction(min(a, b), max(a, b))
    x = np.random.default_rng(seed).integers(-(2 ** 53) + 1, 2 ** 53, 64)
    y = x.copy()
    multiply(y, frac, InfoBuffer(64))
    for before, after in zip(x.tolist(), y.tolist()):
        assert abs(after - before * frac) < 1


def test_the_big_integer_baseline_round_trips():
    rng = np.random.default_rng(0)
    x = rng.integers(-(2 ** 50), 2 ** 50, 100)
    big = BigIntBuffer(100)
    y = x.copy()
    big.multiply(y, 9, 10)
    assert np.all(np.abs(y - x * 0.9) < 9 + 1e-3 * np.abs(x) * 1e-9)
    assert big.size_bits() > 0


def test_divide_out_of_range_raises_and_changes_nothing():
    x = np.array([0, 2 ** 53 - 1, 5], np.int64)
    buf = InfoBuffer(3)
    multiply(x, Fraction(1, 2), buf)
    x[1] = 2 ** 53 - 1  # tamper: dividing by 1/2 would now leave the range
    before_x, before_buf = x.copy(), buf.copy()
    with pytest.raises(FixedPointRangeError, match=r"x\[1\]"):
        divide(x, Fraction(1, 2), buf)
    np.testing.assert_array_equal(x, before_x)
    assert buf == before_buf


def test_bad_arguments():
    buf = InfoBuffer(3)
    with pytest.raises(TypeError):
        multiply(np.zeros(3), 0.5, buf)
    with pytest.raises(ValueError, match="lanes"):
        multiply(np.zeros(4, np.int64), 0.5, buf)


def test_buffer_growth_in_the_middle_of_a_run_keeps_every_bit():
    """A fresh buffer has room for 12 words per lane; 44 multiplications by 1/9373 push 36 words, so
    the words array is reallocated mid-run and every kernel must write into the new one."""
    x = np.array([212959458379961, -5, 2 ** 52], np.int64)
    x0, buf = x.copy(), InfoBuffer(3)
    rows_before = buf.capacity_rows
    for _ in range(44):
        multiply(x, Fraction(1, 9373), buf)
    assert buf.capacity_rows > rows_before
    for _ in range(44):
        divide(x, Fraction(1, 9373), buf)
    np.testing.assert_array_equal(x, x0)
    assert buf == InfoBuffer(3)


FAST_EDGE = 2 ** 46  # lanes.FAST_LIMIT + 1: above it the lanes split x = hi d + lo first
MAX = 2 ** 53 - 1


@st.composite
def values_around_the_path_edges(draw):
    """Arrays mixing values just inside and outside the one-division path and near the range ends."""
    centre = draw(st.sampled_from([0, FAST_EDGE, -FAST_EDGE, MAX, -MAX]))
    n = draw(st.integers(1, 30))
    offsets = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    return np.clip(np.array([centre + o for o in offsets], np.int64), -MAX, MAX)


@given(values_around_the_path_edges(), st.integers(1, 2 ** 16), st.integers(1, 2 ** 16),
       st.integers(1, 4))
def test_multiply_and_divide_are_exact_on_both_sides_of_the_fast_path_edge(x, a, b, steps):
    frac = Fraction(min(a, b), max(a, b))
    x0, buf = x.copy(), InfoBuffer(x.shape[0])
    fresh = buf.copy()
    for _ in range(steps):
        before = x.copy()
        multiply(x, frac, buf)
        for u, v in zip(before.tolist(), x.tolist()):
            assert abs(v - u * frac) < 1
    for _ in range(steps):
        divide(x, frac, buf)
    np.testing.assert_array_equal(x, x0)
    assert buf == fresh


def test_divide_accepts_a_result_at_the_range_end_and_refuses_one_past_it():
    for start, fails in ((MAX // 2, False), (MAX // 2 + 1, True)):
        x = np.array([7, start], np.int64)
        buf = InfoBuffer(2)
        buf.push(np.array([0, 1]), 2)  # the remainder divide pops: the result is 2 start + 1
        before_x, before_buf = x.copy(), buf.copy()
        if fails:
            with pytest.raises(FixedPointRangeError, match=r"x\[1\]"):
                divide(x, Fraction(1, 2), buf)
            np.testing.assert_array_equal(x, before_x)
            assert buf == before_buf
        else:
            divide(x, Fraction(1, 2), buf)
            assert x[1] == MAX


def test_values_outside_the_fixed_point_range_are_refused():
    for bad in (2 ** 53, -(2 ** 53), np.iinfo(np.int64).max, np.iinfo(np.int64).min):
        for op in (multiply, divide):
            x = np.array([1, bad], np.int64)
            buf = InfoBuffer(2)
            buf.push(np.array([1, 1]), 2)
            before = buf.copy()
            with pytest.raises(FixedPointRangeError, match=r"x\[1\]"):
                op(x, Fraction(9, 10), buf)
            assert x[1] == bad and buf == before


def test_a_failed_call_leaves_no_stale_error_flags_for_the_next():
    """The per-lane error flags are a scratch array reused between calls: after a refused call the next
    valid call on the same buffer must succeed and compute the same as on a fresh copy."""
    x = np.array([3, 2 ** 53 - 1, 5], np.int64)
    buf = InfoBuffer(3)
    multiply(x, Fraction(1, 2), buf)
    x[1] = 2 ** 53 - 1
    with pytest.raises(FixedPointRangeError):
        divide(x, Fraction(1, 2), buf)
    assert not buf.lane_flags().any()
    x[1] = 7
    y, other = x.copy(), buf.copy()
    multiply(x, Fraction(3, 7), buf)
    multiply(y, Fraction(3, 7), other)
    np.testing.assert_array_equal(x, y)
    assert buf == other
