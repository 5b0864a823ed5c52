"""Hypergradients: equal to the store-everything reference, to finite differences of the whole run."""

import numpy as np
import pytest

from exactrev.hyper.data import Split
from exactrev import hypergradient
from exactrev.hyper.meta import MetaParams, logit
from exactrev.hyper.losses import MLPTrainingLoss, MLPValidationLoss
from exactrev.exact.fixedpoint import FixedFormat
from exactrev.model.mlp import MLP

from ..conftest import THREAD_COUNTS
from ..helpers import num_threads

STEPS = 15
G0 = 29491 / 32768  # an exact fraction near 0.9, so momentum can be perturbed by exact steps


def _problem(act="tanh", seed=1):
    rng = np.random.default_rng(seed)
    net = MLP((4, 6, 5, 3), act)
    train = Split(rng.normal(size=(30, 4)), rng.integers(0, 3, 30))
    valid = Split(rng.normal(size=(20, 4)), rng.integers(0, 3, 20))
    meta = MetaParams(np.log(rng.uniform(0.1, 0.5, (STEPS, net.n_types))),
                      np.full((STEPS, net.n_types), logit(G0)),
                      np.log(rng.uniform(0.2, 0.6, net.n_types)))
    log_l2 = np.log(rng.uniform(1e-3, 1e-2, net.n_params))
    return net, train, valid, meta, log_l2, net.init_noise(rng)


def _run(net, train, valid, meta, log_l2, noise, method="reversal", fmt=FixedFormat(), snapshots=None):
    tl = MLPTrainingLoss(net, train, 10, seed=5, log_l2=log_l2)
    return hypergradient(meta, tl, MLPValidationLoss(net, valid), noise, net.weight_types(), method=method,
                         fmt=fmt, snapshots=snapshots)


def _max_rel(a, b):
    return max(np.abs(a.grads[n] - b.grads[n]).max() / np.abs(b.grads[n]).max() for n in b.grads)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("frac_bits, rtol", [(42, 1e-10), (48, 1e-12)])
def test_reversal_agrees_with_the_store_everything_reference(act, frac_bits, rtol):
    """The reference keeps every (w_t, v_t) and rounds v n/d to nearest; reversal rounds it within one
    unit through the buffer, so the two agree to the fixed-point resolution (2**-frac_bits)."""
    args = _problem(act)
    fmt = FixedFormat(frac_bits)
    rev, ref = _run(*args, method="reversal", fmt=fmt), _run(*args, method="store", fmt=fmt)
    assert rev.restored
    assert abs(rev.loss - ref.loss) <= rtol * ref.loss
    assert _max_rel(rev, ref) < rtol
    assert rev.extra_bytes < ref.extra_bytes


def _central_difference(net, train, valid, meta, log_l2, noise, perturb, eps):
    losses = []
    for sign in (1, -1):
        m, l2, X = meta.copy(), log_l2.copy(), train.X.copy()
        perturb(m, l2, X, sign * eps)
        losses.append(_run(net, Split(X, train.y), valid, m, l2, noise).loss)
    return (losses[0] - losses[1]) / (2 * eps)


def _close(fd, exact, rtol=5e-5, atol=1e-10):
    assert abs(fd - exact) <= rtol * abs(exact) + atol, (fd, exact, abs(fd - exact) / abs(exact))


@pytest.mark.parametrize("t, k", [(0, 0), (7, 3), (14, 5)])
def test_learning_rate_gradient_matches_finite_differences(t, k):
    args = _problem()
    hg = _run(*args).grads["log_lr"][t, k]

    def perturb(m, l2, X, e):
        m.log_lr[t, k] += e
    _close(_central_difference(*args, perturb, 1e-3), hg)


@pytest.mark.parametrize("t, k", [(3, 0), (10, 2)])
def test_momentum_gradient_matches_finite_differences(t, k):
    """g is an exact fraction, so the difference uses exact fractions g +- 16/65536."""
    args = _problem()
    hg = _run(*args).grads["momentum"][t, k]
    h = 16 / 65536

    def perturb(m, l2, X, e):
        m.logit_momentum[t, k] = logit(G0 + np.sign(e) * h)
    fd = _central_difference(*args, perturb, 1.0) / h
    _close(fd, hg)


@pytest.mark.parametrize("k", [0, 3])
def test_init_scale_gradient_matches_finite_differences(k):
    args = _problem()
    hg = _run(*args).grads["log_init_scale"][k]

    def perturb(m, l2, X, e):
        m.log_init_scale[k] += e
    _close(_central_difference(*args, perturb, 1e-3), hg)


def test_l2_gradient_per_weight_and_per_layer_matches_finite_differences():
    args = _problem()
    net = args[0]
    grads = _run(*args).grads["log_l2"]

    def one(m, l2, X, e):
        l2[0] += e
    _close(_central_difference(*args, one, 1e-3), grads[0])
    layer = net.weight_types() == 2

    def per_layer(m, l2, X, e):
        l2[layer] += e
    _close(_central_difference(*args, per_layer, 1e-3), grads[layer].sum())


@pytest.mark.parametrize("i, j", [(0, 0), (5, 2)])
def test_training_data_gradient_matches_finite_differences(i, j):
    args = _problem()
    hg = _run(*args).grads["train_X"][i, j]

    def perturb(m, l2, X, e):
        X[i, j] += e
    _close(_central_difference(*args, perturb, 1e-3), hg)


def test_hypergradients_do_not_depend_on_thread_count():
    args = _problem()
    results = []
    for k in THREAD_COUNTS:
        with num_threads(k):
            results.append(_run(*args))
    for r in results[1:]:
        for name in r.grads:
            np.testing.assert_array_equal(r.grads[name], results[0].grads[name])


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        _run(*_problem(), method="magic")


def test_evaluation_counts():
    r = _run(*_problem())
    assert r.hvp_evals == STEPS
    assert r.grad_evals == 2 * STEPS


class _ReadOnlyValidation:
    """A validation loss that hands back a read-only float32 gradient, as arrays from other libraries
    (a JAX array seen through numpy) can be."""

    def __init__(self, valid):
        self.valid = valid

    def value_and_grad(self, w):
        loss, g = self.valid.value_and_grad(w)
        g = g.astype(np.float32).astype(np.float64)
        g.flags.writeable = False
        return np.float32(loss), g


def _with_validation(valid_loss):
    net, train, _, meta, log_l2, noise = _problem()
    tl = MLPTrainingLoss(net, train, 10, seed=5, log_l2=log_l2)
    return hypergradient(meta, tl, valid_loss, noise, net.weight_types())


def test_a_read_only_validation_gradient_is_copied_not_written():
    net, _, valid, *_ = _problem()
    ours = _with_validation(_ReadOnlyValidation(MLPValidationLoss(net, valid)))
    assert ours.restored and np.isfinite(ours.loss)


def test_a_validation_gradient_of_the_wrong_shape_is_refused_by_name():
    class Short:
        def value_and_grad(self, w):
            return 1.0, np.zeros(w.shape[0] - 1)

    with pytest.raises(ValueError, match="value_and_grad returned a gradient of shape"):
        _with_validation(Short())
