"""What the paper's jobs share: fixed momentum-SGD schedules, the meta loop's curve, the figures of a
trained network on a split."""

from dataclasses import asdict

import numpy as np

from ..hyper.losses import classification_error
from ..hyper.meta import MetaParams
from ..hyper.meta_train import meta_train


def constant_schedules(net, steps, lr, momentum, init_scale):
    """MetaParams with the same learning rate, momentum and init scale for every step and weight type."""
    return MetaParams.constant(steps, net.n_types, lr=lr, momentum=momentum, init_scale=init_scale)


def figures(net, w, split, prefix):
    """{prefix_loss, prefix_error}: mean cross-entropy and error rate of ``net`` at ``w`` on ``split``."""
    return {f"{prefix}_loss": float(net.loss(w, split.X, split.y)),
            f"{prefix}_error": classification_error(net, w, split)}


def run_meta(hypergrad, params, cfg, progress, **options):
    """``meta_train`` for cfg.meta_iters iterations at cfg.meta_lr; returns (trainer, curve of records)."""
    trainer = meta_train(hypergrad, params, cfg.meta_iters, cfg.meta_lr, progress=progress, **options)
    return trainer, [dict(r) for r in trainer.curve]


def config_dict(cfg):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def valid_losses(curve):
    """The validation loss of every meta-iteration that trained (not the ones taken back)."""
    return [r["valid_loss"] for r in curve if "valid_loss" in r]


def best_of(candidates, score):
    """The candidate with the lowest finite score (inf when training failed)."""
    scored = [(score(c), i) for i, c in enumerate(candidates)]
    return candidates[min(scored)[1]], [s for s, _ in scored]


def safe(fn, *args):
    """fn(*args), or inf when training leaves the fixed-point range or fails a check."""
    try:
        value = fn(*args)
    except (ArithmeticError, RuntimeError, ValueError):
        return float("inf")
    return value if np.isfinite(value) else float("inf")
