"""The adjoint of one optimiser step: what the reverse sweep (``sweep.py``) does at step t.

Every adjoint keeps the adjoints of the optimiser's state (dw and the velocity's or moments'), and
the gradients of the schedules, and walks back one step with a *walk* (``sweep.py``) that restores
the step's state. Sums per weight type run in index order (``group_sums``), so results do not depend
on thread counts. With u the vector the step's gradient was multiplied by, ``vjp`` returns the
training loss's gradient and H u at the step's gradient point and adds the mixed terms
d/dtheta (u . grad) of the meta-parameters theta the training loss owns.

Momentum SGD (Maclaurin, Duvenaud & Adams 2015, Algorithm 2). Forward:
v' = g v - (1 - g) grad(w),  w' = w + a v'. Reverse, from dw = df/dw_T and dv = 0:

    df/da  = dw . v'          dv += a dw            (w, v restored)
    df/dg  = dv . (v + grad)  dw -= H u,  dtheta -= d/dtheta (u . grad),  u = (1 - g) dv
    dv    *= g

Nesterov with gradient memory h (optim/nesterov.py). Forward: p = w + a g v, G = grad(p),
u' = h u - (1-h) G, v' = g v + (1-g) u', w' = w + a v'. Reverse, from dw = df/dw_T, dv = du = 0:

    da  = dw . v'                DV = dv + a dw          (w, v restored)
    dg  = DV . (v - u')          DU = du + (1-g) DV
    z   = (1-h) DU,  dp = -H(p) z,  dtheta -= d/dtheta (z . G)
    da += g v . dp,   dg += a v . dp
    dw += dp,   dv = g DV + a g dp,   du = h DU            (u restored)

Adam / AdamW (optim/adam.py; c1 = 1 - prod b1, c2 likewise, rho = 1 - a lam). Forward:
m' = b1 m + (1-b1) g, s' = b2 s + (1-b2) g^2, w' = rho w - a m^/r, m^ = m'/c1, r = sqrt(s'/c2) + eps.
Reverse, from dw = df/dw_T, dm = ds = 0:

    da   = dw . (-m^/r - lam w)          dlam = dw . (-a w)         deps = dw . (a m^/r^2)
    dM   = dm - dw a/(c1 r)              dS   = ds + dw a m^/(2 r^2 sqrt(s'/c2) c2)
    dc1 += dw . a m'/(c1^2 r)            dc2 += -dw . a m^ sqrt(s'/c2) / (2 c2 r^2)
    (w restored; g recomputed at w; m, s restored)
    db1  = dM . (m - g)                  db2  = dS . (s - g^2)
    z    = (1-b1) dM + 2 (1-b2) g dS
    dw   = rho dw + H z,  dtheta += d/dtheta (z . g),   dm = b1 dM,  ds = b2 dS

and at the end db1_tau -= (1/b1_tau) sum_{t >= tau} dc1_t (1 - c1_t) (likewise b2).

For every optimiser df/dlog_init_scale[k] = sum over type k of dw w_0, and the gradients with respect
to the unconstrained meta-parameters chain through exp and sigmoid (sigmoid' = g (1 - g)); the
gradients with respect to the values actually used (``lr``, ``momentum``, ``b1``, ...) come too.
"""

import numpy as np

from ..kernels.momentum_adjoint import adjoint_after_hvp, adjoint_before_hvp
from .losses import accumulate_term, checked_vjp, validation_start


def as_floats(x):
    """x as a contiguous float64 array (no copy when it is one already)."""
    return np.ascontiguousarray(x, np.float64)


def group_sums(values, group, n_groups):
    """sum of values over each group, in index order (deterministic, no BLAS): float64[n_groups]."""
    return np.bincount(group, weights=values, minlength=n_groups)


class Adjoint:
    """What every step adjoint shares: the training loss, the weight types, the mixed terms."""

    stats = {}

    def __init__(self, schedule, types, train_loss):
        self.steps, self.groups = schedule.steps, schedule.groups
        self.types = types
        self.train_loss = train_loss
        self.shapes = train_loss.meta_shapes()
        self.d_theta = {name: np.zeros(shape) for name, shape in self.shapes.items()}
        self.grad_evals = 0
        self.hvp_evals = 0

    def start(self, valid_loss, w_final):
        """Set dw = df/dw_T; returns f(w_T)."""
        loss, self.dw = validation_start(valid_loss, w_final)
        return loss

    def sums(self, values):
        return group_sums(values, self.types, self.groups)

    def vjp(self, w, t, u, sign):
        """(grad, H u) of step t's training loss at w; adds sign * d/dtheta (u . grad) to d_theta."""
        grad, hvp, mixed = checked_vjp(self.train_loss, w, t, u, self.shapes)
        self.grad_evals += 1
        self.hvp_evals += 1
        for name, term in mixed.items():
            accumulate_term(self.d_theta[name], term, sign)
        return grad, hvp


class MomentumAdjoint(Adjoint):
    """Momentum SGD's step adjoint; the walk's state is (v,)."""

    def __init__(self, schedule, types, train_loss):
        super().__init__(schedule, types, train_loss)
        self.lr, self.g, self.omg = schedule.lr, schedule.momenta, schedule.one_minus_g
        self.d_lr = np.zeros_like(self.lr)
        self.d_g = np.zeros_like(self.g)

    def start(self, valid_loss, w_final):
        loss = super().start(valid_loss, w_final)
        self.dv = np.zeros_like(self.dw)
        return loss

    def step_back(self, t, walk):
        (v_next,) = walk.state()
        u = np.empty_like(self.dv)
        adjoint_before_hvp(self.dw, self.dv, v_next, self.types, self.lr[t], self.omg[t], self.d_lr[t], u)
        w_t = walk.back_point()
        grad, hvp = self.vjp(w_t, t, u, -1)
        (v_t,) = walk.back_state(grad)
        adjoint_after_hvp(self.dw, self.dv, v_t, as_floats(grad), as_floats(hvp), self.types, self.g[t],
                          self.d_g[t])

    def grads(self, w0):
        lr, g = self.lr, self.g
        return {"log_lr": self.d_lr * lr, "logit_momentum": self.d_g * g * (1.0 - g),
                "log_init_scale": self.sums(self.dw * w0), "momentum": self.d_g, "lr": self.d_lr,
                **self.d_theta}


