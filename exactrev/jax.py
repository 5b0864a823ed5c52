"""Bring your own model in JAX: exact hypergradients of any JAX loss through a reversible training run.

You write, in JAX,

    loss(params, batch, theta) -> scalar      the training loss of one step's mini-batch
    batch(t) -> any pytree of arrays          step t's mini-batch; must be the same every time it is
                                              called with the same t (the reverse sweep calls it again)
    valid(params, theta) -> scalar            the meta-objective, at the final parameters

for any pytree ``params`` (the weights) and any pytree ``theta`` of meta-parameters the loss owns:
penalties, a data-augmentation strength, a weight-sharing matrix, the training inputs themselves.
``JaxModel`` trains the flattened weights with exactrev's reversible optimisers and returns exact
hypergradients for the learning-rate and momentum schedules (one entry per step and per leaf of
``params``: the leaves are the weight types), the per-leaf initial scales and ``theta``.

What JAX computes, each jit-compiled once: the gradient ``grad_w loss`` (one function, called on the way
forward and again on the way back, so it is the same floats both times: that is what makes the reversal
exact) and, on the way back, one ``jax.vjp`` of that gradient with respect to (weights, theta), which
gives the Hessian-vector product and the mixed term d/dtheta (u . grad) together. Only the flat weight
vector crosses between numpy and JAX each step. On the way forward the optimiser receives the gradient
as the JAX array of a call still in flight and runs the half of its step that needs no gradient
(v <- v n/d through the buffer) while JAX computes it. float64 is switched on (``jax_enable_x64``) when this
module is imported: exactrev trains in fixed point with 42 fractional bits, and float32 gradients would
waste most of them.

Needs JAX: ``pip install "exactrev[jax]"``.
"""

from dataclasses import dataclass

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
except ImportError as exc:  # pragma: no cover - exercised where JAX is missing
    raise ImportError('exactrev.jax needs JAX: pip install "exactrev[jax]"') from exc

from .hyper.api import hypergradient as _hypergradient
from .hyper.api import train as _train
from .hyper.meta import MetaParams

jax.config.update("jax_enable_x64", True)


def _float64_tree(tree):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), tree)


def _host(x):
    """A JAX array as a writable float64 numpy array of its own."""
    return np.array(x, dtype=np.float64)


@dataclass
class JaxResult:
    """A hypergradient of a ``JaxModel``: the validation loss at the final parameters, the exact
    gradients (``grads``: 'log_lr', 'lr', 'logit_momentum', 'momentum' [T, n_leaves], 'log_init_scale'
    [n_leaves], and 'theta' shaped like ``theta``, numpy leaves), the final parameters as a pytree, and
    whether the reversal restored the initial weights bit for bit. ``raw`` is the engine's
    ``HypergradResult``."""

    loss: float
    grads: dict
    final_params: object
    restored: bool
    raw: object

    @property
    def extra_bytes(self) -> int:
        """What the reversal kept beyond the weights: the buffer's bytes after the forward run."""
        return self.raw.extra_bytes

    @property
    def stats(self) -> dict:
        return self.raw.stats


