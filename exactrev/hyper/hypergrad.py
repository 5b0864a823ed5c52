"""Exact hypergradients through a whole training run (Maclaurin, Duvenaud & Adams 2015, Algorithm 2).

Meta-parameters, in the unconstrained form a meta-optimiser moves freely (``MetaParams``):

    log_lr[t, k]          learning rate  a_t,k = exp(log_lr)            (T x G; G = weight types)
    logit_momentum[t, k]  momentum       g_t,k = sigmoid(logit) as an exact fraction n/d, d <= 2**16
    log_init_scale[k]     initial weights w_0 = exp(log_init_scale[type]) * noise
    log_l2[i]             L2 penalty     0.5 * exp(log_l2[i]) * w_i**2 in the training loss
    train_X               the training inputs (owned by the training loss)

Forward: v_{t+1} = g_t v_t - (1 - g_t) grad_t(w_t),  w_{t+1} = w_t + a_t v_{t+1}, in exact fixed point.
Reverse, from dw = df/dw_T and dv = 0, for t = T-1 ... 0:

    df/da_t  = dw . v_{t+1}                                (summed per weight type)
    dv      += a_t dw
    w_t, v_t restored exactly (or read back, for the store reference)
    df/dg_t  = dv . (v_t + grad_t)
    dw      -= H_t u,   dtheta -= d/dtheta (u . grad_t),   u = (1 - g_t) dv
    dv      *= g_t

and df/dlog_init_scale[k] = sum over type k of dw_i w_0,i. The momentum gradient is taken with respect to
the fraction actually used, chained through sigmoid'(logit) = g (1 - g).
"""

from dataclasses import dataclass, field

import numpy as np

from ..exact.fixedpoint import FixedFormat
from ..optim.progress import progress_range
from ..optim.schedule import MomentumSchedule
from .losses import accumulate_term, checked_vjp, validation_start
from . import checkpointing  # noqa: F401  (registers the 'checkpoint' back-end)
from .trajectory import TRAJECTORIES, group_sums


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p) - np.log1p(-p)


@dataclass
class MetaParams:
    """The hyperparameters the sweep differentiates, in unconstrained coordinates (see module doc)."""

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
class HypergradResult:
    """The validation loss at w_T and its gradient with respect to every meta-parameter."""

    loss: float
    grads: dict                   # name -> float64 array shaped like the meta-parameter
    final_weights: np.ndarray
    restored: bool                # the walk ended on w_0 bit for bit (and, for reversal, the buffer)
    grad_evals: int               # gradient evaluations (forward and reverse)
    hvp_evals: int
    extra_bytes: int              # what the trajectory method kept beyond (w, v)
    stats: dict = field(default_factory=dict)


def initial_weights(meta: MetaParams, noise, types):
    """w_0 = exp(log_init_scale[type]) * noise."""
    return np.exp(meta.log_init_scale)[types] * noise


def hypergradient(meta: MetaParams, train_loss, valid_loss, noise, types, method="reversal",
                  fmt=FixedFormat(), progress=False, trajectory_kwargs=None,
                  device="cpu") -> HypergradResult:
    """Train for meta.steps steps, then return df/dmeta by an exact reverse sweep.

    train_loss: a training loss object (see losses.py); valid_loss: has value_and_grad(w).
    noise: float64[P] standard-normal draws for w_0; types: int64[P] weight type of every parameter.
    method: 'reversal' (exact reversal, O(P) + buffer memory), 'store' (keep the trajectory) or
    'checkpoint' (Revolve snapshots; trajectory_kwargs={'snapshots': c}); see trajectory.py.
    device: 'cpu', or 'cuda' for the whole run and sweep on the GPU (method 'reversal' only; an
    ``MLPTrainingLoss``; see hypergrad_cuda.py). Set NUMBA_ENABLE_CUDASIM=1 to simulate it on a CPU.
    """
    if device == "cuda":
        if method != "reversal":
            raise ValueError("device='cuda' supports method='reversal' only")
        from ..kernels.cuda_device import require_cuda
        from .hypergrad_cuda import hypergradient_cuda

        require_cuda()
        return hypergradient_cuda(meta, train_loss, valid_loss, noise, types, fmt)
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    types = np.ascontiguousarray(types, np.int64)
    G = meta.log_lr.shape[1]
    schedule = meta.schedule()
    try:
        make = TRAJECTORIES[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(TRAJECTORIES)}, got {method!r}") from None
    traj = make(initial_weights(meta, noise, types), schedule, types, fmt, **(trajectory_kwargs or {}))
    traj.run_forward(train_loss.grad, progress=progress)
    w_final = traj.final_weights()
    loss, dw = validation_start(valid_loss, w_final)

    lr = schedule.lr
    g = schedule.momenta
    omg = schedule.one_minus_g
    dv = np.zeros_like(dw)
    d_lr = np.zeros_like(lr)
    d_g = np.zeros_like(g)
    shapes = train_loss.meta_shapes()
    d_theta = {name: np.zeros(shape) for name, shape in shapes.items()}
    hvp_evals = 0
    for t in progress_range(schedule.steps, progress, "hypergradient", reverse=True):
        v_next = traj.velocity()
        d_lr[t] = group_sums(dw * v_next, types, G)
        dv += lr[t][types] * dw
        w_t = traj.back_weights()
        u = omg[t][types] * dv
        grad, hvp, mixed = checked_vjp(train_loss, w_t, t, u, shapes)
        hvp_evals += 1
        v_t = traj.back_velocity(grad)
        d_g[t] = group_sums(dv * (v_t + grad), types, G)
        dw -= hvp
        for name, term in mixed.items():
            accumulate_term(d_theta[name], term, -1)
        dv *= g[t][types]
    restored = traj.finish()
    w0_float = traj.initial_weights()
    grads = {
        "log_lr": d_lr * lr,
        "logit_momentum": d_g * g * (1.0 - g),
        "log_init_scale": group_sums(dw * w0_float, types, G),
        "momentum": d_g,
        "lr": d_lr,
        **d_theta,
    }
    stats = {**traj.stats, "forward_steps": traj.forward_steps}
    return HypergradResult(float(loss), grads, w_final, restored, traj.grad_evals + hvp_evals,
                           hvp_evals, traj.extra_bytes(), stats)

