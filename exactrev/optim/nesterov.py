"""Nesterov momentum with a gradient memory h: the look-ahead gradient, reversible exactly.

Exact Nesterov (NAG), v' = g v - (1-g) grad(w + a g v), w' = w + a v', has no explicit inverse: the
velocity it must recover sits inside the gradient's argument (see docs/optimizers.md). Routing the
gradient through a third state u, which keeps a fraction h of its old value, makes every update a
shear whose argument is already restored when it is undone:

    p  = w + round(a g v)                    look-ahead point (a = lr[t, k], g = momentum[t, k])
    u <- h u - round((1-h) grad(p))          h u exact through the buffer
    v <- g v + round((1-g) u)                g v exact through the buffer
    w <- w + round(a v)

Backwards: w <- w - round(a v);  v <- (v - round((1-g) u)) / g;  recompute grad at p from the
restored w and v;  u <- (u + round((1-h) grad(p))) / h. With h = 0 the forward step is exactly NAG in
these variables; h > 0 perturbs it by h u (|u| is about |grad|) and costs log2(1/h) bits per weight
per step on top of momentum's log2(1/g). The default h = 2**-8: 8 bits, against 128 for storing w
and v. h is an exact fraction with denominator <= 2**16, so at most 16 bits.
"""

from fractions import Fraction

import numpy as np

from ..exact.buffer import BufferMismatchError
from ..exact.fixedpoint import FixedFormat, FixedPointRangeError
from ..exact.rational import HyperparameterError, as_momentum
from ..exact.rational_ops import group_apply
from .checks import reverse_half
from .run import ReversibleRun, check_sum, rint_checked
from .schedule import MomentumSchedule
from .sgd import StepError

DEFAULT_MEMORY = Fraction(1, 256)


def as_memory(h) -> Fraction:
    """The gradient memory h in (0, 1) as an exact fraction (d <= 2**16)."""
    frac = as_momentum(h, name="memory")
    if frac == 1:
        raise HyperparameterError("memory must be < 1 (h = 1 would ignore the gradient)")
    return frac


