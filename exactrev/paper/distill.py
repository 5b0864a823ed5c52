"""Learning the training set (the paper's section 3.2, "dataset distillation"): 10 synthetic images,
one per class, meta-learned so that a network trained on them alone does well on real validation data.

The images are the training loss's meta-parameter ``train_X`` (``MLPTrainingLoss(meta=("train_X",))``):
every step trains on all 10 (in a per-step order), and the exact hypergradient of the validation loss
with respect to every pixel moves them (``meta_train``). Pixels are free real numbers, not clipped to
[0, 1]. The baseline of the same budget trains on 10 real training images, one per class, drawn at
random ``meta_iters`` times; the draw with the lowest validation loss is kept.
"""

import time
from dataclasses import dataclass

import numpy as np

from ..hyper.api import hypergradient, train
from ..hyper.data import Dataset, Split
from ..hyper.losses import MLPTrainingLoss, MLPValidationLoss
from ..model.mlp import MLP
from .job import config_dict, constant_schedules, figures, run_meta, valid_losses


@dataclass
class DistillConfig:
    hidden: tuple = (50,)        # hidden widths of the tanh MLP trained on the images
    steps: int = 100             # training steps on the 10 images
    lr: float = 0.3
    momentum: float = 0.9
    init_scale: float = 0.1
    meta_iters: int = 200        # meta-steps on the images; also the baseline's number of draws
    meta_lr: float = 0.02        # Adam's step on the pixels (pixels of real images lie in [0, 1])
    other_inits: int = 5         # fresh initial weights to test the images with
    seed: int = 0


class DistillProblem:
    """The network, its initial noise and schedules, and the synthetic images it trains on."""

    def __init__(self, data: Dataset, cfg: DistillConfig):
        self.data, self.cfg = data, cfg
        self.net = MLP((data.n_features, *cfg.hidden, data.n_classes))
        self.types = self.net.weight_types()
        self.noise = self.net.init_noise(np.random.default_rng(cfg.seed))
        self.meta = constant_schedules(self.net, cfg.steps, cfg.lr, cfg.momentum, cfg.init_scale)
        k = data.n_classes
        self.images = Split(np.zeros((k, data.n_features)), np.arange(k, dtype=np.int64))
        self.valid = MLPValidationLoss(self.net, data.valid)

    def train_loss(self, images):
        return MLPTrainingLoss(self.net, images, len(images), self.cfg.seed, meta=("train_X",))

    def hypergradient(self, method="reversal"):
        return hypergradient(self.meta, self.train_loss(self.images), self.valid, self.noise, self.types,
                             method=method)

    def trained(self, images, noise=None):
        """Final weights after training on ``images`` (a Split) from ``noise`` (default the job's)."""
        noise = self.noise if noise is None else noise
        return train(self.meta, self.train_loss(images).grad, noise, self.types)

    def evaluate(self, images):
        """Validation and test figures of a network trained on ``images`` from the job's initial
        weights, and the mean test error over ``other_inits`` fresh initial weights."""
        w = self.trained(images)
        out = {**figures(self.net, w, self.data.valid, "valid"), **figures(self.net, w, self.data.test, "test")}
        rng = np.random.default_rng([self.cfg.seed, 1])
        errors = [figures(self.net, self.trained(images, self.net.init_noise(rng)), self.data.test, "t")["t_error"]
                  for _ in range(self.cfg.other_inits)]
        out["test_error_other_inits"] = float(np.mean(errors)) if errors else None
        return out


def random_real_images(data: Dataset, rng):
    """One training image per class, drawn at random: a Split of n_classes rows, row k of class k."""
    rows = [rng.choice(np.flatnonzero(data.train.y == k)) for k in range(data.n_classes)]
    return Split(data.train.X[rows].copy(), np.arange(data.n_classes, dtype=np.int64)), rows


def run_distill(data: Dataset, cfg: DistillConfig = DistillConfig(), progress=True, log=print) -> dict:
    """Meta-learn the images, evaluate them, and run the baseline; returns a JSON-ready dict."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    prob = DistillProblem(data, cfg)
    trainer, curve = run_meta(lambda m: prob.hypergradient(), {"train_X": prob.images.X}, cfg, progress)
    losses = valid_losses(curve)
    log(f"validation loss of a network trained on the 10 images: {losses[0]:.4f} -> {losses[-1]:.4f}")
    learned = prob.evaluate(prob.images)
    rng = np.random.default_rng([cfg.seed, 2])
    draws = []
    for _ in tqdm(range(cfg.meta_iters), desc="random real images", disable=not progress):
        images, rows = random_real_images(data, rng)
        w = prob.trained(images)
        draws.append((float(prob.net.loss(w, data.valid.X, data.valid.y)), rows, images))
    best_loss, best_rows, best_images = min(draws, key=lambda d: d[0])
    baseline = {"rows": [int(r) for r in best_rows], "draws": len(draws), **prob.evaluate(best_images)}
    for name, r in (("learned images", learned), ("best of the random real images", baseline)):
        log(f"{name}: test loss {r['test_loss']:.4f}, test error {100 * r['test_error']:.2f}% "
            f"(over {cfg.other_inits} other initial weights: {100 * r['test_error_other_inits']:.2f}%)")
    return {"job": "distill", "config": config_dict(cfg), "net_sizes": list(prob.net.sizes), "curve": curve,
            "learned": learned, "baseline": baseline, "images": prob.images.X.tolist(),
            "baseline_images": best_images.X.tolist(), "seconds": time.perf_counter() - start}
