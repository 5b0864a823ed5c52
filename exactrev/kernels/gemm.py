"""Small dense matrix products, each output element one fused multiply-add chain in a fixed order.

    C[i, j] = fma(A[i, K-1], B[K-1, j], ... fma(A[i, 1], B[1, j], fma(A[i, 0], B[0, j], 0.0)))

So every element is a function of its row of A and its column of B alone: not of the blocking, the
other rows, the thread that computes it or the CPU (``llvm.fma`` rounds once everywhere). It is the
order in which an OpenBLAS kernel sums a product whose K fits one of its blocks, so on such a CPU
these products give BLAS's floats too.

Register tiles (Goto and van de Geijn's scheme, packing only where it pays): a tile of 4 rows x 8
columns of C is eight ``simd.f64x4`` accumulators; step k broadcasts A[i + r, k] and multiplies it
into the two vectors B[k, j:j + 8]. B and C are used where they lie (their rows must be
contiguous); A too when its rows are contiguous (``matmul``). ``matmul_tn`` (A.T @ B) first copies
A's columns into panels, ``matmul_nt`` (A @ B.T) first copies B.T. A last tile that would cross the
edge is moved back to end at the last row or column: it computes a few elements twice, to the same
bits. For the paper MLP's products (100 x 64 x 50 down to 100 x 50 x 10, one Zen 3 core) this takes
0.62-0.88x the time of OpenBLAS, whose packing of both operands and zeroing of C cost about a third
of its arithmetic at these sizes.

Every function here checks shapes and scratch sizes (ValueError) and never reads or writes outside
its arrays; it trusts that C overlaps neither operand.
"""

import numba as nb

from .simd import load, vfma, vload, vstore, vzero
from .tanh import fma


@nb.njit(inline="always", cache=True)
def _tile_4x8(A, pa, ai, ak, B, pb, bk, C, pc, ci, K):
    """C's 4 x 8 block at element pc (rows ci apart) from A's 4 rows at element pa (ai apart, ak along
    k) and B's 8 columns at element pb (rows bk apart). Element offsets are from the data pointers."""
    c00, c01, c10, c11 = vzero(), vzero(), vzero(), vzero()
    c20, c21, c30, c31 = vzero(), vzero(), vzero(), vzero()
    for _ in range(K):
        b0, b1 = vload(B, pb), vload(B, pb + 4)
        a = load(A, pa)
        c00, c01 = vfma(a, b0, c00), vfma(a, b1, c01)
        a = load(A, pa + ai)
        c10, c11 = vfma(a, b0, c10), vfma(a, b1, c11)
        a = load(A, pa + 2 * ai)
        c20, c21 = vfma(a, b0, c20), vfma(a, b1, c21)
        a = load(A, pa + 3 * ai)
        c30, c31 = vfma(a, b0, c30), vfma(a, b1, c31)
        pa += ak
        pb += bk
    vstore(C, pc, c00)
    vstore(C, pc + 4, c01)
    vstore(C, pc + ci, c10)
    vstore(C, pc + ci + 4, c11)
    vstore(C, pc + 2 * ci, c20)
    vstore(C, pc + 2 * ci + 4, c21)
    vstore(C, pc + 3 * ci, c30)
    vstore(C, pc + 3 * ci + 4, c31)


@nb.njit(inline="always", cache=True)
def _tile_4x4(A, pa, ai, ak, B, pb, bk, C, pc, ci, K):
    """C's 4 x 4 block, as ``_tile_4x8``."""
    c0, c1, c2, c3 = vzero(), vzero(), vzero(), vzero()
    for _ in range(K):
        b = vload(B, pb)
        c0 = vfma(load(A, pa), b, c0)
        c1 = vfma(load(A, pa + ai), b, c1)
        c2 = vfma(load(A, pa + 2 * ai), b, c2)
        c3 = vfma(load(A, pa + 3 * ai), b, c3)
        pa += ak
        pb += bk
    vstore(C, pc, c0)
    vstore(C, pc + ci, c1)
    vstore(C, pc + 2 * ci, c2)
    vstore(C, pc + 3 * ci, c3)


@nb.njit(inline="always", cache=True)
def _column_tiles(N):
    """(wide, narrow): N >= 4 columns are covered by ``wide`` tiles of 8 columns, the t-th at
    ``_wide_at(t, N)``, and ``narrow`` tiles of 4 at ``_narrow_at(t, narrow, N)``; a last tile that
    would cross column N ends at it instead."""
    full, rest = N // 8, N % 8
    if rest > 4 and full > 0:
        return full + 1, 0
    if rest > 4:
        return 0, 2
    return full, 1 if rest > 0 else 0


@nb.njit(inline="always", cache=True)
def _wide_at(t, N):
    return min(8 * t, N - 8)


@nb.njit(inline="always", cache=True)
def _narrow_at(t, narrow, N):
    return N - 4 if t == narrow - 1 else 0


@nb.njit(cache=True)
def _chains(A, B, C):
    """C = A B one element at a time (the definition), for operands the tiles do not take."""
    M, K = A.shape
    for i in range(M):
        for j in range(B.shape[1]):
            c = 0.0
            for k in range(K):
                c = fma(A[i, k], B[k, j], c)
            C[i, j] = c


