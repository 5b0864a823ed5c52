"""Exact hypergradients through reversible Nesterov momentum with gradient memory h.

Meta-parameters are those of momentum SGD (:class:`MetaParams`: log_lr[t, k], logit_momentum[t, k],
log_init_scale[k]) plus what the training loss owns (log_l2, train_X); h is fixed.

Forward step t (a = lr[t, type], g = momentum[t, type]; see optim/nesterov.py):
    p = w + a g v,   G = dL_t/dw(p),   u' = h u - (1-h) G,   v' = g v + (1-g) u',   w' = w + a v'
Reverse, from dw = df/dw_T and dv = du = 0, for t = T-1 ... 0 (sums per weight type):
    da  = dw . v'                          DV = dv + a dw
    (w, v restored exactly)
    dg  = DV . (v - u')                    DU = du + (1-g) DV
    z   = (1-h) DU,  dp = -H(p) z,  dtheta -= d/dtheta (z . G)
    da += g v . dp,   dg += a v . dp
    dw += dp,   dv = g DV + a g dp,   du = h DU
    (u restored exactly from G)
and df/dlog_init_scale[k] = sum over type k of dw w_0.
"""

import numpy as np

from ..exact.fixedpoint import FixedFormat
from ..optim.nesterov import DEFAULT_MEMORY, ReversibleNesterov
from .hypergrad import HypergradResult, MetaParams, initial_weights
from ..optim.progress import progress_range
from .losses import accumulate_term, checked_vjp, validation_start
from .trajectory import group_sums


class _Reversal:
    """Walks back by exact reversal: O(N) memory beyond the buffer."""

    def __init__(self, opt):
        self.opt = opt

    def forward(self, grad_fn, progress=False):
        self.opt.forward(grad_fn, progress=progress)

    def state(self):
        o = self.opt
        return o.fmt.to_float(o.v), o.fmt.to_float(o.u)

    def back_state(self):
        """Undo w and v of the last step; returns (look-ahead point, v) of that step."""
        self.opt.unstep_state()
        return self.opt.lookahead(self.opt.t - 1), self.opt.fmt.to_float(self.opt.v)

    def back_memory(self, grad):
        self.opt.unstep_memory(grad)

    def finish(self):
        self.opt.reverse(lambda w, t: None, steps=0)  # verifies the buffer when at step 0
        return True


class _Store:
    """The store-everything reference: keeps (w, v, u) of every step and reads them back."""

    def __init__(self, opt):
        self.opt = opt

    def forward(self, grad_fn, progress=False):
        o = self.opt
        self.states = []
        for _ in progress_range(o.schedule.steps, progress, "forward"):
            p = o.lookahead()
            self.states.append((o.w.copy(), o.v.copy(), o.u.copy(), p))
            o.step(grad_fn(p, o.t))
        self.states.append((o.w.copy(), o.v.copy(), o.u.copy(), None))
        self.t = o.t

    def state(self):
        _, v, u, _ = self.states[self.t]
        return self.opt.fmt.to_float(v), self.opt.fmt.to_float(u)

    def back_state(self):
        self.t -= 1
        _, v, _, p = self.states[self.t]
        return p, self.opt.fmt.to_float(v)

    def back_memory(self, grad):
        pass

    def finish(self):
        return True


def nesterov_hypergradient(meta: MetaParams, train_loss, valid_loss, noise, types, method="reversal",
                           memory=DEFAULT_MEMORY, fmt=FixedFormat(), progress=False) -> HypergradResult:
    """Train with reversible Nesterov (memory h), then return df/dmeta by the reverse sweep above.

    method: 'reversal' (exact reversal) or 'store' (the trajectory kept: the reference).
    """
    types = np.ascontiguousarray(types, np.int64)
    sched = meta.schedule()
    T, G = sched.lr.shape
    opt = ReversibleNesterov(initial_weights(meta, noise, types), sched, group=types, memory=memory,
                             fmt=fmt)
    w0_fixed = opt.w.copy()
    try:
        traj = {"reversal": _Reversal, "store": _Store}[method](opt)
    except KeyError:
        raise ValueError(f"method must be 'reversal' or 'store', got {method!r}") from None
    traj.forward(train_loss.grad, progress)
    w_final = opt.weights
    loss, dw = validation_start(valid_loss, w_final)
    h = float(opt.memory)
    lr, g, omg = sched.lr, sched.momenta, sched.one_minus_g
    dv, du = np.zeros_like(dw), np.zeros_like(dw)
    d_lr, d_g = np.zeros_like(lr), np.zeros_like(g)
    shapes = train_loss.meta_shapes()
    d_theta = {name: np.zeros(shape) for name, shape in shapes.items()}
    for t in progress_range(T, progress, "hypergradient", reverse=True):
        a, g_t = lr[t][types], g[t][types]
        v1, u1 = traj.state()
        d_lr[t] = group_sums(dw * v1, types, G)
        DV = dv + a * dw
        p, v0 = traj.back_state()
        DU = du + omg[t][types] * DV
        grad, hz, mixed = checked_vjp(train_loss, p, t, (1.0 - h) * DU, shapes)
        traj.back_memory(grad)
        dp = -hz
        d_lr[t] += group_sums(g_t * v0 * dp, types, G)
        d_g[t] = group_sums(DV * (v0 - u1) + a * v0 * dp, types, G)
        for name, term in mixed.items():
            accumulate_term(d_theta[name], term, -1)
        dw = dw + dp
        dv = g_t * DV + a * g_t * dp
        du = h * DU
    restored = traj.finish() and (method != "reversal" or bool(np.array_equal(opt.w, w0_fixed)))
    w0f = fmt.to_float(w0_fixed)
    grads = {"log_lr": d_lr * lr, "logit_momentum": d_g * g * (1.0 - g),
             "log_init_scale": group_sums(dw * w0f, types, G), "lr": d_lr, "momentum": d_g, **d_theta}
    stats = {"optimizer": "nesterov", "memory": str(opt.memory), "forward_steps": T}
    return HypergradResult(float(loss), grads, w_final, restored, 2 * T, T, opt.buffer.nbytes_used, stats)
