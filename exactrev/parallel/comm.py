"""The communicator of a data-parallel run, and how a failure on one rank reaches all of them.

A communicator is ``mpi4py.MPI.Comm`` (``world()``) or ``SelfComm`` (one process, no MPI needed).
Both offer what the parallel code uses: ``rank``, ``size``, ``Allreduce`` of int64 arrays with SUM,
``Allgatherv`` of int64 slices, ``allreduce`` and ``bcast`` of small Python objects, ``Barrier``.

Every collective call must be reached by every rank, so a rank that fails (overflow, NaN, a bad batch,
Ctrl-C) must not leave the others waiting. ``agree(comm, where, fn)`` runs fn on every rank, then all
ranks exchange one flag; if any rank failed, the lowest failing rank's exception is re-raised on every
rank, of the same type, as "rank r of P: <message>" (with <where> added when the message does not say
it).
"""

import os

import numpy as np


class SelfComm:
    """A communicator of one process: collectives copy, the rank is 0."""

    rank, size = 0, 1

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Allreduce(self, send, recv, op=None):
        recv[...] = send

    def Allgatherv(self, send, recv):
        buf = recv[0] if isinstance(recv, (list, tuple)) else recv
        buf[...] = send

    def allreduce(self, obj, op=None):
        return obj

    def bcast(self, obj, root=0):
        return obj

    def Barrier(self):
        pass


def launched_by_mpiexec(environ=os.environ) -> bool:
    """True when this process was started by mpiexec with more than one rank (read from the
    environment, without importing MPI)."""
    for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if key in environ:
            return int(environ[key]) > 1
    return False


def world():
    """mpi4py's COMM_WORLD; ImportError with the extra to install when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError('data-parallel runs need mpi4py and an MPI: pip install "exactrev[mpi]"') from exc
    return MPI.COMM_WORLD


def _sum_op(comm):
    if isinstance(comm, SelfComm):
        return None
    from mpi4py import MPI

    return MPI.SUM


def allreduce_int(comm, local):
    """The element-wise sum over ranks of the int64 array ``local`` (same shape on every rank)."""
    local = np.ascontiguousarray(local, np.int64)
    out = np.empty_like(local)
    comm.Allreduce(local, out, op=_sum_op(comm))
    return out


def allgather_slices(comm, local, counts):
    """The concatenation over ranks of each rank's int64 slice (rank r's of length counts[r])."""
    local = np.ascontiguousarray(local, np.int64)
    out = np.empty(int(sum(counts)), np.int64)
    if isinstance(comm, SelfComm):
        out[...] = local
        return out
    from mpi4py import MPI

    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    comm.Allgatherv([local, MPI.INT64_T], [out, (list(map(int, counts)), list(map(int, offsets))), MPI.INT64_T])
    return out


def agree(comm, where, fn, *args, undo=None):
    """fn(*args) on every rank; if it raised on any rank, the ranks where it went through call
    ``undo(result)`` (when given: the exact inverse, so that nothing stays written anywhere), then every
    rank raises the lowest failing rank's exception (same type, "rank r of P: <message>", naming
    <where> too when the message does not).
    Returns fn's result."""
    try:
        result, failure = fn(*args), None
    except BaseException as exc:  # Ctrl-C included: the other ranks must not wait for this one
        result, failure = None, exc
    failed = comm.allreduce(comm.size if failure is None else comm.rank, op=_min_op(comm))
    if failed == comm.size:
        return result
    if failure is None and undo is not None:
        undo(result)
    info = comm.bcast((type(failure), str(failure)) if comm.rank == failed else None, root=failed)
    cls, message = info
    prefix = f"rank {failed} of {comm.size}" + ("" if where in message else f", {where}")
    raise _rebuilt(cls, f"{prefix}: {message}") from failure


def _min_op(comm):
    if isinstance(comm, SelfComm):
        return None
    from mpi4py import MPI

    return MPI.MIN


def _rebuilt(cls, message):
    try:
        return cls(message)
    except Exception:  # an exception class that does not take one message
        return RuntimeError(message)


_THREAD_CHOICES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_LIMITS = []


def fair_share_threads(comm, environ=os.environ):
    """Give each rank its share of this machine's cores for Numba and BLAS threads: cores // ranks on
    this machine (``MPI_LOCALNRANKS`` when the launcher sets it, else all ranks), at least 1. Ranks that
    each start one thread per core fight for the cores: measured on 2 cores with 2 ranks, a step took
    1.5-1.6x longer. Leaves the thread counts alone when the user set one (OMP_NUM_THREADS,
    OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS). Returns the threads per rank, or None."""
    if any(k in environ for k in _THREAD_CHOICES):
        return None
    local = int(environ.get("MPI_LOCALNRANKS", comm.size))
    return limit_threads(max(1, (os.cpu_count() or 1) // max(1, local)))


def limit_threads(n):
    """At most ``n`` Numba threads and ``n`` BLAS threads in this process from now on; returns n."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    _LIMITS.append(threadpool_limits(n))   # kept alive: the limit holds for the process
    return n
