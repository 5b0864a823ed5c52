"""One L2 penalty per weight (the paper's section 3.3): logistic regression on the digits with a
penalty 0.5 exp(log_l2[i]) w_i**2 for each of its 64 x 10 weights and 10 biases, meta-learned on the
validation loss by exact hypergradients.

The penalties are the training loss's meta-parameter ``log_l2`` (``MLPTrainingLoss(meta=("log_l2",))``).
Meta-iteration m trains on mini-batches of its own (``meta_iter = m``), so the penalties do not fit one
batch sequence; the final figures use a fresh one. The baseline of the same budget is a grid of
``meta_iters`` single penalties for all weights, log-spaced, the lowest validation loss kept.
"""

import time
from dataclasses import dataclass

import numpy as np

from ..hyper.api import hypergradient, train
from ..hyper.data import Dataset
from ..hyper.losses import MLPTrainingLoss, MLPValidationLoss
from ..model.mlp import MLP
from .job import config_dict, constant_schedules, figures, run_meta, valid_losses


@dataclass
class RegularizeConfig:
    batch: int = 50
    steps: int = 300
    lr: float = 1.0
    momentum: float = 0.9
    init_scale: float = 0.01
    init_l2: float = 1e-3        # the starting penalty of every weight
    meta_iters: int = 100        # meta-steps; also the number of penalties in the baseline grid
    meta_lr: float = 0.2         # Adam's step on the log penalties
    grid: tuple = (1e-6, 10.0)   # the baseline's penalty range
    seed: int = 0


class RegularizeProblem:
    def __init__(self, data: Dataset, cfg: RegularizeConfig):
        self.data, self.cfg = data, cfg
        self.net = MLP((data.n_features, data.n_classes))
        self.types = self.net.weight_types()
        self.noise = self.net.init_noise(np.random.default_rng(cfg.seed))
        self.meta = constant_schedules(self.net, cfg.steps, cfg.lr, cfg.momentum, cfg.init_scale)
        self.log_l2 = np.full(self.net.n_params, np.log(cfg.init_l2))
        self.valid = MLPValidationLoss(self.net, data.valid)

    def train_loss(self, log_l2, meta_iter):
        return MLPTrainingLoss(self.net, self.data.train, self.cfg.batch, self.cfg.seed, meta_iter, log_l2,
                               meta=("log_l2",))

    def hypergradient(self, meta_iter=0, method="reversal"):
        return hypergradient(self.meta, self.train_loss(self.log_l2, meta_iter), self.valid, self.noise,
                             self.types, method=method)

    def trained(self, log_l2, meta_iter):
        return train(self.meta, self.train_loss(log_l2, meta_iter).grad, self.noise, self.types)

    def evaluate(self, log_l2, meta_iter):
        w = self.trained(log_l2, meta_iter)
        d = self.data
        return {**figures(self.net, w, d.valid, "valid"), **figures(self.net, w, d.test, "test")}

    def penalty_maps(self, log_l2):
        """exp(log_l2) of the weights as float64[classes, side, side]: one picture per class."""
        F, K = self.net.sizes
        side = int(round(np.sqrt(F)))
        return np.exp(log_l2[:F * K]).reshape(F, K).T.reshape(K, side, side)


def run_regularize(data: Dataset, cfg: RegularizeConfig = RegularizeConfig(), progress=True, log=print) -> dict:
    """Meta-learn the penalties, evaluate them, and run the grid baseline; returns a JSON-ready dict."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    prob = RegularizeProblem(data, cfg)
    trainer, curve = run_meta(lambda m: prob.hypergradient(m), {"log_l2": prob.log_l2}, cfg, progress)
    losses = valid_losses(curve)
    log(f"validation loss with per-weight penalties: {losses[0]:.4f} -> {losses[-1]:.4f}")
    fresh = cfg.meta_iters   # a batch sequence no meta-iteration trained on
    learned = prob.evaluate(prob.log_l2, fresh)
    grid = np.geomspace(*cfg.grid, cfg.meta_iters)
    tried = []
    for l2 in tqdm(grid, desc="penalty grid", disable=not progress):
        w = prob.trained(np.full(prob.net.n_params, np.log(l2)), 0)
        tried.append({"l2": float(l2), "valid_loss": float(prob.net.loss(w, data.valid.X, data.valid.y))})
    best = min(tried, key=lambda r: r["valid_loss"])
    baseline = {"l2": best["l2"], "grid": tried,
                **prob.evaluate(np.full(prob.net.n_params, np.log(best["l2"])), fresh)}
    for name, r in (("learned per-weight penalties", learned),
                    (f"best single penalty {best['l2']:.3g}", baseline)):
        log(f"{name}: test loss {r['test_loss']:.4f}, test error {100 * r['test_error']:.2f}%")
    return {"job": "regularize", "config": config_dict(cfg), "net_sizes": list(prob.net.sizes), "curve": curve,
            "learned": learned, "baseline": baseline, "log_l2": prob.log_l2.tolist(),
            "penalty_maps": prob.penalty_maps(prob.log_l2).tolist(), "seconds": time.perf_counter() - start}
