"""The MLP pass of ``mlp_kernels.mlp_pass`` with fast matrix products: register tiles or BLAS.

Same maths, same arguments, same outputs: loss, gradient, H @ vec, dL/dX and R{dL/dX} (see
``mlp_kernels``). The batch is cut into chunks of at most ``CHUNK_ROWS`` rows, computed one of two
ways, chosen by the shapes alone: where no product of a chunk reaches ``SPLIT_FROM`` multiply-adds,
each chunk is one compiled call (``mlp_fused.chunk_pass``, products in ``kernels.gemm``'s register
tiles, elementwise work fused), the chunks shared by Numba's threads (``mlp_fused.chunks_pass``);
otherwise each chunk is a sequence of numpy calls (``_chunk_pass``, ``matmul``: BLAS), chunks shared
by Python threads, and a large product cut into column blocks. What makes it usable for exact
reversal is that the gradient is a deterministic function of (params, X, y, l2) in one process:

- the gradient is computed by the same sequence of operations, on arrays of the same shapes and
  memory layouts, whether or not the R-images are asked for, so ``grad`` and ``grad_and_vjp`` agree
  bit for bit;
- every product is one thread's: ``kernels.gemm`` sums each element in one fixed order, and BLAS
  runs on one thread (``blas_threads.single_thread_blas``): a threaded OpenBLAS sums long products
  in another order than a serial one, so its bits would follow the thread setting. Threads share
  the chunks instead, whose outputs are added in chunk order, so every float is the same for any
  thread count (``tests/model/test_mlp_blas.py`` checks 1 to 4 threads, batches
  over a chunk, a 2000-wide layer, and arrays at other addresses);
- elementwise functions (exactrev's vectorised ``tanh`` and softmax ``exp``, ``kernels/tanh.py``) and
  reductions (the bias gradients' column sums, serial, in row order; numpy's in the numpy chunk pass)
  are fixed code for given shapes.

What the BLAS path does not promise is the same bits on another CPU or BLAS build (another kernel
may order a product differently). The compiled path forms its gradients from IEEE operations and
fused multiply-adds in a fixed order only, so it should give the same bits on any CPU; either way
a trajectory reversed where it was trained is exact, and a buffer saved here and reversed elsewhere
is checked like any reversal (a mismatch raises ``BufferMismatchError``). The loop kernels
(``MLP(..., backend="loops")``) give the same bits everywhere, 3x slower on one thread.

Every intermediate lives in a workspace kept per thread and per (layer sizes, batch, kind), written
in place: a pass allocates no large array, which on glibc would otherwise page memory in and out of
the heap on every step.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np

from ..kernels.tanh import tanh_and_slope
from ..kernels.threads import by_load
from .blas_threads import single_thread_blas
from .mlp_fused import chunk_pass, chunks_pass, workspace_floats
from .mlp_kernels import ACT_TANH, add_penalty, column_sums, exp_shifted_rows, param_count

CHUNK_ROWS = 128
"""Most batch rows in one chunk of a pass: at most this many terms in a weight gradient's BLAS sum
(OpenBLAS blocks longer sums differently in its serial and threaded drivers, ``blas_threads``), and
the unit of work that threads share."""
SPLIT_FROM = 1 << 22
"""Multiply-adds of a product from which it is computed in column blocks that threads share."""
BLOCK_COLS = 256

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


def _workspace(sizes, B, kind="numpy"):
    """This thread's scratch of ``kind`` for (sizes, B): "numpy", a ``_Workspace`` (``_chunk_pass``);
    "flat", the array one ``mlp_fused.chunk_pass`` carves its own from; "chunks", a ``_ChunkSpace``."""
    cache = getattr(_LOCAL, "spaces", None)
    if cache is None:
        cache = _LOCAL.spaces = {}
    key = (np.asarray(sizes, np.int64).tobytes(), B, kind)  # bytes hash 6x faster than numpy ints
    ws = cache.get(key)
    if ws is None:
        if len(cache) >= 8:  # a few shapes per thread (train batch, validation set, ...)
            cache.clear()
        ws = cache[key] = _SPACES[kind]([int(n) for n in sizes], B)
    return ws


def layer_views(flat, sizes):
    """[(W_l view (n_{l-1}, n_l), b_l view (n_l,))] for l = 1..L of a flat parameter vector (the layout
    of ``mlp_kernels``); ValueError when ``flat`` does not hold exactly the parameters of ``sizes``."""
    need = param_count(sizes)
    if flat.shape[0] != need:
        raise ValueError(f"a flat parameter vector of {flat.shape[0]} values for layer sizes "
                         f"{[int(n) for n in sizes]}, which have {need}")
    out, o = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        out.append((flat[o:o + a * b].reshape(a, b), flat[o + a * b:o + a * b + b]))
        o += a * b + b
    return out


def _forward(ws, layers, vlayers, act, X, want_r, share=1):
    """z_l, a_l, phi'(z_l) and, with want_r, the R-images rz_l, ra_l along vec, into ws."""
    L = len(layers)
    prev, rprev = X, None
    for l, (W, b) in enumerate(layers):
        z = ws.z[l]
        _matmul(prev, W, z, share)
        z += b
        if want_r:
            V, vb = vlayers[l]
            rz = ws.rz[l]
            _matmul(prev, V, rz, share)
            if l > 0:
                _matmul(rprev, W, ws.tmp_out[l], share)
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
    with single_thread_blas():
        return _forward(ws, layer_views(params, sizes), None, act, X, False, nb.get_num_threads()).copy()


