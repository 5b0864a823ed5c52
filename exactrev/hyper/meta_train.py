"""Meta-training: Adam (``MetaAdam``) on meta-parameters, moved by exact hypergradients, with a way
back when a step goes too far (the loop of ``exactrev hyperopt``, for any problem).

Each meta-iteration m asks ``hypergrad(m)`` for a ``HypergradResult`` (the validation loss after
training with the current meta-parameters, and its gradients), then takes one ``MetaAdam`` step on
``params`` (a dict of float arrays, moved in place). When training fails after a meta-step (it leaves
the fixed-point range, gets an invalid schedule, or its validation loss is not finite or over
``diverged_ratio`` times the best so far), the parameters and the meta-optimiser go back to the best
point so far, the meta learning rate halves, and the step is taken again; after ``max_retries``
halvings in a row, ``MetaDivergenceError``. A failure before any meta-step is the initial settings'
fault: ``InitialSettingsError``.
"""

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from ..exact.fixedpoint import FixedPointRangeError
from ..exact.rational import HyperparameterError
from ..optim.checks import StepError

DIVERGENCE = (FixedPointRangeError, HyperparameterError, StepError, FloatingPointError)
MAX_RETRIES = 20
DIVERGED_RATIO = 4.0   # a validation loss over this multiple of the best so far counts as diverged


@dataclass
class MetaAdam:
    """Adam (Kingma & Ba 2015) on a dict of arrays:
    theta <- theta - lr * m_hat / (sqrt(s_hat) + eps), with m_hat, s_hat the bias-corrected moments.

    ``step(params, grads)`` moves every ``params[name]`` that has a ``grads[name]``, in place (so the
    arrays of a ``MetaParams`` passed as ``{"log_lr": meta.log_lr, ...}`` move with it).
    """

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: dict = field(default_factory=dict)
    s: dict = field(default_factory=dict)

    def step(self, params: dict, grads: dict):
        for name, g in grads.items():
            if name not in params:
                raise KeyError(f"a gradient for {name!r}, which is not among the parameters {sorted(params)}")
            if np.shape(g) != np.shape(params[name]):
                raise ValueError(f"the gradient of {name!r} has shape {np.shape(g)}, the parameter "
                                 f"{np.shape(params[name])}")
            if not np.all(np.isfinite(g)):
                raise FloatingPointError(f"the gradient of {name!r} is not finite")
        self.t += 1
        for name, g in grads.items():
            m = self.m.setdefault(name, np.zeros_like(g))
            s = self.s.setdefault(name, np.zeros_like(g))
            m *= self.b1
            m += (1 - self.b1) * g
            s *= self.b2
            s += (1 - self.b2) * g * g
            m_hat = m / (1 - self.b1 ** self.t)
            s_hat = s / (1 - self.b2 ** self.t)
            params[name] -= self.lr * m_hat / (np.sqrt(s_hat) + self.eps)


class InitialSettingsError(ValueError):
    """Training with the initial hyperparameters fails (leaves the fixed-point range, say)."""


class MetaDivergenceError(RuntimeError):
    """Training kept failing after the meta learning rate was halved ``max_retries`` times in a row."""


