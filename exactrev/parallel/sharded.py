"""Reversible momentum SGD with its state split across ranks: each rank keeps a contiguous slice of the
weights, its velocity and its buffer lanes (so buffer memory per rank is about 1/P of the total).

A forward step takes the full gradient (the same floats on every rank: ``DataParallelLoss``), updates
the rank's slice exactly (``ReversibleSGD``), and the ranks exchange the new weight integers
(``Allgatherv``, 8 bytes per weight in all), so every rank holds the same full weights for the next
gradient. A reverse step undoes the weights on each slice, exchanges them, and, with the gradient at
the restored weights, undoes each slice's velocity. If any rank fails (overflow, NaN, a buffer that does
not match), the ranks where the step went through undo it with its exact inverse, and every rank
raises the same exception naming the rank, the step and the weight (``comm.agree``): nothing stays
written anywhere.

``save(folder)`` writes each rank's slice (``rank{r}of{P}.npz``); ``load(folder, comm)`` reads it back
on the same number of ranks, so a run saved after the forward pass can be reversed later.
"""

import os

import numpy as np

from ..exact.buffer import InfoBuffer
from ..exact.fixedpoint import FixedFormat
from ..optim.progress import progress_range
from ..optim.schedule import MomentumSchedule
from ..optim.sgd import ReversibleSGD
from .comm import agree, allgather_slices


def slice_counts(n, size):
    """Weights per rank: n // size, one more on the first n % size ranks."""
    return [n // size + (1 if r < n % size else 0) for r in range(size)]


class ShardedSGD:
    """``ReversibleSGD``'s interface (forward, the two reverse halves, ``weights``, ``float_state``,
    ``verify_restored``) over the ranks of ``comm``. w0: float64[N], the same on every rank;
    group: int[N] weight types; ``buffer`` is this rank's (its lanes only)."""

    def __init__(self, w0, schedule: MomentumSchedule, comm, group=None, fmt=FixedFormat()):
        w0 = np.ravel(np.asarray(w0, np.float64))
        n = w0.shape[0]
        if n < comm.size:
            raise ValueError(f"{n} weights cannot be split over {comm.size} ranks")
        self.comm, self.schedule, self.fmt = comm, schedule, fmt
        self.counts = slice_counts(n, comm.size)
        self.lo = sum(self.counts[:comm.rank])
        self.hi = self.lo + self.counts[comm.rank]
        group = np.zeros(n, np.int64) if group is None else np.ascontiguousarray(group, np.int64)
        self.local = ReversibleSGD(w0[self.lo:self.hi], schedule, group=group[self.lo:self.hi], fmt=fmt)
        self.local.index_offset = self.lo
        self.w = fmt.to_fixed(w0, name="w0")
        self.exchanged_bytes = {"forward": 0, "reverse": 0}   # bytes this rank sent to all-gathers

    # -- views --------------------------------------------------------------------------------------
    @property
    def t(self):
        return self.local.t

    @property
    def buffer(self) -> InfoBuffer:
        """This rank's buffer: the lanes of its slice."""
        return self.local.buffer

    @property
    def weights(self) -> np.ndarray:
        return self.fmt.to_float(self.w)

    def gradient_point(self, t):
        return self.weights

    def float_state(self):
        """(v,): the full velocity, gathered from the slices."""
        return (self.fmt.to_float(self._gather(self.local.v, "reverse")),)

    def _gather(self, local, phase):
        self.exchanged_bytes[phase] += local.nbytes
        return allgather_slices(self.comm, local, self.counts)

    def _exchange(self, phase="reverse"):
        self.w = self._gather(self.local.w, phase)

    # -- steps ----------------------------------------------------------------------------------------
    def step(self, grad):
        """Forward step t with the full gradient (float64[N], the same on every rank)."""
        t = self.t
        g = np.asarray(grad, np.float64)[self.lo:self.hi]

        def undo(_):
            self.local.unstep_weights()
            self.local.unstep_velocity(g)

        agree(self.comm, f"forward step {t}", self.local.step, g, undo=undo)
        self._exchange("forward")

    def forward(self, grad_fn, steps=None, progress=False):
        """``steps`` forward steps (default: to the end), grad_fn(w, t) -> the full gradient."""
        steps = self.schedule.steps - self.t if steps is None else int(steps)
        self.local.reserve_for(steps)
        for _ in progress_range(steps, progress and self.comm.rank == 0, "forward"):
            self.step(grad_fn(self.weights, self.t))

    def unstep_weights(self):
        t = self.t - 1
        agree(self.comm, f"reverse step {t}", self.local.unstep_weights,
              undo=lambda _: self.local._redo_weights(t))
        self._exchange()

    def unstep_velocity(self, grad):
        """Second half; if it fails on any rank, every rank is back where it was before
        ``unstep_weights`` (as ``ReversibleSGD``)."""
        t = self.t - 1
        g = np.asarray(grad, np.float64)[self.lo:self.hi]
        try:
            agree(self.comm, f"reverse step {t}", self.local.unstep_velocity, g,
                  undo=lambda _: self.local.step(g))
        finally:
            self._exchange()

    def redo_first(self, t):
        self.local._redo_weights(t)
        self._exchange()

    unstep_first, unstep_second = unstep_weights, unstep_velocity

    def verify_restored(self):
        """BufferMismatchError on every rank when any rank's slice or buffer did not come back."""
        agree(self.comm, "after reversal", self.local.verify_restored)

    # -- saving ---------------------------------------------------------------------------------------
    def save(self, folder):
        """Write this rank's slice, buffer and step to ``folder/rank{r}of{P}.npz`` (every rank calls it)."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"rank{self.comm.rank}of{self.comm.size}.npz")
        tmp = path + ".tmp.npz"
        np.savez(tmp, t=self.t, lo=self.lo, hi=self.hi, w=self.local.w, v=self.local.v, full_w=self.w,
                 buffer=np.frombuffer(self.local.buffer.to_bytes(), np.uint8))
        os.replace(tmp, path)
        self.comm.Barrier()

    @classmethod
    def load(cls, folder, schedule, comm, group=None, fmt=FixedFormat(), w0=None):
        """The run ``save`` wrote from the same number of ranks; ``w0`` (float64[N]), when given, is
        the run's initial weights, which the reversal checks it returns to."""
        path = os.path.join(folder, f"rank{comm.rank}of{comm.size}.npz")

        def read():
            if not os.path.exists(path):
                found = sorted(f for f in os.listdir(folder) if f.startswith("rank")) \
                    if os.path.isdir(folder) else []
                raise FileNotFoundError(f"{path} is missing: a run saved with another number of ranks? "
                                        f"({found[:4] or 'no rank files'})")
            with np.load(path) as f:
                return {k: f[k] for k in f.files}

        saved = agree(comm, f"loading {folder}", read)
        full = saved["full_w"]
        start = fmt.to_float(full) if w0 is None else w0
        opt = cls(start, schedule, comm, group, fmt)
        if (opt.lo, opt.hi) != (int(saved["lo"]), int(saved["hi"])):
            raise ValueError(f"{path} holds weights [{saved['lo']}, {saved['hi']}), this rank's slice is "
                             f"[{opt.lo}, {opt.hi})")
        local = opt.local
        local.w[:], local.v[:] = saved["w"], saved["v"]
        local.buffer = InfoBuffer.from_bytes(saved["buffer"].tobytes(), source=path)
        local.t = int(saved["t"])
        opt.w = full.copy()
        return opt
