"""Numba's on-disk cache for exactrev's kernels: stamped with every kernel source, and asked about.

Numba decides whether a cached kernel is still valid from the stamp of the one file that defines it. A
kernel inlines lane functions from another file (``lanes.py``), so a change there (a new exactrev
version, an edit) would leave the kernels of an unchanged file loading stale machine code: wrong
integers, or a crash. ``install_locators`` puts in front of Numba's own cache locators three that
behave the same (``NUMBA_CACHE_DIR``, the package's ``__pycache__``, the user-wide folder) for files
inside exactrev, but stamp every kernel with ``KERNEL_SOURCES_DIGEST``, the SHA-256 of all kernel
sources: a change to any of them recompiles every kernel once.
"""

import hashlib
import os

from numba.core import caching

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_SOURCES = ("kernels", os.path.join("model", "mlp_kernels.py"), os.path.join("model", "mlp_cuda.py"))


def kernel_sources_digest(root=PACKAGE_DIR, sources=KERNEL_SOURCES) -> str:
    """SHA-256 over the relative path and bytes of every .py file under ``sources`` (files or folders)."""
    paths = []
    for entry in sources:
        full = os.path.join(root, entry)
        if os.path.isdir(full):
            paths += [os.path.join(full, f) for f in os.listdir(full) if f.endswith(".py")]
        elif os.path.exists(full):
            paths.append(full)
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()


KERNEL_SOURCES_DIGEST = kernel_sources_digest()


class _StampedWithAllKernelSources:
    """Mixin for a Numba locator: applies to files inside exactrev, stamped with the sources' digest."""

    def get_source_stamp(self):
        return KERNEL_SOURCES_DIGEST

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(PACKAGE_DIR + os.sep):
            return None
        return super().from_function(py_func, py_file)


class UserProvidedLocator(_StampedWithAllKernelSources, caching.UserProvidedCacheLocator):
    """``NUMBA_CACHE_DIR``, when set."""


class InTreeLocator(_StampedWithAllKernelSources, caching.InTreeCacheLocator):
    """The package's own ``__pycache__``, when writable."""


class UserWideLocator(_StampedWithAllKernelSources, caching.UserWideCacheLocator):
    """The user-wide cache folder otherwise."""


LOCATORS = (UserProvidedLocator, InTreeLocator, UserWideLocator)


def install_locators() -> None:
    """Put exactrev's locators first in Numba's list (once); kernels decorated afterwards use them."""
    classes = caching.CacheImpl._locator_classes
    if classes[:len(LOCATORS)] != list(LOCATORS):
        classes[:0] = LOCATORS


def on_disk(*dispatchers) -> bool:
    """True when every ``@njit(cache=True)`` dispatcher has a cache index on disk. A kernel compiled
    before may still be recompiled (another signature, a changed source); True only says the first run
    of this installation is over. Unknown Numba internals count as cached (nothing to announce)."""
    try:
        return all(os.path.exists(d._cache._cache_file._index_path) for d in dispatchers)
    except AttributeError:
        return True