def _matmul(a, b, out, share):
    """out = a @ b on one BLAS thread; a product of ``SPLIT_FROM`` multiply-adds or more is cut into
    column blocks of ``BLOCK_COLS`` (by its shape alone), which ``share`` threads compute."""
    m, k = a.shape
    n = b.shape[1]
    if m * k * n < SPLIT_FROM or n <= BLOCK_COLS:
        np.matmul(a, b, out=out)
        return
    cols = range(0, n, BLOCK_COLS)

    def block(i):
        c = cols[i]
        np.matmul(a, b[:, c:c + BLOCK_COLS], out=out[:, c:c + BLOCK_COLS])
    in_threads(block, len(cols), share, "block")


def compiled_fits(sizes, rows):
    """Whether chunks of ``rows`` rows or fewer run compiled (``mlp_fused``): when none
    of its products reaches ``SPLIT_FROM`` multiply-adds (larger ones are shared out in column blocks
    by ``_chunk_pass``). A function of the shapes alone, so the same chunk always takes the same path."""
    return max(int(n) * int(m) for n, m in zip(sizes[:-1], sizes[1:])) * rows < SPLIT_FROM


def chunk_bounds(B):
    """Row bounds [0, ..., B] of the batch's chunks: ceil(B / CHUNK_ROWS) chunks as equal as can be."""
    n = max(1, -(-B // CHUNK_ROWS))
    return [B * i // n for i in range(n + 1)]


def _widest(bounds):
    """Rows of the largest chunk between ``bounds``."""
    return max(hi - lo for lo, hi in zip(bounds[:-1], bounds[1:]))


_POOLS = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers, kind):
    """A thread pool of ``workers`` threads for chunks of a batch or blocks of a product (two kinds,
    so that a chunk waiting for its blocks never waits for its own pool)."""
    with _POOLS_LOCK:
        pool = _POOLS.get((workers, kind))
        if pool is None:
            pool = _POOLS[workers, kind] = ThreadPoolExecutor(workers, thread_name_prefix=f"exactrev-{kind}")
    return pool


def in_threads(fn, count, threads, kind):
    """[fn(0), ..., fn(count - 1)], unit i computed on thread i % share (share = min(count, threads);
    thread 0 is the caller, the others a ``kind`` pool). A unit's result does not depend on its thread."""
    share = min(count, threads)

    def units(j):
        return [fn(i) for i in range(j, count, share)]
    later = [_pool(share - 1, kind).submit(units, j) for j in range(1, share)]
    out = [None] * count
    out[0::share] = units(0)
    for j, f in enumerate(later, 1):
        out[j::share] = f.result()
    return out


def mlp_pass(params, sizes, act, X, y, l2, vec, want_grad, want_r, grad_out, hvp_out, dx_out, rdx_out):
    """``mlp_kernels.mlp_pass`` (same arguments, same outputs) with fast matrix products; l2 may also
    be None, for no penalty term (not even its zeros: about 9 us fewer per pass on the paper MLP).

    The batch is cut into ``chunk_bounds(B)`` row chunks, each computed on one thread; the loss and
    parameter-space outputs are summed in chunk order. Chunks whose products are all small run in
    ``mlp_fused.chunks_pass`` (one compiled call, ``kernels.gemm``'s products, chunks shared by Numba's
    threads); otherwise each chunk is ``_chunk_pass`` (BLAS on one thread), chunks beyond the first in
    a pool of ``numba.get_num_threads() - 1`` Python threads, and a pass of one chunk shares the
    column blocks of its large products instead (``_matmul``). Which path a batch takes depends on the
    shapes only, and so does every float: not on how many threads there are."""
    B = X.shape[0]
    bounds, compiled = _plan(sizes, B)
    if compiled:  # exactrev's own products: no BLAS, so no BLAS thread setting to hold
        data = _compiled_pass(params, sizes, act, X, y, vec, want_grad, want_r, grad_out, hvp_out, dx_out,
                              rdx_out, len(bounds) - 1)
    else:
        with single_thread_blas():  # held until every chunk is done
            data = _threaded_pass(params, sizes, act, X, y, vec, want_grad, want_r, grad_out, hvp_out, dx_out,
                                  rdx_out, bounds)
    if l2 is None:  # no penalty term
        return data / B
    return add_penalty(data / B, params, l2, vec, want_grad, want_r, grad_out, hvp_out)


_PLANS = {}


def _plan(sizes, B):
    """(chunk_bounds(B), whether its chunks run compiled) for layer sizes ``sizes`` (int64 array)."""
    key = (sizes.tobytes(), B)
    plan = _PLANS.get(key)
    if plan is None:
        bounds = chunk_bounds(B)
        if len(_PLANS) >= 64:
            _PLANS.clear()
        plan = _PLANS[key] = (bounds, compiled_fits(sizes, _widest(bounds)))
    return plan


class _ChunkSpace:
    """Scratch of ``mlp_fused.chunks_pass`` for (sizes, B): the chunk bounds, each chunk's gradient and
    H @ vec shares, and each chunk's workspace."""

    def __init__(self, sizes, B):
        bounds = chunk_bounds(B)
        n, P = len(bounds) - 1, param_count(sizes)
        self.bounds = np.array(bounds, np.int64)
        self.grads, self.hvps = np.empty((n, P)), np.empty((n, P))
        self.works = np.empty((n, workspace_floats(sizes, _widest(bounds))))


_SPACES = {"numpy": _Workspace, "flat": lambda sizes, B: np.empty(workspace_floats(sizes, B)),
           "chunks": _ChunkSpace}


def _compiled_pass(params, sizes, act, X, y, vec, want_grad, want_r, grad_out, hvp_out, dx_out, rdx_out, chunks):
    """The data loss summed over the batch, every chunk compiled (``mlp_fused``); one chunk is one
    ``chunk_pass`` call, several one ``chunks_pass`` call (one Numba parallel region, on all threads or
    on one as the machine's load calls for: ``threads.by_load``)."""
    B = X.shape[0]
    if chunks == 1:
        work = _workspace(sizes, B, "flat")
        return chunk_pass(params, sizes, act, X, y, B, vec, want_grad, want_r, grad_out, hvp_out, dx_out, rdx_out,
                          work)
    space = _workspace(sizes, B, "chunks")
    return by_load(chunks_pass)(params, sizes, act, X, y, vec, want_grad, want_r, space.bounds, grad_out, hvp_out,
                                dx_out, rdx_out, space.grads, space.hvps, space.works)


def _threaded_pass(params, sizes, act, X, y, vec, want_grad, want_r, grad_out, hvp_out, dx_out, rdx_out, bounds):
    """The data loss summed over the batch, chunk by chunk in ``_chunk_pass`` on Python threads."""
    B = X.shape[0]
    rows = list(zip(bounds[:-1], bounds[1:]))
    want_dx = dx_out.shape[0] > 0
    P = params.shape[0]
    threads = nb.get_num_threads()

    def run(k):
        lo, hi = rows[k]
        g, h = (grad_out, hvp_out) if k == 0 else (np.empty(P), np.empty(P))
        dx, rdx = (dx_out[lo:hi], rdx_out[lo:hi]) if want_dx else (dx_out, rdx_out)
        data = _chunk_pass(params, sizes, act, X[lo:hi], y[lo:hi], B, vec, want_grad, want_r, g, h, dx, rdx,
                           threads if len(rows) == 1 else 1)
        return data, g, h

    done = in_threads(run, len(rows), threads, "chunk")
    data = done[0][0]
    for k in range(1, len(rows)):  # chunk order: the same sums for any thread count
        data += done[k][0]
        if want_grad:
            grad_out += done[k][1]
            if want_r:
                hvp_out += done[k][2]
    return data


def _chunk_pass(params, sizes, act, X, y, B, vec, want_grad, want_r, grad_out, hvp_out, dx_out, rdx_out,
                share=1):
    """One chunk of ``mlp_pass``: the sum over its rows of the data loss, and (want_grad) their
    shares of the outputs, each row's loss divided by the whole batch's size B; no penalty term."""
    L = len(sizes) - 1
    ws = _workspace(sizes, X.shape[0])
    layers = layer_views(params, sizes)
    vlayers = layer_views(vec, sizes) if want_r else None
    logits = _forward(ws, layers, vlayers, act, X, want_r, share)
    # softmax cross-entropy: probs = exp(z - max) / tot, loss = mean(log tot + max - z_y)
    mx, tot, probs, rows = ws.mx, ws.tot, ws.probs, ws.rows
    exp_shifted_rows(logits, probs, mx[:, 0], tot[:, 0])  # the compiled chunk's numerators and totals
    np.divide(probs, tot, out=probs)
    data = float((np.log(tot[:, 0]) + mx[:, 0] - logits[rows, y]).sum())
    if not want_grad:
        return data
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
    glayers = layer_views(grad_out, sizes)
    hlayers = layer_views(hvp_out, sizes) if want_r else None
    for l in range(L - 1, -1, -1):
        W = layers[l][0]
        prev = ws.a[l - 1] if l > 0 else X
        _matmul(prev.T, dz, glayers[l][0], share)
        column_sums(dz, glayers[l][1], False)
        if want_r:
            HW = hlayers[l][0]
            _matmul(prev.T, rdz, HW, share)
            if l > 0:
                _matmul(ws.ra[l - 1].T, dz, ws.tmp_w[l], share)
                HW += ws.tmp_w[l]
            column_sums(rdz, hlayers[l][1], False)
        if l == 0 and dx_out.shape[0] == 0:
            break  # no input gradient asked for: layer 0 needs no da
        da = ws.da[l]
        _matmul(dz, W.T, da, share)
        if want_r:
            rda = ws.rda[l]
            _matmul(rdz, W.T, rda, share)
            _matmul(dz, vlayers[l][0].T, ws.tmp_in[l], share)
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
    return data
