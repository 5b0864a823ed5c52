"""ReversibleSGD: forward then reverse restores every bit; errors are loud and write nothing."""

from fractions import Fraction

import numba as nb
import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev import (BufferMismatchError, FixedFormat, FixedPointRangeError, HyperparameterError,
                      InfoBuffer, MomentumSchedule, ReversibleSGD, StepError)
from exactrev.exact.rational import MAX_DENOMINATOR

from ..conftest import THREAD_COUNTS
from ..helpers import assert_optimizer_state, bowl, num_threads, optimizer_state


def _state(opt):
    return optimizer_state(opt, "w", "v")


momenta = st.one_of(
    st.floats(0.01, 1.0),
    st.builds(lambda d, n: Fraction(min(n, d), d), st.integers(1, MAX_DENOMINATOR),
              st.integers(1, MAX_DENOMINATOR)),
)


@st.composite
def runs(draw):
    n = draw(st.integers(1, 300))
    steps = draw(st.integers(1, 200))
    groups = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    lr = rng.uniform(0.0, 0.5, size=(steps, groups))
    mom = np.array([[draw(momenta) for _ in range(groups)] for _ in range(min(steps, 3))], dtype=object)
    mom = mom[rng.integers(0, mom.shape[0], steps)]
    scale = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    w0 = rng.normal(size=n) * scale
    v0 = rng.normal(size=n) * draw(st.sampled_from([0.0, 1.0]))
    group = rng.integers(0, groups, n)
    curv = rng.uniform(0.0, 1.0, n)
    # 44 fractional bits leave a range of +-512: too narrow for weights of scale 100 drifting for 200
    # steps (leaving the range is refused, and has its own tests)
    frac_bits = draw(st.sampled_from([20, 42] if scale == 100.0 else [20, 42, 44]))
    return dict(w0=w0, v0=v0, group=group, lr=lr, mom=mom, curv=curv, frac_bits=frac_bits)


def _make(run, buffer=None):
    # tolerance=None: any float momentum takes its nearest fraction (reversal is exact for whatever
    # fraction is applied; refusing 1 - g that cannot be represented within 1% has its own tests)
    sched = MomentumSchedule.build(run["lr"], run["mom"], tolerance=None)
    return ReversibleSGD(run["w0"], sched, v0=run["v0"], group=run["group"],
                         fmt=FixedFormat(run["frac_bits"]), buffer=buffer)


@given(runs())
def test_reverse_restores_every_bit_and_empties_the_buffer(run):
    opt = _make(run)
    start = _state(opt)
    grad = bowl(run["curv"])
    opt.forward(grad)
    assert opt.t == opt.schedule.steps
    opt.reverse(grad)
    assert opt.t == 0
    assert_optimizer_state(opt, start)
    assert opt.buffer.content_bits == pytest.approx(0.0, abs=1e-6)


@given(runs())
def test_reversal_into_a_buffer_that_already_holds_data(run):
    buf = InfoBuffer(run["w0"].shape[0])
    buf.push(np.arange(buf.n_lanes) % 5, 5)
    opt = _make(run, buffer=buf)
    before = buf.copy()
    grad = bowl(run["curv"])
    opt.forward(grad)
    opt.reverse(grad)
    assert opt.buffer == before
    np.testing.assert_array_equal(buf.pop(5), np.arange(buf.n_lanes) % 5)


@given(st.integers(1, 100), st.integers(0, 2 ** 31))
def test_values_at_the_edge_of_the_range_round_trip(n, seed):
    """Weights within a few units of +-(2**53 - 1) with tiny steps: exact both ways."""
    rng = np.random.default_rng(seed)
    fmt = FixedFormat(42)
    edge = fmt.max_value
    w0 = np.where(rng.random(n) < 0.5, edge, -edge) * (1 - rng.integers(0, 4, n) * 2.0 ** -52)
    sched = MomentumSchedule.build(lr=1e-3, momentum=Fraction(58983, 65536), steps=50)
    opt = ReversibleSGD(w0, sched, fmt=fmt)
    start = _state(opt)
    grad = lambda w, t: np.zeros_like(w)  # noqa: E731  (velocity stays 0; weights sit at the edge)
    opt.forward(grad)
    opt.reverse(grad)
    assert_optimizer_state(opt, start)


def test_large_velocity_near_the_edge_round_trips():
    fmt = FixedFormat(42)
    v0 = np.array([fmt.max_value * 0.999, -fmt.max_value * 0.999, 1.0])
    sched = MomentumSchedule.build(lr=0.0, momentum=0.9, steps=100)
    opt = ReversibleSGD(np.zeros(3), sched, v0=v0, fmt=fmt)
    start = _state(opt)
    grad = lambda w, t: np.full(3, 1.0)  # noqa: E731
    opt.forward(grad)
    opt.reverse(grad)
    assert_optimizer_state(opt, start)


