"""Exact hypergradients through reversible Adam / AdamW.

Meta-parameters (unconstrained): log_lr[t, k], logit_b1[t], logit_b2[t], log_eps[t],
log_weight_decay[t, k] (AdamW), log_init_scale[k], plus those the training loss owns (log_l2, train_X).

Forward step t (c1 = 1 - prod_{tau<=t} b1, c2 likewise, rho = 1 - a lam):
    g = dL_t/dw(w);  m' = b1 m + (1-b1) g;  s' = b2 s + (1-b2) g^2
    w' = rho w - a m^/r,   m^ = m'/c1,  r = sqrt(s'/c2) + eps
Reverse, from dw = df/dw_T, dm = ds = 0, for t = T-1 ... 0 (sums per weight type for per-type values):
    da   = dw . (-m^/r - lam w)          dlam = dw . (-a w)         deps = dw . (a m^/r^2)
    dM   = dm - dw a/(c1 r)              dS   = ds + dw a m^/(2 r^2 sqrt(s'/c2) c2)
    dc1 += dw . a m'/(c1^2 r)            dc2 += -dw . a m^ sqrt(s'/c2) / (2 c2 r^2)
    (w, m, s restored exactly; g recomputed at w)
    db1  = dM . (m - g)                  db2  = dS . (s - g^2)
    z    = (1-b1) dM + 2 (1-b2) g dS
    dw   = rho dw + H z,  dtheta += d/dtheta (z . g),   dm = b1 dM,  ds = b2 dS
and finally db1_tau -= (1/b1_tau) sum_{t >= tau} dc1_t (1 - c1_t) (likewise b2), and
df/dlog_init_scale[k] = sum over type k of dw w_0.
"""

from dataclasses import dataclass

import numpy as np

from ..exact.fixedpoint import FixedFormat
from ..optim.adam import AdamSchedule, ReversibleAdam
from .hypergrad import HypergradResult, initial_weights, logit, sigmoid
from ..optim.progress import progress_range
from .losses import accumulate_term, checked_vjp, validation_start
from .trajectory import group_sums


@dataclass
class AdamMetaParams:
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

    def schedule(self) -> AdamSchedule:
        T, G = self.log_lr.shape
        return AdamSchedule.build(np.exp(self.log_lr), T, G, tolerance=None, b1=sigmoid(self.logit_b1),
                                  b2=sigmoid(self.logit_b2), eps=np.exp(self.log_eps),
                                  weight_decay=np.exp(self.log_weight_decay))

    def copy(self):
        return AdamMetaParams(*(np.copy(a) for a in (self.log_lr, self.logit_b1, self.logit_b2,
                                                      self.log_eps, self.log_weight_decay,
                                                      self.log_init_scale)))


class _Reversal:
    name = "reversal"

    def __init__(self, opt):
        self.opt = opt

    def forward(self, grad_fn, progress=False):
        self.opt.forward(grad_fn, progress=progress)

    def state(self):
        o = self.opt
        return o.fmt_m.to_float(o.m), o.fmt_s.to_float(o.s)

    def back_weights(self):
        self.opt.unstep_weights()
        return self.opt.weights

    def back_moments(self, grad):
        self.opt.unstep_moments(grad)
        return self.state()

    def finish(self):
        self.opt.reverse(lambda w, t: None, steps=0)  # verifies the buffer when at step 0
        return True


class _Store:
    name = "store"

    def __init__(self, opt):
        self.opt = opt

    def forward(self, grad_fn, progress=False):
        o = self.opt
        self.states = [(o.w.copy(), o.m.copy(), o.s.copy())]
        for _ in progress_range(o.schedule.steps, progress, "forward"):
            o.step(grad_fn(o.weights, o.t))
            self.states.append((o.w.copy(), o.m.copy(), o.s.copy()))
        self.t = o.t

    def state(self):
        _, m, s = self.states[self.t]
        return self.opt.fmt_m.to_float(m), self.opt.fmt_s.to_float(s)

    def back_weights(self):
        self.t -= 1
        return self.opt.fmt_w.to_float(self.states[self.t][0])

    def back_moments(self, grad):
        return self.state()

    def finish(self):
        return True


