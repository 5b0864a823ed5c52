"""Whether Numba's on-disk cache already holds compiled kernels (so a first call loads, not compiles)."""

import os


def on_disk(*dispatchers) -> bool:
    """True when every ``@njit(cache=True)`` dispatcher has a cache index on disk. A kernel compiled
    before may still be recompiled (another signature, a changed source); True only says the first run
    of this installation is over. Unknown Numba internals count as cached (nothing to announce)."""
    try:
        return all(os.path.exists(d._cache._cache_file._index_path) for d in dispatchers)
    except AttributeError:
        return True
