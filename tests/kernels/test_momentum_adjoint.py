"""The fused passes of momentum SGD's step adjoint give the floats of the numpy expressions they
replace (bincount sums per type, in index order)."""

import numpy as np
from hypothesis import given, strategies as st

from exactrev.kernels.momentum_adjoint import adjoint_after_hvp, adjoint_before_hvp


@given(st.integers(1, 200), st.integers(1, 6), st.integers(0, 2 ** 32 - 1))
def test_both_passes_match_numpy_bit_for_bit(n, groups, seed):
    rng = np.random.default_rng(seed)
    types = rng.integers(0, groups, n)
    dw, dv, v_next, v_t, grad, hvp = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)
                                      for _ in range(6))
    lr, omg, g = rng.uniform(0, 1, (3, groups))
    want_dlr = np.bincount(types, weights=dw * v_next, minlength=groups)
    want_dv = dv + lr[types] * dw
    want_u = omg[types] * want_dv
    want_dg = np.bincount(types, weights=want_dv * (v_t + grad), minlength=groups)
    want_dw = dw - hvp
    want_dv2 = want_dv * g[types]

    d_lr, d_g, u = np.full(groups, np.nan), np.full(groups, np.nan), np.empty(n)
    dw, dv = dw.copy(), dv.copy()
    adjoint_before_hvp(dw, dv, v_next, types, lr, omg, d_lr, u)
    for got, want in ((d_lr, want_dlr), (dv, want_dv), (u, want_u)):
        np.testing.assert_array_equal(got, want)
    adjoint_after_hvp(dw, dv, v_t, grad, hvp, types, g, d_g)
    for got, want in ((d_g, want_dg), (dw, want_dw), (dv, want_dv2)):
        np.testing.assert_array_equal(got, want)
