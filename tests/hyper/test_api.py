"""exactrev.hypergradient: one entry point and one sweep for every optimiser and method; refusals by name."""

import numpy as np
import pytest

import exactrev
from exactrev import AdamMetaParams, BufferMismatchError, MetaAdam, MetaParams


def _problem(steps=6):
    data = exactrev.load_digits(120, 60, seed=1)
    net = exactrev.MLP((data.n_features, 6, data.n_classes))
    train = exactrev.MLPTrainingLoss(net, data.train, 20, seed=1)
    valid = exactrev.MLPValidationLoss(net, data.valid)
    noise = net.init_noise(np.random.default_rng(1))
    return train, valid, noise, net.weight_types(), net.n_types, steps


def _same(a, b):
    assert a.loss == b.loss
    assert set(a.grads) == set(b.grads)
    for name in a.grads:
        np.testing.assert_array_equal(a.grads[name], b.grads[name], err_msg=name)


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "adamw"])
def test_checkpointing_gives_the_bits_of_the_stored_trajectory_for_every_optimiser(optimizer):
    train, valid, noise, types, G, T = _problem()
    if optimizer in ("sgd", "nesterov"):
        meta = MetaParams.constant(T, G, lr=0.3)
    else:
        meta = AdamMetaParams.constant(T, G, lr=0.01, weight_decay=0.01 if optimizer == "adamw" else 0.0)
    store = exactrev.hypergradient(meta, train, valid, noise, types, optimizer=optimizer, method="store")
    for snapshots in (1, 2, None):
        ckpt = exactrev.hypergradient(meta, train, valid, noise, types, optimizer=optimizer,
                                      method="checkpoint", snapshots=snapshots)
        _same(ckpt, store)
        assert ckpt.stats["forward_steps"] > T and ckpt.extra_bytes < store.extra_bytes
    rev = exactrev.hypergradient(meta, train, valid, noise, types, optimizer=optimizer)
    assert rev.restored and rev.stats["buffer_bytes_peak"] > 0
    for name in store.grads:  # reversal rounds differently only for momentum SGD's v * n/d
        np.testing.assert_allclose(rev.grads[name], store.grads[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_train_is_the_forward_run_of_the_hypergradient():
    train, valid, noise, types, G, T = _problem()
    for meta, opt in ((MetaParams.constant(T, G), None), (MetaParams.constant(T, G), "nesterov"),
                      (AdamMetaParams.constant(T, G), None)):
        w = exactrev.train(meta, train.grad, noise, types, optimizer=opt)
        res = exactrev.hypergradient(meta, train, valid, noise, types, optimizer=opt)
        np.testing.assert_array_equal(w, res.final_weights)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(optimizer="adam"), ValueError, "takes AdamMetaParams"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
    (dict(optimizer="nesterov", method="revolve"), ValueError, "method must be one of"),
    (dict(optimizer="nesterov", device="cuda"), ValueError, "device must be one of"),
    (dict(method="store", device="cuda"), ValueError, "supports method='reversal' only"),
    (dict(snapshots=3), ValueError, "snapshots is for"),
    (dict(nesterov_memory=0.5), ValueError, "nesterov_memory is for"),
])
def test_unsupported_combinations_are_refused_before_anything_runs(kwargs, exc, match):
    train, valid, noise, types, G, T = _problem()
    with pytest.raises(exc, match=match):
        exactrev.hypergradient(MetaParams.constant(T, G), train, valid, noise, types, **kwargs)
    with pytest.raises(TypeError, match="MetaParams"):
        exactrev.hypergradient({"log_lr": 0}, train, valid, noise, types)


class _Ridge:
    """A hand-written loss 0.5 |X w - y|^2 / n with a switch that breaks the protocol."""

    def __init__(self, X, y, flaw=None):
        self.X, self.y, self.flaw = X, y, flaw

    def grad(self, w, t):
        return self.X.T @ (self.X @ w - self.y) / len(self.y)

    def grad_and_vjp(self, w, t, u):
        g = self.grad(w, t)
        hu = self.X.T @ (self.X @ u) / len(self.y)
        if self.flaw == "shape":
            return g, hu[:-1], {}
        if self.flaw == "name":
            return g, hu, {"l2": np.zeros(3)}
        if self.flaw == "other_grad":
            return g * (1 + 1e-12), hu, {}
        return g, hu, {}

    def meta_shapes(self):
        return {}


class _Valid:
    def value_and_grad(self, w):
        return float(w @ w), 2 * w


@pytest.mark.parametrize("flaw, exc, match", [("shape", ValueError, "H u of shape"),
                                              ("name", ValueError, "'l2' that meta_shapes"),
                                              ("other_grad", BufferMismatchError, "same floats")])
def test_a_loss_that_breaks_the_protocol_gets_an_error_that_says_how(flaw, exc, match):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    with pytest.raises(exc, match=match):
        exactrev.hypergradient(MetaParams.constant(5, 1), _Ridge(X, y, flaw), _Valid(), rng.normal(size=4),
                               np.zeros(4, np.int64))


def test_meta_adam_moves_parameters_in_place_towards_a_minimum():
    params = {"a": np.array([3.0, -2.0])}
    view = params["a"]
    adam = MetaAdam(lr=0.1)
    for _ in range(300):
        adam.step(params, {"a": 2 * params["a"]})
    assert params["a"] is view and np.abs(view).max() < 0.05


@pytest.mark.parametrize("grads, exc", [({"b": np.zeros(2)}, KeyError), ({"a": np.zeros(3)}, ValueError),
                                        ({"a": np.array([np.nan, 0.0])}, FloatingPointError)])
def test_meta_adam_refuses_a_gradient_that_does_not_fit_and_moves_nothing(grads, exc):
    params = {"a": np.array([1.0, 2.0])}
    adam = MetaAdam(lr=0.1)
    with pytest.raises(exc):
        adam.step(params, grads)
    assert params["a"].tolist() == [1.0, 2.0] and adam.t == 0


def test_weight_types_outside_the_schedules_columns_are_refused_by_name():
    train, valid, noise, types, G, T = _problem()
    meta = MetaParams.constant(T, G - 1)
    with pytest.raises(ValueError, match=rf"types\[\d+\] = {G - 1}, but meta has {G - 1} weight types"):
        exactrev.hypergradient(meta, train, valid, noise, types)
    with pytest.raises(ValueError, match="one weight type per weight"):
        exactrev.train(MetaParams.constant(T, G), train.grad, noise, types[:-1])
