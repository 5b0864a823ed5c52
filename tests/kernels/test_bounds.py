"""Kernels that user code may call never read or write outside ``words``; popping bits that nobody
pushed is reported at the first such pop."""

from fractions import Fraction

import numba as nb
import numpy as np
import pytest

from exactrev import InfoBuffer
from exactrev.kernels.buffer_ops import push_kernel
from exactrev.kernels.lanes import ERR_BUFFER_FULL, ERR_BUFFER_UNDERFLOW, ERR_OK, STATE_LOWER
from exactrev.kernels.momentum import rational_multiply_in_place, rational_multiply_kernel, uniform_code


@nb.njit
def _user_loop(x, heads, counts, words, num, den):
    """What a user's own Numba code does: multiply every lane by num/den in place; returns the codes."""
    cn, cd = uniform_code(num), uniform_code(den)
    errs = np.zeros(x.shape[0], np.int64)
    for i in range(x.shape[0]):
        y, s, c, err = rational_multiply_in_place(x[i], heads[i], words, counts[i], i, cn, cd)
        errs[i] = err
        if err == ERR_OK:
            x[i], heads[i], counts[i] = y, s, c
    return errs


def test_a_lane_with_no_free_row_reports_a_full_stack_instead_of_writing_past_the_end():
    n = 6
    words = np.zeros((4, n), np.uint16)            # full: 4 rows, every stack holds 4 words
    counts = np.full(n, 4, np.int64)
    heads = np.full(n, STATE_LOWER, np.int64)
    x = np.arange(n, dtype=np.int64) * 10 ** 9
    before = (x.copy(), heads.copy(), counts.copy(), words.copy())
    for _ in range(50):                             # enough pushes to emit words on every lane
        errs = _user_loop(x, heads, counts, words, 9, 10)
        assert (errs == ERR_BUFFER_FULL).all()
    for a, b in zip(before, (x, heads, counts, words)):
        np.testing.assert_array_equal(a, b)


def test_the_public_kernels_refuse_a_full_stack():
    buf = InfoBuffer(5)
    buf.words = buf.words[:0].copy()   # no free row
    errs = np.zeros(5, np.int8)
    failed = rational_multiply_kernel(np.ones(5, np.int64), buf.heads, buf.counts, buf.words,
                                      buf.floor, 9, 10, False, None, errs)
    assert failed == 5 and (errs == ERR_BUFFER_FULL).all()
    heads = buf.heads.copy()
    assert push_kernel(buf.heads, buf.counts, buf.words, np.zeros(5, np.int64), np.full(5, 7)) == 5
    np.testing.assert_array_equal(buf.heads, heads)


def test_dividing_on_a_fresh_buffer_underflows_at_the_first_operation():
    buf = InfoBuffer(3)
    buf.ensure_free(1)
    errs = np.zeros(3, np.int8)
    failed = rational_multiply_kernel(np.ones(3, np.int64) * 12345, buf.heads, buf.counts, buf.words,
                                      buf.floor, 9, 10, True, None, errs)
    assert failed == 3 and (errs == ERR_BUFFER_UNDERFLOW).all()


@pytest.mark.parametrize("frac", [Fraction(1, 65536), Fraction(65535, 65536), Fraction(9, 10), Fraction(1, 2)])
def test_a_forward_multiply_never_ends_below_the_bottom_of_the_stack(frac):
    """The floor is safe: multiplying by n/d <= 1 may borrow the virtual zero word under an empty stack
    inside the operation but always ends at or above the bottom (forward runs see no false underflow),
    and a division brings a fresh buffer back to fresh."""
    from exactrev.exact.rational_ops import divide, multiply

    rng = np.random.default_rng(0)
    buf = InfoBuffer(2000)
    x = rng.integers(-2 ** 52, 2 ** 52, 2000)
    x0 = x.copy()
    for _ in range(30):
        multiply(x, frac, buf)
        assert buf.counts.min() >= 0
    for _ in range(30):
        divide(x, frac, buf)
    np.testing.assert_array_equal(x, x0)
    assert buf == InfoBuffer(2000)
