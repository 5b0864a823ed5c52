"""Learned weight sharing across tasks (the paper's section 3.4, on Omniglot alphabets; here on tasks
built from the bundled digits): K related tasks, each with its own MLP, trained together under a
penalty that couples their weights, whose strengths are meta-learned by exact hypergradients.

Task k sees the digits through its own transform (the original images, mirrored, rotated by 90
degrees, ...) and trains on a disjoint slice of the training split. With w_lk the parameters of layer
l of task k's network, the training loss of step t is

    sum_k CE_k(w_k; batch_k(t)) + 0.5 sum_l [ sum_k exp(a_lk) |w_lk|^2
                                              + sum_{k<j} exp(c_lkj) |w_lk - w_lj|^2 ]

a = ``log_indep`` [L, K] (each task's own L2) and c = ``log_coupling`` [L, K, K] (read where k < j)
are the meta-parameters the loss owns. c -> -inf trains the tasks separately; c -> +inf ties them.
The validation loss is the sum of the tasks' mean cross-entropies on their own validation images.
Baselines of the same budget, each a grid of one L2 penalty: the tasks trained separately, and one
network shared by all tasks (trained on the union of their batches).
"""

import time
from dataclasses import dataclass

import numpy as np

from ..hyper.api import hypergradient, train
from ..hyper.data import Dataset, Split, batch_indices
from ..model.mlp import MLP
from .job import config_dict, constant_schedules, run_meta, valid_losses

TRANSFORMS = {
    "original": lambda img: img,
    "mirrored": lambda img: img[:, :, ::-1],
    "rotated": lambda img: np.rot90(img, 1, axes=(1, 2)),
    "flipped": lambda img: img[:, ::-1, :],
    "inverted": lambda img: 1.0 - img,
}


def transformed(split: Split, name: str) -> Split:
    """``split`` with every square image passed through TRANSFORMS[name]."""
    n, F = split.X.shape
    side = int(round(np.sqrt(F)))
    images = TRANSFORMS[name](split.X.reshape(n, side, side))
    return Split(np.ascontiguousarray(images.reshape(n, F)), split.y)


def make_tasks(data: Dataset, names, per_task):
    """[(train, valid, test)] per task: task k trains on training rows [k n, (k+1) n) through its
    transform and is validated and tested on the whole validation and test splits through it."""
    if per_task * len(names) > len(data.train):
        raise ValueError(f"{len(names)} tasks x {per_task} training images need {per_task * len(names)}, "
                         f"the training split has {len(data.train)}")
    tasks = []
    for k, name in enumerate(names):
        if name not in TRANSFORMS:
            raise ValueError(f"task {name!r}: transforms are {sorted(TRANSFORMS)}")
        rows = slice(k * per_task, (k + 1) * per_task)
        tasks.append((transformed(Split(data.train.X[rows], data.train.y[rows]), name),
                      transformed(data.valid, name), transformed(data.test, name)))
    return tasks


