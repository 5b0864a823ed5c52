"""exactrev.jax: exact hypergradients of JAX models against JAX's own reverse mode through the unrolled run."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from exactrev import BufferMismatchError, MetaParams, load_digits  # noqa: E402
from exactrev.jax import JaxModel  # noqa: E402

DATA = load_digits(200, 100, seed=0)
B, T = 25, 12


def _batch(t):
    idx = np.random.default_rng(t).choice(len(DATA.train.y), B, replace=False)
    return {"X": DATA.train.X[idx], "y": DATA.train.y[idx], "idx": idx}


def _ce(logits, y):
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])


def _valid(predict):
    Xv, yv = jnp.asarray(DATA.valid.X), jnp.asarray(DATA.valid.y)
    return lambda params, theta: _ce(predict(params, Xv, theta), yv)


def logistic_with_penalties():
    """A per-weight L2 penalty (the classic meta-parameter)."""
    def predict(p, X, theta):
        return X @ p["W"] + p["b"]

    def loss(p, b, theta):
        return _ce(predict(p, b["X"], theta), b["y"]) + 0.5 * jnp.sum(jnp.exp(theta["log_l2"]) * p["W"] ** 2)
    rng = np.random.default_rng(1)
    params = {"W": 0.1 * rng.standard_normal((64, 10)), "b": np.zeros(10)}
    return loss, params, _valid(predict), {"log_l2": np.full((64, 10), -4.0)}


def mlp_with_input_scaling():
    """A learned scaling of the inputs, used by training and validation alike (not a penalty)."""
    def predict(p, X, theta):
        h = jnp.tanh((X * theta["scale"]) @ p[0][0] + p[0][1])
        return h @ p[1][0] + p[1][1]

    def loss(p, b, theta):
        return _ce(predict(p, b["X"], theta), b["y"])
    rng = np.random.default_rng(2)
    params = [(0.3 * rng.standard_normal((64, 12)), np.zeros(12)), (0.3 * rng.standard_normal((12, 10)), np.zeros(10))]
    return loss, params, _valid(predict), {"scale": np.ones(64)}


def linear_on_learned_inputs():
    """The training inputs themselves are theta (a data hypergradient)."""
    def predict(p, X, theta):
        return X @ p["W"]

    def loss(p, b, theta):
        return _ce(predict(p, theta["X"][b["idx"]], theta), b["y"])
    params = {"W": 0.05 * np.random.default_rng(3).standard_normal((64, 10))}
    return loss, params, _valid(predict), {"X": DATA.train.X.copy()}


MODELS = [logistic_with_penalties, mlp_with_input_scaling, linear_on_learned_inputs]


def _unrolled_jax(model, meta, loss, valid, theta):
    """JAX reverse mode through the unrolled float64 run with the same schedules (the reference)."""
    from jax.flatten_util import ravel_pytree

    sched = meta.schedule()
    types = jnp.asarray(model.types)
    noise = jnp.asarray(model.noise)
    theta_flat, unravel_theta = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, theta))
    batches = [_batch(t) for t in range(T)]

    def f(a, g, s, th):
        w = jnp.exp(s)[types] * noise
        v = jnp.zeros_like(w)
        for t in range(T):
            grad = jax.grad(lambda w_: loss(model.params_of(w_), batches[t], unravel_theta(th)))(w)
            v = g[t][types] * v - (1 - g[t][types]) * grad
            w = w + a[t][types] * v
        return valid(model.params_of(w), unravel_theta(th))
    return jax.jit(jax.grad(f, argnums=(0, 1, 2, 3)))(jnp.asarray(sched.lr), jnp.asarray(sched.momenta),
                                                      jnp.asarray(meta.log_init_scale), theta_flat)


def _rel(got, want):
    got, want = np.ravel(np.asarray(got)), np.ravel(np.asarray(want))
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("make", MODELS)
def test_hypergradients_agree_with_jax_through_the_unrolled_run(make):
    from jax.flatten_util import ravel_pytree

    loss, params, valid, theta = make()
    model = JaxModel(loss, params, _batch, valid, theta)
    meta = model.meta(T, lr=0.5, momentum=0.9)
    res = model.hypergradient(meta)
    assert res.restored
    d_a, d_g, d_s, d_th = _unrolled_jax(model, meta, loss, valid, theta)
    assert _rel(res.grads["lr"], d_a) < 1e-6
    assert _rel(res.grads["momentum"], d_g) < 1e-6
    assert _rel(res.grads["log_init_scale"], d_s) < 1e-6
    assert _rel(ravel_pytree(res.grads["theta"])[0], d_th) < 1e-6
    assert jax.tree_util.tree_structure(res.grads["theta"]) == jax.tree_util.tree_structure(
        jax.tree_util.tree_map(jnp.asarray, theta))


def test_weight_types_are_the_leaves_of_params_and_training_is_the_forward_of_the_sweep():
    loss, params, valid, theta = mlp_with_input_scaling()
    model = JaxModel(loss, params, _batch, valid, theta)
    assert model.n_types == 4 and model.type_names[0] == "[0][0]"
    assert np.bincount(model.types).tolist() == [64 * 12, 12, 12 * 10, 10]
    meta = model.meta(T)
    trained = model.train(meta)
    res = model.hypergradient(meta)
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(res.final_params)):
        np.testing.assert_array_equal(a, b)


def test_a_loss_whose_batches_change_between_calls_is_caught():
    loss, params, valid, theta = logistic_with_penalties()
    calls = {"n": 0}

    def drifting_batch(t):  # a different draw every call: not a function of t
        calls["n"] += 1
        return _batch(t + 1000 * calls["n"])
    model = JaxModel(loss, params, drifting_batch, valid, theta)
    with pytest.raises(BufferMismatchError):
        model.hypergradient(model.meta(T))


def test_broken_calls_are_refused_by_name():
    loss, params, valid, theta = logistic_with_penalties()
    model = JaxModel(loss, params, _batch, valid, theta)
    with pytest.raises(ValueError, match="2 leaves"):
        model.hypergradient(MetaParams.constant(T, 3))
    with pytest.raises(ValueError, match="theta has 3 numbers"):
        model.hypergradient(model.meta(T), theta={"log_l2": np.zeros(3)})
    with pytest.raises(TypeError, match="callables"):
        JaxModel(loss, params, None, valid)
    with pytest.raises(ValueError, match="no arrays"):
        JaxModel(loss, {}, _batch, valid)
