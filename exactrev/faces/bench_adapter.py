"""What the JAX adapter costs: a forward training run of a ``JaxModel`` against the same jitted JAX
gradient called in a plain float64 momentum-SGD loop, in one process.

The model is the paper MLP (64-50-50-50-10 tanh, batch 200) on the bundled digits, written in JAX. Both
loops call one compiled gradient per step with the same batches; the adapter adds the fixed-point step,
the buffer and one host copy of the flat weights and of the gradient.
"""

import numpy as np


def _paper_model(steps, hidden=(50, 50, 50), batch=200):
    import jax
    import jax.numpy as jnp

    from ..hyper.data import batch_indices, load_digits
    from ..jax import JaxModel

    data = load_digits()
    sizes = (data.n_features, *hidden, data.n_classes)
    rng = np.random.default_rng(0)
    params = [(0.1 * rng.standard_normal((a, b)), np.zeros(b)) for a, b in zip(sizes[:-1], sizes[1:])]
    batches = [batch_indices(len(data.train), batch, 0, 0, t) for t in range(steps)]

    def predict(p, X):
        for W, b in p[:-1]:
            X = jnp.tanh(X @ W + b)
        return X @ p[-1][0] + p[-1][1]

    def loss(p, b, theta):
        logp = jax.nn.log_softmax(predict(p, b["X"]))
        return -jnp.mean(logp[jnp.arange(b["y"].shape[0]), b["y"]])

    def get_batch(t):
        idx = batches[t]
        return {"X": data.train.X[idx], "y": data.train.y[idx]}

    def valid(p, theta):
        return loss(p, {"X": data.valid.X, "y": data.valid.y}, theta)
    return JaxModel(loss, params, get_batch, valid), get_batch


def adapter_report(steps=200, repeat=5, out=print):
    """Print and return (adapter seconds, plain loop seconds) for ``steps`` forward steps."""
    from .bench_buffer import best_times

    model, get_batch = _paper_model(steps)
    meta = model.meta(steps, lr=0.3, momentum=0.9)
    sched = meta.schedule()
    grad = model._grad
    theta = model._theta_flat(None)

    def plain():
        w, v = model.noise.copy(), np.zeros(model.n_params)
        for t in range(steps):
            g = np.asarray(grad(w, get_batch(t), theta))
            gt = sched.momenta[t][model.types]
            v = gt * v - (1.0 - gt) * g
            w = w + sched.lr[t][model.types] * v
        return w

    def adapter():
        return model.train(meta)
    plain(), adapter()  # compile
    ours, base = best_times((adapter, plain), repeat)
    out(f"JAX adapter, paper MLP in JAX, T = {steps} forward steps: reversible {ours / steps * 1e3:.3f} ms per "
        f"step, the same jitted gradient in a float64 loop {base / steps * 1e3:.3f} ms per step, "
        f"ratio {ours / base:.2f}x (target <= 1.3x)")
    return ours, base
