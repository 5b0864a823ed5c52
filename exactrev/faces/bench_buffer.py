"""Buffer benchmarks: cost per weight per step against the 2015 big-integer design, and bits used.

Cost "at depth T" is the time of a window of steps taken after T steps' worth of content is already in
the buffer: that is the per-step cost a run of length T pays at its end. Our buffer is filled by really
running T steps; the big-integer baseline is filled with random integers of the same size (T log2(d/n)
bits per lane), since running it for T steps would take O(T**2) time.
"""

import time
from fractions import Fraction

import numpy as np

from ..exact.bigint_buffer import BigIntBuffer
from ..exact.buffer import InfoBuffer
from ..exact.rational_ops import multiply

DEFAULT_G = Fraction(9, 10)


def best_time(fn, repeat):
    """Shortest wall time of ``repeat`` calls of fn(), in seconds."""
    return best_times((fn,), repeat)[0]


def best_times(fns, repeat):
    """Shortest wall time of each of ``fns`` over ``repeat`` rounds that call them in turn, in seconds:
    interleaved, so a burst of load from other processes falls on all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[j] = min(best[j], time.perf_counter() - t0)
    return best


def _ours_window(n_weights, depth, g, window, windows, seed):
    """A function running ``window`` steps of our buffer, after ``depth`` steps of content."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2 ** 50), 2 ** 50, n_weights)
    buf = InfoBuffer(n_weights)
    bits = float(np.log2(g.denominator / g.numerator))
    buf.reserve(int((depth + window * windows) * bits / 16) + 16)
    for _ in range(depth):
        multiply(x, g, buf)

    def run():
        for _ in range(window):
            multiply(x, g, buf)
    return run


def _bigint_window(n_weights, depth, g, window, seed):
    """The same for the 2015 design (Python big integers), filled to ``depth`` steps of content."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2 ** 50), 2 ** 50, n_weights)
    buf = BigIntBuffer(n_weights)
    bits = max(1, int(depth * np.log2(g.denominator / g.numerator)))
    buf.fill_bits(bits, rng)

    def run():
        for _ in range(window):
            buf.multiply(x, g.numerator, g.denominator)
    return run


def ns_per_weight_step(n_weights, depth, g=DEFAULT_G, repeat=25, seed=0, ours_window=50,
                       bigint_window=5):
    """(exactrev, big-int): nanoseconds per weight per x <- g x step at depth ``depth``.

    The two are timed alternately, one window each per round, and each keeps its best window: on a
    shared machine whose speed drifts, both see the same conditions, so their ratio is stable.
    """
    ours = _ours_window(n_weights, depth, g, ours_window, repeat, seed)
    base = _bigint_window(n_weights, depth, g, bigint_window, seed)
    best_ours, best_base = best_times((ours, base), repeat)
    return (best_ours / (ours_window * n_weights) * 1e9,
            best_base / (bigint_window * n_weights) * 1e9)


def ours_ns_per_weight_step(n_weights, depth, g=DEFAULT_G, window=50, repeat=9, seed=0):
    """Nanoseconds per weight per x <- g x step of our buffer, after ``depth`` steps of content."""
    run = _ours_window(n_weights, depth, g, window, repeat, seed)
    return best_time(run, repeat) / (window * n_weights) * 1e9


def bigint_ns_per_weight_step(n_weights, depth, g=DEFAULT_G, window=5, repeat=9, seed=0):
    """The same for the 2015 big-integer design."""
    run = _bigint_window(n_weights, depth, g, window, seed)
    return best_time(run, repeat) / (window * n_weights) * 1e9


def bits_per_weight_step(g, steps, n_weights=1000, seed=0):
    """(measured, bound): buffer content after ``steps`` multiplications by g, per weight per step."""
    g = Fraction(g)
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2 ** 50), 2 ** 50, n_weights)
    buf = InfoBuffer(n_weights)
    buf.reserve(int(steps * np.log2(g.denominator / g.numerator) / 16) + 16)
    for _ in range(steps):
        multiply(x, g, buf)
    return buf.content_bits / (n_weights * steps), float(np.log2(g.denominator / g.numerator))


def buffer_report(n_weights=10_000, depths=(1_000, 10_000), momenta=(0.5, 0.9, 0.99),
                  bits_steps=10_000, out=print):
    """Print the two buffer tables of the engine benchmark; return the figures as a dict."""
    out(f"Buffer cost per weight per step, N = {n_weights}, g = 9/10 (lower is better)")
    out(f"{'T':>7} | {'exactrev ns':>12} | {'big-int ns':>11} | {'speed-up':>8}")
    rows = []
    for depth in depths:
        ours, base = ns_per_weight_step(n_weights, depth)
        rows.append((depth, ours, base))
        out(f"{depth:>7} | {ours:>12.2f} | {base:>11.1f} | {base / ours:>7.1f}x")
    if len(rows) > 1:
        out(f"growth from T={rows[0][0]} to T={rows[-1][0]}: exactrev x{rows[-1][1] / rows[0][1]:.2f}, "
            f"big-int x{rows[-1][2] / rows[0][2]:.2f}")
    out("")
    out(f"Bits per weight per step over T = {bits_steps} (N = 1000)")
    out(f"{'g':>6} | {'n/d':>12} | {'measured':>9} | {'log2(d/n)':>9} | {'excess':>8}")
    bits = []
    for g in momenta:
        frac = Fraction(g).limit_denominator(2 ** 16)
        measured, bound = bits_per_weight_step(frac, bits_steps)
        bits.append((g, measured, bound))
        out(f"{g:>6} | {str(frac):>12} | {measured:>9.5f} | {bound:>9.5f} | "
            f"{100 * (measured / bound - 1):>+7.3f}%")
    return {"cost": rows, "bits": bits}