class JaxModel:
    """A JAX model made reversible. See the module docstring for ``loss``, ``batch`` and ``valid``.

    params: the initial parameters (any pytree of float arrays; w_0 = exp(log_init_scale[leaf]) * params,
    so ``log_init_scale = 0`` starts from ``params`` exactly). theta: the meta-parameters the losses take
    (any pytree, or None). The leaves of ``params`` are the weight types, in ``type_names`` order.
    """

    def __init__(self, loss, params, batch, valid, theta=None):
        if not callable(loss) or not callable(batch) or not callable(valid):
            raise TypeError("loss, batch and valid must be callables (see exactrev.jax)")
        params = _float64_tree(params)
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        if not leaves:
            raise ValueError("params has no arrays")
        flat, self._unravel = ravel_pytree(params)
        self.noise = _host(flat)
        sizes = [int(np.size(leaf)) for _, leaf in leaves]
        self.type_names = [jax.tree_util.keystr(path) or "params" for path, _ in leaves]
        self.types = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        theta = {} if theta is None else _float64_tree(theta)
        theta_flat, self._unravel_theta = ravel_pytree(theta)
        self.theta = theta
        self._theta_size = int(np.size(theta_flat))
        self._batch = batch
        unravel, unravel_theta = self._unravel, self._unravel_theta

        def flat_grad(w, b, th):
            return jax.grad(lambda w_: loss(unravel(w_), b, unravel_theta(th)))(w)

        def flat_hvp_mixed(w, b, th, u):
            _, pullback = jax.vjp(lambda w_, th_: flat_grad(w_, b, th_), w, th)
            return pullback(u)  # (H u, d/dtheta (u . grad)); H is symmetric

        def flat_valid(w, th):
            return valid(unravel(w), unravel_theta(th))

        self._grad = jax.jit(flat_grad)
        self._hvp_mixed = jax.jit(flat_hvp_mixed)
        self._valid = jax.jit(jax.value_and_grad(flat_valid, argnums=(0, 1)))

    # -- sizes and conversions ----------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.noise.size

    @property
    def n_types(self) -> int:
        return len(self.type_names)

    def params_of(self, w):
        """The pytree of a flat weight vector (float64[n_params])."""
        return self._unravel(jnp.asarray(w, jnp.float64))

    def meta(self, steps, lr=0.1, momentum=0.9, init_scale=1.0) -> MetaParams:
        """Constant schedules for ``steps`` steps, one column per leaf of params."""
        return MetaParams.constant(steps, self.n_types, lr, momentum, init_scale)

    # -- the loss protocol for the engine ----------------------------------------------------------------
    def training_loss(self, theta=None):
        """The training loss at ``theta`` (default: the model's) in the protocol the sweep drives."""
        return _TrainingLoss(self, self._theta_flat(theta))

    def validation_loss(self, theta=None):
        return _ValidationLoss(self, self._theta_flat(theta))

    def _theta_flat(self, theta):
        theta = self.theta if theta is None else _float64_tree(theta)
        flat, _ = ravel_pytree(theta)
        if int(np.size(flat)) != self._theta_size:
            raise ValueError(f"theta has {int(np.size(flat))} numbers; the model's theta has "
                             f"{self._theta_size}")
        return flat

    # -- the user's entry points ------------------------------------------------------------------------
    def train(self, meta: MetaParams, theta=None, optimizer=None):
        """Train once, forward only, as ``hypergradient`` would; the final parameters as a pytree."""
        self._check_meta(meta)
        w = _train(meta, self.training_loss(theta).forward_grad, self.noise, self.types, optimizer=optimizer)
        return self.params_of(w)

    def _check_meta(self, meta):
        if meta.log_lr.shape[1] != self.n_types:
            raise ValueError(f"meta has {meta.log_lr.shape[1]} weight types; this model's params have "
                             f"{self.n_types} leaves ({', '.join(self.type_names)})")

    def hypergradient(self, meta: MetaParams, theta=None, optimizer=None, method="reversal",
                      progress=False) -> JaxResult:
        """Train from ``params`` with ``meta``'s schedules (SGD by default; ``optimizer='nesterov'``, or an
        ``AdamMetaParams`` for Adam/AdamW) and return the exact hypergradients (``JaxResult``)."""
        self._check_meta(meta)
        train, valid = self.training_loss(theta), self.validation_loss(theta)
        raw = _hypergradient(meta, train, valid, self.noise, self.types, optimizer=optimizer, method=method,
                             progress=progress)
        grads = dict(raw.grads)
        d_theta = valid.direct_theta_grad.copy()
        if "theta" in grads:
            d_theta += grads.pop("theta")
        grads["theta"] = jax.tree_util.tree_map(_host, self._unravel_theta(jnp.asarray(d_theta)))
        return JaxResult(raw.loss, grads, self.params_of(raw.final_weights), raw.restored, raw)


class _TrainingLoss:
    """grad / forward_grad / grad_and_vjp / meta_shapes over a JaxModel at a fixed theta
    (docs/your-model.md)."""

    def __init__(self, model: JaxModel, theta_flat):
        self.model, self.theta = model, theta_flat

    def grad(self, w, t):
        return _host(self.forward_grad(w, t))

    def forward_grad(self, w, t):
        """The gradient as the JAX array the compiled call returns, before it is computed: the optimiser
        runs the half of its step that needs no gradient while JAX works (asynchronous dispatch)."""
        return self.model._grad(w, self.model._batch(t), self.theta)

    def grad_and_vjp(self, w, t, u):
        m = self.model
        b = m._batch(t)
        g = _host(m._grad(w, b, self.theta))  # the same compiled gradient as the forward step: same bits
        hu, mixed = m._hvp_mixed(w, b, self.theta, jnp.asarray(u))
        return g, _host(hu), ({"theta": _host(mixed)} if m._theta_size else {})

    def meta_names(self):
        return ("theta",) if self.model._theta_size else ()

    def meta_shapes(self):
        return {"theta": (self.model._theta_size,)} if self.model._theta_size else {}


class _ValidationLoss:
    """value_and_grad over a JaxModel's ``valid``; keeps d valid / d theta (the direct term)."""

    def __init__(self, model: JaxModel, theta_flat):
        self.model, self.theta = model, theta_flat
        self.direct_theta_grad = np.zeros(model._theta_size)

    def value_and_grad(self, w):
        value, (dw, dtheta) = self.model._valid(w, self.theta)
        self.direct_theta_grad = _host(dtheta)
        return float(value), _host(dw)


__all__ = ["JaxModel", "JaxResult"]
