"""The thread settings: the user's wait policy is kept, builds are chosen by size and load, and serial
builds compute the same integers."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exactrev.exact.buffer import InfoBuffer
from exactrev.kernels import threads
from exactrev.kernels.buffer_ops import pop_kernel, push_kernel
from exactrev.kernels.momentum import group_rational_multiply_kernel, momentum_kick_kernel

from ..helpers import num_threads


def test_spin_default_is_set_only_when_the_user_chose_nothing():
    env = {}
    assert threads.apply_spin_default(env) and env == {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)}
    for choice in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "infinite"}):
        env = dict(choice)
        assert not threads.apply_spin_default(env) and env == choice


def test_settings_name_every_control():
    s = threads.settings()
    names = {"threading_layer", "threads", "serial_below", "parallel_from", "GOMP_SPINCOUNT",
             "OMP_WAIT_POLICY"}
    assert names <= set(s)
    assert s["threads"] == numba.get_num_threads()


def test_for_lanes_picks_one_thread_or_the_load_by_size():
    assert threads.for_lanes(push_kernel, 10 * threads.PARALLEL_FROM) is threads.by_load(push_kernel)
    one = threads.for_lanes(push_kernel, threads.SERIAL_BELOW - 1)
    assert one is threads.one_thread(push_kernel) and one.kernel is push_kernel
    assert threads.for_lanes(push_kernel, threads.ONE_THREAD_FROM) is one
    serial = threads.for_lanes(push_kernel, threads.ONE_THREAD_FROM - 1)
    assert serial is threads.for_lanes(push_kernel, 1) and serial is threads.serial_build(push_kernel)
    assert serial.py_func.__qualname__.endswith("_serial")
    middle = threads.for_lanes(push_kernel, threads.SERIAL_BELOW)
    assert middle is threads.for_lanes(push_kernel, threads.SERIAL_BELOW)
    assert middle.kernel is push_kernel and middle.mode is threads.load_mode()
    assert threads.for_lanes(pop_kernel, threads.PARALLEL_FROM).mode is middle.mode  # one mode per process


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _spy_builds(monkeypatch):
    """Replace one_thread by a recorder: returns the list of runs ("one thread" or "parallel")."""
    ran = []
    monkeypatch.setattr(threads, "one_thread", lambda k: lambda x: ran.append("one thread") or x + 1)
    return ran


def _kernel(ran):
    def kernel(x):
        ran.append("parallel")
        return x + 1
    return kernel


def test_lane_mode_runs_all_threads_while_a_core_is_free_and_one_when_busy(monkeypatch):
    ran = _spy_builds(monkeypatch)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    load, clock = [1], _Clock()
    mode = threads.LaneMode(load=lambda: load[0], clock=clock)
    kernel = _kernel([])
    with num_threads(2):
        assert mode.run(kernel, (1,)) == 2 and mode.parallel  # quiet: 1 task, this one
        load[0] = 2                                            # and its second thread, spinning
        for _ in range(20):
            clock.now += threads.SAMPLE_S
            mode.run(kernel, (1,))
        assert mode.parallel and mode.average < 0.5
        load[0] = 3                                            # a busy process beside ours
        for _ in range(20):
            clock.now += threads.SAMPLE_S
            assert mode.run(kernel, (1,)) == 2
        assert not mode.parallel and mode.average > 0.5
        ran.clear()
        mode.run(kernel, (1,))
        assert ran == ["one thread"]
        load[0] = 2                                            # this thread and the busy process
        for _ in range(20):
            clock.now += threads.SAMPLE_S
            mode.run(kernel, (1,))
        assert not mode.parallel
        load[0] = 1
        for _ in range(20):
            clock.now += threads.SAMPLE_S
            mode.run(kernel, (1,))
        assert mode.parallel


def test_a_forced_mode_ignores_the_load(monkeypatch):
    ran = _spy_builds(monkeypatch)
    mode = threads.LaneMode(load=lambda: 99, clock=_Clock())
    with num_threads(2):
        mode.forced = True
        mode.run(_kernel(ran), (0,))
        mode.forced = False
        mode.run(_kernel(ran), (0,))
    assert ran == ["parallel", "one thread"]


def test_lane_mode_samples_the_load_at_most_every_sample_interval(monkeypatch):
    _spy_builds(monkeypatch)
    samples, clock = [], _Clock()
    mode = threads.LaneMode(load=lambda: samples.append(1) or 1, clock=clock)
    with num_threads(2):
        for _ in range(10):
            mode.run(_kernel([]), (0,))
        assert len(samples) == 1
        clock.now += threads.SAMPLE_S
        mode.run(_kernel([]), (0,))
        assert len(samples) == 2


def test_lane_mode_runs_on_one_thread_with_one_numba_thread_or_without_a_load(monkeypatch):
    ran = _spy_builds(monkeypatch)
    with num_threads(1):
        threads.LaneMode(load=lambda: 1, clock=_Clock()).run(_kernel(ran), (0,))
    with num_threads(2):
        threads.LaneMode(load=lambda: None, clock=_Clock()).run(_kernel(ran), (0,))
    assert ran == ["one thread", "one thread"]


def test_runnable_tasks_reads_the_load_file_and_gives_none_without_one(tmp_path):
    good = tmp_path / "loadavg"
    good.write_text("0.52 0.61 0.70 3/412 12345\n")
    assert threads.runnable_tasks(str(good)) == 3
    bad = tmp_path / "bad"
    bad.write_text("garbage\n")
    assert threads.runnable_tasks(str(bad)) is None
    assert threads.runnable_tasks(str(tmp_path / "missing")) is None
    real = threads.runnable_tasks()
    assert real is None or real >= 1
    if real is not None:  # the kept descriptor reads the file anew each time
        assert threads.runnable_tasks() >= 1
    assert threads.usable_cores() >= 1


def test_the_load_chosen_builds_compute_the_same_integers_as_the_parallel_kernel(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    rng = np.random.default_rng(5)
    n = threads.SERIAL_BELOW + 17
    results = []
    for busy in (False, True):
        mode = threads.LaneMode(load=lambda: 9 if busy else 1)
        buf = InfoBuffer(n)
        buf.reserve(8)
        x = rng.integers(1, 65536, n) if not results else results[0][1]
        bases = np.full(n, 65536)
        mode.run(push_kernel, (buf.heads, buf.counts, buf.words, x, bases))
        results.append((buf.heads.copy(), x))
        assert mode.parallel == (not busy and numba.get_num_threads() > 1)
    np.testing.assert_array_equal(results[0][0], results[1][0])


def test_for_lanes_refuses_what_is_not_a_kernel():
    with pytest.raises(AttributeError):
        threads.for_lanes(len, 1)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2 ** 32 - 1), steps=st.integers(1, 40))
def test_serial_one_thread_and_parallel_runs_compute_the_same_integers(n, seed, steps):
    rng = np.random.default_rng(seed)
    w0 = rng.integers(-2 ** 52, 2 ** 52, n)
    v0 = rng.integers(-2 ** 40, 2 ** 40, n)
    nums, dens = np.array([rng.integers(1, 65536)]), np.array([65536])
    grads = rng.normal(size=(steps, n))
    bases = rng.integers(1, 65536, n)
    results = []
    for build in (lambda k: k, threads.serial_build, threads.one_thread):
        kernels = (group_rational_multiply_kernel, momentum_kick_kernel, pop_kernel)
        decay, kick, pop = (build(k) for k in kernels)
        w, v = w0.copy(), v0.copy()
        buf = InfoBuffer(n)
        buf.reserve(4 * steps + 8)
        heads, counts, words = buf.heads, buf.counts, buf.words
        errs = np.zeros(n, np.int8)
        group = np.zeros(n, np.int64)
        for t in range(steps):
            assert decay(v, heads, counts, words, buf.floor, group, nums, dens, False, None, errs) == 0
            assert kick(w, v, group, np.array([1 - nums[0] / dens[0]]), np.array([0.01]), grads[t], 2.0 ** 42,
                        False, None, errs) == 0
        assert not errs.any()
        out = np.zeros(n, np.int64)
        pop(heads, counts, words, bases, buf.floor, out, True, errs)
        results.append((w, v, heads, counts, words, out))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_the_kick_follows_the_load():  # 5 ns per lane: two threads pay once the second one spins
    assert threads.for_lanes(momentum_kick_kernel, threads.SERIAL_BELOW) is threads.by_load(momentum_kick_kernel)


def test_light_kernels_run_serial_below_the_parallel_size_whatever_the_load(monkeypatch):
    from exactrev.kernels.fixed import to_float_kernel
    from exactrev.kernels.momentum import weights_back_kernel

    for kernel in (to_float_kernel, weights_back_kernel):
        assert threads.for_lanes(kernel, threads.SERIAL_BELOW) is threads.serial_build(kernel)
        assert threads.for_lanes(kernel, threads.PARALLEL_FROM - 1) is threads.serial_build(kernel)
        assert threads.for_lanes(kernel, threads.PARALLEL_FROM) is threads.by_load(kernel)
    monkeypatch.setattr(threads, "_LIGHT", set())
    assert threads.light(push_kernel) is push_kernel and threads._LIGHT == {push_kernel}
    assert threads.serial_runner(push_kernel, threads.SERIAL_BELOW) is threads.serial_build(push_kernel)


def test_one_thread_runs_the_kernel_on_one_numba_thread_and_restores_the_count():
    seen = []

    def kernel(x):
        seen.append(numba.get_num_threads())
        if x < 0:
            raise KeyboardInterrupt
        return x

    runner = threads._OneThread(kernel)
    with num_threads(2):
        before = numba.get_num_threads()
        assert runner(3) == 3
        with pytest.raises(KeyboardInterrupt):
            runner(-1)
        assert seen == [1, 1] and numba.get_num_threads() == before
    with num_threads(1):
        assert runner(4) == 4 and seen[-1] == 1
    assert threads.one_thread(push_kernel) is threads.one_thread(push_kernel)
