"""Every public step is atomic, and a full reversal verifies where it ends.

Whatever the gradient function does (raises, Ctrl-C, NaN, a wrong shape), the state afterwards is
exactly what it was before the call, and the run can be continued in either direction.
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st
from numba import cuda

from exactrev import (AdamSchedule, BufferMismatchError, MomentumSchedule, ReversibleAdam,
                      ReversibleNesterov, ReversibleSGD, StepError)
from exactrev.optim.sgd_cuda import CudaReversibleSGD

from ..helpers import assert_optimizer_state, bowl, optimizer_state

STATE = {"sgd": ("w", "v"), "nesterov": ("w", "v", "u"), "adam": ("w", "m", "s"), "adamw": ("w", "m", "s")}


def make(kind, n, steps, seed):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=n)
    group = rng.integers(0, 2, n)
    if kind in ("adam", "adamw"):
        sched = AdamSchedule.build(rng.uniform(1e-3, 1e-2, (steps, 2)), steps, 2,
                                   weight_decay=0.05 if kind == "adamw" else 0.0)
        return ReversibleAdam(w0, sched, group=group)
    sched = MomentumSchedule.build(rng.uniform(0.01, 0.3, (steps, 2)),
                                   np.full((steps, 2), Fraction(9, 10), dtype=object))
    if kind == "nesterov":
        return ReversibleNesterov(w0, sched, group=group)
    return ReversibleSGD(w0, sched, v0=rng.normal(size=n) * 0.1, group=group)


class Injected(Exception):
    pass


class FailsWhenRead:
    """A gradient still being computed whose computation fails when it is read (an error inside an
    asynchronous JAX call, or Ctrl-C while waiting for it): the step has already done its half that
    needs no gradient, and must undo it."""

    def __array__(self, dtype=None, copy=None):
        raise Injected()


FAULTS = {
    "raise": lambda w: (_ for _ in ()).throw(Injected()),
    "unreadable": lambda w: FailsWhenRead(),
    "interrupt": lambda w: (_ for _ in ()).throw(KeyboardInterrupt()),
    "nan": lambda w: np.full_like(w, np.nan),
    "shape": lambda w: np.zeros(w.shape[0] + 1),
    "text": lambda w: np.array(["x"] * w.shape[0]),
}


def faulty(grad, fault, at_step):
    def fn(w, t):
        if t == at_step:
            return FAULTS[fault](w)
        return grad(w, t)
    return fn


@given(kind=st.sampled_from(sorted(STATE)), n=st.integers(1, 40), steps=st.integers(1, 12),
       seed=st.integers(0, 2 ** 32 - 1), fault=st.sampled_from(sorted(FAULTS)), data=st.data())
def test_an_exception_at_any_step_leaves_the_state_as_it_was_and_the_run_finishes(kind, n, steps, seed,
                                                                                  fault, data):
    opt = make(kind, n, steps, seed)
    names = STATE[kind]
    start = optimizer_state(opt, *names)
    grad = bowl(np.random.default_rng(seed).uniform(0, 1, n))
    # forward, failing at one step
    bad_fwd = data.draw(st.integers(0, steps - 1))
    opt.forward(grad, steps=bad_fwd)
    before = optimizer_state(opt, *names)
    with pytest.raises((Injected, KeyboardInterrupt, StepError)):
        opt.forward(faulty(grad, fault, bad_fwd))
    assert_optimizer_state(opt, before)
    opt.forward(grad)
    # reverse, failing at one step
    bad_rev = data.draw(st.integers(0, steps - 1))
    opt.reverse(grad, steps=steps - 1 - bad_rev)
    before = optimizer_state(opt, *names)
    with pytest.raises((Injected, KeyboardInterrupt, StepError)):
        opt.reverse(faulty(grad, fault, bad_rev))
    assert_optimizer_state(opt, before)
    opt.reverse(grad)
    assert_optimizer_state(opt, start)


@pytest.mark.parametrize("fault", ["raise", "interrupt", "nan"])
def test_the_gpu_optimiser_undoes_a_reverse_step_whose_gradient_fails(fault):
    rng = np.random.default_rng(0)
    sched = MomentumSchedule.build(lr=0.1, momentum=0.9, steps=4)
    opt = CudaReversibleSGD(rng.normal(size=8), sched)
    w0 = opt.w.copy_to_host()

    def grad(w, t):
        return cuda.to_device(w.copy_to_host() + np.sin(w.copy_to_host()))
    opt.forward(grad)
    w_end = opt.w.copy_to_host()

    def bad(w, t):
        if fault == "nan":
            return cuda.to_device(np.full(8, np.nan))
        raise KeyboardInterrupt if fault == "interrupt" else Injected()
    with pytest.raises((Injected, KeyboardInterrupt, StepError)):
        opt.reverse(bad)
    np.testing.assert_array_equal(opt.w.copy_to_host(), w_end)
    assert opt.t == 4
    opt.flag.copy_to_device(np.zeros(2, np.int64))   # a device error stops the run until cleared
    opt.reverse(grad)
    np.testing.assert_array_equal(opt.w.copy_to_host(), w0)


def test_the_reproduction_from_the_users_report_recovers_w0():
    o = ReversibleSGD(np.linspace(-1, 1, 5), MomentumSchedule.build(lr=0.1, momentum=0.9, steps=10))
    g = lambda w, t: w + np.sin(w)  # noqa: E731
    w0 = o.w.copy()
    o.forward(g)

    def boom(w, t):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        o.reverse(boom)
    o.reverse(g)
    np.testing.assert_array_equal(o.w, w0)


@pytest.mark.parametrize("kind", sorted(STATE))
def test_half_steps_are_refused_out_of_turn(kind):
    opt = make(kind, 5, 3, 1)
    first, second = {"sgd": ("unstep_weights", "unstep_velocity"),
                     "nesterov": ("unstep_state", "unstep_memory"),
                     "adam": ("unstep_weights", "unstep_moments"),
                     "adamw": ("unstep_weights", "unstep_moments")}[kind]
    start = optimizer_state(opt, *STATE[kind])
    with pytest.raises(StepError, match="first"):
        getattr(opt, second)(np.zeros(5))          # at t = 0: nothing to reverse
    assert_optimizer_state(opt, start)
    grad = bowl(np.ones(5))
    opt.forward(grad, steps=2)
    mid = optimizer_state(opt, *STATE[kind])
    with pytest.raises(StepError, match="first"):
        getattr(opt, second)(np.zeros(5))          # second half without the first
    assert_optimizer_state(opt, mid)
    getattr(opt, first)()
    with pytest.raises(StepError, match="already done"):
        getattr(opt, first)()                      # first half twice
    with pytest.raises(StepError, match="half done"):
        opt.step(np.zeros(5))                      # forward in the middle of a reverse step
    # the run continues: finish the half step with the right gradient
    point = opt.lookahead(opt.t - 1) if kind == "nesterov" else opt.weights
    getattr(opt, second)(grad(point, opt.t - 1))
    assert opt.t == 1
    opt.reverse(grad)
    assert_optimizer_state(opt, start)


@pytest.mark.parametrize("kind", sorted(STATE))
def test_a_gradient_that_differs_only_at_step_0_on_the_way_back_is_caught(kind):
    opt = make(kind, 6, 5, 2)
    grad = bowl(np.linspace(0.1, 1, 6))
    opt.forward(grad)

    def off_at_0(w, t):
        g = grad(w, t)
        return g + 90 * 2.0 ** -42 if t == 0 else g
    # momentum SGD and Nesterov finish with the buffer restored, so only the state check sees it
    expected = {"sgd": "v did not come back", "nesterov": "u did not come back"}.get(kind, "buffer")
    with pytest.raises(BufferMismatchError, match=expected):
        opt.reverse(off_at_0)


@pytest.mark.parametrize("steps", [-1, 1.5, True, 99])
def test_bad_step_counts_are_refused(steps):
    opt = make("sgd", 3, 4, 0)
    grad = bowl(np.ones(3))
    with pytest.raises(StepError, match="steps"):
        opt.forward(grad, steps=steps)
    with pytest.raises(StepError, match="steps"):
        opt.reverse(grad, steps=steps if steps != 99 else 1)
    assert opt.t == 0


def test_a_complex_gradient_is_refused():
    opt = make("sgd", 3, 4, 0)
    with pytest.raises(StepError, match="complex"):
        opt.step(np.ones(3) * (1 + 1j))
    with pytest.raises(StepError, match="float64"):
        opt.step(np.array(["a", "b", "c"]))


@pytest.mark.parametrize("kind", sorted(STATE))
def test_reversing_steps_that_were_never_taken_underflows_at_the_first_step(kind):
    """A fresh buffer holds no bits: the first reverse step already pops bits nobody pushed."""
    from exactrev import BufferUnderflowError

    opt = make(kind, 8, 400, 3)
    grad = bowl(np.ones(8))
    opt.t = 400                       # pretend to be at the end of a run whose buffer was lost
    before = optimizer_state(opt, *STATE[kind])
    with pytest.raises(BufferUnderflowError, match="reversing step 399"):
        opt.unstep(grad)
    assert_optimizer_state(opt, before)


@pytest.mark.parametrize("group, match", [([0.0, 1.0, 0.5], "integers"), ([0, 2, 0], r"\[0, 2\)"),
                                          ([0, 1], "3 values"), ([True, False, True], "integers")])
def test_bad_group_ids_are_refused(group, match):
    sched = MomentumSchedule.build(0.1, 0.9, steps=2, groups=2)
    for make_opt in (lambda: ReversibleSGD(np.ones(3), sched, group=group),
                     lambda: ReversibleNesterov(np.ones(3), sched, group=group),
                     lambda: CudaReversibleSGD(np.ones(3), sched, group=group)):
        with pytest.raises(ValueError, match=match):
            make_opt()
