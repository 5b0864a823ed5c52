"""Files a hyperparameter optimisation writes: a JSON of everything learned and PNG plots."""

import json
import os

import numpy as np

from ..hyper.hypergrad import sigmoid


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
        "final": {"learned": result.learned, "best_constant": result.baseline["best"],
                  "best_random_search": result.baseline["random_search"]["best"]},
        "constant_grid": result.baseline["grid"],
        "random_search": result.baseline["random_search"]["trials"],
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


def run_record(args, data, argv) -> dict:
    """What reproduces a command-line run: the command, every flag, the data and the versions."""
    import datetime
    import platform

    import numba

    from .. import __version__

    flags = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}
    return {"command": " ".join(["exactrev", *argv[1:]]) if argv else "exactrev", "flags": flags,
            "data": {"name": data.name, "train": len(data.train), "valid": len(data.valid),
                     "test": len(data.test), "features": data.n_features, "classes": data.n_classes},
            "versions": {"exactrev": __version__, "numpy": np.__version__, "numba": numba.__version__,
                         "python": platform.python_version()},
            "threads": numba.get_num_threads(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


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


def plot_schedules(result, path):
    """Learned learning rate and momentum against step, one line per weight type (W solid, b dashed)."""
    plt = _pyplot()
    meta = result.meta
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(result.type_names) // 2))
    sgd = hasattr(meta, "logit_momentum")
    for k, name in enumerate(result.type_names):
        style = dict(color=colors[k // 2], linestyle="-" if name.startswith("W") else "--", label=name)
        axes[0].plot(np.exp(meta.log_lr[:, k]), **style)
        if sgd:
            axes[1].plot(sigmoid(meta.logit_momentum[:, k]), **style)
    if not sgd:
        axes[1].plot(sigmoid(meta.logit_b1), label="b1")
        axes[1].plot(sigmoid(meta.logit_b2), label="b2")
    axes[0].set(title="learned learning-rate schedule", xlabel="training step", ylabel="learning rate",
                yscale="log")
    axes[1].set(title="learned momentum schedule" if sgd else "learned Adam b1, b2",
                xlabel="training step", ylabel="momentum" if sgd else "decay rate")
    axes[1].legend(ncol=2, fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_meta_curve(result, path):
    """Validation loss per meta-iteration, with the best constant schedule's for reference."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot([c["valid_loss"] for c in result.curve if "valid_loss" in c], marker=".",
            label="learned (validation loss at w_T)")
    best, rand = result.baseline["best"], result.baseline["random_search"]["best"]
    ax.axhline(best["valid_loss"], color="grey", linestyle=":",
               label=f"best of the grid: lr={best['lr']:.3g}, momentum={best['momentum']}")
    ax.axhline(rand["valid_loss"], color="tab:orange", linestyle="--",
               label=f"best of random search: lr={rand['lr']:.3g}, momentum={rand['momentum']}")
    ax.set(xlabel="meta-iteration", ylabel="validation loss", title="meta-optimisation")
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