class ReversibleNesterov(ReversibleRun):
    """Nesterov momentum with gradient memory h (module docstring), whose trajectory runs backwards exactly.

    Parameters: w0 float64[N]; schedule MomentumSchedule (lr[t, k], momentum[t, k] per weight group);
    group int[N] in [0, G); memory h in (0, 1); fmt the fixed-point format of w, v and u.
    The gradient is taken at :meth:`lookahead`, not at :attr:`weights`.
    """

    def __init__(self, w0, schedule: MomentumSchedule, group=None, memory=DEFAULT_MEMORY,
                 fmt=FixedFormat(), buffer=None):
        self.schedule, self.fmt = schedule, fmt
        self.memory = as_memory(memory)
        self.w = fmt.to_fixed(np.ravel(w0), name="w0")
        n = self.w.shape[0]
        self.v = np.zeros(n, np.int64)
        self.u = np.zeros(n, np.int64)
        self._attach(n, group, buffer)
        self._zeros = np.zeros(n, np.int64)

    @property
    def weights(self):
        return self.fmt.to_float(self.w)

    def state(self):
        return {"w": self.w, "v": self.v, "u": self.u}

    def float_state(self):
        """(v, u) as float64[N]."""
        return self.fmt.to_float(self.v), self.fmt.to_float(self.u)

    def _momenta(self, t):
        return [self.schedule.fraction(t, k) for k in range(self.schedule.groups)]

    def lookahead(self, t=None):
        """float64[N]: the point w + round(a_t g_t v) where step t takes its gradient (t: the step
        about to be taken; after a reverse step, the step just undone)."""
        t = self.t if t is None else int(t)
        if not 0 <= t < self.schedule.steps:
            raise StepError(f"step {t} has no look-ahead point: the schedule has steps 0 to "
                            f"{self.schedule.steps - 1}")
        ag = self.schedule.lr[t][self.group] * self.schedule.momenta[t][self.group]
        p = check_sum(self.w, rint_checked(ag * self.v, "a g v", t), "look-ahead point", t)
        return self.fmt.to_float(p)

    def _grad_term(self, grad, t):
        grad = self._checked_grad(grad, t)
        return rint_checked(float(1 - self.memory) * self.fmt.scale * grad, "(1 - h) grad", t)

    def step(self, grad):
        """Forward step t = self.t with grad = dL/dw at :meth:`lookahead`. Nothing changes on error."""
        self._refuse_mid_unstep()
        t = self.t
        if t >= self.schedule.steps:
            raise StepError(f"the schedule has {self.schedule.steps} steps; step {t} has none")
        gu = self._grad_term(grad, t)
        a, omg = self.schedule.lr[t][self.group], self.schedule.one_minus_g[t][self.group]
        done = []
        try:
            group_apply(self.u, self._zeros, [self.memory], self.buffer, False, "u")
            done.append(("u", [self.memory], self._zeros))
            u = check_sum(self.u, -gu, "u", t)
            momenta = self._momenta(t)
            group_apply(self.v, self.group, momenta, self.buffer, False, "v")
            done.append(("v", momenta, self.group))
            v = check_sum(self.v, rint_checked(omg * u, "(1 - g) u", t), "v", t)
            w = check_sum(self.w, rint_checked(a * v, "a v", t), "w", t)
        except Exception:
            for name, fracs, group in reversed(done):
                group_apply(getattr(self, name), group, fracs, self.buffer, True, name)
            raise
        self.u, self.v, self.w, self.t = u, v, w, t + 1

    @reverse_half
    def unstep_state(self):
        """First half of reversing step t-1: restore w and v (then take the gradient at lookahead())."""
        t = self._begin_unstep("unstep_memory")
        a, omg = self.schedule.lr[t][self.group], self.schedule.one_minus_g[t][self.group]
        w = check_sum(self.w, -rint_checked(a * self.v, "a v", t), "w", t)
        v = check_sum(self.v, -rint_checked(omg * self.u, "(1 - g) u", t), "v", t)
        group_apply(v, self.group, self._momenta(t), self.buffer, True, "v")
        self.w, self.v = w, v
        self._half_done = True

    @reverse_half
    def unstep_memory(self, grad):
        """Second half, with grad at lookahead(t-1): u <- (u + round((1-h) grad)) / h; then t <- t-1.
        If it fails, w and v are moved forward again, so the state is as before unstep_state."""
        t = self._begin_second_half("unstep_state")
        try:
            u = check_sum(self.u, self._grad_term(grad, t), "u", t)
            group_apply(u, self._zeros, [self.memory], self.buffer, True, "u")
        except FixedPointRangeError as exc:
            self._redo_state(t)
            # the forward pass held u_t in range, so only a different gradient can push it out
            raise BufferMismatchError(
                f"reversing step {t}: u would leave the fixed-point range, which it never did going "
                f"forward; the gradient differs from the forward step's (not deterministic?): {exc}") from exc
        except BaseException:
            self._redo_state(t)
            raise
        self.u, self.t = u, t
        self._half_done = False

    def _redo_state(self, t):
        """The exact inverse of unstep_state for step t."""
        a, omg = self.schedule.lr[t][self.group], self.schedule.one_minus_g[t][self.group]
        v = self.v.copy()
        group_apply(v, self.group, self._momenta(t), self.buffer, False, "v")
        self.v = v + rint_checked(omg * self.u, "(1 - g) u", t)
        self.w = self.w + rint_checked(a * self.v, "a v", t)
        self._half_done = False

    unstep_first, unstep_second, redo_first = unstep_state, unstep_memory, _redo_state

    def step_bits(self):
        """Entropy bound per weight per step: log2(1/h) + log2(1/g) (the largest group's g), float64[T]."""
        return float(np.log2(self.memory.denominator / self.memory.numerator)) + \
            self.schedule.bits_per_step().max(axis=1)

    def gradient_point(self, t):
        return self.lookahead(t)


__all__ = ["ReversibleNesterov", "as_memory", "DEFAULT_MEMORY"]
