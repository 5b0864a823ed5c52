"""Hypergradients through reversible Adam/AdamW: the store reference and finite differences."""

import numpy as np
import pytest

from exactrev.hyper.data import Split
from exactrev import hypergradient
from exactrev.hyper.meta import AdamMetaParams, logit
from exactrev.hyper.losses import MLPTrainingLoss, MLPValidationLoss
from exactrev.model.mlp import MLP

from ..helpers import assert_close, hyper_central_difference

T = 12
B1, B2 = 58982 / 65536, 65470 / 65536   # exact fractions near 0.9 and 0.999


def _problem(weight_decay=0.0, seed=4):
    rng = np.random.default_rng(seed)
    net = MLP((4, 6, 3))
    train = Split(rng.normal(size=(30, 4)), rng.integers(0, 3, 30))
    valid = Split(rng.normal(size=(20, 4)), rng.integers(0, 3, 20))
    meta = AdamMetaParams.constant(T, net.n_types, lr=0.02, b1=B1, b2=B2, eps=1e-3,
                                   weight_decay=weight_decay, init_scale=0.5)
    meta.log_lr += rng.uniform(-0.3, 0.3, meta.log_lr.shape)
    log_l2 = np.log(rng.uniform(1e-3, 1e-2, net.n_params))
    return net, train, valid, meta, log_l2, net.init_noise(rng)


def _run(net, train, valid, meta, log_l2, noise, method="reversal"):
    tl = MLPTrainingLoss(net, train, 10, seed=1, log_l2=log_l2)
    return hypergradient(meta, tl, MLPValidationLoss(net, valid), noise, net.weight_types(), method=method)


def _fd(args, perturb, h):
    return hyper_central_difference(_run, args, perturb, h)


def _fd_richardson(args, perturb, h):
    """(4 D(h/2) - D(h)) / 3: central differences with the h**2 error term removed."""
    return (4 * _fd(args, perturb, h / 2) - _fd(args, perturb, h)) / 3


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_reversal_equals_the_store_reference_bit_for_bit(wd):
    args = _problem(wd)
    rev, ref = _run(*args), _run(*args, method="store")
    assert rev.restored and rev.loss == ref.loss
    for name in ref.grads:
        np.testing.assert_array_equal(rev.grads[name], ref.grads[name], err_msg=name)


@pytest.mark.parametrize("t, k", [(0, 0), (6, 1), (11, 3)])
def test_learning_rate(t, k):
    args = _problem()
    def p(m, l2, X, e): m.log_lr[t, k] += e
    assert_close(_fd(args, p, 1e-3), _run(*args).grads["log_lr"][t, k])


@pytest.mark.parametrize("t", [2, 9])
def test_b1_and_b2_by_exact_fractions(t):
    args = _problem()
    res = _run(*args)
    h = 8 / 65536
    def p1(m, l2, X, e): m.logit_b1[t] = logit(B1 + e)
    assert_close(_fd(args, p1, h), res.grads["b1"][t], rtol=1e-3)
    h2 = 2 / 65536
    def p2(m, l2, X, e): m.logit_b2[t] = logit(B2 + e)
    assert_close(_fd(args, p2, h2), res.grads["b2"][t], rtol=1e-3)


def test_eps_init_scale_l2_and_data():
    """Richardson-extrapolated differences at h = 1e-2: Adam's normalisation turns the fixed-point
    rounding into loss noise of about 1e-11, which limits plain central differences to about 1e-4."""
    args = _problem()
    res = _run(*args)
    def pe(m, l2, X, e): m.log_eps[5] += e
    assert_close(_fd_richardson(args, pe, 1e-2), res.grads["log_eps"][5], atol=2e-9)
    def ps(m, l2, X, e): m.log_init_scale[2] += e
    assert_close(_fd_richardson(args, ps, 1e-2), res.grads["log_init_scale"][2], atol=2e-9)
    def pl(m, l2, X, e): l2[7] += e
    assert_close(_fd_richardson(args, pl, 1e-2), res.grads["log_l2"][7], atol=2e-9)
    def px(m, l2, X, e): X[3, 1] += e
    assert_close(_fd_richardson(args, px, 1e-2), res.grads["train_X"][3, 1], atol=2e-9)


def test_weight_decay_by_exact_decay_factors():
    """AdamW multiplies w by rho = 1 - a lam, an exact fraction: perturb rho by exact steps."""
    args = _problem(weight_decay=0.05)
    net, train, valid, meta, log_l2, noise = args
    t, k = 4, 0
    a = np.exp(meta.log_lr[t, k])
    rho0 = 65400 / 65536
    meta.log_weight_decay[t, k] = np.log((1 - rho0) / a)
    res = _run(*args)
    h = 4 / 65536
    def p(m, l2, X, e): m.log_weight_decay[t, k] = np.log((1 - (rho0 + e)) / a)
    d_rho = _fd(args, p, h)
    assert_close(-a * d_rho, res.grads["weight_decay"][t, k], rtol=1e-3)


def test_the_sweep_uses_the_decay_factor_actually_applied():
    """lr * weight_decay = 0.6 / 65536 per step: the nearest fraction applies 1/65536, 67% more. Over
    T = 200 steps the sweep must multiply the adjoint by the applied factor; with the requested
    1 - lr * wd the init-scale hypergradient would be off by about 2e-3 relative."""
    rng = np.random.default_rng(7)
    net = MLP((4, 6, 3))
    train = Split(rng.normal(size=(30, 4)), rng.integers(0, 3, 30))
    valid = Split(rng.normal(size=(20, 4)), rng.integers(0, 3, 20))
    steps, lr = 200, 0.02
    meta = AdamMetaParams.constant(steps, net.n_types, lr=lr, b1=B1, b2=B2, eps=1e-3,
                                   weight_decay=0.6 / 65536 / lr, init_scale=0.5)
    args = (net, train, valid, meta, np.log(np.full(net.n_params, 1e-3)), net.init_noise(rng))
    assert meta.schedule().applied_decay()[0, 0] == 65535 / 65536
    res = _run(*args)
    def ps(m, l2, X, e): m.log_init_scale[0] += e
    assert_close(_fd_richardson(args, ps, 1e-2), res.grads["log_init_scale"][0], rtol=2e-4, atol=2e-9)
