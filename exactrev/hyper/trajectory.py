"""Where the reverse sweep gets w_t and v_t from: exact reversal, or a stored trajectory.

Both run the same fixed-point forward pass (``ReversibleSGD``), so they give the same bits; they differ
in what they keep. The sweep walks t = T-1, ..., 0 and for each step calls

    v_next = traj.velocity()          v_{t+1} (float64[P]), the state the walk is at
    w_t    = traj.back_weights()      restores w_t
    v_t    = traj.back_velocity(g_t)  restores v_t, given the gradient at w_t

``ReversalTrajectory`` keeps O(P) plus the information buffer; ``StoreTrajectory`` keeps every
(w_t, v_t) pair (128 bits per weight per step).
"""

import numpy as np

from ..optim.progress import progress_range
from ..optim.sgd import ReversibleSGD


class ReversalTrajectory:
    """Reverse the optimiser step by step (Maclaurin et al. 2015): memory O(P) + buffer."""

    name = "reversal"

    def __init__(self, opt: ReversibleSGD):
        self.opt = opt
        self.grad_evals = 0

    def run_forward(self, grad_fn, progress=False):
        def counted(w, t):
            self.grad_evals += 1
            return grad_fn(w, t)
        self.opt.forward(counted, progress=progress)

    def velocity(self):
        return self.opt.velocity

    def back_weights(self):
        self.opt.unstep_weights()
        return self.opt.weights

    def back_velocity(self, grad):
        self.opt.unstep_velocity(grad)
        return self.opt.velocity

    def finish(self):
        self.opt.verify_restored()

    def extra_bytes(self):
        """Bytes the method keeps beyond the current state: the buffer's content."""
        return self.opt.buffer.nbytes_used


class StoreTrajectory:
    """Keep every fixed-point (w_t, v_t) in memory and read them back: the store-everything reference."""

    name = "store"

    def __init__(self, opt: ReversibleSGD):
        self.opt = opt
        self.ws, self.vs = [], []
        self.grad_evals = 0
        self._t = None

    def run_forward(self, grad_fn, progress=False):
        opt = self.opt
        self.ws, self.vs = [opt.w.copy()], [opt.v.copy()]
        opt.reserve_for(opt.schedule.steps - opt.t)
        for _ in progress_range(opt.schedule.steps - opt.t, progress, "forward"):
            self.grad_evals += 1
            opt.step(grad_fn(opt.weights, opt.t))
            self.ws.append(opt.w.copy())
            self.vs.append(opt.v.copy())
        self._t = opt.t

    def velocity(self):
        return self.opt.fmt.to_float(self.vs[self._t])

    def back_weights(self):
        self._t -= 1
        return self.opt.fmt.to_float(self.ws[self._t])

    def back_velocity(self, grad):
        return self.opt.fmt.to_float(self.vs[self._t])

    def finish(self):
        pass

    def extra_bytes(self):
        return int(sum(a.nbytes for a in self.ws) + sum(a.nbytes for a in self.vs))


TRAJECTORIES = {"reversal": ReversalTrajectory, "store": StoreTrajectory}


def group_sums(values, group, n_groups):
    """sum of values over each group, in index order (deterministic, no BLAS): float64[n_groups]."""
    return np.bincount(group, weights=values, minlength=n_groups)
