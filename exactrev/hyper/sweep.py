"""The reverse sweep: one loop that drives every optimiser's step adjoint (``adjoints.py``) over a
*walk*, which gives back each step's state, last step first.

A walk holds an optimiser (momentum SGD, Nesterov, Adam/AdamW, on the CPU or the GPU) and answers,
for t = T-1, ..., 0, in this order:

    state()          the state after step t beside the weights (velocity, memory or moments)
    back_point()     the point where step t took its gradient (the weights, or Nesterov's look-ahead)
    back_state(g)    the state before step t, given that gradient

Three walks, the ``method`` of ``exactrev.hypergradient``:

- ``reversal``  : exact reversal of the reversible optimiser. Keeps O(P) plus the information buffer,
                  about log2(d/n) bits per weight per step for momentum g = n/d.
- ``store``     : every state kept (a snapshot per step, 16-24 bytes per weight per step), read back.
- ``checkpoint``: Revolve snapshots (``checkpointing.py``), forward steps recomputed instead of kept.

Momentum SGD's store and checkpoint walks run ``PlainFixedSGD`` (fixed point, no buffer), whose
velocity differs from the reversible one only in how v * n/d is rounded (within one unit).
"""

import time

import numpy as np

from ..optim.progress import progress_range
from .losses import forward_gradient, loss_session
from .meta import HypergradResult


def reverse_sweep(adjoint, walk, train_loss, valid_loss, progress=False) -> HypergradResult:
    """Train forward through ``walk``, then walk back from df/dw_T with ``adjoint``; the result holds
    f(w_T), the gradients ``adjoint.grads`` names, and what the walk kept and checked."""
    start = time.perf_counter()
    with loss_session(train_loss):
        walk.run_forward(forward_gradient(train_loss), progress)
        w_final = walk.final_weights()
        forward_s = time.perf_counter() - start
        loss = adjoint.start(valid_loss, w_final)
        for t in progress_range(adjoint.steps, progress, "hypergradient", reverse=True):
            adjoint.step_back(t, walk)
    restored = walk.finish()
    grads = adjoint.grads(walk.initial_weights())
    stats = {**walk.stats, **adjoint.stats, "forward_steps": walk.forward_steps, "forward_s": forward_s,
             "reverse_s": time.perf_counter() - start - forward_s}
    return HypergradResult(float(loss), grads, w_final, restored, walk.grad_evals + adjoint.grad_evals,
                           adjoint.hvp_evals, walk.extra_bytes(), stats)


class Walk:
    """What the walks share: the optimiser, w_0 as floats, and counts of forward gradient calls."""

    def __init__(self, opt):
        self.opt = opt
        self.w0 = opt.weights
        self.grad_evals = 0
        self.forward_steps = 0
        self.stats = {}

    def _counted(self, grad_fn):
        def counted(w, t):
            self.grad_evals += 1
            self.forward_steps += 1
            return grad_fn(w, t)
        return counted

    def initial_weights(self):
        return self.w0

    def state(self):
        return self.opt.float_state()


class Reversal(Walk):
    """Reverse the optimiser step by step: memory O(P) + buffer."""

    name = "reversal"

    def __init__(self, opt):
        super().__init__(opt)
        self._w0_fixed = opt.w.copy()
        self._start_bits = opt.buffer.content_bits

    def run_forward(self, grad_fn, progress=False):
        self.opt.forward(self._counted(grad_fn), progress=progress)
        self.stats["buffer_bytes_peak"] = self.opt.buffer.nbytes_used
        self.stats["buffer_content_bits"] = self.opt.buffer.content_bits - self._start_bits

    def final_weights(self):
        return self.opt.weights

    def back_point(self):
        self.opt.unstep_first()
        return self.opt.gradient_point(self.opt.t - 1)

    def back_state(self, grad):
        self.opt.unstep_second(grad)
        return self.opt.float_state()

    def finish(self):
        """Check the walk ended on w_0 bit for bit with the buffer restored (BufferMismatchError if
        not); returns True."""
        self.opt.verify_restored()
        return bool(np.array_equal(self.opt.w, self._w0_fixed))

    def extra_bytes(self):
        """Peak bytes kept beyond the current state: the buffer's content after the forward run."""
        return self.stats.get("buffer_bytes_peak", self.opt.buffer.nbytes_used)


class Store(Walk):
    """Keep a snapshot of every step's state and read them back: the store-everything reference."""

    name = "store"

    def run_forward(self, grad_fn, progress=False):
        o, grad_fn = self.opt, self._counted(grad_fn)
        self.snaps = [o.snapshot()]
        for _ in progress_range(o.schedule.steps, progress, "forward"):
            o.step(grad_fn(o.gradient_point(o.t), o.t))
            self.snaps.append(o.snapshot())
        self._w_final = o.weights
        self._t = o.t

    def final_weights(self):
        return self._w_final

    def back_point(self):
        self._t -= 1
        self.opt.restore(self.snaps[self._t])
        return self.opt.gradient_point(self._t)

    def back_state(self, grad):
        return self.opt.float_state()

    def finish(self):
        return True

    def extra_bytes(self):
        return int(sum(self.opt.snapshot_bytes(s) for s in self.snaps))


WALKS = {"reversal": Reversal, "store": Store}


def register(cls):
    """Make a walk available to ``hypergradient(method=cls.name)``."""
    WALKS[cls.name] = cls
    return cls
