"""The peer users would pick instead: reverse-mode autodiff through the unrolled run in JAX.

The same problem as ``bench_training.PaperProblem`` (the same MLP, mini-batches, schedules, initial
weights and float64 arithmetic), written in JAX, so that exactrev's hypergradient can be timed against
``jax.grad`` over a ``lax.scan`` of the training run, with three memory policies:

- ``store``: plain reverse mode, XLA keeps every step's activations (memory O(T));
- ``checkpoint``: ``jax.checkpoint`` around each step, so only (w, v) per step are kept and each step's
  activations are recomputed on the way back (memory O(T P));
- ``segments``: sqrt(T) checkpointed segments of sqrt(T) steps (memory O(sqrt(T) P)).

Needs JAX (``pip install "exactrev[peers]"``). float64 is switched on here (``jax_enable_x64``).
"""

import math
import time

import numpy as np

MODES = ("store", "checkpoint", "segments")


def _jax():
    try:
        import jax
    except ImportError as exc:  # pragma: no cover - exercised where JAX is missing
        raise ImportError('the JAX peer needs JAX: pip install "exactrev[peers]"') from exc
    jax.config.update("jax_enable_x64", True)
    return jax


def _mlp_loss(jnp, sizes, activation):
    """loss(w, X, y, l2): mean softmax cross-entropy of the flat-parameter MLP plus 0.5 sum(l2 w^2)."""
    layout, off = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        layout.append((off, a, b))
        off += a * b + b
    act = jnp.tanh if activation == "tanh" else (lambda z: jnp.maximum(z, 0.0))

    def loss(w, X, y, l2):
        h = X
        for i, (o, a, b) in enumerate(layout):
            z = h @ w[o:o + a * b].reshape(a, b) + w[o + a * b:o + a * b + b]
            h = act(z) if i < len(layout) - 1 else z
        logp = h - jax_logsumexp(jnp, h)
        ce = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return ce + 0.5 * jnp.sum(l2 * w * w)
    return loss


def jax_logsumexp(jnp, z):
    m = jnp.max(z, axis=1, keepdims=True)
    return m + jnp.log(jnp.sum(jnp.exp(z - m), axis=1, keepdims=True))


def build(prob, mode="checkpoint", device=None):
    """A jitted f(lr[T, G], g[T, G], log_init_scale[G]) -> (valid loss, (d lr, d g, d log_init_scale)).

    prob: a ``PaperProblem``; the batches of all T steps are gathered once and live on ``device``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    jax = _jax()
    jnp = jax.numpy
    put = (lambda a: jax.device_put(a, device)) if device is not None else jnp.asarray
    train, T, B = prob.train, prob.steps, prob.train.batch_size
    from ..hyper.data import batch_indices

    idx = np.stack([batch_indices(len(train.train), B, train.seed, train.meta_iter, t) for t in range(T)])
    Xs, ys = put(train.train.X[idx]), put(train.train.y[idx])
    Xv, yv = put(prob.valid.split.X), put(prob.valid.split.y)
    types, noise = put(prob.types), put(prob.noise)
    l2 = put(np.ascontiguousarray(train._l2))
    zero_l2 = put(np.zeros(prob.net.n_params))
    loss = _mlp_loss(jnp, prob.net.sizes, prob.net.activation)
    grad = jax.grad(loss)

    def step(carry, xs):
        w, v = carry
        lr_t, g_t, X, y = xs
        g_w = g_t[types]
        v = g_w * v - (1.0 - g_w) * grad(w, X, y, l2)
        return (w + lr_t[types] * v, v), None

    def run(lr, g, w0):
        carry = (w0, jnp.zeros_like(w0))
        if mode == "store":
            return jax.lax.scan(step, carry, (lr, g, Xs, ys))[0]
        if mode == "checkpoint":
            return jax.lax.scan(jax.checkpoint(step), carry, (lr, g, Xs, ys))[0]
        seg = max(1, math.isqrt(T))
        while T % seg:
            seg -= 1

        @jax.checkpoint
        def segment(c, xs):
            return jax.lax.scan(step, c, xs)[0], None
        xs = tuple(a.reshape(T // seg, seg, *a.shape[1:]) for a in (lr, g, Xs, ys))
        return jax.lax.scan(segment, carry, xs)[0]

    def meta_loss(lr, g, log_scale):
        w_T, _ = run(lr, g, jnp.exp(log_scale)[types] * noise)
        return loss(w_T, Xv, yv, zero_l2)

    return jax.jit(jax.value_and_grad(meta_loss, argnums=(0, 1, 2)))


def jax_hypergradient(prob, mode="checkpoint", device=None, repeat=1):
    """(seconds of the fastest of ``repeat`` calls after a compiling one, loss, grads dict, bytes).

    grads has the keys of exactrev's result: 'lr' and 'momentum' (T x G), 'log_init_scale' (G).
    bytes: the temporary memory XLA's compiled program allocates (``memory_analysis``), where the
    back-end reports it, else None.
    """
    jax = _jax()
    fn = build(prob, mode, device)
    sched = prob.meta.schedule()
    args = (sched.lr, sched.momenta, prob.meta.log_init_scale)
    try:
        temp = fn.lower(*args).compile().memory_analysis().temp_size_in_bytes
    except (AttributeError, NotImplementedError):  # pragma: no cover - back-ends without the analysis
        temp = None
    out = jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    loss, (d_lr, d_g, d_scale) = out
    grads = {"lr": np.asarray(d_lr), "momentum": np.asarray(d_g), "log_init_scale": np.asarray(d_scale)}
    return best, float(loss), grads, temp


def max_relative_difference(ours: dict, theirs: dict) -> float:
    """Largest |a - b| / max|b| over the shared hypergradients (lr, momentum, log_init_scale)."""
    worst = 0.0
    for name in ("lr", "momentum", "log_init_scale"):
        a, b = np.asarray(ours[name]), np.asarray(theirs[name])
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst
