"""numba.cuda kernels: the same lane arithmetic as the CPU kernels, one thread per weight.

``GPU = build_lanes(cuda.jit(device=True, inline=True))`` compiles the very source the CPU kernels use
(``lanes.py``), so the two targets produce the same integers and the same buffer contents (tested bit
for bit under ``NUMBA_ENABLE_CUDASIM=1``). Only the 128-bit product differs: the GPU build uses the
portable 31-bit-limb version, which the CPU tests check against the CPU's intrinsic. Compare each
kernel here with its CPU twin in ``momentum.py`` and ``buffer_ops.py``.

Errors without host round trips: every step runs a dry-run kernel, then a commit kernel. A lane that
would fail sets ``errs[i]``; the dry run then sets ``flag[0]`` to its stage (STAGE_*) and records the step
in ``flag[1]``. Every later kernel of the run returns at once while ``flag[0]`` is set, so nothing is
written from the failing step on. If the second half of a reverse step fails, ``weights_redo_kernel``
moves the weights forward again, as the CPU optimiser does. The host reads ``flag`` when it chooses
(at the end of a run) and raises with the step and the lane.

MLP kernels: every output element is computed by one thread, in a fixed loop order, so results are
the same on every run (deterministic; no float atomics). They are not bit-equal to the CPU MLP,
because the GPU contracts a*b+c into fused multiply-adds.
"""

import math

import numpy as np
from numba import cuda

from .lanes import ERR_BUFFER_FULL, ERR_BUFFER_UNDERFLOW, ERR_OK, build_lanes  # noqa: F401

GPU = build_lanes(cuda.jit(device=True, inline=True))
STAGE_FORWARD, STAGE_WEIGHTS_BACK, STAGE_VELOCITY_BACK, STAGE_CONVERT = 1, 2, 3, 4

_momentum_forward_lane = GPU.momentum_forward_lane
_weights_back_lane = GPU.weights_back_lane
_velocity_back_lane = GPU.velocity_back_lane
_rounded_product = GPU.rounded_product
_fixed_in_range = GPU.fixed_in_range
_push_symbol = GPU.push_symbol
_pop_symbol_head = GPU.pop_symbol_head
_refill = GPU.refill
_uniform_code = GPU.uniform_code
_code_at = GPU.code_at
_stack_top = GPU.stack_top
_commit_stack = GPU.commit_stack


@cuda.jit(device=True, inline=True)
def _code(ci, t, k):
    """Row (t, k) of a per-step code table int64[T, G, CODE_LEN] as a code tuple (see lanes.code_at)."""
    return _code_at(ci[t], k)


@cuda.jit(device=True, inline=True)
def _fail(errs, i, err, flag, t, stage):
    errs[i] = err
    flag[1] = t
    cuda.atomic.max(flag, 0, stage)


# -- fixed point -----------------------------------------------------------------------------------
@cuda.jit
def to_fixed_kernel(x, scale, out, errs, flag):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y = _rounded_product(scale, x[i])
        if _fixed_in_range(y):
            out[i] = np.int64(y)
        else:
            _fail(errs, i, 1, flag, -1, STAGE_CONVERT)


@cuda.jit
def to_float_kernel(k, resolution, out):
    i = cuda.grid(1)
    if i < k.shape[0]:
        out[i] = np.float64(k[i]) * resolution


# -- buffer ----------------------------------------------------------------------------------------
@cuda.jit
def push_kernel(heads, counts, words, symbols, bases):
    i = cuda.grid(1)
    if i < heads.shape[0]:
        s, emitted, word = _push_symbol(heads[i], symbols[i], _uniform_code(bases[i]))
        if emitted:
            words[counts[i], i] = np.uint16(word)
            counts[i] += 1
        heads[i] = s


@cuda.jit
def pop_kernel(heads, counts, words, bases, floor, out, commit, errs):
    i = cuda.grid(1)
    if i < heads.shape[0]:
        x, s, needs = _pop_symbol_head(heads[i], _uniform_code(bases[i]))
        if needs and counts[i] <= floor:
            errs[i] = 1
            return
        if commit:
            if needs:
                s = _refill(s, _stack_top(words, counts, i))
                counts[i] -= 1
            heads[i] = s
            out[i] = x


# -- momentum steps (t indexes the per-step tables) ------------------------------------------------
@cuda.jit
def momentum_forward_kernel(w, v, heads, counts, words, floor, group, ci_n, ci_d, omg_scale, lr,
                            grad, t, commit, errs, flag):
    i = cuda.grid(1)
    if i >= w.shape[0] or flag[0] != 0:
        return
    if counts[i] + 1 > words.shape[0] or counts[i] < 0:
        _fail(errs, i, ERR_BUFFER_FULL, flag, t, STAGE_FORWARD)
        return
    k = group[i]
    wn, vn, s, dcount, wrote, word, err = _momentum_forward_lane(
        w[i], v[i], heads[i], counts[i], _stack_top(words, counts, i), _code(ci_n, t, k),
        _code(ci_d, t, k), omg_scale[t, k], lr[t, k], grad[i])
    if err == ERR_OK and counts[i] + dcount < floor:
        err = ERR_BUFFER_UNDERFLOW
    if err != ERR_OK:
        _fail(errs, i, err, flag, t, STAGE_FORWARD)
    elif commit:
        w[i] = wn
        v[i] = vn
        heads[i] = s
        _commit_stack(words, counts, i, dcount, wrote, word)


@cuda.jit
def weights_back_kernel(w, v, group, lr, t, commit, errs, flag):
    i = cuda.grid(1)
    if i >= w.shape[0] or flag[0] != 0:
        return
    wn, err = _weights_back_lane(w[i], v[i], lr[t, group[i]])
    if err != ERR_OK:
        _fail(errs, i, err, flag, t, STAGE_WEIGHTS_BACK)
    elif commit:
        w[i] = wn


@cuda.jit
def weights_redo_kernel(w, v, group, lr, t, force, flag):
    """Undo weights_back_kernel of step t: w += round(a v), when that step's velocity half failed, or
    with ``force`` (the host's gradient function raised) while no earlier step has failed."""
    i = cuda.grid(1)
    failed_here = flag[0] == STAGE_VELOCITY_BACK and flag[1] == t
    if i < w.shape[0] and (failed_here or (force and flag[0] == 0)):
        w[i] += np.int64(_rounded_product(lr[t, group[i]], v[i]))


@cuda.jit
def velocity_back_kernel(v, heads, counts, words, floor, group, ci_n, ci_d, omg_scale, grad, t,
                         commit, errs, flag):
    i = cuda.grid(1)
    if i >= v.shape[0] or flag[0] != 0:
        return
    if counts[i] + 1 > words.shape[0] or counts[i] < 0:
        _fail(errs, i, ERR_BUFFER_FULL, flag, t, STAGE_VELOCITY_BACK)
        return
    k = group[i]
    vn, s, dcount, wrote, word, err = _velocity_back_lane(
        v[i], heads[i], counts[i], _stack_top(words, counts, i), _code(ci_n, t, k),
        _code(ci_d, t, k), omg_scale[t, k], grad[i])
    if err == ERR_OK and counts[i] + dcount < floor:
        err = ERR_BUFFER_UNDERFLOW
    if err != ERR_OK:
        _fail(errs, i, err, flag, t, STAGE_VELOCITY_BACK)
    elif commit:
        v[i] = vn
        heads[i] = s
        _commit_stack(words, counts, i, dcount, wrote, word)


# -- MLP building blocks ---------------------------------------------------------------------------
@cuda.jit
def gather_rows_kernel(src, idx, out):
    b, j = cuda.grid(2)
    if b < out.shape[0] and j < out.shape[1]:
        out[b, j] = src[idx[b], j]


@cuda.jit
def matmul_kernel(A, params, off, bias_off, out, accumulate):
    """out[b, j] (+)= sum_k A[b, k] W[k, j] (+ bias[j] when bias_off >= 0), W = params[off:] as (n, m)."""
    b, j = cuda.grid(2)
    n, m = A.shape[1], out.shape[1]
    if b < out.shape[0] and j < m:
        s = out[b, j] if accumulate else 0.0
        for k in range(n):
            s += A[b, k] * params[off + k * m + j]
        if bias_off >= 0:
            s += params[bias_off + j]
        out[b, j] = s


@cuda.jit
def matmul_t_kernel(D, params, off, out, accumulate):
    """out[b, k] (+)= sum_j D[b, j] W[k, j]  (D W^T)."""
    b, k = cuda.grid(2)
    m = D.shape[1]
    if b < out.shape[0] and k < out.shape[1]:
        s = out[b, k] if accumulate else 0.0
        for j in range(m):
            s += D[b, j] * params[off + k * m + j]
        out[b, k] = s


@cuda.jit
def outer_grad_kernel(A, D, out, off, bias_off, accumulate):
    """out[off + k m + j] (+)= sum_b A[b, k] D[b, j]; and out[bias_off + j] (+)= sum_b D[b, j] (k = n)."""
    k, j = cuda.grid(2)
    n, m = A.shape[1], D.shape[1]
    if j >= m or k > n:
        return
    if k < n:
        s = out[off + k * m + j] if accumulate else 0.0
        for b in range(A.shape[0]):
            s += A[b, k] * D[b, j]
        out[off + k * m + j] = s
    elif bias_off >= 0:
        s = out[bias_off + j] if accumulate else 0.0
        for b in range(D.shape[0]):
            s += D[b, j]
        out[bias_off + j] = s


@cuda.jit
def activate_kernel(z, act, a, rz, ra, want_r):
    """a = phi(z); ra = phi'(z) rz."""
    b, j = cuda.grid(2)
    if b < z.shape[0] and j < z.shape[1]:
        if act == 0:
            y = math.tanh(z[b, j])
            d = 1.0 - y * y
        else:
            y = max(z[b, j], 0.0)
            d = 1.0 if z[b, j] > 0.0 else 0.0
        a[b, j] = y
        if want_r:
            ra[b, j] = d * rz[b, j]


