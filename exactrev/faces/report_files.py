"""Files a hyperparameter optimisation writes: a JSON of everything learned and PNG plots."""

import json
import os

import numpy as np

from ..hyper.meta import sigmoid


def result_to_json(result) -> dict:
    """Plain-JSON view of a HyperoptResult: learned values in natural units, curves and figures."""
    meta = result.meta
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in result.config.items()},
        "network": {"sizes": list(result.net_sizes), "weight_types": result.type_names},
        "learned": {
            "learning_rate": {name: np.exp(meta.log_lr[:, k]).tolist()
                              for k, name in enumerate(result.type_names)},
            **_optimizer_values(meta, result.type_names),
            "init_scale": dict(zip(result.type_names, np.exp(meta.log_init_scale).tolist())),
            "l2_per_layer": (None if result.log_l2_per_layer is None
                             else np.exp(result.log_l2_per_layer).tolist()),
        },
        "cost": {"method": result.config.get("method"), **cost_summary(result.curve)},
        "meta_curve": result.curve,
        "final": {"learned": result.learned, **({} if result.baseline is None else {
            "best_constant": result.baseline["best"],
            "best_random_search": result.baseline["random_search"]["best"]})},
        **({} if result.baseline is None else {"constant_grid": result.baseline["grid"],
                                               "random_search": result.baseline["random_search"]["trials"]}),
        "seconds": result.seconds,
    }


def _optimizer_values(meta, type_names):
    """Momentum per step and type (SGD), or b1, b2, eps per step and weight decay per type (Adam)."""
    if hasattr(meta, "logit_momentum"):
        return {"momentum": {name: sigmoid(meta.logit_momentum[:, k]).tolist()
                             for k, name in enumerate(type_names)}}
    return {"b1": sigmoid(meta.logit_b1).tolist(), "b2": sigmoid(meta.logit_b2).tolist(),
            "eps": np.exp(meta.log_eps).tolist(),
            "weight_decay": {name: np.exp(meta.log_weight_decay[:, k]).tolist()
                             for k, name in enumerate(type_names)}}


def timestamp() -> str:
    """Local time to the second, with its UTC offset (ISO 8601)."""
    import datetime

    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run_record(args, data, argv) -> dict:
    """What reproduces a command-line run: the command (``argv``: its arguments after ``exactrev``),
    every flag, the data and the versions."""
    import platform

    import numba

    from .. import __version__

    flags = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}
    return {"command": " ".join(["exactrev", *map(str, argv)]), "flags": flags,
            "data": {"name": data.name, "train": len(data.train), "valid": len(data.valid),
                     "test": len(data.test), "features": data.n_features, "classes": data.n_classes},
            "versions": {"exactrev": __version__, "numpy": np.__version__, "numba": numba.__version__,
                         "python": platform.python_version()},
            "threads": numba.get_num_threads(),
            "started": timestamp()}


def cost_summary(curve) -> dict:
    """Memory kept and forward steps per hypergradient, from the meta-iteration records."""
    done = [c for c in curve if "valid_loss" in c]
    if not done:
        return {}
    return {"kept_bytes_per_hypergradient": max(c.get("kept_bytes", 0) for c in done),
            "forward_steps_per_hypergradient": done[-1].get("forward_steps"),
            "seconds_per_meta_iteration": float(np.mean([c["seconds"] for c in done]))}


