"""``exactrev bench --suite mpi``: data-parallel exact reversal on 1 and P ranks, in the same run.

Run it under ``mpiexec -n P`` (P >= 2): first rank 0 alone trains and reverses the paper's MLP
(``MPI.COMM_SELF``) while the others wait, then all P ranks do the same work together. Printed per rank
count: forward and reverse milliseconds per step, the largest buffer any rank keeps, and the bytes each
rank sends per step to the gradient's int64 all-reduce and to the weights' all-gather. Started without
mpiexec it measures the single rank only and says how to get the rest.
"""

import time

from ..hyper.api import hypergradient


def measure(comm, prob):
    """One hypergradient of ``prob`` (a PaperProblem) data-parallel over ``comm``: its figures."""
    from ..parallel.data_parallel import DataParallelLoss

    loss = DataParallelLoss(prob.train, comm)
    hypergradient(prob.meta, loss, prob.valid, prob.noise, prob.types, comm=comm)   # load the kernels
    loss.reduced_bytes = {k: 0 for k in loss.reduced_bytes}
    comm.Barrier()
    t0 = time.perf_counter()
    res = hypergradient(prob.meta, loss, prob.valid, prob.noise, prob.types, comm=comm)
    seconds = time.perf_counter() - t0
    T = prob.steps
    buffer_max = comm.allreduce(int(res.stats["buffer_bytes_peak"]), op=_max(comm))
    return {"ranks": comm.size, "forward_ms": 1e3 * res.stats["forward_s"] / T,
            "reverse_ms": 1e3 * res.stats["reverse_s"] / T, "total_s": seconds, "buffer_bytes_max": buffer_max,
            "allreduce_fwd": res.stats["allreduce_bytes"]["grad"] / T,
            "allreduce_rev": res.stats["allreduce_bytes"]["grad_and_vjp"] / T,
            "allgather_fwd": res.stats["allgather_bytes"]["forward"] / T,
            "allgather_rev": res.stats["allgather_bytes"]["reverse"] / T, "restored": res.restored}


def _max(comm):
    from ..parallel.comm import SelfComm

    if isinstance(comm, SelfComm):
        return None
    from mpi4py import MPI

    return MPI.MAX


def mpi_report(steps=50, out=print):
    """The table of the module docstring (printed by rank 0)."""
    from ..parallel.comm import SelfComm, fair_share_threads, launched_by_mpiexec, world
    from ..parallel.data_parallel import CHUNK
    from .bench_training import PaperProblem

    prob = PaperProblem(steps)
    comm = world() if launched_by_mpiexec() else None
    threads = fair_share_threads(comm) if comm is not None else None
    rows = []
    if comm is None:
        rows.append(measure(SelfComm(), prob))
    else:
        from mpi4py import MPI

        if comm.rank == 0:
            rows.append(measure(MPI.COMM_SELF, prob))
        comm.Barrier()
        rows.append(measure(comm, prob))
        if comm.rank != 0:
            return rows
    out(f"data-parallel exact reversal, paper MLP 64-50-50-50-10 ({prob.net.n_params} weights), batch 200, "
        f"T = {steps}, g = 0.9; sums in fixed point (int64) over chunks of {CHUNK} rows")
    if threads is not None:
        out(f"threads per rank: {threads} (this machine's cores shared among its ranks)")
    out("bytes are what each rank sends per step: to the int64 all-reduce of the gradient (forward) or of the "
        "gradient and H u (reverse), and to the all-gather of the weights (and, reverse, the velocity)")
    out(f"{'ranks':>5} | {'fwd ms/step':>11} | {'rev ms/step':>11} | {'buffer bytes/rank':>17} | "
        f"{'all-reduce fwd/rev':>19} | {'all-gather fwd/rev':>19} | restored")
    for r in rows:
        red = f"{r['allreduce_fwd']:,.0f}/{r['allreduce_rev']:,.0f}"
        gat = f"{r['allgather_fwd']:,.0f}/{r['allgather_rev']:,.0f}"
        out(f"{r['ranks']:>5} | {r['forward_ms']:>11.2f} | {r['reverse_ms']:>11.2f} | "
            f"{r['buffer_bytes_max']:>17,} | {red:>19} | {gat:>19} | {r['restored']}")
    if comm is None:
        out("(one rank only: run `mpiexec -n 2 exactrev bench --suite mpi` for the 2-rank row; "
            'mpiexec comes with pip install -e ".[mpi]")')
    return rows
