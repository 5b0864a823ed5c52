"""MLP forward/backward and Pearlmutter's R-operator in @njit, with a fixed reduction order.

Parameters are one flat float64 vector: for each layer l = 1..L, W_l (n_{l-1} x n_l, row-major) then
b_l (n_l). Hidden layers use tanh or relu, the output is softmax cross-entropy averaged over the batch,
plus an L2 penalty 0.5 * sum_i l2_i w_i**2.

    forward:  z_l = a_{l-1} W_l + b_l,  a_l = phi(z_l),      R: Rz_l = Ra_{l-1} W_l + a_{l-1} V_l + Vb_l
    backward: dW_l = a_{l-1}^T dz_l,    da_{l-1} = dz_l W_l^T, dz_{l-1} = da_{l-1} phi'(z_{l-1})
              and the R-images of each (so hvp = H vec exactly, not by differences), down to the inputs:
              rdx = R{dL/dX} = d/dX (vec . dL/dw), the mixed term the data hypergradient needs.

Every output element is accumulated by one thread in a fixed order (matrix products in "axpy" form,
parallel over rows), so results are bit-identical for any thread count. No BLAS, no fastmath.
"""

import numba as nb
import numpy as np

from ..kernels.tanh import exp_minus

ACT_TANH = 0
ACT_RELU = 1


@nb.njit(inline="always", cache=True)
def _weights_view(flat, off, n, m):
    return flat[off:off + n * m].reshape((n, m))


