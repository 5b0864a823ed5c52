"""Reversible Adam and AdamW in fixed point, the lost bits of every division in the information buffer.

Per weight i of group k at step t (1-based bias corrections c1_t = 1 - prod b1, c2_t = 1 - prod b2):

    m <- b1 m + (1 - b1) g                 (b1 = n/d exact: m * b1 through the buffer, then + round(...))
    s <- b2 s + (1 - b2) g^2               (likewise)
    w <- (1 - a lam) w                     (AdamW only: exact rational multiply through the buffer)
    w <- w - round(a (m / c1) / (sqrt(s / c2) + eps))

and backwards, with g recomputed at the restored weights:

    w <- w + round(a (m / c1) / (sqrt(s / c2) + eps));   w <- w / (1 - a lam)   (AdamW)
    s <- (s - round((1 - b2) g^2)) / b2;   m <- (m - round((1 - b1) g)) / b1

The step is a deterministic function of the fixed-point m and s (IEEE division and square root are
correctly rounded), so the reverse step subtracts exactly what the forward step added. The cost is
log2(1/b1) + log2(1/b2) (+ log2(1/(1 - a lam))) bits per weight per step: 0.154 for 0.9/0.999.
w, m and s each have their own fixed-point format, because s = EMA(g^2) spans a different range.
"""

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from ..exact.fixedpoint import FixedFormat
from ..exact.rational import HyperparameterError, as_momentum, check_complement
from ..exact.rational_ops import group_apply
from .checks import reverse_half
from .run import ReversibleRun, check_sum, rint_checked
from .sgd import StepError


@dataclass(frozen=True)
class AdamSchedule:
    """Per-step Adam hyperparameters: lr[t, k] (float64[T, G]); b1[t], b2[t] exact fractions;
    eps[t] > 0; weight_decay[t, k] >= 0 (AdamW's lambda; 0 gives Adam)."""

    lr: np.ndarray
    b1: tuple
    b2: tuple
    eps: np.ndarray
    weight_decay: np.ndarray

    @property
    def steps(self):
        return self.lr.shape[0]

    @property
    def groups(self):
        return self.lr.shape[1]

    @cached_property
    def bias_corrections(self):
        """(c1[t], c2[t]) = (1 - prod_{tau <= t} b1, 1 - prod b2), float64[T] each, 1-based."""
        b1 = np.cumprod([float(b) for b in self.b1])
        b2 = np.cumprod([float(b) for b in self.b2])
        return 1.0 - b1, 1.0 - b2

    @cached_property
    def decay_fractions(self):
        """Exact (1 - a lam) per step and group, as Fractions (d <= 2**16); None rows when lam = 0."""
        out = []
        for t in range(self.steps):
            row = [as_momentum(1.0 - self.lr[t, k] * self.weight_decay[t, k],
                               name=f"1 - lr*weight_decay at step {t}, group {k}", tolerance=None)
                   for k in range(self.groups)]
            out.append(None if all(f == 1 for f in row) else row)
        return out

    def bits_per_step(self):
        """Entropy bound per weight and step, in bits (the largest group's decay included)."""
        bits = [np.log2(b.denominator / b.numerator) + np.log2(c.denominator / c.numerator)
                for b, c in zip(self.b1, self.b2)]
        for t, row in enumerate(self.decay_fractions):
            if row:
                bits[t] += max(np.log2(f.denominator / f.numerator) for f in row)
        return np.array(bits)

    @classmethod
    def build(cls, lr, steps, groups=1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, tolerance=0.01):
        """Broadcast scalars or arrays: lr and weight_decay to (T, G); b1, b2, eps to (T,).

        b1, b2 and each step's decay factor 1 - lr * weight_decay become exact fractions (denominator
        <= 2**16). With ``tolerance`` (relative), a requested 1 - b1, 1 - b2 or lr * weight_decay that
        the fraction misses by more is refused with the limit named; ``tolerance=None`` accepts the
        nearest fraction (the optimiser and its hypergradients use the fraction actually applied).
        """
        lr = np.broadcast_to(np.asarray(lr, np.float64), (steps, groups)).copy()
        wd = np.broadcast_to(np.asarray(weight_decay, np.float64), (steps, groups)).copy()
        eps = np.broadcast_to(np.asarray(eps, np.float64), (steps,)).copy()
        if not np.all(np.isfinite(lr)):
            raise HyperparameterError("learning rates must be finite")
        if not np.all(np.isfinite(eps)) or np.any(eps <= 0):
            raise HyperparameterError("eps must be finite and > 0")
        if not np.all(np.isfinite(wd)) or np.any(wd < 0):
            raise HyperparameterError("weight_decay must be finite and >= 0")

        def fracs(b, name):
            vals = np.broadcast_to(np.asarray(b, dtype=object), (steps,))
            out = tuple(as_momentum(v, name=f"{name} at step {t}", tolerance=tolerance)
                        for t, v in enumerate(vals))
            if any(f == 1 for f in out):
                raise HyperparameterError(f"{name} must be < 1 (the bias correction divides by 1 - {name})")
            return out
        sched = cls(lr, fracs(b1, "b1"), fracs(b2, "b2"), eps, wd)
        decay = sched.decay_fractions  # validate 1 - a lam in (0, 1] now, not mid-run
        if tolerance is not None:
            for (t, k), lam in np.ndenumerate(wd):
                if lam > 0:
                    check_complement(1.0 - lr[t, k] * lam, decay[t][k] if decay[t] else Fraction(1),
                                     f"weight decay at step {t}, group {k}", tolerance, "lr * weight_decay")
        return sched

    def applied_decay(self):
        """float64[T, G]: the decay factor each step actually applies (1 where there is none)."""
        rho = np.ones(self.lr.shape)
        for t, row in enumerate(self.decay_fractions):
            if row:
                rho[t] = [float(f) for f in row]
        return rho


