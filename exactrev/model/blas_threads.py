"""One BLAS thread inside an MLP pass, so that a product's bits do not depend on a thread setting.

A threaded BLAS does not promise the same floats for every thread count. OpenBLAS 0.3 (numpy's wheels)
blocks the summed dimension of ``dgemm`` differently in its threaded and serial drivers: on a 2-core
machine ``A.T @ D`` with 256 or more summed rows, or a (50, 64) @ (64, 2000) product, differed in the
last bits between 1 and 2 threads. The BLAS pass (``mlp_blas``) therefore runs every product on one
BLAS thread, whatever the user set, and gets its parallelism from units fixed by the shapes, which
threads share out: row chunks of the batch (``mlp_blas.CHUNK_ROWS``, Python threads) and column
blocks of large products (``mlp_blas.BLOCK_COLS``). Which thread computes a unit does not change it.
(Compiled chunks, ``mlp_fused``, use no BLAS: their products are ``kernels.gemm``'s.)

``single_thread_blas()`` is a context manager: the first pass to enter sets every BLAS library that
threadpoolctl finds to one thread, the last to leave restores the counts it found, so passes in
several Python threads at once nest. A BLAS whose threads cannot be set (none found) is left as it
is; then its own determinism is all there is (documented in docs/engine.md). One BLAS thread also
keeps a waiting BLAS thread from spinning on a core that a busy machine's other processes need.
"""

import importlib
import threading

_LOCK = threading.Lock()
_STATE = {"depth": 0, "saved": None, "controllers": None}


def _controllers():
    """The threadpoolctl controllers of the BLAS libraries (found once): numpy's, and scipy's, which
    Numba's ``np.dot`` calls (in users' Numba code); scipy's is loaded here first, so that it is
    found."""
    if _STATE["controllers"] is None:
        try:
            importlib.import_module("scipy.linalg.cython_blas")  # the BLAS that Numba's np.dot calls
            from threadpoolctl import ThreadpoolController
            _STATE["controllers"] = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # pragma: no cover - threadpoolctl missing or a library it cannot read
            _STATE["controllers"] = []
    return _STATE["controllers"]


class _SingleThreadBlas:
    """The context manager of ``single_thread_blas`` (a class: entered about 4x faster than a
    generator's, which an MLP pass inside a held session pays on every call)."""

    __slots__ = ()

    def __enter__(self):
        with _LOCK:
            if _STATE["depth"] == 0:
                ctls = _controllers()
                _STATE["saved"] = [c.get_num_threads() for c in ctls]
                for c in ctls:
                    c.set_num_threads(1)
            _STATE["depth"] += 1
        return self

    def __exit__(self, *exc):
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0:
                for c, n in zip(_controllers(), _STATE["saved"]):
                    c.set_num_threads(n)
        return False


_SINGLE = _SingleThreadBlas()


def single_thread_blas():
    """A context manager that runs its block with every BLAS library on one thread (see the module
    docstring); blocks nest, in one thread or several."""
    return _SINGLE


def blas_threads():
    """[threads] of every BLAS library found: what a product outside a pass would use."""
    return [c.get_num_threads() for c in _controllers()]
