"""Column sums in row order, for any shape, and bad arguments refused by name."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev.kernels.column_sums import column_sums


@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2 ** 32 - 1))
def test_the_same_floats_as_adding_the_rows_in_turn(rows, cols, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-8, 9, cols)  # sums that round
    out = np.full(cols, np.nan)
    column_sums(a, out)
    want = np.zeros(cols)
    for row in a:
        want = want + row
    np.testing.assert_array_equal(out, want)


def test_the_paper_blocks_give_numpys_floats():
    a = np.random.default_rng(3).standard_normal((200, 50))
    out = np.empty(50)
    column_sums(a, out)
    np.testing.assert_array_equal(out, np.sum(a, axis=0))  # numpy adds the rows in turn here too


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="column_sums needs float64 a"):
        column_sums(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="column_sums needs float64 a"):
        column_sums(np.zeros((3, 4), np.float32), np.zeros(4))
    with pytest.raises(ValueError, match="column_sums needs float64 a"):
        column_sums(np.zeros(4), np.zeros(4))
