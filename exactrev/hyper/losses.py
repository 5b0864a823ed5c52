"""Training and validation losses for the hypergradient sweep.

A *training loss* is any object with

    grad(w, t) -> float64[P]                         dL_t/dw at w, for step t (deterministic)
    grad_and_vjp(w, t, u) -> (grad, H u, mixed)      the same gradient, the Hessian-vector product
                                                     H u = d/dw (u . dL_t/dw), and a dict
                                                     {name: d/dtheta (u . dL_t/dw)} for each
                                                     meta-parameter theta the loss itself owns
    meta_names() -> tuple of names it reports in ``mixed``, and meta_shapes() -> {name: shape}

and optionally

    forward_grad(w, t) -> array-like                 the same floats as grad(w, t) in any form that
                                                     np.asarray reads as float64[P]; the forward run
                                                     calls it instead of grad. A gradient that is still
                                                     being computed (a JAX array: JAX dispatches
                                                     asynchronously) lets a momentum step's half that
                                                     needs no gradient run meanwhile.
    session() -> context manager                     entered once around a whole run (forward and
                                                     reverse), for what the loss holds for all its
                                                     steps (``MLPTrainingLoss``: BLAS on one thread,
                                                     set once instead of at every pass)

A *validation loss* has ``value_and_grad(w) -> (loss, dL/dw float64[P])``; the sweep works on its own
copy of the gradient (``validation_start``), so a read-only or non-float64 array is fine.

A mixed term is an array shaped like its meta-parameter, or ``RowTerm(rows, values)`` when only some
rows are non-zero (the mini-batch's rows of the training inputs), so no step allocates a full-size array.

The reverse sweep (``sweep.py``, ``adjoints.py``) only adds up ``mixed``; a new meta-parameter that
enters the training loss (weight sharing across tasks, data augmentation strength, ...) plugs in by
returning its own term.
"""

import contextlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..model.blas_threads import single_thread_blas
from ..model.mlp import MLP
from .data import Split, batch_indices


def loss_session(train_loss):
    """The context a whole run of ``train_loss`` is held in: its ``session()``, or none."""
    session = getattr(train_loss, "session", None)
    return session() if session is not None else contextlib.nullcontext()


def forward_gradient(train_loss):
    """The function the forward run asks for gradients: ``train_loss.forward_grad`` when the loss has
    one, else ``train_loss.grad``."""
    return getattr(train_loss, "forward_grad", train_loss.grad)


def validation_start(valid_loss, w_final):
    """(loss as a float, a writable float64 copy of dL/dw at w_final): the start of every reverse
    sweep. ValueError naming the shapes when the gradient does not match the weights."""
    loss, dw = valid_loss.value_and_grad(w_final)
    dw = np.array(dw, dtype=np.float64)  # a copy: the sweep updates it in place
    if dw.shape != np.shape(w_final):
        raise ValueError(f"valid_loss.value_and_grad returned a gradient of shape {dw.shape}; the "
                         f"weights have shape {np.shape(w_final)}")
    return float(loss), dw


def checked_vjp(train_loss, w, t, u, shapes):
    """train_loss.grad_and_vjp(w, t, u), with what it returned checked against the protocol: a ValueError
    naming the step and the part when the gradient or H u is not float[P], or a mixed term is not one
    of ``shapes`` (the loss's meta_shapes()) in name and shape."""
    out = train_loss.grad_and_vjp(w, t, u)
    where = f"train_loss.grad_and_vjp(w, t={t}, u)"
    if not isinstance(out, tuple) or len(out) != 3:
        raise ValueError(f"{where} must return (grad, H u, {{name: mixed term}}), got {type(out).__name__}")
    grad, hvp, mixed = out
    for name, value in (("the gradient", grad), ("H u", hvp)):
        if np.shape(value) != np.shape(w):
            raise ValueError(f"{where} returned {name} of shape {np.shape(value)}; the weights have shape "
                             f"{np.shape(w)}")
    for name, term in mixed.items():
        if name not in shapes:
            raise ValueError(f"{where} returned a mixed term {name!r} that meta_shapes() does not list "
                             f"({sorted(shapes)})")
        want = tuple(shapes[name])
        got = np.shape(term.values)[1:] if isinstance(term, RowTerm) else np.shape(term)
        if got != (want[1:] if isinstance(term, RowTerm) else want):
            raise ValueError(f"{where} returned the mixed term {name!r} with shape {got}; meta_shapes() "
                             f"says {want}")
    return grad, hvp, mixed