@cuda.jit
def hidden_back_kernel(da, rda, a, z, rz, act, dz, rdz, want_r):
    """dz = da phi'(z); rdz = rda phi'(z) + da phi''(z) rz."""
    b, j = cuda.grid(2)
    if b < da.shape[0] and j < da.shape[1]:
        if act == 0:
            d = 1.0 - a[b, j] * a[b, j]
            d2 = -2.0 * a[b, j] * d
        else:
            d = 1.0 if z[b, j] > 0.0 else 0.0
            d2 = 0.0
        dz[b, j] = da[b, j] * d
        if want_r:
            rdz[b, j] = rda[b, j] * d + da[b, j] * d2 * rz[b, j]


@cuda.jit
def softmax_ce_kernel(logits, y, rlogits, dz, rdz, row_loss, want_grad, want_r):
    """Per row b: loss_b, dz = (p - onehot)/B, rdz = p (rz - p.rz)/B."""
    b = cuda.grid(1)
    B, K = logits.shape[0], logits.shape[1]
    if b >= B:
        return
    mx = logits[b, 0]
    for j in range(1, K):
        mx = max(mx, logits[b, j])
    tot = 0.0
    for j in range(K):
        tot += math.exp(logits[b, j] - mx)
    row_loss[b] = math.log(tot) + mx - logits[b, y[b]]
    if want_grad:
        s = 0.0
        for j in range(K):
            p = math.exp(logits[b, j] - mx) / tot
            dz[b, j] = (p - (1.0 if j == y[b] else 0.0)) / B
            if want_r:
                s += p * rlogits[b, j]
        if want_r:
            for j in range(K):
                p = math.exp(logits[b, j] - mx) / tot
                rdz[b, j] = p * (rlogits[b, j] - s) / B


@cuda.jit
def l2_loss_kernel(row_loss, params, l2, out):
    """out[0] = mean(row_loss) + 0.5 sum l2 w^2, summed in index order by one thread."""
    if cuda.grid(1) == 0:
        s = 0.0
        for b in range(row_loss.shape[0]):
            s += row_loss[b]
        s /= row_loss.shape[0]
        for i in range(params.shape[0]):
            s += 0.5 * l2[i] * params[i] * params[i]
        out[0] = s


@cuda.jit
def l2_terms_kernel(params, l2, vec, grad, hvp, want_r):
    i = cuda.grid(1)
    if i < params.shape[0]:
        grad[i] += l2[i] * params[i]
        if want_r:
            hvp[i] += l2[i] * vec[i]


# -- the hypergradient sweep -----------------------------------------------------------------------
@cuda.jit
def sweep_pre_kernel(dv, dw, lr, types, t, omg, u):
    """dv += a dw; u = (1 - g) dv (per weight, through its type)."""
    i = cuda.grid(1)
    if i < dv.shape[0]:
        k = types[i]
        dv[i] += lr[t, k] * dw[i]
        u[i] = omg[t, k] * dv[i]


@cuda.jit
def sweep_post_kernel(dv, dw, hvp, mom, types, t, d_l2, u, l2, w):
    """dw -= H u; d log_l2 -= u l2 w; dv *= g."""
    i = cuda.grid(1)
    if i < dv.shape[0]:
        dw[i] -= hvp[i]
        d_l2[i] -= u[i] * l2[i] * w[i]
        dv[i] *= mom[t, types[i]]


@cuda.jit
def product_kernel(a, b, c, out):
    """out = a * (b + c) elementwise (c may be b with weight 0 by passing zeros)."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * (b[i] + c[i])


@cuda.jit
def scatter_sub_rows_kernel(total, idx, rows):
    """total[idx[b], :] -= rows[b, :] (idx distinct)."""
    b, j = cuda.grid(2)
    if b < rows.shape[0] and j < rows.shape[1]:
        total[idx[b], j] -= rows[b, j]


GROUP_THREADS = 128


@cuda.jit
def group_sums_kernel(values, types, out_row):
    """out_row[k] = sum of values over type k: block k, fixed strides, fixed-order tree (deterministic)."""
    k = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    part = cuda.shared.array(GROUP_THREADS, np.float64)
    s = 0.0
    for i in range(tid, values.shape[0], GROUP_THREADS):
        if types[i] == k:
            s += values[i]
    part[tid] = s
    cuda.syncthreads()
    width = GROUP_THREADS // 2
    while width > 0:
        if tid < width:
            part[tid] += part[tid + width]
        cuda.syncthreads()
        width //= 2
    if tid == 0:
        out_row[k] = part[0]


# -- baselines for the GPU benchmark ----------------------------------------------------------------
@cuda.jit
def float_momentum_kernel(w, v, g, a, grad):
    """Plain float64 momentum SGD, one weight per thread: v = g v - (1-g) grad, w += a v."""
    i = cuda.grid(1)
    if i < w.shape[0]:
        vi = g * v[i] - (1.0 - g) * grad[i]
        v[i] = vi
        w[i] += a * vi


@cuda.jit
def copy_kernel(src, dst):
    i = cuda.grid(1)
    if i < src.shape[0]:
        dst[i] = src[i]
