"""exactrev.meta_train / MetaTrainer: meta-steps lower the validation loss; a diverging step is taken back."""

import numpy as np
import pytest

import exactrev
from exactrev import InitialSettingsError, MetaDivergenceError, MetaParams, MetaTrainer, StepError


def _problem(steps=8):
    data = exactrev.load_digits(150, 80, seed=2)
    net = exactrev.MLP((data.n_features, 8, data.n_classes))
    train = exactrev.MLPTrainingLoss(net, data.train, 30, seed=2, meta=())
    valid = exactrev.MLPValidationLoss(net, data.valid)
    noise = net.init_noise(np.random.default_rng(2))
    meta = MetaParams.constant(steps, net.n_types, lr=0.1, momentum=0.9, init_scale=0.1)
    return meta, train, valid, noise, net.weight_types()


def test_meta_train_lowers_the_validation_loss_and_moves_the_params_in_place():
    meta, train, valid, noise, types = _problem()
    before = meta.log_lr.copy()
    params = {"log_lr": meta.log_lr, "logit_momentum": meta.logit_momentum, "log_init_scale": meta.log_init_scale}
    trainer = exactrev.meta_train(lambda m: exactrev.hypergradient(meta, train, valid, noise, types), params,
                                  iters=6, meta_lr=0.1)
    losses = [r["valid_loss"] for r in trainer.curve]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert trainer.params["log_lr"] is meta.log_lr and not np.array_equal(meta.log_lr, before)
    assert trainer.best[0] == min(losses)
    assert all(r["restored"] for r in trainer.curve)


class _Result:
    def __init__(self, loss, grad):
        self.loss, self.grads, self.restored, self.extra_bytes, self.stats = loss, {"x": grad}, True, 0, {}


def test_a_failing_step_goes_back_to_the_best_point_and_halves_the_meta_learning_rate():
    params = {"x": np.array([1.0, -1.0])}
    calls = []

    def hypergrad(m):  # fails once, at meta-iteration 2
        calls.append(m)
        if m == 2 and calls.count(2) == 1:
            raise StepError("step 3, weight 0: left the range")
        return _Result(float((params["x"] ** 2).sum()), 2 * params["x"])

    saved = []
    trainer = MetaTrainer(params, meta_lr=0.5, on_record=lambda r, nxt: saved.append((r, nxt)))
    for m in range(4):
        trainer.step(m, hypergrad)
    diverged = [r for r in trainer.curve if r.get("diverged")]
    assert len(diverged) == 1 and diverged[0]["meta_iter"] == 2 and diverged[0]["meta_lr"] == 0.25
    assert "weight 0" in diverged[0]["message"]
    assert [nxt for _, nxt in saved] == [1, 2, 2, 3, 4]
    assert trainer.adam.lr == 0.25


def test_failure_with_the_initial_settings_and_endless_divergence_are_named():
    params = {"x": np.array([1.0])}

    def always_fails(m):
        raise FloatingPointError("validation loss is nan")

    with pytest.raises(InitialSettingsError, match="nan"):
        MetaTrainer(params).step(0, always_fails)
    trainer = MetaTrainer(params, max_retries=2)
    trainer.step(0, lambda m: _Result(1.0, np.array([0.5])))
    with pytest.raises(MetaDivergenceError, match="meta-iteration 1.*2 times"):
        trainer.step(1, always_fails)
    with pytest.raises(ValueError, match="meta_lr"):
        MetaTrainer(params, meta_lr=-1)
