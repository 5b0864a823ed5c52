"""Benchmarks on a busy machine: the same work timed quiet and beside one busy process.

Users run several trials per machine and mix libraries in one process, so another process holding a
core is the normal case. A parallel kernel whose OpenMP threads spin at every barrier then waits on a
thread that is descheduled. This report prints the slowdown of the buffer and of reversible training
with one competing busy process, in the same run, under the threading settings of the process (run it
with ``OMP_WAIT_POLICY=PASSIVE`` or ``NUMBA_NUM_THREADS=1`` to compare; docs/engine.md, "Threads").
"""

import multiprocessing as mp
import time
from fractions import Fraction

import numpy as np


def _spin(stop):
    while not stop.is_set():
        pass


def _buffer_work(n=10_000, steps=2000):
    from ..exact.buffer import InfoBuffer
    from ..exact.rational_ops import multiply

    buf = InfoBuffer(n)
    buf.reserve(buf.seed_words + steps // 100 + 8)
    x = np.random.default_rng(0).integers(-2 ** 50, 2 ** 50, n)
    multiply(x, Fraction(9, 10), buf)
    t0 = time.perf_counter()
    for _ in range(steps):
        multiply(x, Fraction(9, 10), buf)
    return 1e9 * (time.perf_counter() - t0) / (n * steps)


def _training_work(steps=20):
    from .bench_training import PaperProblem

    prob = PaperProblem(steps)
    prob.forward_reversible()
    t0 = time.perf_counter()
    prob.forward_reversible()
    return 1e3 * (time.perf_counter() - t0) / steps


WORKLOADS = {"buffer, ns per weight-step (10^4 weights, g = 9/10)": _buffer_work,
             "reversible training, ms per step (paper MLP)": _training_work}


def busy_report(out=print, competitors=1):
    """Time each workload quiet, then with ``competitors`` busy processes; print and return the ratios."""
    import numba

    import os

    figures = {}
    for i, (name, work) in enumerate(WORKLOADS.items()):
        work()  # compile and warm up
        if i == 0:
            out(f"Busy machine: {competitors} competing busy process(es); numba threading layer "
                f"{numba.threading_layer()}, {numba.get_num_threads()} threads, OMP_WAIT_POLICY="
                f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}")
        quiet = min(work() for _ in range(3))
        stop = mp.Event()
        procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(competitors)]
        for p in procs:
            p.start()
        try:
            time.sleep(0.2)
            busy = min(work() for _ in range(3))
        finally:
            stop.set()
            for p in procs:
                p.join(5)
        figures[name] = (quiet, busy)
        out(f"  {name}: quiet {quiet:.3g}, busy {busy:.3g}, slowdown {busy / quiet:.2f}x (target <= 3x)")
    return figures

