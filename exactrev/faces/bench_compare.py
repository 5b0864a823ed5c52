"""Reversal against storing everything and against Revolve checkpointing, measured in one run.

For each T, on the same problem and hyperparameters, every method computes the same hypergradients.
The table gives, per method:
- kept bytes: what the method holds beyond the current (w, v). For reversal, the buffer's words,
  heads and counts. For store, every (w_t, v_t). For checkpoint, at peak, its snapshots plus the
  adjoint's working pair. These are the arrays' sizes, measured from the objects.
- theory: N T log2(d/n) / 8 + 16 N for reversal, 16 N (T + 1) for store, 16 N (c + 1) for checkpoint.
- gradient and Hessian-vector evaluations, wall time, and the ratios against reversal.

Checkpoint runs at four budgets: the bytes of reversal's entropy bound (c = floor(T log2(d/n) / 128)),
the bytes reversal measurably kept (the most snapshots whose peak fits), c = 1, and c = ceil(sqrt(T)). A configuration whose schedule would take longer than ``time_limit``
seconds (from the measured seconds per forward step) is not run. Its row shows the schedule's step
count and an estimated time, marked '~'.
"""

import math
import time

import numpy as np

from ..hyper.checkpointing import revolve_forward_steps
from .bench_training import PaperProblem

PAPER_HIDDEN = (50, 50, 50)
SMALL_HIDDEN = (16,)


def _run(prob, method, **kwargs):
    t0 = time.perf_counter()
    res = prob.hypergradient(method, **kwargs)
    return res, time.perf_counter() - t0


