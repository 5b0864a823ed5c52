"""The meta-optimiser: Adam on a dict of meta-parameter arrays, moved in place by their hypergradients."""

from dataclasses import dataclass, field

import numpy as np


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
