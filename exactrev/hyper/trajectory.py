"""Where the reverse sweep gets w_t and v_t from: three interchangeable back-ends.

- ``reversal``  : exact reversal of ``ReversibleSGD`` (Maclaurin et al. 2015). Keeps O(P) plus the
                  information buffer, about log2(d/n) bits per weight per step.
- ``store``     : ``PlainFixedSGD`` (fixed point, no buffer), every (w_t, v_t) kept: 16 bytes per weight
                  per step.
- ``checkpoint``: ``PlainFixedSGD`` with c snapshots of (w, v), driven by the Revolve schedule of the
                  ``checkpoint_schedules`` package (Griewank & Walther's binomial checkpointing):
                  recomputes forward steps instead of storing them.

``store`` and ``checkpoint`` share their arithmetic, so they give the same bits; ``reversal`` differs from
them only in how ``v * n/d`` is rounded (within one unit either way).

The sweep walks t = T-1, ..., 0 and for each step calls, in this order,

    v_next = traj.velocity()          v_{t+1} (float64[P])
    w_t    = traj.back_weights()      w_t
    v_t    = traj.back_velocity(g_t)  v_t, given the gradient at w_t
"""

import numpy as np

from ..optim.progress import progress_range
from ..optim.sgd import PlainFixedSGD, ReversibleSGD


class ReversalTrajectory:
    """Reverse the optimiser step by step: memory O(P) + buffer."""

    name = "reversal"

    def __init__(self, w0, schedule, group, fmt):
        self.opt = ReversibleSGD(w0, schedule, group=group, fmt=fmt)
        self._start_bits = self.opt.buffer.content_bits
        self.w0_fixed = self.opt.w.copy()
        self.grad_evals = 0
        self.forward_steps = 0
        self.stats = {}

    def run_forward(self, grad_fn, progress=False):
        def counted(w, t):
            self.grad_evals += 1
            self.forward_steps += 1
            return grad_fn(w, t)
        self.opt.forward(counted, progress=progress)
        self.stats["buffer_bytes_peak"] = self.opt.buffer.nbytes_used
        self.stats["buffer_content_bits"] = self.opt.buffer.content_bits - self._start_bits

    def final_weights(self):
        return self.opt.weights

    def initial_weights(self):
        return self.opt.fmt.to_float(self.w0_fixed)

    def velocity(self):
        return self.opt.velocity

    def back_weights(self):
        self.opt.unstep_weights()
        return self.opt.weights

    def back_velocity(self, grad):
        self.opt.unstep_velocity(grad)
        return self.opt.velocity

    def finish(self):
        """Check the walk ended on w_0 bit for bit with the buffer restored; returns True."""
        self.opt.verify_restored()
        return bool(np.array_equal(self.opt.w, self.w0_fixed))

    def extra_bytes(self):
        """Peak bytes kept beyond the current state: the buffer's content (its size after forward)."""
        return self.stats.get("buffer_bytes_peak", self.opt.buffer.nbytes_used)


class _PlainTrajectory:
    """Shared by store and checkpoint: a PlainFixedSGD and forward steps that count themselves."""

    def __init__(self, w0, schedule, group, fmt):
        self.opt = PlainFixedSGD(w0, schedule, group=group, fmt=fmt)
        self.w0 = self.opt.snapshot()
        self.grad_evals = 0
        self.forward_steps = 0
        self.stats = {}
        self._grad_fn = None
        self._w_final = None

    def _advance(self, steps):
        for _ in range(steps):
            self.grad_evals += 1
            self.forward_steps += 1
            self.opt.step(self._grad_fn(self.opt.weights, self.opt.t))

    def final_weights(self):
        return self._w_final

    def initial_weights(self):
        return self.opt.fmt.to_float(self.w0[1])

    def finish(self):
        return True


class StoreTrajectory(_PlainTrajectory):
    """Keep every fixed-point (w_t, v_t) in memory and read them back: the store-everything reference."""

    name = "store"

    def run_forward(self, grad_fn, progress=False):
        self._grad_fn = grad_fn
        self.snaps = [self.opt.snapshot()]
        for _ in progress_range(self.opt.schedule.steps, progress, "forward"):
            self._advance(1)
            self.snaps.append(self.opt.snapshot())
        self._w_final = self.opt.weights
        self._t = self.opt.t

    def velocity(self):
        return self.opt.fmt.to_float(self.snaps[self._t][2])

    def back_weights(self):
        self._t -= 1
        return self.opt.fmt.to_float(self.snaps[self._t][1])

    def back_velocity(self, grad):
        return self.opt.fmt.to_float(self.snaps[self._t][2])

    def extra_bytes(self):
        return int(sum(PlainFixedSGD.snapshot_bytes(s) for s in self.snaps))


TRAJECTORIES = {"reversal": ReversalTrajectory, "store": StoreTrajectory}


def register(cls):
    """Make a back-end available to ``hypergradient(method=cls.name)``."""
    TRAJECTORIES[cls.name] = cls
    return cls


def group_sums(values, group, n_groups):
    """sum of values over each group, in index order (deterministic, no BLAS): float64[n_groups]."""
    return np.bincount(group, weights=values, minlength=n_groups)
