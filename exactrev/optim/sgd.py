"""Reversible momentum SGD: fixed-point weights and velocities, exact rational momenta, a buffer.

    forward step t:  v <- g_t v - (1 - g_t) grad(w, t);   w <- w + a_t v
    reverse step t:  w <- w - a_t v;   v <- (v + (1 - g_t) grad(w, t)) / g_t

Every step is a bijection on (w, v, buffer) given the gradient, so ``reverse`` after ``forward``
restores every bit of w_0 and v_0 and returns the buffer to the state it had at construction. At step 0
the reversal verifies both: the buffer against its snapshot and (w, v) against a fingerprint taken at
construction; when either differs (the usual cause: a gradient that is not deterministic) a
BufferMismatchError is raised. Every step checks all weights before it writes any (the forward step
and the second reverse half commit in one pass and undo what they wrote with the exact inverse when
a weight fails), and a reverse step whose gradient function raises (Ctrl-C included) is undone, so an
error leaves the state unchanged.
"""

import numpy as np

from ..exact.buffer import BufferMismatchError, BufferUnderflowError, InfoBuffer, content_bits
from ..exact.fixedpoint import FixedFormat, FixedPointRangeError
from ..kernels.momentum import (ERR_BUFFER_FULL, ERR_BUFFER_UNDERFLOW, ERR_GRAD_NOT_FINITE, ERR_MESSAGES,
                                group_rational_multiply_kernel, momentum_kick_kernel, plain_momentum_kernel,
                                velocity_back_kernel, velocity_redo_kernel, weights_back_kernel)
from ..kernels.rans import WORD_BITS
from ..kernels.threads import for_lanes
from .checks import (HalfStep, Snapshots, StateFingerprint, StepError, as_gradient, as_group_ids,
                     as_step_count, reverse_half)
from .schedule import MomentumSchedule
from .progress import progress_range


class FixedPointMomentum(Snapshots):
    """State and checks shared by the fixed-point momentum optimisers: w, v (int64), groups, step t.

    Parameters
    ----------
    w0 : float64[N]            initial weights (converted to fixed point, rounded to nearest)
    schedule : MomentumSchedule  learning rates and momenta, shape (T, G)
    v0 : float64[N], optional  initial velocity (default zeros)
    group : int[N], optional   parameter group of every weight, in [0, G) (default all 0)
    fmt : FixedFormat          fixed-point format of w and v
    """

    index_offset = 0
    """Added to a weight's index in error messages (a slice of a larger vector: ``ShardedSGD``)."""

    def __init__(self, w0, schedule: MomentumSchedule, v0=None, group=None, fmt=FixedFormat()):
        self.fmt = fmt
        self.schedule = schedule
        self.w = fmt.to_fixed(np.ravel(w0), name="w0")
        n = self.w.shape[0]
        self.v = (np.zeros(n, np.int64) if v0 is None
                  else fmt.to_fixed(np.ravel(v0), name="v0"))
        if self.v.shape != (n,):
            raise ValueError(f"v0 has {self.v.shape[0]} values, w0 has {n}")
        self.group = as_group_ids(group, n, schedule.groups)
        self.t = 0

    # -- views ------------------------------------------------------------------------------------
    @property
    def n_weights(self) -> int:
        return self.w.shape[0]

    @property
    def weights(self) -> np.ndarray:
        """Current weights as float64[N] (exact image of the fixed-point integers)."""
        return self.fmt.to_float(self.w)

    @property
    def velocity(self) -> np.ndarray:
        return self.fmt.to_float(self.v)

    def state(self):
        return {"w": self.w, "v": self.v}

    def float_state(self):
        """(v,) as float64[N]."""
        return (self.velocity,)

    def gradient_point(self, t):
        """Where step t takes its gradient: the weights."""
        return self.weights

    def _row(self, t):
        s = self.schedule
        return s.nums[t], s.dens[t], s.one_minus_g[t], s.lr[t]

    def _raise_if(self, errs, t, grad, what):
        if not errs.any():
            return
        i = int(np.argmax(errs != 0))
        code = int(errs[i])
        detail = f"w={float(self.weights[i])!r}, v={float(self.velocity[i])!r}"
        if grad is not None:
            detail += f", grad={float(grad[i])!r}"
        exc = (BufferUnderflowError if code == ERR_BUFFER_UNDERFLOW else
               StepError if code in (ERR_GRAD_NOT_FINITE, ERR_BUFFER_FULL) else FixedPointRangeError)
        raise exc(f"{what} step {t}, weight {i + self.index_offset} (group {self.group[i]}): "
                  f"{ERR_MESSAGES[code]} ({detail}; range +-{self.fmt.max_value:.6g}); nothing was written")

    def _check_grad(self, grad, t):
        return as_gradient(grad, self.n_weights, t)

    def _step_index(self):
        t = self.t
        if t >= self.schedule.steps:
            raise StepError(f"the schedule has {self.schedule.steps} steps; step {t} has none")
        return t

    def _next_step(self, grad):
        t = self._step_index()
        return t, self._check_grad(grad, t)


