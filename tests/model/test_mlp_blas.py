"""The BLAS pass: the same maths as the loop kernels, and bits that a reversal can rely on."""

import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev.model.mlp import MLP

from ..conftest import THREAD_COUNTS
from ..helpers import num_threads


def _problem(sizes, act, seed, batch):
    rng = np.random.default_rng(seed)
    nets = MLP(sizes, act, "blas"), MLP(sizes, act, "loops")
    P = nets[0].n_params
    return (nets, rng.normal(size=P) * 0.5, rng.normal(size=(batch, sizes[0])),
            rng.integers(0, sizes[-1], batch), rng.uniform(0, 0.1, P), rng.normal(size=P))


@given(st.lists(st.integers(1, 40), min_size=2, max_size=4), st.sampled_from(["tanh", "relu"]),
       st.integers(1, 70), st.integers(0, 2 ** 31))
def test_blas_and_loop_kernels_compute_the_same_quantities(widths, act, batch, seed):
    sizes = (*widths, 3)
    (blas, loops), p, X, y, l2, vec = _problem(sizes, act, seed, batch)
    a, b = blas.grad_hvp(p, X, y, vec, l2), loops.grad_hvp(p, X, y, vec, l2)
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    for got, want in zip(a[1:], b[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(want).max()))
    assert blas.loss(p, X, y, l2) == pytest.approx(loops.loss(p, X, y, l2), rel=1e-12)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_the_gradient_has_the_same_bits_with_or_without_the_hvp(act):
    """What exact reversal needs: the forward step's gradient (loss_grad) and the reverse step's
    (grad_hvp, with or without the input terms) are the same floats."""
    (net, _), p, X, y, l2, vec = _problem((64, 50, 50, 10), act, 1, 200)
    loss, grad = net.loss_grad(p, X, y, l2)
    for input_terms in (True, False):
        loss2, grad2, _, rdx = net.grad_hvp(p, X, y, vec, l2, input_terms=input_terms)
        assert loss2 == loss
        np.testing.assert_array_equal(grad2, grad)
        assert rdx.shape == ((200, 64) if input_terms else (0, 64))


def test_the_bits_do_not_depend_on_blas_or_numba_threads():
    (net, _), p, X, y, l2, vec = _problem((64, 50, 50, 10), "tanh", 2, 200)
    outs = []
    for k in THREAD_COUNTS:
        with num_threads(k):
            outs.append((net.loss_grad(p, X, y, l2), net.grad_hvp(p, X, y, vec, l2)))
    for (lg, gh) in outs[1:]:
        np.testing.assert_array_equal(lg[1], outs[0][0][1])
        for got, want in zip(gh, outs[0][1]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("sizes,batch", [((64, 50, 50, 10), 300), ((20, 30, 5), 700), ((60, 2000, 10), 40)])
def test_long_sums_and_wide_layers_have_the_same_bits_for_any_thread_count(sizes, batch):
    """Shapes where a threaded BLAS sums in another order (256+ batch rows in a weight gradient, a
    layer 2000 wide): the pass keeps BLAS on one thread and shares fixed row chunks and column
    blocks instead."""
    from exactrev.model import mlp_blas

    (net, loops), p, X, y, l2, vec = _problem(sizes, "tanh", 6, batch)
    split = batch * sizes[0] * sizes[1] >= mlp_blas.SPLIT_FROM and sizes[1] > mlp_blas.BLOCK_COLS
    assert split or len(mlp_blas.chunk_bounds(batch)) > 2  # each case exercises one of the two
    outs = []
    for k in THREAD_COUNTS:
        with num_threads(k):
            outs.append((net.loss(p, X, y, l2), net.loss_grad(p, X, y, l2), net.grad_hvp(p, X, y, vec, l2)))
    for loss, lg, gh in outs[1:]:
        assert loss == outs[0][0]
        np.testing.assert_array_equal(lg[1], outs[0][1][1])
        for got, want in zip(gh, outs[0][2]):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(outs[0][1][1], outs[0][2][1])  # with or without the HVP
    want = loops.grad_hvp(p, X, y, vec, l2)  # chunks and column blocks compute the same quantities
    for got, ref in zip(outs[0][2][1:], want[1:]):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(ref).max()))


def test_chunks_cover_the_batch_in_order_with_at_most_chunk_rows_each():
    from exactrev.model.mlp_blas import CHUNK_ROWS, chunk_bounds

    for B in (1, 2, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 1, 3 * CHUNK_ROWS + 7, 10 ** 5):
        b = chunk_bounds(B)
        sizes = np.diff(b)
        assert b[0] == 0 and b[-1] == B and sizes.min() >= 1 and sizes.max() <= CHUNK_ROWS
        assert sizes.max() - sizes.min() <= 1
    assert chunk_bounds(0) == [0, 0]


def test_a_pass_leaves_the_blas_thread_count_as_it_found_it():
    from threadpoolctl import threadpool_limits

    from exactrev.model.blas_threads import blas_threads, single_thread_blas

    (net, _), p, X, y, l2, vec = _problem((6, 7, 4), "tanh", 7, 600)
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        net.grad_hvp(p, X, y, vec, l2)
        assert blas_threads() == before
        with single_thread_blas():
            with single_thread_blas():
                assert set(blas_threads()) <= {1}
            assert set(blas_threads()) <= {1}
        assert blas_threads() == before
        with pytest.raises(ValueError):
            with single_thread_blas():
                raise ValueError("left through an exception")
        assert blas_threads() == before


def _at_offset(a, shift):
    """A copy of a whose data starts ``shift`` float64s into a fresh allocation (another alignment)."""
    raw = np.empty(a.size + 8)
    out = raw[shift:shift + a.size].reshape(a.shape)
    out[...] = a
    return out


