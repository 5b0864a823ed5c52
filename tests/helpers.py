"""Small helpers shared by tests."""

import contextlib

import numba


@contextlib.contextmanager
def num_threads(k):
    """Run a block with numba using k threads, restoring the previous count after."""
    old = numba.get_num_threads()
    numba.set_num_threads(k)
    try:
        yield
    finally:
        numba.set_num_threads(old)