@nb.njit(cache=True)
def _four_chains(A, B, C, i, j):
    """C[i:i + 4, j], four chains side by side (a column too narrow for a vector)."""
    c0, c1, c2, c3 = 0.0, 0.0, 0.0, 0.0
    for k in range(A.shape[1]):
        b = B[k, j]
        c0 = fma(A[i, k], b, c0)
        c1 = fma(A[i + 1, k], b, c1)
        c2 = fma(A[i + 2, k], b, c2)
        c3 = fma(A[i + 3, k], b, c3)
    C[i, j], C[i + 1, j], C[i + 2, j], C[i + 3, j] = c0, c1, c2, c3


@nb.njit(cache=True)
def _band_count(M):
    """(bands, last): the 4-row bands that cover M >= 4 rows start at 4 b for b < bands - 1, and at
    ``last`` (= M - 4 when M % 4, else 4 (bands - 1))."""
    return (M + 3) // 4, M - 4


@nb.njit(cache=True)
def _check(A, B, C):
    """(M, N, K) of C = A B; ValueError when the shapes disagree or a row of B or C is not contiguous
    (where it matters: more than one column, and B only when K > 0)."""
    M, K = A.shape
    N = B.shape[1]
    if C.shape[0] != M or C.shape[1] != N or B.shape[0] != K:
        raise ValueError("matmul needs A (M x K), B (K x N) and C (M x N)")
    if M > 0 and N > 1 and ((K > 0 and B.strides[1] != 8) or C.strides[1] != 8):
        raise ValueError("matmul needs the rows of B and C contiguous")
    return M, N, K


@nb.njit(cache=True)
def matmul(A, B, C):
    """C = A @ B (module docstring) for float64 A (M x K), B (K x N), C (M x N), the rows of B and C
    contiguous. Tiles where A's rows are contiguous too and M, N >= 4; else chains side by side (four
    rows of one column where N < 4) or one at a time."""
    M, N, K = _check(A, B, C)
    if M == 0 or N == 0:
        return
    if K > 1 and A.strides[1] != 8 or M < 4:
        _chains(A, B, C)
        return
    if N < 4:
        bands, last = _band_count(M)
        for j in range(N):
            for b in range(bands):
                _four_chains(A, B, C, min(4 * b, last), j)
        return
    ai, bk, ci = A.strides[0] // 8, B.strides[0] // 8, C.strides[0] // 8
    bands, last = _band_count(M)
    wide, narrow = _column_tiles(N)
    for b in range(bands):  # ak = 1, a constant LLVM sees: a variable one cost 1.15x (registers)
        i = min(4 * b, last)
        for t in range(wide):
            j = _wide_at(t, N)
            _tile_4x8(A, i * ai, ai, 1, B, j, bk, C, i * ci + j, ci, K)
        for t in range(narrow):
            j = _narrow_at(t, narrow, N)
            _tile_4x4(A, i * ai, ai, 1, B, j, bk, C, i * ci + j, ci, K)


@nb.njit(cache=True)
def matmul_tn(A, B, C, scratch):
    """C = A.T @ B: A (K x M), B (K x N), C (M x N), the rows of A, B and C contiguous; ``scratch``:
    float64, C-contiguous, at least 4 K ceil(M / 4) elements, overlapping none of them.

    Each band of four columns of A is copied into ``scratch`` as a K x 4 panel, and the tiles go
    column block by column block, so that B's K x 8 block stays in the L1 cache while every panel
    passes it. For the paper MLP's weight gradients (K = 100 rows of a chunk, 50 x 50): 12.9 us,
    against 14.7 band by band in place (24 for the 64-wide input layer, whose rows of 64 floats fell
    on a few sets of the cache) and 17.2 for OpenBLAS."""
    M, N, K = _check(A.T, B, C)
    if M == 0 or N == 0:
        return
    if M < 4 or N < 4 or (K > 1 and A.strides[1] != 8):
        matmul(A.T, B, C)
        return
    bands, last = _band_count(M)
    if scratch.shape[0] < 4 * K * bands:
        raise ValueError("matmul_tn needs a scratch of 4 K ceil(M / 4) floats")
    ak, bk, ci = A.strides[0] // 8, B.strides[0] // 8, C.strides[0] // 8
    for b in range(bands):
        i = min(4 * b, last)
        for k in range(K):
            vstore(scratch, 4 * (b * K + k), vload(A, k * ak + i))
    wide, narrow = _column_tiles(N)
    for t in range(wide):
        j = _wide_at(t, N)
        for b in range(bands):
            _tile_4x8(scratch, 4 * b * K, 1, 4, B, j, bk, C, min(4 * b, last) * ci + j, ci, K)
    for t in range(narrow):
        j = _narrow_at(t, narrow, N)
        for b in range(bands):
            _tile_4x4(scratch, 4 * b * K, 1, 4, B, j, bk, C, min(4 * b, last) * ci + j, ci, K)


@nb.njit(cache=True)
def transposed(B, scratch):
    """B.T (K x N, for B of N x K) copied into the start of ``scratch`` (float64, C-contiguous, at
    least K N elements), as a C-contiguous view of it."""
    N, K = B.shape
    if scratch.shape[0] < K * N:
        raise ValueError("transposed needs a scratch of K N floats")
    bt = scratch[:K * N].reshape((K, N))
    for k in range(K):
        for j in range(N):
            bt[k, j] = B[j, k]
    return bt


@nb.njit(cache=True)
def matmul_nt(A, B, C, scratch):
    """C = A @ B.T: A (M x K), B (N x K), C (M x N); B.T is first copied into ``scratch``
    (``transposed``)."""
    matmul(A, transposed(B, scratch), C)
