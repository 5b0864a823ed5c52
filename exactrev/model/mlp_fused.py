"""One chunk of the MLP pass compiled whole: ``mlp_blas``'s maths in a single Numba call.

The maths of ``mlp_blas._chunk_pass`` with the elementwise work between the products fused into
loops, and the products in ``kernels.gemm`` (register tiles, each element one fma chain over k in
order) instead of BLAS; ``chunks_pass`` runs a batch's chunks in one Numba parallel region and sums
them in chunk order. For the paper's network (64-50-50-50-10, batch 200) the numpy chunk pass makes
about 100 small numpy calls per gradient + HVP; here a whole pass is one call (on 2 cores,
``exactrev bench --suite training``: gradient 0.78 -> 0.68 ms, gradient + HVP 1.51 -> 1.23 ms, and
with the faster tanh 0.38-0.52 and 0.68-0.98 ms). ``kernels.gemm`` in place of OpenBLAS's ``dgemm``
(through Numba's ``np.dot``), whose packing of the operands and zeroing of the output cost about a
third as much as its arithmetic at these sizes: on one thread gradient 0.46-0.51 -> 0.38-0.40 ms,
gradient + HVP 1.10-1.15 -> 0.85-0.88 ms, the same floats there (OpenBLAS sums these products in the
same order).

Maths (rows b of the chunk, B_total the whole batch's size; ``mlp_kernels`` has the derivation):

    forward   z_l = a_{l-1} W_l + b_l,  a_l = phi(z_l),  phi'_l = phi'(z_l)
              Rz_l = a_{l-1} V_l + Ra_{l-1} W_l + Vb_l,  Ra_l = phi'_l Rz_l
    loss      sum_b log sum_j exp(z_bj - m_b) + m_b - z_{b,y_b}   (m_b = max_j z_bj; no 1/B_total)
    output    dz = (p - onehot(y)) / B_total,  Rdz = p (Rz - sum_j p_j Rz_j) / B_total
    backward  dW_l = a_{l-1}^T dz_l,  db_l = sum_b dz_l,  HW_l = a_{l-1}^T Rdz_l + Ra_{l-1}^T dz_l
              da = dz_l W_l^T,  Rda = Rdz_l W_l^T + dz_l V_l^T
              dz_{l-1} = da phi',  Rdz_{l-1} = Rda phi' + da phi'' Rz  (tanh: phi'' = -2 a phi')

Every float is fixed by the shapes and the inputs: products and loops in a fixed order (column sums
in row order, ``mlp_kernels.column_sums``) of IEEE operations and fused multiply-adds, which round
once everywhere, so the gradients and H @ vec should be the same on every CPU (the loss's log is the
C library's). Products of ``mlp_blas.SPLIT_FROM`` multiply-adds or more are not done here
(``mlp_blas`` shares them out in column blocks of BLAS products instead).
"""

import numba as nb
import numpy as np

from ..kernels.gemm import matmul, matmul_tn, transposed
from ..kernels.tanh import tanh_slope_lanes
from .mlp_kernels import ACT_TANH, column_sums, exp_shifted_rows


def workspace_floats(sizes, B):
    """Floats of the scratch array a chunk of B rows needs: z, a, phi', Rz, Ra, dz, Rdz for every
    layer, one layer's worth of output scratch, da, Rda and its scratch at the widest input, one
    weight matrix, and room for ``kernels.gemm``'s copies (a transposed weight matrix, or the panels
    of a chunk's activations: B (n + 3) at the widest input n)."""
    sizes = [int(n) for n in sizes]
    outs, ins = sizes[1:], sizes[:-1]
    wmax = max(n * m for n, m in zip(ins, outs))
    return 7 * B * sum(outs) + B * max(outs) + 3 * B * max(ins) + wmax + max(wmax, B * (max(ins) + 3))