@nb.njit(parallel=True, cache=True)
def matmul_rows(A, W, out, accumulate):
    """out (+)= A @ W, row by row: out[b, :] += A[b, k] * W[k, :] for k in order.

    Rows go in blocks of four that share each load of W[k, j] (register blocking); every element is
    still summed over k in order by one thread, so the bits do not depend on the blocking or threads.
    """
    B, K = A.shape
    M = W.shape[1]
    for blk in nb.prange((B + 3) // 4):
        b0 = 4 * blk
        if not accumulate:
            out[b0:b0 + 4, :] = 0.0
        if b0 + 4 <= B:
            for k in range(K):
                a0, a1, a2, a3 = A[b0, k], A[b0 + 1, k], A[b0 + 2, k], A[b0 + 3, k]
                for j in range(M):
                    w = W[k, j]
                    out[b0, j] += a0 * w
                    out[b0 + 1, j] += a1 * w
                    out[b0 + 2, j] += a2 * w
                    out[b0 + 3, j] += a3 * w
        else:
            for b in range(b0, B):
                for k in range(K):
                    a = A[b, k]
                    for j in range(M):
                        out[b, j] += a * W[k, j]


@nb.njit(cache=True)
def matmul_at_b(A, D, out, accumulate):
    """out (+)= A^T @ D: out[k, :] += A[b, k] * D[b, :] for b in order. It is ``matmul_rows`` on the
    transposed view of A (its rows of A^T are A's columns), so the same blocking and the same bits."""
    matmul_rows(A.T, D, out, accumulate)


def param_count(sizes):
    """Parameters of an MLP with layer widths ``sizes``: a weight matrix and a bias per layer."""
    return sum(int(a) * int(b) + int(b) for a, b in zip(sizes[:-1], sizes[1:]))


@nb.njit(cache=True)
def labels_in_range(y, classes):
    """True when every label of y (int64[B]) is in [0, classes): one compiled pass, where numpy's
    min and max are two (the check of every MLP pass on its batch)."""
    for i in range(y.shape[0]):
        if y[i] < 0 or y[i] >= classes:
            return False
    return True


@nb.njit(cache=True)
def column_sums(D, out, accumulate):
    """out (+)= the column sums of D[B, m], each summed in row order. Written as element loops: the
    slice form ``out[:] += D[b, :]`` ran 6x slower (5.0 against 0.8 us for 100 x 50)."""
    if not accumulate:
        out[:] = 0.0
    B, m = D.shape
    for b in range(B):
        for j in range(m):
            out[j] += D[b, j]


@nb.njit(nogil=True, cache=True)
def add_penalty(loss, params, l2, vec, want_grad, want_r, grad, hvp):
    """loss + 0.5 sum_i l2_i w_i**2, the terms added to loss one by one in index order; with want_grad
    adds l2 * w to grad, with want_r also l2 * vec to hvp. The L2 term of both MLP backends."""
    for i in range(params.shape[0]):
        loss += 0.5 * l2[i] * params[i] * params[i]
        if want_grad:
            grad[i] += l2[i] * params[i]
            if want_r:
                hvp[i] += l2[i] * vec[i]
    return loss


@nb.njit(inline="always", cache=True)
def exp_shifted_rows(logits, out, shift, total):
    """The softmax's numerators without overflow, for every row b of logits float64[B, K]:
    shift[b] = max_j logits[b, j], out[b, j] = exp(logits[b, j] - shift[b]) (``tanh.exp_minus`` of
    shift[b] - logits[b, j], the same float negated), total[b] = their sum in column order. The
    exponentials run as one loop over the block, which vectorises (a row of 10 logits alone does not)."""
    B, K = logits.shape
    for b in range(B):
        mx = logits[b, 0]
        for j in range(1, K):
            mx = max(mx, logits[b, j])
        shift[b] = mx
        for j in range(K):
            out[b, j] = mx - logits[b, j]
    flat = out.reshape(B * K)
    for k in range(B * K):
        flat[k] = exp_minus(flat[k])
    for b in range(B):
        tot = 0.0
        for j in range(K):
            tot += out[b, j]
        total[b] = tot


@nb.njit(cache=True)
def _activate(z, act, a):
    if act == ACT_TANH:
        a[:, :] = np.tanh(z)
    else:
        a[:, :] = np.maximum(z, 0.0)


@nb.njit(cache=True)
def _dphi(a, z, act):
    if act == ACT_TANH:
        return 1.0 - a * a
    return (z > 0.0) * 1.0


@nb.njit(cache=True)
def _d2phi(a, dphi, act):
    if act == ACT_TANH:
        return -2.0 * a * dphi
    return np.zeros_like(a)


@nb.njit(cache=True)
def _offsets(sizes):
    L = sizes.shape[0] - 1
    w_off = np.empty(L, np.int64)
    b_off = np.empty(L, np.int64)
    o = 0
    for l in range(L):
        w_off[l] = o
        o += sizes[l] * sizes[l + 1]
        b_off[l] = o
        o += sizes[l + 1]
    return w_off, b_off


@nb.njit(cache=True)
def _forward(params, sizes, act, X, vec, want_r):
    """Activations a_l, pre-activations z_l (z_L = logits) and, with want_r, their R-images along vec."""
    L = sizes.shape[0] - 1
    B = X.shape[0]
    w_off, b_off = _offsets(sizes)
    acts = [X.copy()]
    pre = [X.copy()]
    racts = [np.zeros_like(X)]
    rpre = [np.zeros_like(X)]
    for l in range(L):
        n, m = sizes[l], sizes[l + 1]
        W = _weights_view(params, w_off[l], n, m)
        z = np.empty((B, m))
        matmul_rows(acts[l], W, z, False)
        z += params[b_off[l]:b_off[l] + m]
        pre.append(z)
        if want_r:
            rz = np.empty((B, m))
            matmul_rows(acts[l], _weights_view(vec, w_off[l], n, m), rz, False)
            matmul_rows(racts[l], W, rz, True)
            rz += vec[b_off[l]:b_off[l] + m]
            rpre.append(rz)
        if l < L - 1:
            a = np.empty((B, m))
            _activate(z, act, a)
            acts.append(a)
            if want_r:
                racts.append(_dphi(a, z, act) * rpre[l + 1])
    return acts, pre, racts, rpre


@nb.njit(cache=True)
def mlp_predict(params, sizes, act, X):
    """Logits float64[B, n_L] of the MLP at params for inputs X."""
    return _forward(params, sizes, act, X, params, False)[1][-1]


@nb.njit(cache=True)
def mlp_pass(params, sizes, act, X, y, l2, vec, want_grad, want_r, grad_out, hvp_out, dx_out,
             rdx_out):
    """Loss at params on (X, y); optionally its gradient, H @ vec, dL/dX and R{dL/dX}.

    params, l2, vec, grad_out, hvp_out: float64[P]; X: float64[B, n_0]; y: int64[B];
    dx_out, rdx_out: float64[B, n_0], or both float64[0, n_0] to skip the input gradients (one matrix
    product fewer). Returns the loss (float).
    """
    L = sizes.shape[0] - 1
    B = X.shape[0]
    w_off, b_off = _offsets(sizes)
    acts, pre, racts, rpre = _forward(params, sizes, act, X, vec, want_r)
    # softmax cross-entropy on the logits pre[L]
    logits = pre[L]
    K = sizes[L]
    probs = np.empty((B, K))
    shift, total = np.empty(B), np.empty(B)
    exp_shifted_rows(logits, probs, shift, total)
    loss = 0.0
    for b in range(B):
        for j in range(K):
            probs[b, j] /= total[b]
        loss += np.log(total[b]) + shift[b] - logits[b, y[b]]
    loss /= B
    if not want_grad:
        return add_penalty(loss, params, l2, vec, False, False, grad_out, hvp_out)
    dz = probs.copy()
    for b in range(B):
        dz[b, y[b]] -= 1.0
    dz /= B
    rdz = np.zeros((B, K))
    if want_r:
        rz = rpre[L]
        for b in range(B):
            s = 0.0
            for j in range(K):
                s += probs[b, j] * rz[b, j]
            for j in range(K):
                rdz[b, j] = probs[b, j] * (rz[b, j] - s) / B
    for l in range(L - 1, -1, -1):
        n, m = sizes[l], sizes[l + 1]
        W = _weights_view(params, w_off[l], n, m)
        matmul_at_b(acts[l], dz, _weights_view(grad_out, w_off[l], n, m), False)
        column_sums(dz, grad_out[b_off[l]:b_off[l] + m], False)
        if want_r:
            HW = _weights_view(hvp_out, w_off[l], n, m)
            matmul_at_b(acts[l], rdz, HW, False)
            matmul_at_b(racts[l], dz, HW, True)
            column_sums(rdz, hvp_out[b_off[l]:b_off[l] + m], False)
        if l == 0 and dx_out.shape[0] == 0:
            break   # no input gradient asked for (empty dx_out): layer 0 needs no da
        WT = np.ascontiguousarray(W.T)
        da = np.empty((B, n))
        matmul_rows(dz, WT, da, False)
        rda = np.zeros((B, n))
        if want_r:
            VT = np.ascontiguousarray(_weights_view(vec, w_off[l], n, m).T)
            matmul_rows(rdz, WT, rda, False)
            matmul_rows(dz, VT, rda, True)
        if l == 0:
            dx_out[:, :] = da
            rdx_out[:, :] = rda
        else:
            dphi = _dphi(acts[l], pre[l], act)
            new_dz = da * dphi
            if want_r:
                rdz = rda * dphi + da * _d2phi(acts[l], dphi, act) * rpre[l]
            dz = new_dz
    return add_penalty(loss, params, l2, vec, True, want_r, grad_out, hvp_out)


def serial_mlp_pass():
    """``mlp_pass`` with every matrix product serial: one thread, no parallel region at all (for small
    layers, see ``MLP.SERIAL_BELOW``). Same reduction order, so the same bits."""
    from ..kernels.threads import serial_build

    rows = serial_build(matmul_rows)
    at_b = serial_build(matmul_at_b, matmul_rows=rows)
    forward = serial_build(_forward, matmul_rows=rows)
    return serial_build(mlp_pass, _forward=forward, matmul_rows=rows, matmul_at_b=at_b)
