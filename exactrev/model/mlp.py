"""A thin MLP layer over the kernels: parameter layout, weight types, initialisation, loss/grad/HVP.

Weight types: for a net with L layers there are 2L types, W_1, b_1, ..., W_L, b_L; ``weight_types()``
gives each parameter's type id in [0, 2L) (2l for W_{l+1}, 2l + 1 for b_{l+1}), which the optimiser
uses as its parameter groups.
"""

from dataclasses import dataclass

import numpy as np

from . import mlp_blas
from .mlp_kernels import (ACT_RELU, ACT_TANH, labels_in_range, mlp_pass, mlp_predict, param_count,
                          serial_mlp_pass)

ACTIVATIONS = {"tanh": ACT_TANH, "relu": ACT_RELU}
BACKENDS = ("blas", "loops")

SERIAL_BELOW = 1 << 20
"""Multiply-adds of the largest layer product (batch x fan-in x fan-out) below which a pass runs on one
thread: on 2 cores two threads gain 1.3x there on a quiet machine and lose as much beside one busy
process (docs/engine.md, "Threads"). Same bits either way."""


def _penalties(l2, P):
    """l2 as float64[P] (a scalar or any shape that broadcasts to it), or None for None."""
    if l2 is None or (isinstance(l2, np.ndarray) and l2.dtype == np.float64 and l2.shape == (P,)
                      and l2.flags.c_contiguous):
        return l2
    return np.ascontiguousarray(np.broadcast_to(l2, (P,)), np.float64)


@dataclass(frozen=True)
class MLP:
    """Layer sizes (n_0 inputs, ..., n_L classes), the hidden nonlinearity ('tanh' or 'relu') and where
    the matrix products run: ``"blas"`` (numpy's BLAS, deterministic on one machine, see ``mlp_blas``)
    or ``"loops"`` (exactrev's fixed-order loop kernels: the same bits on every machine, 3x slower on
    one thread).
    """

    sizes: tuple
    activation: str = "tanh"
    backend: str = "blas"

    def __post_init__(self):
        if len(self.sizes) < 2 or any(int(n) < 1 for n in self.sizes):
            raise ValueError(f"sizes must list >= 2 positive layer widths, got {self.sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        object.__setattr__(self, "_sizes_array", np.array(self.sizes, np.int64))  # what the kernels take
        object.__setattr__(self, "_n_params", param_count(self.sizes))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_types(self) -> int:
        return 2 * self.n_layers

    @property
    def n_params(self) -> int:
        return self._n_params

    def type_names(self):
        return [f"{kind}{l + 1}" for l in range(self.n_layers) for kind in ("W", "b")]

    def weight_types(self) -> np.ndarray:
        """int64[P]: the weight type of every parameter (see module docstring)."""
        parts = []
        for l, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            parts += [np.full(a * b, 2 * l, np.int64), np.full(b, 2 * l + 1, np.int64)]
        return np.concatenate(parts)

    def init_noise(self, rng) -> np.ndarray:
        """Standard-normal draws, one per parameter; multiply by per-type scales to initialise."""
        return rng.standard_normal(self.n_params)

    def _check(self, params, X, y=None):
        """params, X (and y, unless None) as contiguous arrays, or a ValueError naming the one that
        does not fit the network."""
        params = np.ascontiguousarray(params, np.float64)
        if params.shape != (self.n_params,):
            raise ValueError(f"params has shape {params.shape}, expected ({self.n_params},)")
        X = np.ascontiguousarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X has shape {X.shape}, expected (batch, {self.sizes[0]})")
        if y is None:
            return params, X, None
        y = np.ascontiguousarray(y, np.int64)
        if y.shape != (X.shape[0],) or not labels_in_range(y, self.sizes[-1]):
            raise ValueError(f"y must hold {X.shape[0]} labels in [0, {self.sizes[-1]})")
        return params, X, y

    def _run(self, params, X, y, l2, vec, want_grad, want_r, want_dx=True):
        params, X, y = self._check(params, X, y)
        if X.shape[0] == 0:
            raise ValueError("X has no rows: the loss is a mean over the batch, which needs an example")
        P = self.n_params
        l2 = _penalties(l2, P)
        vec = np.zeros(P) if vec is None else np.ascontiguousarray(vec, np.float64)
        grad, hvp = np.empty(P), np.empty(P)  # every entry written when asked for
        dx, rdx = (np.zeros_like(X), np.zeros_like(X)) if want_dx else (X[:0], X[:0])
        if self.backend == "blas":
            kernel = mlp_blas.mlp_pass  # l2 None: no penalty term at all
        else:
            layer_work = X.shape[0] * max(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
            kernel = mlp_pass if layer_work >= SERIAL_BELOW else serial_mlp_pass()
            l2 = np.zeros(P) if l2 is None else l2
        loss = kernel(params, self._sizes_array, ACTIVATIONS[self.activation], X, y,
                      l2, vec, want_grad, want_r, grad, hvp, dx, rdx)
        return loss, grad, hvp, dx, rdx

    def loss(self, params, X, y, l2=None) -> float:
        """Mean softmax cross-entropy on (X, y) plus 0.5 * sum(l2 * params**2)."""
        return self._run(params, X, y, l2, None, False, False, want_dx=False)[0]

    def loss_grad(self, params, X, y, l2=None):
        """(loss, dloss/dparams float64[P])."""
        loss, grad, _, _, _ = self._run(params, X, y, l2, None, True, False, want_dx=False)
        return loss, grad

    def grad_hvp(self, params, X, y, vec, l2=None, input_terms=True):
        """(loss, grad, H @ vec, d/dX (vec . grad)) at params; the last is float64[B, n_0], or
        float64[0, n_0] with ``input_terms=False`` (two matrix products fewer; the rest the same bits)."""
        loss, grad, hvp, _, rdx = self._run(params, X, y, l2, vec, True, True, want_dx=input_terms)
        return loss, grad, hvp, rdx

    def predict(self, params, X) -> np.ndarray:
        """Logits float64[B, n_L] at params for inputs X."""
        params, X, _ = self._check(params, X)
        if self.backend == "blas":
            return mlp_blas.mlp_predict(params, self.sizes, ACTIVATIONS[self.activation], X)
        return mlp_predict(params, self._sizes_array, ACTIVATIONS[self.activation], X)

    def input_grad(self, params, X, y, l2=None):
        """dloss/dX, float64[B, n_0]."""
        return self._run(params, X, y, l2, None, True, False)[3]
