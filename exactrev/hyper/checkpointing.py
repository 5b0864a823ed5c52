"""Binomial checkpointing back-end: Revolve schedules from the ``checkpoint_schedules`` package.

The schedule is Griewank & Walther's binomial checkpointing (Revolve, GW2000) as the package generates
it: ``MultistageCheckpointSchedule(T, c, 0, trajectory="revolve")`` (all c snapshots in memory). It
gives the same optimal forward-step counts as the package's ``Revolve(T, c)`` class. That class builds
its schedule by an O(T^2 c) dynamic programme in pure Python: 659 s for T = 10**4, c = 11 on this
machine, against 0.1 s here. ``tests/hyper/test_checkpointing.py`` checks that the counts agree.
The schedule is a sequence of actions; this walk carries them out on the optimiser's snapshots
(``PlainFixedSGD`` for momentum SGD, the optimiser itself for Nesterov and Adam):

    Forward(n0, n1, write_ics, write_adj_deps)  advance n0 -> n1; keep a snapshot of state n0 if
                                                write_ics; keep state n1-1 for the adjoint if
                                                write_adj_deps
    Copy(n) / Move(n)                           restore snapshot n (Move also frees it)
    Reverse(n1, n0)                             the sweep's step t = n0 runs on the kept state
    EndForward / EndReverse                     ends of the two sweeps

It performs exactly the forward steps the schedule lists (``forward_steps``) and keeps at most
``snapshots`` snapshots plus the adjoint's working state.
"""

import math

from checkpoint_schedules import (Copy, EndForward, EndReverse, Forward, Move,
                                  MultistageCheckpointSchedule, Reverse)

from .sweep import Walk, register


def revolve_schedule(steps, snapshots):
    """The package's binomial (Revolve) schedule for T = steps with c = snapshots, all in memory."""
    return MultistageCheckpointSchedule(steps, snapshots, 0, trajectory="revolve")


def revolve_forward_steps(steps, snapshots):
    """Forward steps the schedule takes for T = steps and c = snapshots (first sweep included)."""
    return sum(len(a) for a in revolve_schedule(steps, snapshots) if isinstance(a, Forward))


def default_snapshots(steps):
    """c = ceil(sqrt(T)), a common middle ground."""
    return max(1, math.isqrt(steps - 1) + 1) if steps > 1 else 1


@register
class Checkpoint(Walk):
    """Revolve with ``snapshots`` snapshots of the optimiser's state in memory (default ceil(sqrt(T)))."""

    name = "checkpoint"

    def __init__(self, opt, snapshots=None):
        super().__init__(opt)
        steps = opt.schedule.steps
        self.snapshots = int(snapshots) if snapshots else default_snapshots(steps)
        if self.snapshots < 1:
            raise ValueError(f"snapshots must be >= 1, got {snapshots}")
        self.snapshots = min(self.snapshots, steps)
        self._actions = iter(revolve_schedule(steps, self.snapshots))
        self._kept = {}
        self._adj = None
        self._peak_bytes = 0
        self._grad_fn = None
        self.stats = {"snapshots": self.snapshots}

    def _advance(self, steps):
        o = self.opt
        for _ in range(steps):
            o.step(self._grad_fn(o.gradient_point(o.t), o.t))

    def _track(self):
        size = self.opt.snapshot_bytes
        total = sum(size(s) for s in self._kept.values())
        if self._adj is not None:
            total += size(self._adj)
        self._peak_bytes = max(self._peak_bytes, total)

    def _forward(self, action: Forward):
        if self.opt.t != action.n0:
            raise RuntimeError(f"schedule asks to advance from {action.n0}, state is at {self.opt.t}")
        if action.write_ics:
            self._kept[action.n0] = self.opt.snapshot(buffer=True)
        if action.write_adj_deps:
            self._advance(action.n1 - 1 - action.n0)
            self._adj = self.opt.snapshot(buffer=True)
            self._advance(1)
        else:
            self._advance(action.n1 - action.n0)
        self._track()

    def _run_until_reverse(self):
        """Carry out actions up to the next Reverse (returned), EndForward or EndReverse (None)."""
        for action in self._actions:
            if isinstance(action, Forward):
                self._forward(action)
            elif isinstance(action, (Copy, Move)):
                self.opt.restore(self._kept[action.n])
                if isinstance(action, Move):
                    del self._kept[action.n]
            elif isinstance(action, Reverse):
                return action
            elif isinstance(action, (EndForward, EndReverse)):
                return None
            else:
                raise RuntimeError(f"unexpected checkpoint action {action!r}")
        return None

    def run_forward(self, grad_fn, progress=False):
        self._grad_fn = self._counted(grad_fn)
        if self._run_until_reverse() is not None:
            raise RuntimeError("the schedule reversed before its forward sweep ended")
        self._w_final = self.opt.weights

    def final_weights(self):
        return self._w_final

    def state(self):
        action = self._run_until_reverse()
        if action is None or self._adj is None or self._adj[0] != action.n0:
            raise RuntimeError(f"checkpoint schedule out of step at {action!r}")
        self._t = action.n0
        return self.opt.float_state()  # state n1 = t + 1

    def back_point(self):
        self.opt.restore(self._adj)  # the working state is now t, as the next action expects
        self._adj = None
        return self.opt.gradient_point(self._t)

    def back_state(self, grad):
        return self.opt.float_state()

    def finish(self):
        self._run_until_reverse()
        self.stats["forward_steps"] = self.forward_steps
        return True

    def extra_bytes(self):
        return self._peak_bytes
