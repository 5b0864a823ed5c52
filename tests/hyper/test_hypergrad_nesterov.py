"""Hypergradients through reversible Nesterov (gradient memory h): store reference, finite differences."""

import numpy as np
import pytest

from exactrev.hyper.data import Split
from exactrev import hypergradient
from exactrev.hyper.meta import MetaParams, logit
from exactrev.hyper.losses import MLPTrainingLoss, MLPValidationLoss
from exactrev.model.mlp import MLP

from ..helpers import assert_close, hyper_central_difference

T = 12
G0 = 58982 / 65536   # an exact fraction near 0.9


def _problem(seed=4):
    rng = np.random.default_rng(seed)
    net = MLP((4, 6, 3))
    train = Split(rng.normal(size=(30, 4)), rng.integers(0, 3, 30))
    valid = Split(rng.normal(size=(20, 4)), rng.integers(0, 3, 20))
    meta = MetaParams.constant(T, net.n_types, lr=0.5, momentum=G0, init_scale=0.5)
    meta.log_lr += rng.uniform(-0.3, 0.3, meta.log_lr.shape)
    log_l2 = np.log(rng.uniform(1e-3, 1e-2, net.n_params))
    return net, train, valid, meta, log_l2, net.init_noise(rng)


def _run(net, train, valid, meta, log_l2, noise, method="reversal", memory=1 / 256):
    tl = MLPTrainingLoss(net, train, 10, seed=1, log_l2=log_l2)
    return hypergradient(meta, tl, MLPValidationLoss(net, valid), noise, net.weight_types(),
                         optimizer="nesterov", method=method, nesterov_memory=memory)


def _fd(args, perturb, h):
    return hyper_central_difference(_run, args, perturb, h)


@pytest.mark.parametrize("memory", [1 / 256, 0.5])
def test_reversal_equals_the_store_reference_bit_for_bit(memory):
    args = _problem()
    rev, ref = _run(*args, memory=memory), _run(*args, method="store", memory=memory)
    assert rev.restored and rev.loss == ref.loss
    np.testing.assert_array_equal(rev.final_weights, ref.final_weights)
    for name in ref.grads:
        np.testing.assert_array_equal(rev.grads[name], ref.grads[name], err_msg=name)
    assert rev.stats["optimizer"] == "nesterov"


@pytest.mark.parametrize("t, k", [(0, 0), (6, 1), (11, 3)])
def test_learning_rate(t, k):
    args = _problem()
    def p(m, l2, X, e): m.log_lr[t, k] += e
    assert_close(_fd(args, p, 1e-3), _run(*args).grads["log_lr"][t, k])


@pytest.mark.parametrize("t, k", [(1, 0), (8, 2)])
def test_momentum_by_exact_fractions(t, k):
    args = _problem()
    res = _run(*args)
    def p(m, l2, X, e): m.logit_momentum[t, k] = logit(G0 + e)
    assert_close(_fd(args, p, 8 / 65536), res.grads["momentum"][t, k], rtol=1e-3)


def test_init_scale_l2_and_data():
    args = _problem()
    res = _run(*args)
    def ps(m, l2, X, e): m.log_init_scale[2] += e
    assert_close(_fd(args, ps, 1e-3), res.grads["log_init_scale"][2])
    def pl(m, l2, X, e): l2[7] += e
    assert_close(_fd(args, pl, 1e-2), res.grads["log_l2"][7], rtol=1e-3)
    def px(m, l2, X, e): X[3, 1] += e
    assert_close(_fd(args, px, 1e-3), res.grads["train_X"][3, 1])


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        _run(*_problem(), method="revolve")