def test_bits_per_weight_step_meet_the_bound():
    rng = np.random.default_rng(0)
    n, steps = 2000, 300
    sched = MomentumSchedule.build(lr=0.05, momentum=0.9, steps=steps)
    opt = ReversibleSGD(rng.normal(size=n), sched)
    opt.forward(bowl(rng.uniform(0, 1, n)))
    assert opt.bits_per_weight_step() == pytest.approx(np.log2(10 / 9), rel=0.01)


def test_weight_overflow_raises_naming_step_and_index_and_writes_nothing():
    fmt = FixedFormat(42)
    w0 = np.array([0.0, fmt.max_value - 1.0, 0.0])
    sched = MomentumSchedule.build(lr=1.0, momentum=0.5, steps=10)
    opt = ReversibleSGD(w0, sched, fmt=fmt)
    grad = lambda w, t: np.array([0.0, -10.0, 0.0])  # noqa: E731
    with pytest.raises(FixedPointRangeError, match=r"forward step \d+, weight 1 .*weight would leave"):
        for _ in range(10):
            state = _state(opt)
            opt.step(grad(opt.weights, opt.t))
    assert_optimizer_state(opt, state)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradient_raises_and_writes_nothing(bad):
    sched = MomentumSchedule.build(lr=0.1, momentum=0.9, steps=5)
    opt = ReversibleSGD(np.ones(4), sched)
    opt.step(np.ones(4))
    state = _state(opt)
    with pytest.raises(StepError, match=r"step 1, weight 2 .*NaN or infinite"):
        opt.step(np.array([1.0, 1.0, bad, 1.0]))
    assert_optimizer_state(opt, state)
    assert opt.t == 1


def test_reverse_velocity_failure_restores_weights():
    sched = MomentumSchedule.build(lr=0.1, momentum=0.9, steps=5)
    opt = ReversibleSGD(np.ones(4), sched)
    opt.step(np.ones(4))
    state = _state(opt)
    opt.unstep_weights()
    with pytest.raises(StepError, match="NaN"):
        opt.unstep_velocity(np.array([np.nan, 0, 0, 0]))
    assert_optimizer_state(opt, state)
    assert opt.t == 1


def test_nondeterministic_gradient_is_detected_after_reversal():
    rng = np.random.default_rng(2)
    sched = MomentumSchedule.build(lr=0.1, momentum=0.9, steps=30)
    opt = ReversibleSGD(rng.normal(size=50), sched)
    grad = bowl(np.ones(50))
    opt.forward(grad)
    noisy = lambda w, t: grad(w, t) + 1e-9 * rng.normal(size=w.shape)  # noqa: E731
    with pytest.raises(BufferMismatchError, match="not deterministic"):
        opt.reverse(noisy)


def test_gradient_shape_and_step_count_errors():
    sched = MomentumSchedule.build(lr=0.1, momentum=0.9, steps=2)
    opt = ReversibleSGD(np.ones(3), sched)
    with pytest.raises(StepError, match="shape"):
        opt.step(np.ones(4))
    with pytest.raises(StepError, match="nothing to reverse"):
        opt.unstep_weights()
    with pytest.raises(StepError, match="only 0"):
        opt.reverse(lambda w, t: w, steps=1)
    opt.forward(lambda w, t: w)
    with pytest.raises(StepError, match="has 2 steps"):
        opt.step(np.ones(3))


@pytest.mark.parametrize("kwargs, exc", [
    (dict(lr=np.nan, momentum=0.9, steps=3), HyperparameterError),
    (dict(lr=0.1, momentum=1.2, steps=3), HyperparameterError),
    (dict(lr=0.1, momentum=0.0, steps=3), HyperparameterError),
    (dict(lr=np.ones((3, 2)), momentum=np.full((4, 2), 0.9)), HyperparameterError),
])
def test_bad_schedules_are_refused(kwargs, exc):
    with pytest.raises(exc):
        MomentumSchedule.build(**kwargs)


def test_bad_constructor_arguments():
    sched = MomentumSchedule.build(lr=0.1, momentum=0.9, steps=2, groups=2)
    with pytest.raises(ValueError, match="group ids"):
        ReversibleSGD(np.ones(3), sched, group=[0, 1, 2])
    with pytest.raises(ValueError, match="v0"):
        ReversibleSGD(np.ones(3), sched, v0=np.ones(2))
    with pytest.raises(FixedPointRangeError, match=r"w0\[1\]"):
        ReversibleSGD(np.array([0.0, np.nan]), sched)
    with pytest.raises(ValueError, match="lanes"):
        ReversibleSGD(np.ones(3), sched, buffer=InfoBuffer(4))


@nb.njit(cache=True)
def _njit_grad(w, t):
    out = np.empty_like(w)
    for i in range(w.shape[0]):
        out[i] = 0.5 * w[i] + 0.01 * t
    return out