def adam_hypergradient(meta: AdamMetaParams, train_loss, valid_loss, noise, types, method="reversal",
                       fmt_w=FixedFormat(42), fmt_m=FixedFormat(46), fmt_s=FixedFormat(46), progress=False):
    """Train with reversible Adam/AdamW, then return df/dmeta by the exact reverse sweep above."""
    types = np.ascontiguousarray(types, np.int64)
    sched = meta.schedule()
    T, G = sched.lr.shape
    w0 = initial_weights(meta, noise, types)
    opt = ReversibleAdam(w0, sched, group=types, fmt_w=fmt_w, fmt_m=fmt_m, fmt_s=fmt_s)
    w0_fixed = opt.w.copy()
    traj = {"reversal": _Reversal, "store": _Store}[method](opt)
    traj.forward(train_loss.grad, progress)
    w_final = opt.weights if method == "reversal" else fmt_w.to_float(traj.states[-1][0])
    loss, dw = validation_start(valid_loss, w_final)
    c1, c2 = sched.bias_corrections
    b1 = np.array([float(b) for b in sched.b1])
    b2 = np.array([float(b) for b in sched.b2])
    lam = sched.weight_decay
    applied = sched.applied_decay()   # the exact fractions the forward steps multiplied w by
    dm, ds = np.zeros_like(dw), np.zeros_like(dw)
    d_lr, d_lam = np.zeros((T, G)), np.zeros((T, G))
    d_b1, d_b2, d_eps, d_c1, d_c2 = (np.zeros(T) for _ in range(5))
    shapes = train_loss.meta_shapes()
    d_theta = {name: np.zeros(shape) for name, shape in shapes.items()}
    for t in progress_range(T, progress, "hypergradient", reverse=True):
        a = sched.lr[t][types]
        lam_t = lam[t][types]
        rho = applied[t][types]
        m1, s1 = traj.state()
        m_hat, s_hat = m1 / c1[t], s1 / c2[t]
        root = np.sqrt(s_hat)
        r = root + sched.eps[t]
        w_t = traj.back_weights()
        d_lr[t] = group_sums(dw * (-m_hat / r - lam_t * w_t), types, G)
        d_lam[t] = group_sums(dw * (-a * w_t), types, G)
        d_eps[t] = float(np.sum(dw * a * m_hat / (r * r)))
        d_c1[t] = float(np.sum(dw * a * m1 / (c1[t] ** 2 * r)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ds_term = np.where(root > 0, dw * a * m_hat / (2.0 * r * r * root * c2[t]), 0.0)
        d_c2[t] = float(np.sum(-dw * a * m_hat * root / (2.0 * c2[t] * r * r)))
        dM = dm - dw * a / (c1[t] * r)
        dS = ds + ds_term
        g = train_loss.grad(w_t, t)
        z = (1.0 - b1[t]) * dM + 2.0 * (1.0 - b2[t]) * g * dS
        _, hz, mixed = checked_vjp(train_loss, w_t, t, z, shapes)
        m0, s0 = traj.back_moments(g)
        d_b1[t] = float(np.sum(dM * (m0 - g)))
        d_b2[t] = float(np.sum(dS * (s0 - g * g)))
        dw = rho * dw + hz
        for name, term in mixed.items():
            accumulate_term(d_theta[name], term, +1)
        dm, ds = b1[t] * dM, b2[t] * dS
    restored = traj.finish() and (method != "reversal" or bool(np.array_equal(opt.w, w0_fixed)))
    # bias corrections: dc_t/db_tau = -(1 - c_t) / b_tau for tau <= t
    d_b1 -= np.cumsum((d_c1 * (1.0 - c1))[::-1])[::-1] / b1
    d_b2 -= np.cumsum((d_c2 * (1.0 - c2))[::-1])[::-1] / b2
    w0f = fmt_w.to_float(w0_fixed)
    with np.errstate(invalid="ignore"):
        d_log_wd = np.where(lam > 0, d_lam * lam, 0.0)
    grads = {"log_lr": d_lr * sched.lr, "logit_b1": d_b1 * b1 * (1 - b1), "logit_b2": d_b2 * b2 * (1 - b2),
             "log_eps": d_eps * sched.eps, "log_weight_decay": d_log_wd,
             "log_init_scale": group_sums(dw * w0f, types, G), "lr": d_lr, "b1": d_b1, "b2": d_b2,
             "eps": d_eps, "weight_decay": d_lam, **d_theta}
    return HypergradResult(float(loss), grads, w_final, restored, 3 * T, T, opt.buffer.nbytes_used,
                           {"optimizer": "adamw" if np.any(lam > 0) else "adam", "forward_steps": T})

