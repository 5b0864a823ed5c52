"""The meta-parameters a hypergradient differentiates, in unconstrained coordinates, and its result.

Momentum SGD and Nesterov (``MetaParams``):

    log_lr[t, k]          learning rate  a_t,k = exp(log_lr)            (T x G; G = weight types)
    logit_momentum[t, k]  momentum       g_t,k = sigmoid(logit) as an exact fraction n/d, d <= 2**16
    log_init_scale[k]     initial weights w_0 = exp(log_init_scale[type]) * noise

Adam and AdamW (``AdamMetaParams``): log_lr[t, k], logit_b1[t], logit_b2[t], log_eps[t],
log_weight_decay[t, k] (-inf: Adam) and log_init_scale[k].

What the training loss owns (``MLPTrainingLoss``: log_l2[i], a penalty 0.5 exp(log_l2[i]) w_i**2, and
train_X, the training inputs) is a meta-parameter too; its hypergradient comes back under its name.
"""

from dataclasses import dataclass, field

import numpy as np

from ..optim.adam import AdamSchedule
from ..optim.schedule import MomentumSchedule


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p) - np.log1p(-p)


@dataclass
class MetaParams:
    """Schedules and init scales of momentum SGD or Nesterov (module docstring)."""

    log_lr: np.ndarray            # float64[T, G]
    logit_momentum: np.ndarray    # float64[T, G]
    log_init_scale: np.ndarray    # float64[G]

    @classmethod
    def constant(cls, steps, n_types, lr=0.3, momentum=0.9, init_scale=0.1):
        return cls(np.full((steps, n_types), np.log(lr)), np.full((steps, n_types), logit(momentum)),
                   np.full(n_types, np.log(init_scale)))

    @property
    def steps(self):
        return self.log_lr.shape[0]

    def schedule(self) -> MomentumSchedule:
        return MomentumSchedule.build(np.exp(self.log_lr), sigmoid(self.logit_momentum), tolerance=None)

    def copy(self):
        return MetaParams(self.log_lr.copy(), self.logit_momentum.copy(), self.log_init_scale.copy())


@dataclass
class AdamMetaParams:
    """Schedules and init scales of Adam or AdamW (module docstring)."""

    log_lr: np.ndarray            # float64[T, G]
    logit_b1: np.ndarray          # float64[T]
    logit_b2: np.ndarray          # float64[T]
    log_eps: np.ndarray           # float64[T]
    log_weight_decay: np.ndarray  # float64[T, G]; -inf gives Adam
    log_init_scale: np.ndarray    # float64[G]

    @classmethod
    def constant(cls, steps, n_types, lr=0.01, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                 init_scale=0.1):
        with np.errstate(divide="ignore"):
            log_wd = np.log(weight_decay)
        return cls(np.full((steps, n_types), np.log(lr)), np.full(steps, logit(b1)),
                   np.full(steps, logit(b2)), np.full(steps, np.log(eps)),
                   np.full((steps, n_types), log_wd), np.full(n_types, np.log(init_scale)))

    @property
    def steps(self):
        return self.log_lr.shape[0]

    def schedule(self) -> AdamSchedule:
        T, G = self.log_lr.shape
        return AdamSchedule.build(np.exp(self.log_lr), T, G, tolerance=None, b1=sigmoid(self.logit_b1),
                                  b2=sigmoid(self.logit_b2), eps=np.exp(self.log_eps),
                                  weight_decay=np.exp(self.log_weight_decay))

    def copy(self):
        return AdamMetaParams(*(np.copy(a) for a in (self.log_lr, self.logit_b1, self.logit_b2,
                                                      self.log_eps, self.log_weight_decay,
                                                      self.log_init_scale)))


def initial_weights(meta, noise, types):
    """w_0 = exp(log_init_scale[type]) * noise."""
    return np.exp(meta.log_init_scale)[types] * noise


@dataclass
class HypergradResult:
    """The validation loss at w_T and its gradient with respect to every meta-parameter."""

    loss: float
    grads: dict                   # name -> float64 array shaped like the meta-parameter
    final_weights: np.ndarray
    restored: bool                # the walk ended on w_0 bit for bit (and, for reversal, the buffer)
    grad_evals: int               # gradient evaluations (forward and reverse)
    hvp_evals: int
    extra_bytes: int              # what the trajectory method kept beyond the optimiser's state
    stats: dict = field(default_factory=dict)
