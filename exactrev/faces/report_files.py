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
        "meta_curve": result.curve,
        "final": {"learned": result.learned, "best_constant": result.baseline["best"]},
        "constant_grid": result.baseline["grid"],
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


def write_outputs(result, folder) -> list:
    """Write hyperparameters.json, schedules.png and meta_curve.png into ``folder``; return the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "hyperparameters.json")]
    with open(paths[0], "w") as fh:
        json.dump(result_to_json(result), fh, indent=1)
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
    best = result.baseline["best"]
    ax.axhline(best["valid_loss"], color="grey", linestyle=":",
               label=f"best constant: lr={best['lr']:.3g}, momentum={best['momentum']}")
    ax.set(xlabel="meta-iteration", ylabel="validation loss", title="meta-optimisation")
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