def test_the_bits_do_not_depend_on_where_the_arrays_live():
    (net, _), p, X, y, l2, vec = _problem((64, 50, 50, 10), "tanh", 3, 200)
    want = net.grad_hvp(p, X, y, vec, l2)
    for shift in (1, 3, 5):
        got = net.grad_hvp(_at_offset(p, shift), _at_offset(X, shift), y, _at_offset(vec, shift),
                           _at_offset(l2, shift))
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_threads_calling_one_network_at_once_get_their_own_results():
    """The pass's workspace is per thread: two Python threads on one MLP do not mix their arrays."""
    (net, _), p, X, y, l2, vec = _problem((20, 30, 5), "tanh", 4, 50)
    inputs = [(p * (1 + 0.1 * k), X + k) for k in range(4)]
    want = [net.grad_hvp(pk, Xk, y, vec, l2)[1] for pk, Xk in inputs]
    got = [None] * 4

    def work(k):
        for _ in range(50):
            got[k] = net.grad_hvp(*inputs[k][:1], inputs[k][1], y, vec, l2)[1]
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_predictions_match_the_loop_kernels_and_are_the_callers_own():
    from exactrev.model import mlp_blas, mlp_kernels

    (net, _), p, X, _, _, _ = _problem((6, 7, 4), "relu", 5, 11)
    sizes = np.array(net.sizes, np.int64)
    logits = mlp_blas.mlp_predict(p, net.sizes, 1, X)
    np.testing.assert_allclose(logits, mlp_kernels.mlp_predict(p, sizes, 1, X), rtol=1e-12)
    kept = logits.copy()
    mlp_blas.mlp_predict(p, net.sizes, 1, X + 1.0)  # same workspace, other inputs
    np.testing.assert_array_equal(logits, kept)


@given(st.lists(st.integers(1, 30), min_size=2, max_size=4), st.sampled_from(["tanh", "relu"]),
       st.integers(1, 40), st.booleans(), st.integers(0, 2 ** 31))
def test_the_compiled_chunk_pass_computes_what_the_numpy_chunk_pass_does(widths, act, rows, want_r, seed):
    """mlp_fused.chunk_pass (small products) and mlp_blas._chunk_pass (the path of large ones): the
    same loss share, gradient, H @ vec, dL/dX and R{dL/dX} to rounding."""
    from exactrev.model import mlp_blas, mlp_fused

    sizes = np.array((*widths, 4), np.int64)
    (net, _), p, X, y, _, vec = _problem(tuple(sizes), act, seed, rows)
    act_code = 0 if act == "tanh" else 1
    outs = []
    for compiled in (True, False):
        g, h, dx, rdx = np.zeros(p.size), np.zeros(p.size), np.zeros_like(X), np.zeros_like(X)
        args = (p, sizes, act_code, X, y, 3 * rows, vec, True, want_r, g, h, dx, rdx)
        if compiled:
            loss = mlp_fused.chunk_pass(*args, np.empty(mlp_fused.workspace_floats(sizes, rows)))
        else:
            loss = mlp_blas._chunk_pass(*args)
        outs.append((loss, g, h if want_r else None, dx, rdx if want_r else None))
    assert outs[0][0] == pytest.approx(outs[1][0], rel=1e-12)
    for got, want in zip(outs[0][1:], outs[1][1:]):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(want).max()))


def test_the_compiled_chunk_pass_refuses_a_workspace_too_small():
    from exactrev.model import mlp_fused

    sizes = np.array((5, 4, 3), np.int64)
    (net, _), p, X, y, _, vec = _problem(tuple(sizes), "tanh", 0, 6)
    g, h, e = np.zeros(p.size), np.zeros(p.size), X[:0]
    work = np.empty(mlp_fused.workspace_floats(sizes, 6) - 1)
    with pytest.raises(ValueError, match="smaller than workspace_floats"):
        mlp_fused.chunk_pass(p, sizes, 0, X, y, 6, vec, True, True, g, h, e, e, work)


def test_the_blas_that_numba_calls_is_among_the_libraries_held_to_one_thread():
    """Numba's np.dot calls scipy's BLAS, a library apart from numpy's: single_thread_blas must find it."""
    import importlib

    from threadpoolctl import ThreadpoolController

    importlib.import_module("scipy.linalg.cython_blas")

    from exactrev.model import blas_threads

    loaded = {c.filepath for c in ThreadpoolController().select(user_api="blas").lib_controllers}
    assert loaded <= {c.filepath for c in blas_threads._controllers()}
    with blas_threads.single_thread_blas():
        assert set(blas_threads.blas_threads()) == {1}


def test_layer_views_are_views_in_the_flat_layout_and_refuse_a_wrong_length():
    from exactrev.model.mlp_blas import layer_views

    net = MLP((3, 4, 2), "tanh")
    flat = np.arange(net.n_params, dtype=np.float64)
    layers = layer_views(flat, net.sizes)
    assert [(W.shape, b.shape) for W, b in layers] == [((3, 4), (4,)), ((4, 2), (2,))]
    types = net.weight_types()
    for l, (W, b) in enumerate(layers):
        np.testing.assert_array_equal(np.concatenate([W.ravel(), b]), flat[(types == 2 * l) | (types == 2 * l + 1)])
    layers[1][1][:] = -1.0  # a view: the write lands in flat
    assert list(flat[-2:]) == [-1.0, -1.0]
    for wrong in (flat[:-1], np.zeros(net.n_params + 1)):
        with pytest.raises(ValueError, match="flat parameter vector"):
            layer_views(wrong, net.sizes)
