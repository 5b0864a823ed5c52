"""exactrev against its peer, in one process: JAX's reverse mode through the unrolled run.

For each T, one hypergradient of the paper problem (``bench_training.PaperProblem``) by exact reversal,
then the same hypergradient by JAX in each memory mode of ``peers_jax`` (store all, checkpoint every
step, sqrt(T) segments), JAX's timed after a compiling call: below ``REPEAT_BELOW`` steps the fastest
of ``repeat`` runs (exactrev's after a first run too), from there one run (a shared machine's spells
move single runs by 10-30%). Printed per row: seconds, the ratio to
exactrev's time, the memory the algorithm keeps (exactrev: the buffer and its O(N) heads and counts;
JAX: the temporary bytes XLA's compiled program allocates) and the agreement of the hypergradients.
A JAX mode whose memory, extrapolated from the smaller T already run, would not fit in ``memory_limit``
is skipped with a line that gives the estimate.
"""

import os

from .bench_buffer import best_time
from .bench_training import PaperProblem


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 << 30


def _estimate(measured, steps, mode):
    """Bytes of ``mode`` at ``steps`` from the largest smaller T measured: linear in T for store and
    checkpoint, sqrt(T) for segments; None before any measurement."""
    smaller = [(t, b) for (t, m), b in measured.items() if m == mode and b and t < steps]
    if not smaller:
        return None
    t, b = max(smaller)
    return b * ((steps / t) ** 0.5 if mode == "segments" else steps / t)


REPEAT_BELOW = 10000


def _fastest(run, repeat, warm=True):
    """(seconds of the fastest of ``repeat`` calls of ``run``, after a first one if ``warm``; the last
    result)."""
    results = [run()] if warm else []
    return best_time(lambda: results.append(run()), repeat), results[-1]


def peers_report(steps=(100, 1000, 10000), hidden=(50, 50, 50), out=print, memory_limit=None, repeat=3):
    """Print and return rows {T, method, seconds, ratio, bytes, agreement, ran} for every T."""
    from .peers_jax import MODES, jax_hypergradient, max_relative_difference

    limit = memory_limit if memory_limit is not None else _physical_memory() // 2
    PaperProblem(2, hidden).hypergradient()  # load (or compile) exactrev's kernels before timing
    measured, rows = {}, []
    out("One hypergradient of the paper MLP (same batches, schedules and float64 arithmetic), the fastest "
        f"of {repeat} runs after a first one below T = {REPEAT_BELOW}, one run from there (JAX's after "
        "its compiling run); "
        "memory: what the algorithm keeps (exactrev: buffer + heads + counts; JAX: XLA temporary bytes)")
    out(f"{'T':>6} | {'method':<22} | {'seconds':>8} | {'vs exactrev':>11} | {'bytes kept':>14} | agreement")
    for T in steps:
        prob = PaperProblem(T, hidden)
        runs = repeat if T < REPEAT_BELOW else 1
        ours_s, ours = _fastest(prob.hypergradient, runs, warm=runs > 1)
        row = dict(T=T, method="exactrev reversal", seconds=ours_s, ratio=1.0, bytes=ours.extra_bytes,
                   agreement=None, ran=True)
        rows.append(row)
        out(f"{T:>6} | {row['method']:<22} | {ours_s:>8.2f} | {'1.00x':>11} | {ours.extra_bytes:>14,} |")
        for mode in MODES:
            name = f"JAX {mode}"
            guess = _estimate(measured, T, mode)
            if guess is not None and guess > limit:
                rows.append(dict(T=T, method=name, seconds=None, ratio=None, bytes=int(guess), agreement=None,
                                 ran=False))
                out(f"{T:>6} | {name:<22} | {'skipped':>8} | {'':>11} | {int(guess):>14,} | needs about "
                    f"{guess / 2 ** 30:.1f} GiB (extrapolated), over the {limit / 2 ** 30:.1f} GiB limit")
                continue
            seconds, _, grads, temp = jax_hypergradient(prob, mode, repeat=runs)
            measured[(T, mode)] = temp
            agree = max_relative_difference(ours.grads, grads)
            rows.append(dict(T=T, method=name, seconds=seconds, ratio=seconds / ours_s, bytes=temp,
                             agreement=agree, ran=True))
            shown = f"{temp:,}" if temp is not None else "n/a"
            out(f"{T:>6} | {name:<22} | {seconds:>8.2f} | {seconds / ours_s:>10.2f}x | {shown:>14} | "
                f"{agree:.1e}")
    return rows
