"""MLP: gradient, HVP and the input terms against finite differences; determinism; errors."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev.model.mlp import MLP

from ..conftest import THREAD_COUNTS
from ..helpers import num_threads


def _problem(sizes, act, seed, batch=9, backend="blas"):
    rng = np.random.default_rng(seed)
    net = MLP(sizes, act, backend)
    p = rng.normal(size=net.n_params) * 0.5
    X = rng.normal(size=(batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    l2 = rng.uniform(0, 0.1, net.n_params)
    return net, p, X, y, l2, rng


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@given(st.lists(st.integers(1, 6), min_size=2, max_size=4), st.sampled_from(["tanh", "relu"]),
       st.integers(0, 2 ** 31), st.sampled_from(["blas", "loops"]))
def test_gradient_and_hvp_match_finite_differences(hidden, act, seed, backend):
    sizes = (3, *hidden[:-1], max(2, hidden[-1]))
    net, p, X, y, l2, rng = _problem(sizes, act, seed, backend=backend)
    vec = rng.normal(size=net.n_params)
    _, g, hv, _ = net.grad_hvp(p, X, y, vec, l2)
    eps = 1e-6
    fd = np.array([(net.loss(p + eps * e, X, y, l2) - net.loss(p - eps * e, X, y, l2)) / (2 * eps)
                   for e in np.eye(net.n_params)])
    assert _rel(g, fd) < 1e-6
    fd_h = (net.loss_grad(p + eps * vec, X, y, l2)[1] - net.loss_grad(p - eps * vec, X, y, l2)[1]) / (2 * eps)
    assert _rel(hv, fd_h) < 1e-5


@pytest.mark.parametrize("backend", ["blas", "loops"])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_input_terms_match_finite_differences(act, backend):
    net, p, X, y, l2, rng = _problem((4, 5, 3), act, 7, backend=backend)
    vec = rng.normal(size=net.n_params)
    rdx = net.grad_hvp(p, X, y, vec, l2)[3]
    dx = net.input_grad(p, X, y, l2)
    eps = 1e-6
    fd_rdx, fd_dx = np.zeros_like(X), np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        E = np.zeros_like(X)
        E[idx] = eps
        fd_rdx[idx] = (vec @ net.loss_grad(p, X + E, y, l2)[1] - vec @ net.loss_grad(p, X - E, y, l2)[1]) / (2 * eps)
        fd_dx[idx] = (net.loss(p, X + E, y, l2) - net.loss(p, X - E, y, l2)) / (2 * eps)
    assert _rel(rdx, fd_rdx) < 1e-5
    assert _rel(dx, fd_dx) < 1e-5


@pytest.mark.parametrize("backend", ["blas", "loops"])
def test_results_do_not_depend_on_thread_count(backend):
    net, p, X, y, l2, rng = _problem((64, 50, 50, 10), "tanh", 3, batch=200, backend=backend)
    vec = rng.normal(size=net.n_params)
    outs = []
    for k in THREAD_COUNTS:
        with num_threads(k):
            outs.append(net.grad_hvp(p, X, y, vec, l2))
    for other in outs[1:]:
        assert other[0] == outs[0][0]
        for a, b in zip(other[1:], outs[0][1:]):
            np.testing.assert_array_equal(a, b)


def test_the_serial_pass_for_small_layers_gives_the_parallel_bits(monkeypatch):
    from exactrev.model import mlp

    net, p, X, y, l2, rng = _problem((64, 50, 50, 10), "relu", 4, batch=30, backend="loops")
    vec = rng.normal(size=net.n_params)
    outs = []
    for serial_below in (0, 1 << 62):  # parallel kernels, then the serial build
        monkeypatch.setattr(mlp, "SERIAL_BELOW", serial_below)
        outs.append(net.grad_hvp(p, X, y, vec, l2))
    assert outs[0][0] == outs[1][0]
    for a, b in zip(outs[0][1:], outs[1][1:]):
        np.testing.assert_array_equal(a, b)


def test_layout_and_types():
    net = MLP((64, 50, 50, 50, 10))
    assert net.n_params == 8860
    assert net.n_types == 8
    assert net.type_names()[:3] == ["W1", "b1", "W2"]
    types = net.weight_types()
    assert types.shape == (8860,) and np.bincount(types).tolist() == [3200, 50, 2500, 50, 2500, 50, 500, 10]


@pytest.mark.parametrize("kwargs", [dict(sizes=(3,)), dict(sizes=(3, 0, 2)), dict(sizes=(3, 2), activation="sigmoid"),
                                    dict(sizes=(3, 2), backend="mkl")])
def test_bad_networks_are_refused(kwargs):
    with pytest.raises(ValueError):
        MLP(**kwargs)


def test_bad_inputs_are_refused():
    net, p, X, y, l2, _ = _problem((3, 4, 2), "tanh", 0)
    with pytest.raises(ValueError, match="params"):
        net.loss(p[:-1], X, y)
    with pytest.raises(ValueError, match="X has shape"):
        net.loss(p, X[:, :2], y)
    for bad in (5, 2, -1):  # 2 classes: labels 0 and 1 only
        y_bad = y.copy()
        y_bad[-1] = bad
        with pytest.raises(ValueError, match="labels"):
            net.loss(p, X, y_bad)
    net.loss(p, X, np.ones_like(y))  # the top label is accepted
    for backend in ("blas", "loops"):
        with pytest.raises(ValueError, match="X has no rows"):
            MLP((3, 4, 2), "tanh", backend).loss_grad(p, X[:0], y[:0])


@given(st.integers(1, 11), st.integers(1, 9), st.integers(1, 7), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_blocked_products_sum_every_element_in_order(b, k, m, accumulate, seed):
    """matmul_rows and matmul_at_b go in blocks of four rows; the tails included, every element is the
    same sum in the same order as the plain loop, so the bits are equal."""
    from exactrev.model.mlp_kernels import matmul_at_b, matmul_rows

    rng = np.random.default_rng(seed)
    A, W, D = rng.normal(size=(b, k)), rng.normal(size=(k, m)), rng.normal(size=(b, m))
    start_rows, start_atb = rng.normal(size=(b, m)), rng.normal(size=(k, m))
    rows, atb = start_rows.copy(), start_atb.copy()
    matmul_rows(A, W, rows, accumulate)
    matmul_at_b(A, D, atb, accumulate)
    want_rows = start_rows.copy() if accumulate else np.zeros((b, m))
    want_atb = start_atb.copy() if accumulate else np.zeros((k, m))
    for i in range(b):
        for kk in range(k):
            want_rows[i] += A[i, kk] * W[kk]
    for kk in range(k):
        for i in range(b):
            want_atb[kk] += A[i, kk] * D[i]
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(atb, want_atb)


@pytest.mark.parametrize("backend", ["blas", "loops"])
def test_skipping_the_input_gradient_changes_no_bit_of_the_weight_gradient(backend):
    net, p, X, y, l2, rng = _problem((64, 50, 10), "tanh", 5, batch=37, backend=backend)
    with_dx = net._run(p, X, y, l2, None, True, False, want_dx=True)
    without = net._run(p, X, y, l2, None, True, False, want_dx=False)
    assert with_dx[0] == without[0]
    np.testing.assert_array_equal(with_dx[1], without[1])
    assert without[3].shape == (0, 64)


@pytest.mark.parametrize("backend", ["blas", "loops"])
def test_predict_gives_the_logits_whose_cross_entropy_is_the_loss(backend):
    net, p, X, y, _, _ = _problem((5, 7, 4), "tanh", 8, batch=13, backend=backend)
    logits = net.predict(p, X)
    assert logits.shape == (13, 4)
    top = logits.max(axis=1)
    lse = np.log(np.exp(logits - top[:, None]).sum(axis=1)) + top
    assert net.loss(p, X, y) == pytest.approx(np.mean(lse - logits[np.arange(13), y]), rel=1e-12)
    with pytest.raises(ValueError, match="X has shape"):
        net.predict(p, X[:, :3])
    with pytest.raises(ValueError, match="params"):
        net.predict(p[:-1], X)
