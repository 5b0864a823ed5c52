"""``exactrev distill``, ``exactrev regularize`` and ``exactrev sharing``: the paper's other experiments
(``exactrev/paper``) from the command line, each writing ``<job>.json`` and its pictures into --out."""

import json
import os

import numpy as np

from .report_files import _pyplot, save_figure

JOBS = {
    "distill": ("learn 10 synthetic training images, one per class",
                "Meta-learn a tiny training set, one 8x8 image per class, so that a network trained on "
                "only those images does well on the real validation digits (exact hypergradients with "
                "respect to every pixel). Baseline of the same budget: the best of --meta-iters random "
                "draws of one real training image per class. Writes distill.json, distill_images.png "
                "and distill_meta_curve.png into --out."),
    "regularize": ("learn one L2 penalty per weight of a logistic regression",
                   "Meta-learn one L2 penalty per weight (64 x 10 + 10) of a logistic regression on the "
                   "digits. Baseline of the same budget: the best single penalty of a grid of "
                   "--meta-iters values. Writes regularize.json, regularize_penalties.png (one 8x8 map "
                   "per class) and regularize_meta_curve.png into --out."),
    "sharing": ("learn how strongly related tasks share weights",
                "Train one MLP per task (the digits through a transform each: original, mirrored, "
                "rotated ...) under a penalty coupling the tasks' weights layer by layer, and meta-learn "
                "the coupling strengths. Baselines of the same budget: the tasks trained separately, "
                "and one network shared by all, each with the best L2 of a grid. Writes sharing.json, "
                "sharing_coupling.png and sharing_meta_curve.png into --out."),
}


def add_parsers(sub, formatter, positive_int, nonneg_int, positive_float, widths):
    """Add the three jobs' subcommands to ``sub``; returns {name: parser}."""
    from ..paper.distill import DistillConfig
    from ..paper.regularize import RegularizeConfig
    from ..paper.sharing import TRANSFORMS, SharingConfig

    defaults = {"distill": DistillConfig(), "regularize": RegularizeConfig(), "sharing": SharingConfig()}
    parsers = {}
    for name, (short, long) in JOBS.items():
        cfg = defaults[name]
        p = sub.add_parser(name, help=short, description=long, formatter_class=formatter)
        p.add_argument("--meta-iters", type=positive_int, default=cfg.meta_iters,
                       help="meta-iterations (the baseline gets as many training runs)")
        p.add_argument("--meta-lr", type=positive_float, default=cfg.meta_lr, help="Adam's meta step")
        p.add_argument("--steps", type=positive_int, default=cfg.steps, help="training steps T")
        p.add_argument("--lr", type=positive_float, default=cfg.lr, help="learning rate of every step")
        p.add_argument("--seed", type=nonneg_int, default=cfg.seed, help="random seed (split, init, batches)")
        p.add_argument("--out", default="exactrev-out", help="output folder (the job's files are replaced)")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        parsers[name] = p
    parsers["distill"].add_argument("--hidden", type=widths, default=defaults["distill"].hidden,
                                    help="hidden widths of the network trained on the images")
    parsers["regularize"].add_argument("--n-train", type=positive_int, default=100,
                                       help="training examples (few, so that the penalty matters)")
    parsers["sharing"].add_argument("--tasks", type=lambda s: tuple(s.split(",")), default=SharingConfig().tasks,
                                    help=f"comma-separated transforms, one task each, of {sorted(TRANSFORMS)}")
    parsers["sharing"].add_argument("--per-task", type=positive_int, default=SharingConfig().per_task,
                                    help="training images per task (disjoint slices)")
    return parsers


def run_job(name, args, parser):
    """Run job ``name`` with the parsed ``args``; write its JSON and pictures; returns 0."""
    from ..hyper.data import load_digits

    progress = not args.no_progress
    common = dict(meta_iters=args.meta_iters, meta_lr=args.meta_lr, steps=args.steps, lr=args.lr, seed=args.seed)
    try:
        if name == "distill":
            from ..paper.distill import DistillConfig, run_distill

            cfg = DistillConfig(hidden=args.hidden, **common)
            result = run_distill(load_digits(seed=args.seed), cfg, progress)
        elif name == "regularize":
            from ..paper.regularize import RegularizeConfig, run_regularize

            data = load_digits(args.n_train, 300, seed=args.seed)
            result = run_regularize(data, RegularizeConfig(**common), progress)
        else:
            from ..paper.sharing import SharingConfig, run_sharing

            cfg = SharingConfig(tasks=args.tasks, per_task=args.per_task, batch=min(50, args.per_task), **common)
            result = run_sharing(load_digits(seed=args.seed), cfg, progress)
    except ValueError as exc:
        parser.error(str(exc))
    os.makedirs(args.out, exist_ok=True)
    paths = write_job(result, args.out)
    print("wrote " + ", ".join(paths))
    return 0