def test_an_njit_gradient_function_works():
    sched = MomentumSchedule.build(lr=0.2, momentum=0.75, steps=40)
    opt = ReversibleSGD(np.linspace(-1, 1, 17), sched)
    start = _state(opt)
    opt.forward(_njit_grad)
    opt.reverse(_njit_grad)
    assert_optimizer_state(opt, start)


def test_trajectory_bits_do_not_depend_on_thread_count():
    rng = np.random.default_rng(9)
    n = 5000
    w0, curv = rng.normal(size=n), rng.uniform(0, 1, n)
    sched = MomentumSchedule.build(lr=rng.uniform(0, 0.3, 20), momentum=0.9)
    results = []
    for k in THREAD_COUNTS:
        with num_threads(k):
            opt = ReversibleSGD(w0, sched)
            opt.forward(bowl(curv))
            results.append((opt.w.copy(), opt.v.copy(), opt.buffer.to_bytes()))
    for w, v, b in results[1:]:
        np.testing.assert_array_equal(w, results[0][0])
        np.testing.assert_array_equal(v, results[0][1])
        assert b == results[0][2]


@given(st.integers(2, 40), st.data())
def test_a_forward_step_where_one_weight_overflows_undoes_every_other_weight(n, data):
    """The forward kernel commits in one pass; when a weight fails, the weights that went through are
    undone by the exact inverse, so w, v, the buffer and t are bit for bit as before, the error names
    the failing weight, and the run goes on in either direction."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    w0 = rng.uniform(-1, 1, n)
    opt = ReversibleSGD(w0, MomentumSchedule.build(lr=0.1, momentum=0.9, steps=5))
    grads = rng.normal(size=(5, n))
    for t in range(data.draw(st.integers(0, 3))):
        opt.step(grads[t])
    before = optimizer_state(opt, "w", "v")
    bad = data.draw(st.integers(0, n - 1))
    grad = grads[opt.t].copy()
    grad[bad] = 1e20   # (1 - g) grad leaves the fixed-point range at this weight only
    with pytest.raises(FixedPointRangeError, match=f"weight {bad} "):
        opt.step(grad)
    assert_optimizer_state(opt, before)
    opt.step(grads[opt.t])
    opt.reverse(lambda w, t: grads[t])
    np.testing.assert_array_equal(opt.weights, FixedFormat().to_float(FixedFormat().to_fixed(w0)))


@given(st.integers(2, 40), st.data())
def test_a_reverse_step_where_one_velocity_overflows_redoes_every_other_weight(n, data):
    """The second reverse half commits in one pass; when a weight fails, the weights that went through
    are redone by the exact inverse and the first half too, so the state is bit for bit as before the
    reverse step, the error names the failing weight, and the reversal can go on."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    w0 = rng.uniform(-1, 1, n)
    opt = ReversibleSGD(w0, MomentumSchedule.build(lr=0.1, momentum=0.9, steps=4))
    grads = rng.normal(size=(4, n))
    opt.forward(lambda w, t: grads[t])
    if data.draw(st.booleans()):
        opt.unstep(lambda w, t: grads[t])
    before = optimizer_state(opt, "w", "v")
    bad = data.draw(st.integers(0, n - 1))
    wrong = grads[opt.t - 1].copy()
    wrong[bad] = 1e20
    with pytest.raises(FixedPointRangeError, match=f"weight {bad} "):
        opt.unstep(lambda w, t: wrong)
    assert_optimizer_state(opt, before)
    opt.reverse(lambda w, t: grads[t])
    np.testing.assert_array_equal(opt.weights, FixedFormat().to_float(FixedFormat().to_fixed(w0)))


@given(st.integers(2, 40), st.data())
def test_a_first_reverse_half_where_one_weight_overflows_moves_every_other_weight_back(n, data):
    """The first reverse half (w <- w - a v) commits in one pass; when a weight would leave the range,
    the weights that went through are moved forward again, so w and v are bit for bit as before, the
    error names the failing weight, and nothing is half done."""
    from exactrev.exact.fixedpoint import MAX_MAGNITUDE

    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    opt = ReversibleSGD(rng.uniform(-1, 1, n), MomentumSchedule.build(lr=0.5, momentum=0.9, steps=3))
    grads = rng.normal(size=(3, n))
    opt.forward(lambda w, t: grads[t])
    bad = data.draw(st.integers(0, n - 1))
    opt.w[bad], opt.v[bad] = -MAX_MAGNITUDE + 1, MAX_MAGNITUDE // 2  # w - a v leaves the range here
    before = optimizer_state(opt, "w", "v")
    with pytest.raises(FixedPointRangeError, match=f"reverse step 2, weight {bad} "):
        opt.unstep_weights()
    assert_optimizer_state(opt, before)
    opt.v[bad] = 0  # the lane fixed, the same half step goes through
    opt.unstep_weights()
