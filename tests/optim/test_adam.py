"""Reversible Adam and AdamW: forward then reverse restores every bit; bits match the bound."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev import (BufferMismatchError, FixedFormat, FixedPointRangeError, HyperparameterError,
                      MomentumSchedule, StepError)
from exactrev.optim.adam import AdamSchedule, ReversibleAdam

from ..helpers import assert_optimizer_state, bowl, optimizer_state


def _state(opt):
    return optimizer_state(opt, "w", "m", "s")


@st.composite
def adam_runs(draw):
    n = draw(st.integers(1, 200))
    steps = draw(st.integers(1, 120))
    groups = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    b1 = draw(st.sampled_from([0.9, 0.5, Fraction(58983, 65536), 0.99]))
    b2 = draw(st.sampled_from([0.999, 0.99, Fraction(65535, 65536)]))
    wd = draw(st.sampled_from([0.0, 0.01, 0.1]))
    # tolerance=None: decays lr * wd below 2**-16 take the nearest fraction (the exactness under test
    # holds for whatever fraction is applied; the 1% rule has its own tests)
    sched = AdamSchedule.build(rng.uniform(1e-3, 0.05, (steps, groups)), steps, groups, b1=b1, b2=b2,
                               eps=draw(st.sampled_from([1e-8, 1e-3])), weight_decay=wd, tolerance=None)
    # each weight scale with moment formats wide enough for its gradients (|g| up to ~5 sigma):
    # 46 fractional bits hold g**2 <= 128, 40 bits g**2 <= 8192; leaving the range is tested apart
    scale, frac_bits = draw(st.sampled_from([(0.01, 46), (1.0, 46), (5.0, 40)]))
    return dict(w0=rng.normal(size=n) * scale, sched=sched, group=rng.integers(0, groups, n),
                curv=rng.uniform(0, 1, n), fmt=FixedFormat(frac_bits))


@given(adam_runs())
def test_adam_reverse_restores_every_bit_and_empties_the_buffer(run):
    opt = ReversibleAdam(run["w0"], run["sched"], group=run["group"], fmt_m=run["fmt"], fmt_s=run["fmt"])
    start = _state(opt)
    grad = bowl(run["curv"])
    opt.forward(grad)
    opt.reverse(grad)
    assert_optimizer_state(opt, start)


@pytest.mark.parametrize("wd, extra", [(0.0, 0.0), (0.05, None)])
def test_bits_per_weight_step_match_the_bound(wd, extra):
    rng = np.random.default_rng(0)
    sched = AdamSchedule.build(0.01, 2000, b1=0.9, b2=0.999, weight_decay=wd)
    opt = ReversibleAdam(rng.normal(size=500), sched)
    opt.forward(bowl(rng.uniform(0, 1, 500)))
    bound = sched.bits_per_step().mean()
    assert opt.bits_per_weight_step() == pytest.approx(bound, rel=0.01)
    if extra == 0.0:
        assert bound == pytest.approx(np.log2(10 / 9) + np.log2(1000 / 999), rel=1e-9)


def test_adam_takes_adam_steps():
    """Against a float64 Adam on the same gradients. The fixed-point m and s are quantised (2**-46),
    and dividing by sqrt(s) amplifies that where gradients are small, so the runs agree to 1e-7 over
    30 steps, not to float64 precision."""
    rng = np.random.default_rng(1)
    n, T = 50, 30
    w0, curv = rng.normal(size=n), rng.uniform(0.5, 1.5, n)
    sched = AdamSchedule.build(0.01, T, b1=0.9, b2=0.999, eps=1e-8)
    opt = ReversibleAdam(w0, sched)
    opt.forward(bowl(curv))
    w, m, s = w0.copy(), np.zeros(n), np.zeros(n)
    for t in range(T):
        g = bowl(curv)(w, t)
        m = 0.9 * m + 0.1 * g
        s = 0.999 * s + 0.001 * g * g
        w = w - 0.01 * (m / (1 - 0.9 ** (t + 1))) / (np.sqrt(s / (1 - 0.999 ** (t + 1))) + 1e-8)
    np.testing.assert_allclose(opt.weights, w, atol=1e-7)


def test_non_finite_gradient_and_overflow_leave_the_state_unchanged():
    sched = AdamSchedule.build(0.01, 5, weight_decay=0.1)
    opt = ReversibleAdam(np.ones(4), sched)
    opt.step(np.ones(4))
    state = _state(opt)
    with pytest.raises(StepError, match=r"step 1, weight 2"):
        opt.step(np.array([1.0, 1.0, np.nan, 1.0]))
    assert_optimizer_state(opt, state)
    with pytest.raises(FixedPointRangeError):
        opt.step(np.array([1.0, 1e9, 1.0, 1.0]))   # (1 - b2) g^2 leaves s's range
    assert_optimizer_state(opt, state)


def test_nondeterministic_gradient_is_detected():
    rng = np.random.default_rng(2)
    sched = AdamSchedule.build(0.01, 20)
    opt = ReversibleAdam(rng.normal(size=30), sched)
    opt.forward(bowl(np.ones(30)))
    with pytest.raises(BufferMismatchError):
        opt.reverse(lambda w, t: bowl(np.ones(30))(w, t) + 1e-6 * rng.normal(size=30))


@pytest.mark.parametrize("kwargs", [dict(b1=1.0), dict(b2=0.0), dict(eps=0.0), dict(weight_decay=-1.0),
                                    dict(lr=np.nan), dict(lr=10.0, weight_decay=1.0)])
def test_bad_adam_hyperparameters(kwargs):
    args = dict(lr=0.01, steps=3)
    args.update(kwargs)
    with pytest.raises(HyperparameterError):
        AdamSchedule.build(**args)


def test_a_buffer_of_the_wrong_size_is_refused():
    from exactrev import InfoBuffer

    with pytest.raises(ValueError, match="4 lanes for 3 weights"):
        ReversibleAdam(np.ones(3), AdamSchedule.build(0.01, 2), buffer=InfoBuffer(4))
    with pytest.raises(ValueError, match="group"):
        ReversibleAdam(np.ones(3), AdamSchedule.build(0.01, 2), group=[0, 0, 1])


def test_a_decay_or_momentum_that_cannot_be_represented_within_one_percent_is_refused():
    """PyTorch's AdamW defaults (lr 1e-3, weight decay 1e-2) ask for lr * wd = 1e-5 per step; the nearest
    fraction would apply 1/65536, 53% more: refused, naming the limit."""
    with pytest.raises(HyperparameterError, match=r"lr \* weight_decay = 1e-05 .* 53% off.*1/65536"):
        AdamSchedule.build(1e-3, 3, weight_decay=1e-2)
    with pytest.raises(HyperparameterError, match=r"1 - b2 = 1e-06"):
        AdamSchedule.build(1e-3, 3, b2=0.999999)
    with pytest.raises(HyperparameterError, match=r"1 - momentum = 1e-06"):
        MomentumSchedule.build(0.1, 0.999999, steps=3)
    sched = AdamSchedule.build(1e-2, 3, weight_decay=1e-2)        # 1e-4 = 1/10000 exactly
    assert sched.decay_fractions[0][0] == Fraction(9999, 10000)

