"""The thread settings: the user's wait policy is kept, and serial builds compute the same integers."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exactrev.exact.buffer import InfoBuffer
from exactrev.kernels import threads
from exactrev.kernels.buffer_ops import pop_kernel, push_kernel
from exactrev.kernels.momentum import group_rational_multiply_kernel, momentum_kick_kernel


def test_spin_default_is_set_only_when_the_user_chose_nothing():
    env = {}
    assert threads.apply_spin_default(env) and env == {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)}
    for choice in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "infinite"}):
        env = dict(choice)
        assert not threads.apply_spin_default(env) and env == choice


def test_settings_name_every_control():
    s = threads.settings()
    assert {"threading_layer", "threads", "serial_below", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} <= set(s)
    assert s["threads"] == numba.get_num_threads()


def test_for_lanes_picks_the_serial_build_below_the_size_only():
    assert threads.for_lanes(push_kernel, threads.SERIAL_BELOW) is push_kernel
    serial = threads.for_lanes(push_kernel, threads.SERIAL_BELOW - 1)
    assert serial is not push_kernel and serial is threads.for_lanes(push_kernel, 1)
    assert serial.py_func.__qualname__.endswith("_serial") and serial is threads.serial_build(push_kernel)


def test_for_lanes_refuses_what_is_not_a_kernel():
    with pytest.raises(AttributeError):
        threads.for_lanes(len, 1)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2 ** 32 - 1), steps=st.integers(1, 40))
def test_serial_and_parallel_builds_compute_the_same_integers(n, seed, steps):
    rng = np.random.default_rng(seed)
    w0 = rng.integers(-2 ** 52, 2 ** 52, n)
    v0 = rng.integers(-2 ** 40, 2 ** 40, n)
    nums, dens = np.array([rng.integers(1, 65536)]), np.array([65536])
    grads = rng.normal(size=(steps, n))
    bases = rng.integers(1, 65536, n)
    results = []
    for build in (lambda k: k, lambda k: threads.for_lanes(k, 1)):
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
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