@nb.njit(nogil=True, cache=True, error_model="numpy")
def chunk_pass(params, sizes, act, X, y, B_total, vec, want_grad, want_r, grad, hvp, dx, rdx, work):
    """The data loss summed over the chunk's rows (float), and with want_grad its shares of the
    gradient, with want_r of H @ vec, and where dx has rows of dL/dX and R{dL/dX}, written into
    grad, hvp, dx, rdx (module docstring). X float64[b, n_0] C-contiguous, y int[b], params and vec
    float64[P], work float64[workspace_floats(sizes, b)]."""
    L = sizes.shape[0] - 1
    B = X.shape[0]
    off = np.zeros(L + 1, np.int64)   # layer l's activations: [off[l], off[l + 1]) of a region
    poff = np.zeros(L + 1, np.int64)  # layer l's parameters: W then b, [poff[l], poff[l + 1])
    nmax, mmax, wmax = 0, 0, 0
    for l in range(L):
        n, m = sizes[l], sizes[l + 1]
        off[l + 1] = off[l] + B * m
        poff[l + 1] = poff[l] + n * m + m
        nmax, mmax, wmax = max(nmax, n), max(mmax, m), max(wmax, n * m)
    S = off[L]
    panel = max(wmax, B * (nmax + 3))
    if work.shape[0] < 7 * S + B * mmax + 3 * B * nmax + wmax + panel:
        raise ValueError("work is smaller than workspace_floats(sizes, rows)")
    Z, A, DP, RZ = work[0:S], work[S:2 * S], work[2 * S:3 * S], work[3 * S:4 * S]
    RA, DZ, RDZ = work[4 * S:5 * S], work[5 * S:6 * S], work[6 * S:7 * S]
    o = 7 * S
    TOUT = work[o:o + B * mmax]
    o += B * mmax
    DA, RDA, TIN = work[o:o + B * nmax], work[o + B * nmax:o + 2 * B * nmax], work[o + 2 * B * nmax:o + 3 * B * nmax]
    TW = work[o + 3 * B * nmax:o + 3 * B * nmax + wmax]
    o += 3 * B * nmax + wmax
    PANEL = work[o:o + panel]  # matmul_tn's panels, or W.T or V.T for the products with them

    for l in range(L):
        n, m = sizes[l], sizes[l + 1]
        W = params[poff[l]:poff[l] + n * m].reshape((n, m))
        b = params[poff[l] + n * m:poff[l + 1]]
        z = Z[off[l]:off[l + 1]].reshape((B, m))
        prev = X if l == 0 else A[off[l - 1]:off[l]].reshape((B, n))
        matmul(prev, W, z)
        for i in range(B):
            for j in range(m):
                z[i, j] += b[j]
        if want_r:
            V = vec[poff[l]:poff[l] + n * m].reshape((n, m))
            vb = vec[poff[l] + n * m:poff[l + 1]]
            rz = RZ[off[l]:off[l + 1]].reshape((B, m))
            matmul(prev, V, rz)
            if l > 0:
                t = TOUT[0:B * m].reshape((B, m))
                matmul(RA[off[l - 1]:off[l]].reshape((B, n)), W, t)
                for i in range(B):
                    for j in range(m):
                        rz[i, j] += t[i, j]
            for i in range(B):
                for j in range(m):
                    rz[i, j] += vb[j]
        if l == L - 1:
            break
        zf, af, df = Z[off[l]:off[l + 1]], A[off[l]:off[l + 1]], DP[off[l]:off[l + 1]]
        if act == ACT_TANH:
            tanh_slope_lanes(zf, af, df)
        else:
            for k in range(zf.shape[0]):
                pos = zf[k] > 0.0
                af[k] = zf[k] if pos else 0.0
                df[k] = 1.0 if pos else 0.0
        if want_r:
            rzf, raf = RZ[off[l]:off[l + 1]], RA[off[l]:off[l + 1]]
            for k in range(zf.shape[0]):
                raf[k] = df[k] * rzf[k]

    K = sizes[L]
    logits = Z[off[L - 1]:off[L]].reshape((B, K))
    dz = DZ[off[L - 1]:off[L]].reshape((B, K))
    rdz = RDZ[off[L - 1]:off[L]].reshape((B, K))
    rzl = RZ[off[L - 1]:off[L]].reshape((B, K))
    shift, total = np.empty(B), np.empty(B)
    exp_shifted_rows(logits, dz, shift, total)
    data = 0.0
    for i in range(B):
        tot = total[i]
        data += np.log(tot) + shift[i] - logits[i, y[i]]
        if not want_grad:
            continue
        for j in range(K):
            dz[i, j] /= tot
        if want_r:
            dot = 0.0
            for j in range(K):
                dot += dz[i, j] * rzl[i, j]
            for j in range(K):
                rdz[i, j] = (rzl[i, j] - dot) * dz[i, j] / B_total
        dz[i, y[i]] -= 1.0
        for j in range(K):
            dz[i, j] /= B_total
    if not want_grad:
        return data

    want_dx = dx.shape[0] > 0
    for l in range(L - 1, -1, -1):
        n, m = sizes[l], sizes[l + 1]
        W = params[poff[l]:poff[l] + n * m].reshape((n, m))
        dzl = DZ[off[l]:off[l + 1]].reshape((B, m))
        rdzl = RDZ[off[l]:off[l + 1]].reshape((B, m))
        prev = X if l == 0 else A[off[l - 1]:off[l]].reshape((B, n))
        matmul_tn(prev, dzl, grad[poff[l]:poff[l] + n * m].reshape((n, m)), PANEL)
        column_sums(dzl, grad[poff[l] + n * m:poff[l + 1]], False)
        if want_r:
            hw = hvp[poff[l]:poff[l] + n * m]
            matmul_tn(prev, rdzl, hw.reshape((n, m)), PANEL)
            if l > 0:
                tw = TW[0:n * m]
                matmul_tn(RA[off[l - 1]:off[l]].reshape((B, n)), dzl, tw.reshape((n, m)), PANEL)
                for k in range(n * m):
                    hw[k] += tw[k]
            column_sums(rdzl, hvp[poff[l] + n * m:poff[l + 1]], False)
        if l == 0 and not want_dx:
            break
        da = DA[0:B * n].reshape((B, n))
        WT = transposed(W, PANEL)
        matmul(dzl, WT, da)
        if want_r:
            matmul(rdzl, WT, RDA[0:B * n].reshape((B, n)))
            VT = transposed(vec[poff[l]:poff[l] + n * m].reshape((n, m)), PANEL)
            matmul(dzl, VT, TIN[0:B * n].reshape((B, n)))
        daf, rdaf, tinf = DA[0:B * n], RDA[0:B * n], TIN[0:B * n]
        if l == 0:
            for i in range(B):
                for j in range(n):
                    dx[i, j] = daf[i * n + j]
                    rdx[i, j] = rdaf[i * n + j] + tinf[i * n + j] if want_r else 0.0
            break
        dpf, ndz = DP[off[l - 1]:off[l]], DZ[off[l - 1]:off[l]]
        for k in range(B * n):
            ndz[k] = daf[k] * dpf[k]
        if want_r:
            af, rzf, nrdz = A[off[l - 1]:off[l]], RZ[off[l - 1]:off[l]], RDZ[off[l - 1]:off[l]]
            for k in range(B * n):
                r = (rdaf[k] + tinf[k]) * dpf[k]
                if act == ACT_TANH:
                    r += af[k] * dpf[k] * -2.0 * daf[k] * rzf[k]
                nrdz[k] = r
    return data