class MultiTaskLoss:
    """The coupled training loss of the module docstring, in the loss protocol of ``hyper/losses.py``.

    w is the K task networks' parameters one after the other (float64[K P]). ``tied`` instead trains
    one network (float64[P]) on every task's batch: the fully shared baseline (no meta-parameters
    then but ``l2``, one penalty for all weights). The gradient comes from the same calls in ``grad``
    and ``grad_and_vjp``, so its bits agree (what reversal needs).
    """

    def __init__(self, net: MLP, trains, batch, seed, log_indep, log_coupling, tied=False, meta_iter=0):
        self.net, self.trains, self.batch_size, self.seed = net, trains, batch, seed
        self.K, self.P, self.tied, self.meta_iter = len(trains), net.n_params, tied, meta_iter
        self.layer = net.weight_types() // 2
        self.L = net.n_layers
        self.indep = np.exp(np.asarray(log_indep, np.float64))        # [L, K]
        self.coupling = np.exp(np.asarray(log_coupling, np.float64))  # [L, K, K], read where k < j

    def _batch(self, k, t):
        split = self.trains[k]
        idx = batch_indices(len(split), self.batch_size, self.seed, self.meta_iter, t)
        return split.X[idx], split.y[idx]

    def _parts(self, w):
        return [w] * self.K if self.tied else [w[k * self.P:(k + 1) * self.P] for k in range(self.K)]

    def _penalty(self, parts):
        """The penalty's gradient (the penalty is quadratic, so this is also its Hessian times parts)."""
        out = [self.indep[self.layer, k] * p for k, p in enumerate(parts)]
        if not self.tied:
            for k in range(self.K):
                for j in range(k + 1, self.K):
                    d = self.coupling[self.layer, k, j] * (parts[k] - parts[j])
                    out[k] = out[k] + d
                    out[j] = out[j] - d
        return out

    def _join(self, parts):
        return sum(parts[1:], parts[0]) if self.tied else np.concatenate(parts)

    def grad(self, w, t):
        data = [self.net.loss_grad(p, *self._batch(k, t))[1] for k, p in enumerate(self._parts(w))]
        pen = self._penalty(self._parts(w))
        return self._join([g + q for g, q in zip(data, pen)])

    def grad_and_vjp(self, w, t, u):
        ws, us = self._parts(w), self._parts(u)
        grads, hvps = [], []
        for k, (p, v) in enumerate(zip(ws, us)):
            _, g, h, _ = self.net.grad_hvp(p, *self._batch(k, t), v, input_terms=False)
            grads.append(g)
            hvps.append(h)
        pen, pen_u = self._penalty(ws), self._penalty(us)
        grad = self._join([g + q for g, q in zip(grads, pen)])
        hvp = self._join([h + q for h, q in zip(hvps, pen_u)])
        if self.tied:
            return grad, hvp, {}
        d_indep = np.zeros((self.L, self.K))
        d_coupling = np.zeros((self.L, self.K, self.K))
        for k in range(self.K):
            d_indep[:, k] = np.bincount(self.layer, us[k] * ws[k], self.L) * self.indep[:, k]
            for j in range(k + 1, self.K):
                dot = np.bincount(self.layer, (us[k] - us[j]) * (ws[k] - ws[j]), self.L)
                d_coupling[:, k, j] = dot * self.coupling[:, k, j]
        return grad, hvp, {"log_indep": d_indep, "log_coupling": d_coupling}

    def meta_names(self):
        return () if self.tied else ("log_indep", "log_coupling")

    def meta_shapes(self):
        return {} if self.tied else {"log_indep": (self.L, self.K), "log_coupling": (self.L, self.K, self.K)}


class MultiTaskValidation:
    """Sum over tasks of the mean cross-entropy on each task's own split (``tied``: one network)."""

    def __init__(self, net, splits, tied=False):
        self.net, self.splits, self.tied = net, splits, tied

    def _parts(self, w):
        P = self.net.n_params
        return [w] * len(self.splits) if self.tied else [w[k * P:(k + 1) * P] for k in range(len(self.splits))]

    def per_task(self, w):
        return [float(self.net.loss(p, s.X, s.y)) for p, s in zip(self._parts(w), self.splits)]

    def errors(self, w):
        return [float(np.mean(np.argmax(self.net.predict(p, s.X), 1) != s.y))
                for p, s in zip(self._parts(w), self.splits)]

    def value_and_grad(self, w):
        out = [self.net.loss_grad(p, s.X, s.y) for p, s in zip(self._parts(w), self.splits)]
        grads = [g for _, g in out]
        return sum(v for v, _ in out), (sum(grads[1:], grads[0]) if self.tied else np.concatenate(grads))


@dataclass
class SharingConfig:
    tasks: tuple = ("original", "mirrored", "rotated")
    per_task: int = 50           # training images per task (a disjoint slice each)
    hidden: tuple = (30,)
    batch: int = 50
    steps: int = 200
    lr: float = 0.5
    momentum: float = 0.9
    init_scale: float = 0.1
    init_l2: float = 1e-3        # starting own penalty of every layer and task
    init_coupling: float = 1e-2  # starting coupling strength of every pair of tasks and layer
    meta_iters: int = 50
    meta_lr: float = 0.3
    grid: tuple = (1e-6, 1.0)    # the baselines' penalty range
    seed: int = 0


