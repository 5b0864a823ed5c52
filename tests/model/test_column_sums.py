"""mlp_kernels.column_sums, the bias gradients of both MLP backends: rows added in turn, for any shape,
and accumulated onto ``out`` when asked."""

import numpy as np
from hypothesis import given, strategies as st

from exactrev.model.mlp_kernels import column_sums


@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2 ** 32 - 1))
def test_rows_are_added_in_turn(rows, cols, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-8, 9, cols)  # sums that round
    out = np.full(cols, np.nan)
    column_sums(a, out, False)
    want = np.zeros(cols)
    for row in a:
        want = want + row
    np.testing.assert_array_equal(out, want)
    column_sums(a, out, True)
    for row in a:
        want = want + row
    np.testing.assert_array_equal(out, want)


def test_the_paper_blocks_give_numpys_floats():
    a = np.random.default_rng(3).standard_normal((200, 50))
    out = np.empty(50)
    column_sums(a, out, False)
    np.testing.assert_array_equal(out, np.sum(a, axis=0))  # numpy adds the rows in turn here too
