"""The MLP pass of ``mlp_kernels.mlp_pass`` with its matrix products in BLAS (numpy's ``matmul``).

Same maths, same arguments, same outputs: loss, gradient, H @ vec, dL/dX and R{dL/dX} (see
``mlp_kernels``). What makes it usable for exact reversal is that the gradient is a deterministic
function of (params, X, y, l2) in one process:

- the gradient is computed by the same sequence of numpy calls, on arrays of the same shapes and
  memory layouts, whether or not the R-images are asked for, so ``grad`` and ``grad_and_vjp`` agree
  bit for bit;
- OpenBLAS's ``dgemm`` splits work between threads over the rows and columns of the product, never
  over the summed dimension, so every element is reduced in the same order for any thread count
  (``tests/model/test_mlp_blas.py`` checks 1 and 2 BLAS threads and arrays at other addresses);
- elementwise functions (numpy's ``exp``, exactrev's vectorised ``tanh``, ``kernels/tanh.py``) and
  reductions (numpy's, and the bias gradients' ``mlp_kernels.column_sums``, serial, in row order) are
  fixed code for given shapes.

What it does not promise is the same bits on another CPU or BLAS build (another kernel may order a
product differently). A trajectory reversed where it was trained is exact; a buffer saved here and
reversed elsewhere is checked like any reversal, and a mismatch raises ``BufferMismatchError``. The
loop kernels (``MLP(..., backend="loops")``) give the same bits everywhere, 2.5-3x slower.

Every intermediate lives in a workspace kept per thread and per (layer sizes, batch), written with
``out=``: a pass allocates no large array, which on glibc would otherwise page memory in and out of
the heap on every step.
"""

import threading

import numpy as np

from ..kernels.tanh import tanh_and_slope
from .mlp_kernels import ACT_TANH, column_sums

_LOCAL = threading.local()


class _Workspace:
    """Arrays for one (sizes, batch): per layer l = 0..L-1 (output width m = sizes[l + 1]) the
    pre-activation z, activation a, phi', their R-images, the output gradient dz and its R-image, and
    scratch for the products; per layer input width n the input gradient da and its R-image."""

    def __init__(self, sizes, B):
        L = len(sizes) - 1
        outs = [(B, m) for m in sizes[1:]]
        ins = [(B, n) for n in sizes[:-1]]

        def each(shapes):
            return [np.empty(s) for s in shapes]
        self.z, self.a, self.dphi, self.rz, self.ra = (each(outs) for _ in range(5))
        self.dz, self.rdz, self.tmp_out = (each(outs) for _ in range(3))
        self.da, self.rda, self.tmp_in = (each(ins) for _ in range(3))
        self.tmp_w = [np.empty((n, m)) for n, m in zip(sizes[:-1], sizes[1:])]
        K = sizes[L]
        self.probs = np.empty((B, K))
        self.mx, self.tot, self.dot = np.empty((B, 1)), np.empty((B, 1)), np.empty((B, 1))
        self.rows = np.arange(B)


def _workspace(sizes, B):
    cache = getattr(_LOCAL, "spaces", None)
    if cache is None:
        cache = _LOCAL.spaces = {}
    key = (tuple(int(n) for n in sizes), B)
    ws = cache.get(key)
    if ws is None:
        if len(cache) >= 8:  # a few shapes per thread (train batch, validation set, ...)
            cache.clear()
        ws = cache[key] = _Workspace(key[0], B)
    return ws


def _layers(flat, sizes):
    """[(W_l view (n_{l-1}, n_l), b_l view (n_l,))] for l = 1..L."""
    out, o = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        out.append((flat[o:o + a * b].reshape(a, b), flat[o + a * b:o + a * b + b]))
        o += a * b + b
    return out


def _forward(ws, layers, vlayers, act, X, want_r):
    """z_l, a_l, phi'(z_l) and, with want_r, the R-images rz_l, ra_l along vec, into ws."""
    L = len(layers)
    prev, rprev = X, None
    for l, (W, b) in enumerate(layers):
        z = ws.z[l]
        np.matmul(prev, W, out=z)
        z += b
        if want_r:
            V, vb = vlayers[l]
            rz = ws.rz[l]
            np.matmul(prev, V, out=rz)
            if l > 0:
                np.matmul(rprev, W, out=ws.tmp_out[l])
                rz += ws.tmp_out[l]
            rz += vb
        if l == L - 1:
            break
        a, dphi = ws.a[l], ws.dphi[l]
        if act == ACT_TANH:
            tanh_and_slope(z, a, dphi)  # vectorised, within 3 ulp of np.tanh (kernels/tanh.py)
        else:
            np.maximum(z, 0.0, out=a)
            np.sign(a, out=dphi)  # a > 0 exactly where z > 0
        if want_r:
            np.multiply(dphi, ws.rz[l], out=ws.ra[l])
        prev, rprev = a, ws.ra[l]
    return ws.z[L - 1]