class MetaTrainer:
    """The state of a meta-training run: ``params`` (name -> float array, moved in place), the
    meta-optimiser ``adam``, the best point so far and the ``curve`` of records.

    grads_of(result) -> {name: gradient shaped like params[name]} (default: ``result.grads[name]``
    for every name in params; give one to map gradients, e.g. to sum a per-weight penalty's
    gradient over layers). ``on_record(record, next_iter)`` is called as each record is made
    (``next_iter``: the meta-iteration a resumed run would start at), e.g. to save it.
    """

    def __init__(self, params, meta_lr=0.05, grads_of=None, max_retries=MAX_RETRIES,
                 diverged_ratio=DIVERGED_RATIO, on_record=None):
        if not np.isfinite(meta_lr) or meta_lr <= 0:
            raise ValueError(f"meta_lr must be a finite number > 0, got {meta_lr}")
        self.params = params
        self.adam = MetaAdam(meta_lr)
        self.grads_of = grads_of or (lambda res: {name: res.grads[name] for name in params})
        self.max_retries, self.diverged_ratio = int(max_retries), float(diverged_ratio)
        self.on_record = on_record or (lambda record, next_iter: None)
        self.best = None   # (loss, params, meta-optimiser, grads) at the best meta-iteration so far
        self.curve = []

    def step(self, m, hypergrad):
        """Meta-iteration m: hypergrad(m) -> HypergradResult, then one meta-step. Returns the result."""
        t0 = time.perf_counter()
        for retry in range(self.max_retries + 1):
            try:
                res = hypergrad(m)
                if not np.isfinite(res.loss):
                    raise FloatingPointError(f"validation loss is {res.loss}")
                if self.best is not None and res.loss > self.diverged_ratio * self.best[0]:
                    raise FloatingPointError(f"validation loss {res.loss:.4g} is over {self.diverged_ratio}x "
                                             f"the best so far ({self.best[0]:.4g})")
                break
            except DIVERGENCE as exc:
                self._back_off(m, retry, exc)
        grads = self.grads_of(res)
        norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
        if self.best is None or res.loss < self.best[0]:
            self.best = (res.loss, {k: v.copy() for k, v in self.params.items()}, copy.deepcopy(self.adam),
                         grads)
        self.adam.step(self.params, grads)
        self._record({"meta_iter": m, "valid_loss": res.loss, "grad_norm": norm, "restored": res.restored,
                      "seconds": time.perf_counter() - t0, "meta_lr": self.adam.lr,
                      "kept_bytes": int(res.extra_bytes), "forward_steps": res.stats.get("forward_steps")},
                     m + 1)
        return res

    def _back_off(self, m, retry, exc):
        if self.best is None:
            raise InitialSettingsError(str(exc)) from exc
        if retry == self.max_retries:
            raise MetaDivergenceError(
                f"meta-iteration {m}: training still fails after halving the meta learning rate "
                f"{self.max_retries} times: {str(exc).splitlines()[0]}") from exc
        _, best_params, best_adam, best_grads = self.best
        meta_lr = self.adam.lr / 2
        for name, value in best_params.items():
            self.params[name][...] = value
        self.adam = copy.deepcopy(best_adam)
        self.adam.lr = meta_lr
        self.adam.step(self.params, best_grads)
        self._record({"meta_iter": m, "diverged": True, "message": str(exc).splitlines()[0][:300],
                      "meta_lr": self.adam.lr}, m)

    def _record(self, record, next_iter):
        self.curve.append(record)
        self.on_record(record, next_iter)

    # -- saving and resuming ----------------------------------------------------------------------
    def state(self) -> dict:
        """A flat dict of arrays and numbers (for ``np.savez``): the meta-optimiser and the best point."""
        out = _adam_state("adam.", self.adam)
        if self.best is not None:
            loss, params, best_adam, grads = self.best
            out["best.loss"] = loss
            out.update({f"best.p.{k}": v for k, v in params.items()})
            out.update({f"best.g.{k}": v for k, v in grads.items()})
            out.update(_adam_state("best.adam.", best_adam))
        return out

    def load_state(self, state, curve=()):
        """Continue from what ``state`` saved (the params themselves are set by the caller)."""
        names = list(self.params)
        self.adam = _adam_from(state, "adam.", names)
        if "best.loss" in state:
            self.best = (float(state["best.loss"]), {k: np.array(state[f"best.p.{k}"]) for k in names},
                         _adam_from(state, "best.adam.", names),
                         {k: np.array(state[f"best.g.{k}"]) for k in names if f"best.g.{k}" in state})
        self.curve = list(curve)


def _adam_state(prefix, adam):
    out = {f"{prefix}t": adam.t, f"{prefix}lr": adam.lr}
    out.update({f"{prefix}m.{k}": v for k, v in adam.m.items()})
    out.update({f"{prefix}s.{k}": v for k, v in adam.s.items()})
    return out


def _adam_from(state, prefix, names):
    adam = MetaAdam(float(state[f"{prefix}lr"]), t=int(state[f"{prefix}t"]))
    for k in names:
        if f"{prefix}m.{k}" in state:
            adam.m[k] = np.array(state[f"{prefix}m.{k}"])
            adam.s[k] = np.array(state[f"{prefix}s.{k}"])
    return adam


def meta_train(hypergrad, params, iters, meta_lr=0.05, progress=False, **options):
    """Run ``iters`` meta-iterations of ``MetaTrainer(params, meta_lr, **options)``; returns the trainer
    (``.params`` moved in place, ``.curve``, ``.best``). hypergrad(m) -> HypergradResult, e.g.
    ``lambda m: exactrev.hypergradient(meta, train_loss, valid_loss, noise, types)``."""
    from tqdm.auto import tqdm

    trainer = MetaTrainer(params, meta_lr, **options)
    bar = tqdm(range(int(iters)), desc="meta-iterations", disable=not progress)
    for m in bar:
        res = trainer.step(m, hypergrad)
        bar.set_postfix(valid_loss=f"{res.loss:.4f}")
    return trainer