def write_job(result, folder):
    """``<job>.json`` and the job's pictures in ``folder``; returns their paths."""
    name = result["job"]
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1, default=float)
    paths = [path, plot_job_curve(result, os.path.join(folder, f"{name}_meta_curve.png"))]
    picture = {"distill": ("images", plot_images), "regularize": ("penalties", plot_penalties),
               "sharing": ("coupling", plot_coupling)}[name]
    paths.append(picture[1](result, os.path.join(folder, f"{name}_{picture[0]}.png")))
    return paths


def _baseline_line(result):
    if result["job"] == "distill":
        return result["baseline"]["valid_loss"], "best of the random real images"
    if result["job"] == "regularize":
        return result["baseline"]["valid_loss"], f"best single penalty ({result['baseline']['l2']:.3g})"
    return result["baselines"]["separate"]["valid_loss"], "tasks trained separately (best L2)"


def plot_job_curve(result, path):
    """Validation loss per meta-iteration against the baseline's."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot([r["valid_loss"] for r in result["curve"] if "valid_loss" in r], marker=".", label="meta-learned")
    value, label = _baseline_line(result)
    ax.axhline(value, color="grey", linestyle="--", label=label)
    if result["job"] == "sharing":
        ax.axhline(result["baselines"]["tied"]["valid_loss"], color="tab:orange", linestyle=":",
                   label="one network for all tasks (best L2)")
    ax.set(xlabel="meta-iteration", ylabel="validation loss", title=f"exactrev {result['job']}")
    ax.legend()
    return save_figure(fig, path)


def plot_images(result, path):
    """The learned images (top row) and the best draw of real ones (bottom row), one per class."""
    plt = _pyplot()
    learned, real = np.array(result["images"]), np.array(result["baseline_images"])
    k, F = learned.shape
    side = int(round(np.sqrt(F)))
    fig, axes = plt.subplots(2, k, figsize=(1.1 * k, 2.6), constrained_layout=True)
    for row, images, title in ((0, learned, "learned"), (1, real, "real")):
        for c in range(k):
            ax = axes[row, c]
            ax.imshow(images[c].reshape(side, side), cmap="gray_r")
            ax.set(xticks=[], yticks=[])
            if row == 0:
                ax.set_title(str(c))
        axes[row, 0].set_ylabel(title)
    lt, rt = result["learned"]["test_error"], result["baseline"]["test_error"]
    fig.suptitle(f"10 training images: test error {100 * lt:.1f}% learned, {100 * rt:.1f}% real")
    return save_figure(fig, path)


def plot_penalties(result, path):
    """exp(log_l2) of the weights into each class, as 8x8 maps on one log colour scale."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    maps = np.array(result["penalty_maps"])
    fig, axes = plt.subplots(2, 5, figsize=(9, 4), constrained_layout=True)
    norm = LogNorm(vmin=maps.min(), vmax=maps.max())
    for c, ax in enumerate(axes.flat):
        im = ax.imshow(maps[c], cmap="viridis", norm=norm)
        ax.set(xticks=[], yticks=[], title=f"class {c}")
    fig.colorbar(im, ax=axes, shrink=0.8, label="L2 penalty of the weight")
    fig.suptitle(f"learned penalty per weight (start {result['config']['init_l2']:g}; best single "
                 f"{result['baseline']['l2']:.3g})")
    return save_figure(fig, path)


def plot_coupling(result, path):
    """The learned coupling strengths per layer (K x K, own L2 on the diagonal) and the per-task test
    losses of the learned coupling and the two baselines."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    coupling, own = np.array(result["coupling"]), np.array(result["own_l2"])
    tasks = result["config"]["tasks"]
    L, K, _ = coupling.shape
    fig, axes = plt.subplots(1, L + 1, figsize=(3.6 * (L + 1), 3.4), constrained_layout=True)
    shown = coupling + np.einsum("lk,kj->lkj", own, np.eye(K))
    norm = LogNorm(vmin=max(shown[shown > 0].min(), 1e-8), vmax=shown.max())
    for l in range(L):
        im = axes[l].imshow(np.where(shown[l] > 0, shown[l], np.nan), cmap="magma", norm=norm)
        axes[l].set(xticks=range(K), yticks=range(K), title=f"{result['layers'][l]}: coupling")
        axes[l].set_xticklabels(tasks, rotation=45, fontsize=8)
        axes[l].set_yticklabels(tasks, fontsize=8)
    fig.colorbar(im, ax=axes[:L], shrink=0.8, label="strength (diagonal: own L2)")
    ax = axes[L]
    x = np.arange(K)
    for i, (label, r) in enumerate((("learned", result["learned"]), ("separate", result["baselines"]["separate"]),
                                    ("one network", result["baselines"]["tied"]))):
        ax.bar(x + (i - 1) * 0.27, r["test_loss_per_task"], 0.27, label=label)
    ax.set(xticks=x, ylabel="test loss", title="per-task test loss")
    ax.set_xticklabels(tasks, rotation=45, fontsize=8)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