class PlainFixedSGD(FixedPointMomentum):
    """Fixed-point momentum SGD without a buffer (v <- rint(v n/d) ...): deterministic, not reversible.

    The arithmetic of the store-everything and checkpointing back-ends, which keep (w, v) snapshots
    instead of an information buffer. Snapshots (``snapshot``/``restore``) are copies of w and v: 16
    bytes per weight.
    """

    def step(self, grad) -> None:
        """Forward step t = self.t with grad = dL/dw at the current weights (float64[N])."""
        t, grad = self._next_step(grad)
        s = self.schedule
        args = (self.w, self.v, self.group, s.nums[t], s.dens[t], s.one_minus_g[t], s.lr[t], grad,
                self.fmt.scale)
        errs = np.zeros(self.n_weights, np.int8)
        kernel = for_lanes(plain_momentum_kernel, self.n_weights)
        kernel(*args, False, errs)
        self._raise_if(errs, t, grad, "forward")
        kernel(*args, True, errs)
        self.t = t + 1



class ReversibleSGD(HalfStep, FixedPointMomentum):
    """Momentum SGD whose whole trajectory can be run backwards exactly.

    Takes the parameters of :class:`FixedPointMomentum`, plus ``buffer`` (an InfoBuffer to push into;
    default a fresh one).
    """

    def __init__(self, w0, schedule: MomentumSchedule, v0=None, group=None, fmt=FixedFormat(),
                 buffer=None):
        super().__init__(w0, schedule, v0, group, fmt)
        n = self.n_weights
        self.buffer = buffer if buffer is not None else InfoBuffer(n)
        if self.buffer.n_lanes != n:
            raise ValueError(f"buffer has {self.buffer.n_lanes} lanes for {n} weights")
        self._start = self.buffer.snapshot()
        self._start_state = StateFingerprint(w=self.w, v=self.v)

    # -- one step ---------------------------------------------------------------------------------
    def step(self, grad) -> None:
        """Forward step t = self.t with grad = dL/dw at the current weights: float64[N], or any array
        that converts to it, such as a JAX array still being computed. The step's first half,
        v <- v n/d through the buffer, needs no gradient and runs before ``grad`` is read, so it
        overlaps a gradient that is computed asynchronously. If the gradient cannot be read (it
        raises, Ctrl-C included) or is refused, that half is undone: nothing is left written."""
        self._refuse_mid_unstep()
        t = self._step_index()
        self.buffer.ensure_free(1)
        nums, dens, omg, lr = self._row(t)
        self._decay(t, nums, dens, inverse=False)
        try:
            grad = self._check_grad(grad, t)
            args = (self.w, self.v, self.group, omg, lr, grad, self.fmt.scale)
            kick = for_lanes(momentum_kick_kernel, self.n_weights)
            errs = np.zeros(self.n_weights, np.int8)
            failed = kick(*args, False, None, errs)
            if failed:  # undo the lanes that went through
                kick(*args, True, errs, np.zeros_like(errs))
        except BaseException:
            self._decay(t, nums, dens, inverse=True)
            raise
        if failed:
            self._decay(t, nums, dens, inverse=True)
            self._raise_if(errs, t, grad, "forward")
        self.t = t + 1

    def _decay(self, t, nums, dens, inverse):
        """v <- v n/d (or with ``inverse`` its exact inverse) on every weight, the remainders in the
        buffer. Raises, with nothing written, if a weight fails (the inverse of a done decay cannot)."""
        args = (self.v, self.buffer.heads, self.buffer.counts, self.buffer.words, self.buffer.floor,
                self.group, nums, dens)
        kernel = for_lanes(group_rational_multiply_kernel, self.n_weights)
        errs = np.zeros(self.n_weights, np.int8)
        if kernel(*args, inverse, None, errs):
            kernel(*args, not inverse, errs, np.zeros_like(errs))
            self._raise_if(errs, t, None, "forward")

    def unstep_weights(self) -> None:
        """First half of reversing step t-1: w <- w - a v. Follow with :meth:`unstep_velocity`."""
        t = self._begin_unstep("unstep_velocity")
        errs = np.zeros(self.n_weights, np.int8)
        if for_lanes(weights_back_kernel, self.n_weights)(self.w, self.v, self.group, self.schedule.lr[t],
                                                          True, errs):  # failing lanes write nothing
            # move the lanes that went through forward again, then report the first failure
            self._redo_weights(t, errs == 0)
            self._raise_if(errs, t, None, "reverse")
        self._half_done = True

    @reverse_half
    def unstep_velocity(self, grad) -> None:
        """Second half: v <- (v + (1-g) grad) / g with grad at the restored weights; then t <- t-1.

        If it fails, the weights are moved forward again, so the state is as before unstep_weights.
        """
        t = self._begin_second_half("unstep_weights")
        try:
            grad = self._check_grad(grad, t)
            self.buffer.ensure_free(1)
            nums, dens, omg, _ = self._row(t)
            args = (self.v, self.buffer.heads, self.buffer.counts, self.buffer.words,
                    self.buffer.floor, self.group, nums, dens, omg, grad, self.fmt.scale)
            errs = np.zeros(self.n_weights, np.int8)
        except BaseException:
            self._redo_weights(t)
            raise
        if for_lanes(velocity_back_kernel, self.n_weights)(*args, errs):  # failing lanes write nothing
            # redo the lanes that went through and the weights, then report the first failure
            for_lanes(velocity_redo_kernel, self.n_weights)(*args, errs)
            self._redo_weights(t)
            self._raise_if(errs, t, grad, "reverse")
        self.t = t
        self._half_done = False

    def _redo_weights(self, t, lanes=slice(None)):
        # w <- w + a v on ``lanes``: the exact inverse of weights_back_kernel (same rounded product)
        step = np.rint(self.schedule.lr[t][self.group[lanes]] * self.v[lanes].astype(np.float64))
        self.w[lanes] += step.astype(np.int64)
        self._half_done = False

    unstep_first, unstep_second, redo_first = unstep_weights, unstep_velocity, _redo_weights

    # -- whole runs -------------------------------------------------------------------------------
    def reserve_for(self, steps: int) -> None:
        """Preallocate the buffer for ``steps`` more steps from the schedule's entropy bound."""
        bits = self.schedule.bits_per_step()[self.t:self.t + steps].max(axis=1).sum()
        self.buffer.reserve(int(self.buffer.counts.max()) + int(np.ceil(bits / WORD_BITS)) + 4)

    def forward(self, grad_fn, steps=None, progress=False) -> None:
        """Run ``steps`` forward steps (default: to the end of the schedule).

        grad_fn(w: float64[N], t: int) -> float64[N] must be deterministic.
        """
        steps = as_step_count(steps, self.schedule.steps - self.t, "forward")
        self.reserve_for(steps)
        for _ in progress_range(steps, progress, "forward"):
            self.step(grad_fn(self.weights, self.t))

    def unstep(self, grad_fn) -> np.ndarray:
        """Reverse one step; returns the gradient it recomputed at the restored weights.

        Atomic: if grad_fn raises (any exception, KeyboardInterrupt included) or its gradient is
        refused, the state is exactly as before the call.
        """
        return np.asarray(self._unstep_with(grad_fn, lambda t: self.weights))

    def reverse(self, grad_fn, steps=None, progress=False) -> None:
        """Run ``steps`` reverse steps (default: back to step 0, then verify the buffer)."""
        steps = as_step_count(steps, self.t, "reverse")
        for _ in progress_range(steps, progress, "reverse"):
            self.unstep(grad_fn)
        if self.t == 0:
            self.verify_restored()

    def buffer_restored(self) -> bool:
        """True when the buffer is in the state it had at construction (heads and counts equal)."""
        return self.buffer.matches(self._start)

    def verify_restored(self) -> None:
        """Raise BufferMismatchError unless the buffer is back to its state at construction and w, v
        are bit for bit the values the optimiser was constructed with."""
        if not self.buffer_restored():
            i = self.buffer.first_mismatch(self._start)
            raise BufferMismatchError(
                f"after reversal the information buffer differs from its initial state (first at "
                f"weight {i}); the usual cause is a gradient function that is not deterministic")
        self._start_state.verify(w=self.w, v=self.v)

    # -- accounting -------------------------------------------------------------------------------
    def bits_per_weight_step(self) -> float:
        """Buffer content pushed by this run, in bits per weight per step taken."""
        if self.t == 0:
            return 0.0
        start_bits = float(content_bits(*self._start).sum())
        return (self.buffer.content_bits - start_bits) / (self.n_weights * self.t)

