"""The MLP training loss: which meta-parameters it reports, and that leaving one out changes nothing else."""

import numpy as np
import pytest

from exactrev.hyper.data import load_digits
from exactrev.hyper.losses import MLPTrainingLoss, RowTerm
from exactrev.model.mlp import MLP


def _loss(**kwargs):
    data = load_digits(200, 50, seed=0)
    net = MLP((data.n_features, 8, data.n_classes))
    return MLPTrainingLoss(net, data.train, 20, log_l2=np.log(1e-3), **kwargs), net


def test_the_mixed_terms_are_those_named_in_meta_and_nothing_else_changes():
    full, net = _loss()
    w, u = np.random.default_rng(0).normal(size=(2, net.n_params)) * 0.1
    g, h, mixed = full.grad_and_vjp(w, 3, u)
    assert set(mixed) == set(full.meta_names()) == {"log_l2", "train_X"}
    assert isinstance(mixed["train_X"], RowTerm)
    for meta in [(), ("log_l2",), ("train_X",)]:
        part, _ = _loss(meta=meta)
        g2, h2, mixed2 = part.grad_and_vjp(w, 3, u)
        assert set(mixed2) == set(meta) == set(part.meta_shapes())
        np.testing.assert_array_equal(g2, g)
        np.testing.assert_array_equal(h2, h)
        for name in meta:
            got, want = mixed2[name], mixed[name]
            np.testing.assert_array_equal(getattr(got, "values", got), getattr(want, "values", want))


def test_an_unknown_meta_parameter_is_refused():
    with pytest.raises(ValueError, match="log_l2.*train_X.*'lr'"):
        _loss(meta=("lr",))


def test_no_penalty_gives_the_gradients_of_a_zero_penalty():
    data = load_digits(200, 50, seed=0)
    net = MLP((data.n_features, 8, data.n_classes))
    none = MLPTrainingLoss(net, data.train, 20, meta=())
    assert none._penalty is None  # every log_l2 is -inf: the pass adds no penalty term
    w, u = np.random.default_rng(1).normal(size=(2, net.n_params)) * 0.1
    _, X, y = none.batch(2)
    for got, want in ((none.grad(w, 2), net.loss_grad(w, X, y, np.zeros(net.n_params))[1]),
                      (none.grad_and_vjp(w, 2, u)[1], net.grad_hvp(w, X, y, u, np.zeros(net.n_params))[2])):
        np.testing.assert_array_equal(got, want)
    assert net.loss(w, X, y) == net.loss(w, X, y, 0.0)


def test_a_hypergradient_holds_blas_at_one_thread_and_gives_the_count_back_even_when_it_fails():
    from threadpoolctl import threadpool_limits

    from exactrev.hyper.api import hypergradient
    from exactrev.hyper.losses import MLPValidationLoss
    from exactrev.hyper.meta import MetaParams
    from exactrev.model.blas_threads import blas_threads

    data = load_digits(200, 50, seed=0)
    net = MLP((data.n_features, 8, data.n_classes))
    seen = []

    class Watched(MLPTrainingLoss):
        def grad(self, w, t):
            seen.append(tuple(blas_threads()))
            if t == 3 and self.meta_iter == 1:
                raise KeyboardInterrupt
            return super().grad(w, t)

    meta = MetaParams.constant(5, net.n_types)
    noise = net.init_noise(np.random.default_rng(0))
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        for meta_iter, failing in ((0, False), (1, True)):
            loss = Watched(net, data.train, 20, meta_iter=meta_iter, meta=())
            if failing:
                with pytest.raises(KeyboardInterrupt):
                    hypergradient(meta, loss, MLPValidationLoss(net, data.valid), noise, net.weight_types())
            else:
                res = hypergradient(meta, loss, MLPValidationLoss(net, data.valid), noise, net.weight_types())
                assert res.restored
            assert blas_threads() == before
    assert seen and all(set(s) <= {1} for s in seen)