def write_outputs(result, folder, run=None) -> list:
    """Write hyperparameters.json, schedules.png and meta_curve.png into ``folder``; return the paths.

    run: what reproduces the run (``run_record``), stored under "run" in the JSON."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "hyperparameters.json")]
    record = result_to_json(result)
    if run is not None:
        record = {"run": run, **record}
    with open(paths[0], "w") as fh:
        json.dump(record, fh, indent=1)
    paths.append(plot_schedules(result, os.path.join(folder, "schedules.png")))
    paths.append(plot_meta_curve(result, os.path.join(folder, "meta_curve.png")))
    return paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=110):
    """Write ``fig`` to ``path`` and free it; returns the path."""
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


def smoothed(y, window):
    """Centred moving average of ``y`` over ``window`` steps, edges padded with the end values."""
    window = max(1, min(int(window), len(y)))
    padded = np.pad(np.asarray(y, np.float64), (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def _schedule_panel(ax, series, start, best, ylabel, log=False):
    """Raw lines faint, smoothed lines bold, the start (dotted) and the grid's best constant (dashed)."""
    window = max(1, len(next(iter(series.values()))) // 10)
    for (name, y), colour in zip(series.items(), ("C0", "C1", "C2")):
        ax.plot(y, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(smoothed(y, window), color=colour, linewidth=2, label=name)
    if start is not None:
        ax.axhline(start, color="black", linestyle=":", linewidth=1, label="start")
    if best is not None:
        ax.axhline(best, color="grey", linestyle="--", linewidth=1, label="best constant (grid)")
    ax.set(ylabel=ylabel, yscale="log" if log else "linear")


def plot_schedules(result, path):
    """The learned schedules, one column per layer: learning rate (top) and momentum or weight decay
    (bottom) of its weights W and biases b against the training step, raw (faint) and smoothed over
    T/10 steps, with the starting value and the grid's best constant; the last column holds the init
    scales and, for Adam, b1 and b2."""
    plt = _pyplot()
    meta, cfg, names = result.meta, result.config, result.type_names
    best = result.baseline["best"] if result.baseline is not None else {"lr": None, "momentum": None}
    sgd = hasattr(meta, "logit_momentum")
    wd = cfg.get("optimizer") == "adamw"
    layers = len(names) // 2
    fig, axes = plt.subplots(2, layers + 1, figsize=(3.3 * (layers + 1), 6), constrained_layout=True,
                             squeeze=False)
    for layer in range(layers):
        cols = {"W": 2 * layer, "b": 2 * layer + 1}
        top, bottom = axes[0, layer], axes[1, layer]
        _schedule_panel(top, {k: np.exp(meta.log_lr[:, c]) for k, c in cols.items()}, cfg.get("init_lr"),
                        best["lr"], "learning rate", log=True)
        top.set_title(f"layer {layer + 1}")
        if sgd:
            _schedule_panel(bottom, {k: sigmoid(meta.logit_momentum[:, c]) for k, c in cols.items()},
                            cfg.get("init_momentum"), best["momentum"], "momentum")
        elif wd:
            _schedule_panel(bottom, {k: np.exp(meta.log_weight_decay[:, c]) for k, c in cols.items()},
                            cfg.get("init_weight_decay"), None, "weight decay", log=True)
        else:
            bottom.axis("off")
        bottom.set_xlabel("training step")
    axes[0, 0].legend(fontsize=7)
    scales = axes[0, layers]
    x = np.arange(len(names))
    scales.bar(x, np.exp(meta.log_init_scale), color=["C0" if n.startswith("W") else "C1" for n in names])
    if cfg.get("init_scale") is not None:
        scales.axhline(cfg["init_scale"], color="black", linestyle=":", linewidth=1, label="start")
    scales.set(xticks=x, yscale="log", title="init scale per weight type")
    scales.set_xticklabels(names, fontsize=7)
    scales.legend(fontsize=7)
    extra = axes[1, layers]
    if sgd:
        extra.axis("off")
    else:
        _schedule_panel(extra, {"b1": sigmoid(meta.logit_b1), "b2": sigmoid(meta.logit_b2)},
                        None, best["momentum"], "Adam decay rates")
        extra.set(xlabel="training step", title="Adam b1, b2")
        extra.legend(fontsize=7)
    fig.suptitle(f"learned schedules ({cfg.get('optimizer', 'sgd')}, T = {meta.log_lr.shape[0]})")
    return save_figure(fig, path, dpi=100)


def plot_meta_curve(result, path):
    """Validation loss per meta-iteration, with the best constant schedule's for reference."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot([c["valid_loss"] for c in result.curve if "valid_loss" in c], marker=".",
            label="learned (validation loss at w_T)")
    if result.baseline is not None:
        best, rand = result.baseline["best"], result.baseline["random_search"]["best"]
        ax.axhline(best["valid_loss"], color="grey", linestyle=":",
                   label=f"best of the grid: lr={best['lr']:.3g}, momentum={best['momentum']}")
        ax.axhline(rand["valid_loss"], color="tab:orange", linestyle="--",
                   label=f"best of random search: lr={rand['lr']:.3g}, momentum={rand['momentum']}")
    ax.set(xlabel="meta-iteration", ylabel="validation loss", title="meta-optimisation")
    ax.legend()
    return save_figure(fig, path)
