"""The per-weight work of momentum SGD's step adjoint (``hyper/adjoints.py``) in two fused passes.

Reverse step t (Maclaurin, Duvenaud & Adams 2015, Algorithm 2), k = type of weight i, with a, g and
1 - g the step's learning rate, momentum and its complement per type:

    before the HVP:  d_lr[k] = sum_i dw_i v'_i   dv_i += a_k dw_i   u_i = (1 - g_k) dv_i
    after it:        d_g[k]  = sum_i dv_i (v_i + grad_i)   dw_i -= (H u)_i   dv_i *= g_k

Each operation is the single IEEE operation numpy would do for the same expression, and each sum per
type adds in index order (as ``np.bincount`` does), so the floats are those of the numpy expressions;
the passes are serial, so they do not depend on the thread count. One pass instead of about a dozen
numpy calls and their temporary arrays.
"""

import numba as nb


@nb.njit(error_model="numpy", cache=True)
def adjoint_before_hvp(dw, dv, v_next, types, lr_t, omg_t, d_lr_t, u):
    """d_lr_t[k] = sum over type k of dw v_next; dv += lr_t[type] dw; u = omg_t[type] dv."""
    d_lr_t[:] = 0.0
    k, acc = -1, 0.0
    for i in range(dw.shape[0]):
        k, acc = _running_sum(d_lr_t, types[i], k, acc)
        acc += dw[i] * v_next[i]
        dv[i] += lr_t[k] * dw[i]
        u[i] = omg_t[k] * dv[i]
    _store_sum(d_lr_t, k, acc)


@nb.njit(error_model="numpy", cache=True)
def adjoint_after_hvp(dw, dv, v_t, grad, hvp, types, g_t, d_g_t):
    """d_g_t[k] = sum over type k of dv (v_t + grad); dw -= hvp; dv *= g_t[type]."""
    d_g_t[:] = 0.0
    k, acc = -1, 0.0
    for i in range(dw.shape[0]):
        k, acc = _running_sum(d_g_t, types[i], k, acc)
        acc += dv[i] * (v_t[i] + grad[i])
        dw[i] -= hvp[i]
        dv[i] *= g_t[k]
    _store_sum(d_g_t, k, acc)


@nb.njit(inline="always", cache=True)
def _running_sum(sums, k_lane, k, acc):
    """(k_lane, its running sum): a type's sum stays in a register along a run of lanes of that type
    and goes back to sums[k] when the type changes, so each sum adds its terms in index order, as
    ``sums[k] += term`` lane by lane would, without a store and a load per lane."""
    if k_lane != k:
        _store_sum(sums, k, acc)
        return k_lane, sums[k_lane]
    return k, acc


@nb.njit(inline="always", cache=True)
def _store_sum(sums, k, acc):
    if k >= 0:
        sums[k] = acc