def compare(steps, hidden, time_limit=300.0, out=print):
    """Rows of the comparison at one T; see the module docstring."""
    prob = PaperProblem(steps, hidden)
    for method in ("reversal", "checkpoint"):  # load (or compile) every kernel before timing
        PaperProblem(2, hidden).hypergradient(method)
    n = prob.net.n_params
    pair = 16 * n
    bits = float(prob.meta.schedule().bits_per_step().mean())
    rows = []

    rev, rev_s = _run(prob, "reversal")
    rows.append(dict(method="reversal", c="", kept=rev.extra_bytes,
                     theory=int(n * steps * bits / 8 + 12 * n), fwd=rev.stats["forward_steps"],
                     sched=steps, grads=rev.grad_evals, hvps=rev.hvp_evals, seconds=rev_s, ran=True,
                     result=rev))
    per_fwd = rev_s / (3.4 * steps)  # a forward step costs about 1/3.4 of a gradient+HVP step here

    est_store = 2 * steps * per_fwd * 1.7
    if (steps + 1) * pair < 4e9 and est_store < time_limit:
        st, st_s = _run(prob, "store")
        rows.append(dict(method="store", c="", kept=st.extra_bytes, theory=(steps + 1) * pair,
                         fwd=st.stats["forward_steps"], sched=steps, grads=st.grad_evals,
                         hvps=st.hvp_evals, seconds=st_s, ran=True, result=st))
    c_same = max(1, rev.extra_bytes // pair - 1)
    c_bound = max(1, int(n * steps * bits / 8) // pair)
    budgets = [("bound bytes", c_bound), ("measured bytes", c_same), ("c = 1", 1),
               ("c = ceil(sqrt T)", math.isqrt(steps - 1) + 1)]
    seen = set()
    for label, c in budgets:
        c = min(c, steps)
        if c in seen:
            continue
        seen.add(c)
        sched = revolve_forward_steps(steps, c) if c > 1 else steps * (steps + 1) // 2
        estimate = sched * per_fwd + steps * per_fwd * 2.4
        row = dict(method="checkpoint", c=f"{c} ({label})", theory=(c + 1) * pair, sched=sched,
                   hvps=steps)
        if estimate <= time_limit:
            cp, cp_s = _run(prob, "checkpoint", snapshots=c)
            row.update(kept=cp.extra_bytes, fwd=cp.stats["forward_steps"], grads=cp.grad_evals,
                       seconds=cp_s, ran=True, result=cp)
        else:
            row.update(kept=None, fwd=None, grads=sched + steps, seconds=estimate, ran=False,
                       result=None)
        rows.append(row)
    return {"steps": steps, "hidden": hidden, "n_params": n, "bits": bits, "rows": rows}


def _agreement(rows):
    """Largest relative difference of any hypergradient from the reversal row's."""
    ref = rows[0]["result"]
    worst = 0.0
    for r in rows[1:]:
        if r["result"] is not None:
            for name in ("log_lr", "logit_momentum", "log_init_scale"):
                scale = np.abs(ref.grads[name]).max()
                worst = max(worst, float(np.abs(r["result"].grads[name] - ref.grads[name]).max() / scale))
    return worst


def print_table(block, out=print):
    rows = block["rows"]
    rev = rows[0]
    net = "paper MLP 64-50-50-50-10" if tuple(block["hidden"]) == PAPER_HIDDEN else \
        f"smaller MLP 64-{'-'.join(map(str, block['hidden']))}-10"
    out(f"T = {block['steps']}, {net} (N = {block['n_params']} weights), g = 0.9: "
        f"{block['bits']:.4f} bits per weight per step")
    out(f"{'method':>10} | {'c':>22} | {'kept bytes':>13} | {'theory bytes':>13} | {'fwd steps':>10} | "
        f"{'schedule':>10} | {'grads':>10} | {'HVPs':>6} | {'seconds':>9} | {'time/rev':>8} | {'mem/rev':>8}")
    for r in rows:
        kept = f"{r['kept']:,}" if r["kept"] is not None else "(not run)"
        fwd = f"{r['fwd']:,}" if r["fwd"] is not None else "-"
        secs = f"{r['seconds']:.2f}" if r["ran"] else f"~{r['seconds']:.0f}"
        mem = r["kept"] if r["kept"] is not None else r["theory"]
        out(f"{r['method']:>10} | {r['c']:>22} | {kept:>13} | {int(r['theory']):>13,} | {fwd:>10} | "
            f"{r['sched']:>10,} | {r['grads']:>10,} | {r['hvps']:>6,} | {secs:>9} | "
            f"{r['seconds'] / rev['seconds']:>7.2f}x | {mem / rev['kept']:>7.1f}x")
    n = block["n_params"]
    bound = n * block["steps"] * block["bits"] / 8
    content = rev["result"].stats["buffer_content_bits"] / 8
    out(f"reversal: buffer content {content:,.0f} bytes (measured from heads and words) against the bound "
        f"N T log2(d/n) / 8 = {bound:,.0f} ({100 * (content / bound - 1):+.3f}%); it keeps "
        f"{rev['kept']:,} bytes, {rev['kept'] - content:,.0f} of them O(N): heads, counts and "
        f"each lane's partly filled top word. The hypergradients of all methods agree to "
        f"{_agreement(rows):.1e} relative")
    out("")


def compare_report(sizes=((100, PAPER_HIDDEN), (1000, PAPER_HIDDEN), (10000, SMALL_HIDDEN)),
                   time_limit=300.0, plot_path="compare.png", out=print):
    """Run every size, print the tables, write the memory-against-time plot; return the blocks."""
    blocks = []
    for steps, hidden in sizes:
        block = compare(steps, hidden, time_limit)
        print_table(block, out)
        blocks.append(block)
    if plot_path:
        plot_memory_time(blocks, plot_path)
        out(f"wrote {plot_path}")
    return blocks


def plot_memory_time(blocks, path):
    """Memory kept against wall time, one marker per method and budget, one panel per T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(1, len(blocks), figsize=(5 * len(blocks), 4.2), constrained_layout=True,
                             squeeze=False)
    markers = {"reversal": "o", "store": "s", "checkpoint": "^"}
    # one colour per method and checkpoint budget rule, the same in every panel
    colours = {"reversal": "C0", "store": "C1", "bound bytes": "C2", "measured bytes": "C3", "c = 1": "C4",
               "c = ceil(sqrt T)": "C5"}
    for ax, block in zip(axes[0], blocks):
        for r in block["rows"]:
            mem = r["kept"] if r["kept"] is not None else r["theory"]
            rule = r["c"].split("(", 1)[1][:-1] if r["c"] else r["method"]
            label = r["method"] + (f" c={r['c'].split()[0]} ({rule})" if r["c"] else "")
            color = colours[rule]
            ax.scatter(r["seconds"], mem, marker=markers[r["method"]], s=60, edgecolors=color,
                       facecolors=color if r["ran"] else "none",
                       label=label + ("" if r["ran"] else " (estimated, not run)"))
        ax.set(xscale="log", yscale="log", xlabel="wall time (s)", ylabel="bytes kept",
               title=f"T = {block['steps']}, N = {block['n_params']}")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    fig.suptitle("hypergradient cost: memory against time (lower left is better)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
