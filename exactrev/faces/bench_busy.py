"""Benchmarks on a busy machine: the same work timed quiet and beside one busy process.

Users run several trials per machine and mix libraries in one process, so another process holding a
core is the normal case. A parallel kernel whose OpenMP threads spin at every barrier then waits on a
thread that is descheduled. This report prints the slowdown of the buffer (at 10^4 and 10^5 lanes,
on the threads the load chooses), of reversible training, of one hypergradient (a
meta-iteration of the main job) and of that hypergradient in a process whose XLA pool has just run,
each beside competing busy processes, in the same run, under the threading settings of the process
(docs/engine.md, "Threads").
"""

import importlib.util
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np


def _start_competitors(k):
    """k busy processes, started fresh (not forked: JAX's threads make fork unsafe)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def _buffer_work(n=10_000, steps=2000):
    """ns per weight-step of x <- x * 9/10 with the remainder pushed, over ``n`` lanes."""
    from ..exact.buffer import InfoBuffer
    from ..exact.rational_ops import multiply

    buf = InfoBuffer(n)
    buf.reserve(steps // 100 + 8)
    x = np.random.default_rng(0).integers(-2 ** 50, 2 ** 50, n)
    multiply(x, Fraction(9, 10), buf)
    t0 = time.perf_counter()
    for _ in range(steps):
        multiply(x, Fraction(9, 10), buf)
    return 1e9 * (time.perf_counter() - t0) / (n * steps)


def _training_work(steps=20):
    """ms per reversible training step of the paper MLP."""
    from .bench_training import PaperProblem

    prob = PaperProblem(steps)
    prob.forward_reversible()
    t0 = time.perf_counter()
    prob.forward_reversible()
    return 1e3 * (time.perf_counter() - t0) / steps


_PROBLEMS = {}


def _paper_problem(steps):
    """One PaperProblem per T, built on first use and shared by the hypergradient workloads."""
    from .bench_training import PaperProblem

    if steps not in _PROBLEMS:
        _PROBLEMS[steps] = PaperProblem(steps)
    return _PROBLEMS[steps]


def _hypergradient_work(steps=50):
    """Seconds for one hypergradient by exact reversal (paper MLP): one meta-iteration of the main job."""
    prob = _paper_problem(steps)
    t0 = time.perf_counter()
    prob.hypergradient()
    return time.perf_counter() - t0


def _after_jax_work(steps=50):
    """The same hypergradient in a process whose XLA thread pool has just run (JAX's hypergradient)."""
    from .peers_jax import jax_hypergradient

    prob = _paper_problem(steps)
    jax_hypergradient(prob, "store")
    t0 = time.perf_counter()
    prob.hypergradient()
    return time.perf_counter() - t0


def workloads():
    """name -> function returning one timing; the JAX-mixed one only where JAX is installed."""
    out = {"buffer, ns per weight-step (10^4 lanes: build chosen by load)": _buffer_work,
           "buffer, ns per weight-step (10^5 lanes: build chosen by load)": lambda: _buffer_work(100_000, 300),
           "reversible training, ms per step (paper MLP)": _training_work,
           "hypergradient T = 50 (one meta-iteration of the main job), s": _hypergradient_work}
    if importlib.util.find_spec("jax") is not None:
        out["the same hypergradient right after JAX's in this process, s"] = _after_jax_work
    return out


def busy_report(out=print, competitors=1, tasks=None):
    """Time each workload quiet, then with ``competitors`` busy processes; print and return the ratios.

    tasks: name -> workload (default ``workloads()``). Returns name -> (quiet, busy), the best of 3 each.
    """
    from ..kernels.threads import settings

    figures = {}
    tasks = workloads() if tasks is None else tasks
    for i, (name, work) in enumerate(tasks.items()):
        work()  # compile and warm up
        if i == 0:
            out(f"Busy machine: {competitors} competing busy process(es); threads: " +
                ", ".join(f"{k} {v}" for k, v in settings().items()))
        quiet = min(work() for _ in range(3))
        procs = _start_competitors(competitors)
        try:
            time.sleep(0.2)
            busy = min(work() for _ in range(3))
        finally:
            for p in procs:
                p.kill()
                p.wait()
        figures[name] = (quiet, busy)
        out(f"  {name}: quiet {quiet:.3g}, busy {busy:.3g}, slowdown {busy / quiet:.2f}x (target <= 3x)")
    return figures