class ReversibleAdam(ReversibleRun):
    """Adam (weight_decay = 0) or AdamW whose whole trajectory runs backwards exactly.

    Parameters: w0 float64[N]; schedule AdamSchedule; group int[N] in [0, G); fmt_w, fmt_m, fmt_s the
    fixed-point formats of w, m and s (defaults 42, 46 and 46 fractional bits). m and s get 46 bits
    because (1 - b2) g^2 is tiny for small gradients (1e-11 for g = 1e-4) and s sets the step size; the
    price is a range of 128 for m and s, i.e. |g| up to about 11. Pass coarser formats for larger
    gradients: leaving the range is always a clear error, never a wrap.
    """

    def __init__(self, w0, schedule: AdamSchedule, group=None, fmt_w=FixedFormat(42),
                 fmt_m=FixedFormat(46), fmt_s=FixedFormat(46), buffer=None):
        self.schedule = schedule
        self.fmt_w, self.fmt_m, self.fmt_s = fmt_w, fmt_m, fmt_s
        self.w = fmt_w.to_fixed(np.ravel(w0), name="w0")
        n = self.w.shape[0]
        self.m = np.zeros(n, np.int64)
        self.s = np.zeros(n, np.int64)
        self._attach(n, group, buffer)

    @property
    def weights(self):
        return self.fmt_w.to_float(self.w)

    def state(self):
        return {"w": self.w, "m": self.m, "s": self.s}

    def float_state(self):
        """(m, s) as float64[N]."""
        return self.fmt_m.to_float(self.m), self.fmt_s.to_float(self.s)

    def _update(self, t):
        """round(a (m/c1) / (sqrt(s/c2) + eps) * 2**frac_w), from the current m and s (checked)."""
        c1, c2 = self.schedule.bias_corrections
        a = self.schedule.lr[t][self.group]
        m_hat = self.fmt_m.to_float(self.m) / c1[t]
        s_hat = self.fmt_s.to_float(self.s) / c2[t]
        return rint_checked(a * m_hat / (np.sqrt(s_hat) + self.schedule.eps[t]) * self.fmt_w.scale,
                             "the Adam step", t)

    def _grad_terms(self, grad, t):
        grad = self._checked_grad(grad, t)
        b1, b2 = self.schedule.b1[t], self.schedule.b2[t]
        gm = rint_checked(float(1 - b1) * self.fmt_m.scale * grad, "(1 - b1) g", t)
        gs = rint_checked(float(1 - b2) * self.fmt_s.scale * (grad * grad), "(1 - b2) g^2", t)
        return gm, gs

    def step(self, grad):
        """Forward step t = self.t, grad = dL/dw at the current weights. Nothing changes on error."""
        self._refuse_mid_unstep()
        t = self.t
        if t >= self.schedule.steps:
            raise StepError(f"the schedule has {self.schedule.steps} steps; step {t} has none")
        gm, gs = self._grad_terms(grad, t)
        sched, zeros = self.schedule, np.zeros_like(self.group)
        done = []
        try:
            group_apply(self.m, zeros, [sched.b1[t]], self.buffer, False, "m")
            done.append(("m", [sched.b1[t]], zeros))
            group_apply(self.s, zeros, [sched.b2[t]], self.buffer, False, "s")
            done.append(("s", [sched.b2[t]], zeros))
            m_new = check_sum(self.m, gm, "m", t)
            s_new = check_sum(self.s, gs, "s", t)
            self.m, self.s = m_new, s_new
            done.append(("grad", gm, gs))
            decay = sched.decay_fractions[t]
            if decay:
                group_apply(self.w, self.group, decay, self.buffer, False, "w")
                done.append(("w", decay, self.group))
            self.w = check_sum(self.w, -self._update(t), "w", t)
        except Exception:
            self._undo(done)
            raise
        self.t = t + 1

    def _undo(self, done):
        for kind, a, b in reversed(done):
            if kind == "grad":
                self.m, self.s = self.m - a, self.s - b
            else:
                group_apply(getattr(self, kind), b, a, self.buffer, True, kind)

    @reverse_half
    def unstep_weights(self):
        """First half of reversing step t-1: w <- (w + update) / (1 - a lam)."""
        t = self._begin_unstep("unstep_moments")
        w = check_sum(self.w, self._update(t), "w", t)
        decay = self.schedule.decay_fractions[t]
        if decay:
            group_apply(w, self.group, decay, self.buffer, True, "w")
        self.w = w
        self._half_done = True

    def redo_first(self, t):
        """The exact inverse of unstep_weights for step t: w <- w (1 - a lam) - update."""
        w = self.w.copy()
        decay = self.schedule.decay_fractions[t]
        if decay:
            group_apply(w, self.group, decay, self.buffer, False, "w")
        self.w = w - self._update(t)
        self._half_done = False

    @reverse_half
    def unstep_moments(self, grad):
        """Second half, with grad at the restored weights: undo s, then m; then t <- t-1. If it
        fails, the weights are moved forward again, so the state is as before unstep_weights."""
        t = self._begin_second_half("unstep_weights")
        try:
            gm, gs = self._grad_terms(grad, t)
            sched, zeros = self.schedule, np.zeros_like(self.group)
            s = self.s - gs
            m = self.m - gm
            group_apply(s, zeros, [sched.b2[t]], self.buffer, True, "s")
            try:
                group_apply(m, zeros, [sched.b1[t]], self.buffer, True, "m")
            except BaseException:
                group_apply(s, zeros, [sched.b2[t]], self.buffer, False, "s")
                raise
        except BaseException:
            self.redo_first(t)
            raise
        self.m, self.s, self.t = m, s, t
        self._half_done = False

    unstep_first, unstep_second = unstep_weights, unstep_moments

    def step_bits(self):
        return self.schedule.bits_per_step()


__all__ = ["AdamSchedule", "ReversibleAdam"]
