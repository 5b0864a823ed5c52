"""kernels.gemm: every element of a product is one fused multiply-add chain over k in order, whatever
the shape, the tile that computes it and the operands' layout; and kernels.simd's lanes are the
scalar fma's."""

import numba as nb
import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev.kernels.gemm import matmul, matmul_nt, matmul_tn, transposed
from exactrev.kernels.simd import load, store, vfma, vload, vstore, vzero
from exactrev.kernels.tanh import fma


@nb.njit(cache=True)
def chain_product(A, B):
    """The definition: C[i, j] = fma(A[i, K-1], B[K-1, j], ... fma(A[i, 0], B[0, j], 0.0))."""
    M, K = A.shape
    C = np.empty((M, B.shape[1]))
    for i in range(M):
        for j in range(B.shape[1]):
            c = 0.0
            for k in range(K):
                c = fma(A[i, k], B[k, j], c)
            C[i, j] = c
    return C


def operands(rng, M, K, N, spread):
    """Random A (M x K), B (K x N) whose entries span 10**-spread .. 10**spread, so sums round."""
    A = rng.standard_normal((M, K)) * 10.0 ** rng.integers(-spread, spread + 1, (M, K))
    B = rng.standard_normal((K, N)) * 10.0 ** rng.integers(-spread, spread + 1, (K, N))
    return A, B


@given(st.integers(0, 19), st.integers(0, 19), st.integers(0, 13), st.integers(0, 2 ** 32 - 1))
def test_each_element_is_one_fma_chain_in_k_order(M, N, K, seed):
    A, B = operands(np.random.default_rng(seed), M, K, N, 6)
    want = chain_product(A, B)
    for a in (A, np.asfortranarray(A), np.repeat(A, 2, axis=1)[:, ::2]):  # rows, columns, neither contiguous
        C = np.full((M, N), np.nan)
        matmul(a, B, C)
        np.testing.assert_array_equal(C, want)


@given(st.integers(1, 19), st.integers(1, 19), st.integers(0, 130), st.integers(0, 2 ** 32 - 1))
def test_transposed_operands_give_the_same_chains(M, N, K, seed):
    A, B = operands(np.random.default_rng(seed), M, K, N, 3)
    want = chain_product(A, B)
    C = np.full((M, N), np.nan)
    matmul_tn(np.ascontiguousarray(A.T), B, C, np.full(K * (M + 3), np.nan))
    np.testing.assert_array_equal(C, want)
    C[:] = np.nan
    matmul_nt(A, np.ascontiguousarray(B.T), C, np.full(K * N, np.nan))
    np.testing.assert_array_equal(C, want)


def test_paper_mlp_shapes_and_specials_propagate_as_in_the_chain():
    rng = np.random.default_rng(7)
    for M, K, N in ((100, 64, 50), (100, 50, 10), (200, 50, 50), (50, 100, 50)):
        A, B = operands(rng, M, K, N, 2)
        C = np.empty((M, N))
        matmul(A, B, C)
        np.testing.assert_allclose(C, A @ B, rtol=1e-9, atol=1e-12)
        A[3, 5], A[M - 5, 0], B[1, 7] = np.inf, np.nan, -np.inf
        A[10, :] = 5e-324  # subnormal products, rounded once each
        matmul(A, B, C)
        np.testing.assert_array_equal(C, chain_product(A, B))


def test_transposed_is_a_contiguous_copy():
    B = np.arange(12.0).reshape(3, 4)
    scratch = np.full(20, np.nan)
    bt = transposed(B, scratch)
    np.testing.assert_array_equal(bt, B.T)
    assert bt.flags.c_contiguous and np.isnan(scratch[12:]).all()


def test_shapes_that_disagree_or_scattered_rows_are_refused():
    A, B = np.ones((5, 3)), np.ones((3, 6))
    with pytest.raises(ValueError, match="A \\(M x K\\), B \\(K x N\\)"):
        matmul(A, np.ones((4, 6)), np.empty((5, 6)))
    with pytest.raises(ValueError, match="A \\(M x K\\), B \\(K x N\\)"):
        matmul(A, B, np.empty((5, 7)))
    with pytest.raises(ValueError, match="rows of B and C contiguous"):
        matmul(A, np.asfortranarray(B), np.empty((5, 6)))
    with pytest.raises(ValueError, match="rows of B and C contiguous"):
        matmul(A, B, np.empty((6, 5)).T)
    with pytest.raises(ValueError, match="scratch of 4 K ceil"):
        matmul_tn(np.ones((3, 5)), B, np.empty((5, 6)), np.empty(4 * 3 * 2 - 1))
    with pytest.raises(ValueError, match="scratch of K N"):
        matmul_nt(A, np.ones((6, 3)), np.empty((5, 6)), np.empty(17))


@nb.njit(cache=True)
def _lanes(a, b, c, out):
    """vfma(a[i], b[0:4], c[0:4]) into out[i, :] for each i, through vload/vstore and load/store."""
    for i in range(a.shape[0]):
        store(out, 4 * i, 0.0)
        vstore(out, 4 * i, vfma(load(a, i), vload(b, 0), vload(c, 0)))
    z = vzero()
    vstore(c, 0, z)


@nb.njit(cache=True)
def _scalar_fma(a, b, c):
    return fma(a, b, c)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=9, max_size=9))
def test_vector_lanes_are_the_scalar_fma(xs):
    a, b, c = np.array(xs[:1]), np.array(xs[1:5]), np.array(xs[5:9])
    out = np.full(4, np.nan)
    want = np.array([_scalar_fma(a[0], b[j], c[j]) for j in range(4)])
    _lanes(a, b, c.copy(), out)
    np.testing.assert_array_equal(out, want)
    zeros = c.copy()
    _lanes(a[:0], b, zeros, out)
    assert np.array_equal(zeros, np.zeros(4)) and not np.signbit(zeros).any()