class SharingProblem:
    def __init__(self, data: Dataset, cfg: SharingConfig):
        self.cfg = cfg
        self.tasks = make_tasks(data, cfg.tasks, cfg.per_task)
        self.K = len(self.tasks)
        self.net = MLP((data.n_features, *cfg.hidden, data.n_classes))
        L = self.net.n_layers
        self.log_indep = np.full((L, self.K), np.log(cfg.init_l2))
        self.log_coupling = np.full((L, self.K, self.K), np.log(cfg.init_coupling))
        rng = np.random.default_rng(cfg.seed)
        self.noise = np.concatenate([self.net.init_noise(rng) for _ in range(self.K)])
        self.types = np.concatenate([self.net.weight_types() + k * self.net.n_types for k in range(self.K)])
        self.meta = constant_schedules(self.net, cfg.steps, cfg.lr, cfg.momentum, cfg.init_scale)
        self.meta.log_lr = np.tile(self.meta.log_lr, (1, self.K))
        self.meta.logit_momentum = np.tile(self.meta.logit_momentum, (1, self.K))
        self.meta.log_init_scale = np.tile(self.meta.log_init_scale, self.K)
        self.tied_meta = constant_schedules(self.net, cfg.steps, cfg.lr, cfg.momentum, cfg.init_scale)

    def train_loss(self, log_indep, log_coupling, meta_iter, tied=False):
        return MultiTaskLoss(self.net, [t[0] for t in self.tasks], self.cfg.batch, self.cfg.seed, log_indep,
                             log_coupling, tied, meta_iter)

    def validation(self, which=1, tied=False):
        return MultiTaskValidation(self.net, [t[which] for t in self.tasks], tied)

    def hypergradient(self, meta_iter=0, method="reversal"):
        return hypergradient(self.meta, self.train_loss(self.log_indep, self.log_coupling, meta_iter),
                             self.validation(), self.noise, self.types, method=method)

    def trained(self, log_indep, log_coupling, meta_iter, tied=False):
        if tied:
            return train(self.tied_meta, self.train_loss(log_indep, log_coupling, meta_iter, True).grad,
                         self.noise[:self.net.n_params], self.net.weight_types())
        return train(self.meta, self.train_loss(log_indep, log_coupling, meta_iter).grad, self.noise, self.types)

    def evaluate(self, w, tied=False):
        valid, test = self.validation(1, tied), self.validation(2, tied)
        return {"valid_loss": float(sum(valid.per_task(w))), "test_loss": float(sum(test.per_task(w))),
                "test_loss_per_task": test.per_task(w), "test_error_per_task": test.errors(w)}


def run_sharing(data: Dataset, cfg: SharingConfig = SharingConfig(), progress=True, log=print) -> dict:
    """Meta-learn the coupling, evaluate it, and run the separate and tied baselines (JSON-ready dict)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    prob = SharingProblem(data, cfg)
    L, K = prob.log_indep.shape
    params = {"log_indep": prob.log_indep, "log_coupling": prob.log_coupling}
    trainer, curve = run_meta(lambda m: prob.hypergradient(m), params, cfg, progress)
    losses = valid_losses(curve)
    log(f"summed validation loss of the {K} tasks: {losses[0]:.4f} -> {losses[-1]:.4f}")
    fresh = cfg.meta_iters
    learned = prob.evaluate(prob.trained(prob.log_indep, prob.log_coupling, fresh))
    no_coupling = np.full((L, K, K), -np.inf)
    baselines = {}
    for name, tied in (("separate", False), ("tied", True)):
        tried = []
        for l2 in tqdm(np.geomspace(*cfg.grid, max(1, cfg.meta_iters // 2)), desc=f"{name} baseline",
                       disable=not progress):
            w = prob.trained(np.full((L, K), np.log(l2)), no_coupling, 0, tied)
            tried.append({"l2": float(l2), "valid_loss": prob.evaluate(w, tied)["valid_loss"]})
        best = min(tried, key=lambda r: r["valid_loss"])
        w = prob.trained(np.full((L, K), np.log(best["l2"])), no_coupling, fresh, tied)
        baselines[name] = {"l2": best["l2"], "grid": tried, **prob.evaluate(w, tied)}
    for name, r in (("learned coupling", learned), ("separate", baselines["separate"]),
                    ("tied", baselines["tied"])):
        per = ", ".join(f"{t} {v:.3f}" for t, v in zip(cfg.tasks, r["test_loss_per_task"]))
        log(f"{name}: summed test loss {r['test_loss']:.4f} ({per})")
    upper = np.triu(np.ones((K, K), bool), 1)
    coupling = np.where(upper[None], np.exp(prob.log_coupling), 0.0)
    coupling = coupling + coupling.transpose(0, 2, 1)
    return {"job": "sharing", "config": config_dict(cfg), "net_sizes": list(prob.net.sizes), "curve": curve,
            "learned": learned, "baselines": baselines, "coupling": coupling.tolist(),
            "own_l2": np.exp(prob.log_indep).tolist(), "layers": [f"layer {l + 1}" for l in range(L)],
            "seconds": time.perf_counter() - start}
