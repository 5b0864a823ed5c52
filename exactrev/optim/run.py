"""What the reversible optimisers whose steps are NumPy code around exact buffer passes (Adam/AdamW,
Nesterov) share: range-checked fixed-point arithmetic and the forward and reverse loops. Momentum
SGD has its own, around one kernel per step."""

import numpy as np

from ..exact.buffer import BufferMismatchError, InfoBuffer, content_bits
from ..exact.fixedpoint import FixedPointRangeError
from ..kernels.fixed import MAX_MAGNITUDE
from ..kernels.rans import WORD_BITS
from .checks import HalfStep, Snapshots, StateFingerprint, as_gradient, as_group_ids, as_step_count
from .progress import progress_range


def rint_checked(x, name, t):
    """np.rint(x) as int64; FixedPointRangeError naming step t, the first bad weight and ``name`` if a
    value is NaN/inf or beyond the fixed-point range."""
    y = np.rint(x)
    bad = ~(np.abs(y) <= MAX_MAGNITUDE)
    if bad.any():
        i = int(np.argmax(bad))
        raise FixedPointRangeError(f"step {t}, weight {i}: {name} = {x[i]!r} leaves the fixed-point range "
                                   "(or is NaN/inf); nothing was written")
    return y.astype(np.int64)


def check_sum(a, b, name, t):
    """a + b (int64 arrays); FixedPointRangeError naming step t and the first weight that would leave
    the fixed-point range."""
    total = a + b
    bad = np.abs(total) > MAX_MAGNITUDE
    if bad.any():
        i = int(np.argmax(bad))
        raise FixedPointRangeError(f"step {t}, weight {i}: {name} would leave the fixed-point range; "
                                   "nothing was written")
    return total


class ReversibleRun(Snapshots, HalfStep):
    """Mixin. The optimiser provides ``schedule.steps``, ``t``, ``w``, ``weights``, ``buffer``,
    ``step(grad)``, and:

    - ``state()``: a dict of its state arrays (w, and its velocity or moments);
    - ``step_bits()``: the entropy bound per weight for each step, float64[T];
    - ``float_state()``: the state beside the weights as float64[N] arrays (velocity and memory, or
      the moments), the values the adjoint of a step reads;
    - ``gradient_point(t)``: where step t takes its gradient (default: the weights);
    - ``unstep_first()``, ``unstep_second(grad)`` and ``redo_first(t)``: the two halves of reversing
      step t-1 and the exact inverse of the first (used when the gradient function raises).

    ``_attach`` records the buffer's snapshot and the state's fingerprint, which ``reverse`` checks at
    step 0.
    """

    def _attach(self, n, group, buffer):
        """Set ``group`` (int64[N] ids in [0, G); all 0 if None), ``buffer`` (a fresh InfoBuffer, or
        the given one, which must have N lanes), its starting snapshot and t = 0."""
        self.group = as_group_ids(group, n, self.schedule.groups)
        self.buffer = buffer if buffer is not None else InfoBuffer(n)
        if self.buffer.n_lanes != n:
            raise ValueError(f"buffer has {self.buffer.n_lanes} lanes for {n} weights")
        self._start = self.buffer.snapshot()
        self._start_state = StateFingerprint(**self.state())
        self.t = 0

    def _checked_grad(self, grad, t):
        """grad as float64[N]; StepError naming the step (and weight) if it is not N real, finite
        numbers."""
        return as_gradient(grad, self.w.shape[0], t, finite=True)

    def gradient_point(self, t):
        return self.weights

    def forward(self, grad_fn, steps=None, progress=False):
        """Run ``steps`` steps (default: to the end of the schedule); grad_fn(w: float64[N], t) ->
        float64[N] must be deterministic. The buffer is sized once from the entropy bound."""
        steps = as_step_count(steps, self.schedule.steps - self.t, "forward")
        bits = self.step_bits()[self.t:self.t + steps].sum()
        self.buffer.reserve(int(self.buffer.counts.max()) + int(np.ceil(bits / WORD_BITS)) + 4)
        for _ in progress_range(steps, progress, "forward"):
            self.step(grad_fn(self.gradient_point(self.t), self.t))

    def unstep(self, grad_fn):
        """Undo the last step, calling grad_fn once at the restored point. Atomic: if grad_fn raises
        (KeyboardInterrupt included) or its gradient is refused, the state is as before the call."""
        self._unstep_with(grad_fn, self.gradient_point)

    def reverse(self, grad_fn, steps=None, progress=False):
        """Undo ``steps`` steps (default: all); at step 0, verify the buffer and the state."""
        steps = as_step_count(steps, self.t, "reverse")
        for _ in progress_range(steps, progress, "reverse"):
            self.unstep(grad_fn)
        if self.t == 0:
            self.verify_restored()

    def verify_restored(self):
        """BufferMismatchError unless the buffer is back at its start and every state array is bit
        for bit what the optimiser was constructed with."""
        if not self.buffer.matches(self._start):
            raise BufferMismatchError("after reversal the information buffer differs from its initial "
                                      "state; the usual cause is a gradient that is not deterministic")
        self._start_state.verify(**self.state())

    def bits_per_weight_step(self):
        """Buffer content added since construction, per weight per step taken."""
        start = float(content_bits(*self._start).sum())
        return (self.buffer.content_bits - start) / (self.w.shape[0] * max(self.t, 1))
