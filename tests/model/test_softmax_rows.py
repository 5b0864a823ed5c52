"""mlp_kernels.exp_shifted_rows, the softmax numerators of both MLP backends: each row shifted by its
maximum, exponentials within 2 ulp, totals added in column order; overflow-free and NaN-preserving."""

import numba as nb
import numpy as np
from hypothesis import given, strategies as st

from exactrev.model.mlp_kernels import exp_shifted_rows


@nb.njit
def _rows(logits):
    B, K = logits.shape
    out, shift, total = np.empty((B, K)), np.empty(B), np.empty(B)
    exp_shifted_rows(logits, out, shift, total)
    return out, shift, total


@given(st.integers(1, 30), st.integers(1, 12), st.integers(0, 2 ** 32 - 1))
def test_rows_are_shifted_exponentiated_and_summed_in_column_order(rows, cols, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-3, 3)
    out, shift, total = _rows(logits)
    np.testing.assert_array_equal(shift, logits.max(axis=1))
    want = np.exp(logits - shift[:, None])
    assert (np.abs(out - want) / np.spacing(want)).max() <= 2.0
    sums = np.zeros(rows)
    for j in range(cols):
        sums = sums + out[:, j]
    np.testing.assert_array_equal(total, sums)
    assert np.all(out.max(axis=1) == 1.0)  # the largest logit of a row gives exp(0)


def test_huge_and_special_logits():
    logits = np.array([[1e300, -1e300, 0.0], [800.0, 0.0, -800.0], [np.nan, 1.0, 2.0]])
    out, shift, total = _rows(logits)
    np.testing.assert_array_equal(out[0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[1], [1.0, 0.0, 0.0])
    assert list(total[:2]) == [1.0, 1.0]
    assert np.isnan(total[2])