def mlp_predict(params, sizes, act, X):
    """Logits float64[B, n_L] of the MLP at params for inputs X (a new array)."""
    ws = _workspace(sizes, X.shape[0])
    return _forward(ws, _layers(params, sizes), None, act, X, False).copy()


def mlp_pass(params, sizes, act, X, y, l2, vec, want_grad, want_r, grad_out, hvp_out, dx_out, rdx_out):
    """``mlp_kernels.mlp_pass`` (same arguments, same outputs) with BLAS matrix products."""
    L = len(sizes) - 1
    B = X.shape[0]
    ws = _workspace(sizes, B)
    layers = _layers(params, sizes)
    vlayers = _layers(vec, sizes) if want_r else None
    logits = _forward(ws, layers, vlayers, act, X, want_r)
    # softmax cross-entropy: probs = exp(z - max) / tot, loss = mean(log tot + max - z_y)
    mx, tot, probs, rows = ws.mx, ws.tot, ws.probs, ws.rows
    np.max(logits, axis=1, keepdims=True, out=mx)
    np.subtract(logits, mx, out=probs)
    np.exp(probs, out=probs)
    np.sum(probs, axis=1, keepdims=True, out=tot)
    np.divide(probs, tot, out=probs)
    loss = float((np.log(tot[:, 0]) + mx[:, 0] - logits[rows, y]).sum() / B
                 + 0.5 * np.dot(l2 * params, params))
    if not want_grad:
        return loss
    dz = ws.dz[L - 1]
    np.copyto(dz, probs)
    dz[rows, y] -= 1.0
    dz /= B
    if want_r:
        rdz = ws.rdz[L - 1]  # probs * (rz - sum_j probs_j rz_j) / B
        np.multiply(probs, ws.rz[L - 1], out=rdz)
        np.sum(rdz, axis=1, keepdims=True, out=ws.dot)
        np.subtract(ws.rz[L - 1], ws.dot, out=rdz)
        rdz *= probs
        rdz /= B
    glayers = _layers(grad_out, sizes)
    hlayers = _layers(hvp_out, sizes) if want_r else None
    for l in range(L - 1, -1, -1):
        W = layers[l][0]
        prev = ws.a[l - 1] if l > 0 else X
        np.matmul(prev.T, dz, out=glayers[l][0])
        column_sums(dz, glayers[l][1], False)
        if want_r:
            HW = hlayers[l][0]
            np.matmul(prev.T, rdz, out=HW)
            if l > 0:
                np.matmul(ws.ra[l - 1].T, dz, out=ws.tmp_w[l])
                HW += ws.tmp_w[l]
            column_sums(rdz, hlayers[l][1], False)
        if l == 0 and dx_out.shape[0] == 0:
            break  # no input gradient asked for: layer 0 needs no da
        da = ws.da[l]
        np.matmul(dz, W.T, out=da)
        if want_r:
            rda = ws.rda[l]
            np.matmul(rdz, W.T, out=rda)
            np.matmul(dz, vlayers[l][0].T, out=ws.tmp_in[l])
            rda += ws.tmp_in[l]
        if l == 0:
            dx_out[:, :] = da
            rdx_out[:, :] = ws.rda[0] if want_r else 0.0
            break
        dphi = ws.dphi[l - 1]
        new_dz = ws.dz[l - 1]
        np.multiply(da, dphi, out=new_dz)
        if want_r:
            new_rdz = ws.rdz[l - 1]  # rda phi' + da phi'' rz, with phi'' = -2 a phi' for tanh
            np.multiply(rda, dphi, out=new_rdz)
            if act == ACT_TANH:
                t = ws.tmp_out[l - 1]
                np.multiply(ws.a[l - 1], dphi, out=t)
                t *= -2.0
                t *= da
                t *= ws.rz[l - 1]
                new_rdz += t
            rdz = new_rdz
        dz = new_dz
    grad_out += l2 * params
    if want_r:
        hvp_out += l2 * vec
    return loss
