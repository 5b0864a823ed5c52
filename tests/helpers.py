"""Small helpers shared by tests."""

import contextlib

import numba


@contextlib.contextmanager
def num_threads(k):
    """Run a block with numba and BLAS using k threads and the parallel kernel builds even for small
    problems (``threads.SERIAL_BELOW``, ``threads.PARALLEL_FROM`` and ``mlp.SERIAL_BELOW`` = 0) on all
    k threads whatever the machine's load (``threads.load_mode().forced``), restoring all of them after."""
    from threadpoolctl import threadpool_limits

    from exactrev.kernels import threads
    from exactrev.model import mlp

    mode = threads.load_mode()
    old = (numba.get_num_threads(), threads.SERIAL_BELOW, threads.PARALLEL_FROM, mlp.SERIAL_BELOW,
           mode.forced)
    numba.set_num_threads(k)
    threads.SERIAL_BELOW = threads.PARALLEL_FROM = mlp.SERIAL_BELOW = 0
    mode.forced = True
    try:
        with threadpool_limits(k, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old[0])
        threads.SERIAL_BELOW, threads.PARALLEL_FROM, mlp.SERIAL_BELOW, mode.forced = old[1:]


def hyper_central_difference(run, args, perturb, h):
    """(f(+h) - f(-h)) / 2h for the hypergradient tests' problems.

    args = (net, train, valid, meta, log_l2, noise); perturb(meta, log_l2, X, e) moves copies of them
    by e; f is ``run(net, Split(X, train.y), valid, meta, log_l2, noise).loss``.
    """
    from exactrev.hyper.data import Split

    losses = []
    for sign in (1, -1):
        net, train, valid, meta, log_l2, noise = args
        m, l2, X = meta.copy(), log_l2.copy(), train.X.copy()
        perturb(m, l2, X, sign * h)
        losses.append(run(net, Split(X, train.y), valid, m, l2, noise).loss)
    return (losses[0] - losses[1]) / (2 * h)


def assert_close(fd, exact, rtol=1e-4, atol=1e-10):
    assert abs(fd - exact) <= rtol * abs(exact) + atol, (fd, exact)


def bowl(curv):
    """A deterministic gradient for optimiser tests: d/dw of a bowl of curvature ``curv`` plus a ripple."""
    import numpy as np

    def grad(w, t):
        return curv * w + 0.1 * np.sin(3.0 * w)
    return grad


def optimizer_state(opt, *arrays):
    """Copies of the named state arrays of an optimiser, its buffer and its step t."""
    return {**{name: getattr(opt, name).copy() for name in arrays}, "buffer": opt.buffer.copy(), "t": opt.t}


def assert_optimizer_state(opt, state):
    """Every array, the buffer and t are as in ``state`` (from :func:`optimizer_state`), bit for bit."""
    import numpy as np

    for name, value in state.items():
        if name == "buffer":
            assert opt.buffer == value
        elif name == "t":
            assert opt.t == value
        else:
            np.testing.assert_array_equal(getattr(opt, name), value, err_msg=name)