class NesterovAdjoint(MomentumAdjoint):
    """Nesterov's step adjoint (memory h); the walk's state is (v, u), its gradient point p."""

    def __init__(self, schedule, types, train_loss, memory):
        super().__init__(schedule, types, train_loss)
        self.h = float(memory)
        self.stats = {"memory": str(memory)}

    def start(self, valid_loss, w_final):
        loss = super().start(valid_loss, w_final)
        self.du = np.zeros_like(self.dw)
        return loss

    def step_back(self, t, walk):
        types, h = self.types, self.h
        a, g_t = self.lr[t][types], self.g[t][types]
        v1, u1 = walk.state()
        self.d_lr[t] = self.sums(self.dw * v1)
        DV = self.dv + a * self.dw
        p = walk.back_point()
        DU = self.du + self.omg[t][types] * DV
        grad, hz = self.vjp(p, t, (1.0 - h) * DU, -1)
        v0, _ = walk.back_state(grad)
        dp = -hz
        self.d_lr[t] += self.sums(g_t * v0 * dp)
        self.d_g[t] = self.sums(DV * (v0 - u1) + a * v0 * dp)
        self.dw = self.dw + dp
        self.dv = g_t * DV + a * g_t * dp
        self.du = h * DU


class AdamAdjoint(Adjoint):
    """Adam's and AdamW's step adjoint; the walk's state is (m, s)."""

    def __init__(self, schedule, types, train_loss):
        super().__init__(schedule, types, train_loss)
        T, G = schedule.lr.shape
        self.sched = schedule
        self.c1, self.c2 = schedule.bias_corrections
        self.b1 = np.array([float(b) for b in schedule.b1])
        self.b2 = np.array([float(b) for b in schedule.b2])
        self.lam = schedule.weight_decay
        self.applied = schedule.applied_decay()   # the exact fractions the forward steps multiplied w by
        self.d_lr, self.d_lam = np.zeros((T, G)), np.zeros((T, G))
        self.d_b1, self.d_b2, self.d_eps, self.d_c1, self.d_c2 = (np.zeros(T) for _ in range(5))
        self.stats = {"optimizer": "adamw" if np.any(self.lam > 0) else "adam"}

    def start(self, valid_loss, w_final):
        loss = super().start(valid_loss, w_final)
        self.dm, self.ds = np.zeros_like(self.dw), np.zeros_like(self.dw)
        return loss

    def step_back(self, t, walk):
        types, dw = self.types, self.dw
        c1, c2 = self.c1[t], self.c2[t]
        a = self.sched.lr[t][types]
        lam_t = self.lam[t][types]
        m1, s1 = walk.state()
        m_hat, s_hat = m1 / c1, s1 / c2
        root = np.sqrt(s_hat)
        r = root + self.sched.eps[t]
        w_t = walk.back_point()
        self.d_lr[t] = self.sums(dw * (-m_hat / r - lam_t * w_t))
        self.d_lam[t] = self.sums(dw * (-a * w_t))
        self.d_eps[t] = float(np.sum(dw * a * m_hat / (r * r)))
        self.d_c1[t] = float(np.sum(dw * a * m1 / (c1 ** 2 * r)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ds_term = np.where(root > 0, dw * a * m_hat / (2.0 * r * r * root * c2), 0.0)
        self.d_c2[t] = float(np.sum(-dw * a * m_hat * root / (2.0 * c2 * r * r)))
        dM = self.dm - dw * a / (c1 * r)
        dS = self.ds + ds_term
        g = self.train_loss.grad(w_t, t)
        self.grad_evals += 1
        z = (1.0 - self.b1[t]) * dM + 2.0 * (1.0 - self.b2[t]) * g * dS
        _, hz = self.vjp(w_t, t, z, +1)
        m0, s0 = walk.back_state(g)
        self.d_b1[t] = float(np.sum(dM * (m0 - g)))
        self.d_b2[t] = float(np.sum(dS * (s0 - g * g)))
        self.dw = self.applied[t][types] * dw + hz
        self.dm, self.ds = self.b1[t] * dM, self.b2[t] * dS

    def grads(self, w0):
        b1, b2, c1, c2, lam = self.b1, self.b2, self.c1, self.c2, self.lam
        # bias corrections: dc_t/db_tau = -(1 - c_t) / b_tau for tau <= t
        d_b1 = self.d_b1 - np.cumsum((self.d_c1 * (1.0 - c1))[::-1])[::-1] / b1
        d_b2 = self.d_b2 - np.cumsum((self.d_c2 * (1.0 - c2))[::-1])[::-1] / b2
        with np.errstate(invalid="ignore"):
            d_log_wd = np.where(lam > 0, self.d_lam * lam, 0.0)
        return {"log_lr": self.d_lr * self.sched.lr, "logit_b1": d_b1 * b1 * (1 - b1),
                "logit_b2": d_b2 * b2 * (1 - b2), "log_eps": self.d_eps * self.sched.eps,
                "log_weight_decay": d_log_wd, "log_init_scale": self.sums(self.dw * w0), "lr": self.d_lr,
                "b1": d_b1, "b2": d_b2, "eps": self.d_eps, "weight_decay": self.d_lam, **self.d_theta}