@nb.njit(parallel=True, cache=True)
def chunks_pass(params, sizes, act, X, y, vec, want_grad, want_r, bounds, grad, hvp, dx, rdx, grads, hvps,
                works):
    """The pass over the whole batch in the chunks X[bounds[k]:bounds[k + 1]]: each chunk's
    ``chunk_pass`` on one thread (chunk k's outputs in grads[k], hvps[k], its scratch works[k]), then
    the data loss and the outputs summed in chunk order into grad and hvp (dx and rdx are written by
    rows). Returns the data loss summed over the batch. The same floats for any thread count."""
    n = bounds.shape[0] - 1
    B = X.shape[0]
    data = np.empty(n)
    for k in nb.prange(n):
        lo, hi = bounds[k], bounds[k + 1]
        rows = slice(lo, hi) if dx.shape[0] > 0 else slice(0, 0)  # empty dx: no input gradients
        data[k] = chunk_pass(params, sizes, act, X[lo:hi], y[lo:hi], B, vec, want_grad, want_r, grads[k],
                             hvps[k], dx[rows], rdx[rows], works[k])
    total = data[0]
    for k in range(1, n):
        total += data[k]
    if want_grad:  # chunk 0's share, then the others added in chunk order (column_sums' element loops)
        grad[:] = grads[0]
        column_sums(grads[1:], grad, True)
        if want_r:
            hvp[:] = hvps[0]
            column_sums(hvps[1:], hvp, True)
    return total
