"""Reversible Nesterov momentum with gradient memory h: exact reversal, bits, closeness to NAG, errors."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev import BufferMismatchError, FixedPointRangeError, HyperparameterError, StepError
from exactrev.optim.nesterov import ReversibleNesterov
from exactrev.optim.schedule import MomentumSchedule

from ..conftest import THREAD_COUNTS
from ..helpers import assert_optimizer_state, bowl, num_threads, optimizer_state


def _state(opt):
    return optimizer_state(opt, "w", "v", "u")


@st.composite
def nesterov_runs(draw):
    n = draw(st.integers(1, 200))
    steps = draw(st.integers(1, 150))
    groups = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    momentum = draw(st.sampled_from(["random", 0.9, 0.5, Fraction(58983, 65536), 0.99]))
    mom = rng.uniform(0.05, 0.999, (steps, groups)) if momentum == "random" else momentum
    sched = MomentumSchedule.build(rng.uniform(1e-3, 0.5, (steps, groups)), mom, steps, groups)
    memory = draw(st.sampled_from([Fraction(1, 256), Fraction(1, 65536), 0.5, Fraction(3, 7)]))
    scale = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    return dict(w0=rng.normal(size=n) * scale, sched=sched, group=rng.integers(0, groups, n),
                curv=rng.uniform(0, 2, n), memory=memory)


@given(nesterov_runs())
def test_nesterov_reverse_restores_every_bit_and_empties_the_buffer(run):
    opt = ReversibleNesterov(run["w0"], run["sched"], group=run["group"], memory=run["memory"])
    start = _state(opt)
    grad = bowl(run["curv"])
    opt.forward(grad)
    opt.reverse(grad)
    assert_optimizer_state(opt, start)


def test_bits_per_weight_step_match_the_bound():
    rng = np.random.default_rng(0)
    sched = MomentumSchedule.build(np.full((2000, 1), 0.05), np.full((2000, 1), 0.9))
    opt = ReversibleNesterov(rng.normal(size=500), sched, memory=Fraction(1, 256))
    opt.forward(bowl(rng.uniform(0, 1, 500)))
    bound = 8 + np.log2(10 / 9)
    assert opt.step_bits() == pytest.approx(bound, rel=1e-9)
    assert opt.bits_per_weight_step() == pytest.approx(bound, rel=0.01)


@pytest.mark.parametrize("memory, atol", [(Fraction(1, 256), 1e-3), (Fraction(1, 65536), 1e-5)])
def test_it_approaches_exact_nesterov_as_the_memory_shrinks(memory, atol):
    """Against float64 NAG, v' = g v - (1-g) grad(w + a g v), w' = w + a v'. The gap is the h u term
    (|u| ~ |grad|), so it shrinks in proportion to h; NAG with h = 0 is the limit, not a member."""
    rng = np.random.default_rng(1)
    n, T, a, g = 40, 60, 0.3, 0.9
    w0, curv = rng.normal(size=n), rng.uniform(0.5, 1.5, n)
    sched = MomentumSchedule.build(np.full((T, 1), a), np.full((T, 1), g))
    opt = ReversibleNesterov(w0, sched, memory=memory)
    opt.forward(bowl(curv))
    w, v = w0.copy(), np.zeros(n)
    for t in range(T):
        v = g * v - (1 - g) * bowl(curv)(w + a * g * v, t)
        w = w + a * v
    np.testing.assert_allclose(opt.weights, w, atol=atol)
    heavy_ball = w0.copy()
    hv = np.zeros(n)
    for t in range(T):
        hv = g * hv - (1 - g) * bowl(curv)(heavy_ball, t)
        heavy_ball = heavy_ball + a * hv
    assert np.abs(opt.weights - w).max() < 0.1 * np.abs(heavy_ball - w).max()


def test_bits_do_not_depend_on_thread_count():
    rng = np.random.default_rng(5)
    w0, curv = rng.normal(size=300), rng.uniform(0, 1, 300)
    sched = MomentumSchedule.build(rng.uniform(0.01, 0.3, (40, 2)), rng.uniform(0.5, 0.99, (40, 2)))
    group = rng.integers(0, 2, 300)
    results = []
    for k in THREAD_COUNTS:
        with num_threads(k):
            opt = ReversibleNesterov(w0, sched, group=group)
            opt.forward(bowl(curv))
            results.append((opt.w.copy(), opt.buffer.to_bytes()))
    for w, b in results[1:]:
        np.testing.assert_array_equal(w, results[0][0])
        assert b == results[0][1]


def test_non_finite_gradient_and_overflow_leave_the_state_unchanged():
    sched = MomentumSchedule.build(np.full((5, 1), 0.1), np.full((5, 1), 0.9))
    opt = ReversibleNesterov(np.ones(4), sched)
    opt.step(np.ones(4))
    state = _state(opt)
    with pytest.raises(StepError, match=r"step 1, weight 2"):
        opt.step(np.array([1.0, 1.0, np.nan, 1.0]))
    assert_optimizer_state(opt, state)
    with pytest.raises(FixedPointRangeError, match="weight 1"):
        opt.step(np.array([1.0, 1e12, 1.0, 1.0]))   # (1 - h) grad leaves the fixed-point range
    assert_optimizer_state(opt, state)
    opt.unstep_state()
    with pytest.raises(StepError):
        opt.unstep_memory(np.array([np.inf, 1.0, 1.0, 1.0]))
    assert_optimizer_state(opt, state)   # w and v were moved forward again


def test_reversing_more_than_was_taken_and_stepping_past_the_schedule_are_refused():
    sched = MomentumSchedule.build(np.full((2, 1), 0.1), np.full((2, 1), 0.9))
    opt = ReversibleNesterov(np.ones(3), sched)
    with pytest.raises(StepError, match="step 0"):
        opt.unstep_state()
    opt.forward(bowl(np.ones(3)))
    with pytest.raises(StepError, match="2 steps"):
        opt.step(np.ones(3))
    with pytest.raises(StepError, match="only 2"):
        opt.reverse(bowl(np.ones(3)), steps=3)
    with pytest.raises(StepError, match="look-ahead"):
        opt.lookahead()   # t = 2: the run is over


def test_nondeterministic_gradient_is_detected():
    rng = np.random.default_rng(2)
    sched = MomentumSchedule.build(np.full((20, 1), 0.1), np.full((20, 1), 0.9))
    opt = ReversibleNesterov(rng.normal(size=30), sched)
    opt.forward(bowl(np.ones(30)))
    with pytest.raises(BufferMismatchError):
        opt.reverse(lambda w, t: bowl(np.ones(30))(w, t) + 1e-6 * rng.normal(size=30))


@pytest.mark.parametrize("memory", [0, 0.0, 1, Fraction(1, 1), 1.5, -0.1, float("nan"), Fraction(1, 2 ** 17)])
def test_bad_memory_is_refused(memory):
    sched = MomentumSchedule.build(np.full((2, 1), 0.1), np.full((2, 1), 0.9))
    with pytest.raises(HyperparameterError, match="memory"):
        ReversibleNesterov(np.ones(3), sched, memory=memory)


def test_bad_groups_and_a_buffer_of_the_wrong_size_are_refused():
    from exactrev import InfoBuffer

    sched = MomentumSchedule.build(np.full((2, 2), 0.1), np.full((2, 2), 0.9))
    with pytest.raises(ValueError, match="group"):
        ReversibleNesterov(np.ones(3), sched, group=[0, 1, 2])
    with pytest.raises(ValueError, match="4 lanes for 3 weights"):
        ReversibleNesterov(np.ones(3), sched, buffer=InfoBuffer(4))