class RowTerm(NamedTuple):
    """A mixed term that is zero outside ``rows``: values[j] belongs at row rows[j] (rows distinct)."""

    rows: np.ndarray
    values: np.ndarray


def accumulate_term(total, term, sign):
    """total += sign * term (sign is +1 or -1), for a full array or a RowTerm, in place."""
    if isinstance(term, RowTerm):
        if sign > 0:
            total[term.rows] += term.values
        else:
            total[term.rows] -= term.values
    elif sign > 0:
        total += term
    else:
        total -= term


@dataclass
class MLPTrainingLoss:
    """Mean cross-entropy of ``net`` on the step's mini-batch plus 0.5 * sum(exp(log_l2) * w**2).

    Mini-batches are ``batch_indices(len(train), batch_size, seed, meta_iter, t)``. Meta-parameters it
    owns: ``log_l2`` (float64[P], one penalty per weight) and ``train_X`` (the training inputs);
    ``meta`` names those whose hypergradients the sweep computes (leaving out ``train_X`` saves two
    matrix products per reverse step).
    """

    net: MLP
    train: Split
    batch_size: int
    seed: int = 0
    meta_iter: int = 0
    log_l2: np.ndarray = field(default=None)
    meta: tuple = ("log_l2", "train_X")

    def __post_init__(self):
        self.meta = tuple(self.meta)
        unknown = set(self.meta) - {"log_l2", "train_X"}
        if unknown:
            raise ValueError(f"meta may name 'log_l2' and 'train_X', got {sorted(unknown)}")
        if self.log_l2 is None:
            self.log_l2 = np.full(self.net.n_params, -np.inf)
        self.log_l2 = np.ascontiguousarray(np.broadcast_to(self.log_l2, (self.net.n_params,)), np.float64)
        self._l2 = np.exp(self.log_l2)
        self._penalty = self._l2 if np.any(self._l2) else None  # None: the MLP adds no zero penalty

    def batch(self, t):
        idx = batch_indices(len(self.train), self.batch_size, self.seed, self.meta_iter, t)
        return idx, self.train.X.take(idx, axis=0), self.train.y.take(idx)

    def session(self):
        """BLAS on one thread for the whole run (every MLP pass pins it anyway; held here, a pass
        need not set and restore the thread counts, about 9 us each time)."""
        return single_thread_blas()

    def grad(self, w, t):
        _, X, y = self.batch(t)
        return self.net.loss_grad(w, X, y, self._penalty)[1]

    def grad_and_vjp(self, w, t, u):
        idx, X, y = self.batch(t)
        want_x = "train_X" in self.meta
        _, grad, hvp, rdx = self.net.grad_hvp(w, X, y, u, self._penalty, input_terms=want_x)
        mixed = {}
        if "log_l2" in self.meta:
            mixed["log_l2"] = u * self._l2 * w
        if want_x:
            mixed["train_X"] = RowTerm(idx, rdx)
        return grad, hvp, mixed

    def meta_names(self):
        return self.meta

    def meta_shapes(self):
        shapes = {"log_l2": (self.net.n_params,), "train_X": self.train.X.shape}
        return {name: shapes[name] for name in self.meta}


@dataclass
class MLPValidationLoss:
    """Mean cross-entropy of ``net`` on a whole split (no penalty): the meta-objective f(w_T)."""

    net: MLP
    split: Split

    def value(self, w):
        return self.net.loss(w, self.split.X, self.split.y)

    def value_and_grad(self, w):
        return self.net.loss_grad(w, self.split.X, self.split.y)

    def error_rate(self, w):
        return classification_error(self.net, w, self.split)


def classification_error(net, w, split):
    """Fraction of misclassified examples (argmax of the logits), from the model's own forward pass."""
    return float(np.mean(np.argmax(net.predict(w, split.X), axis=1) != split.y))
