"""Checks every reversible optimiser shares: reading a gradient, refusing half-finished reverse steps,
and the fingerprint of the state a full reversal must return to.

A reverse step has two halves (undo the weights; then, with the gradient recomputed at the restored
weights, undo the velocity or moments). ``HalfStep`` tracks which half comes next so that a half is
never applied twice or out of turn. ``StateFingerprint`` records a 128-bit BLAKE2b digest of every
state array at construction (O(1) memory) and, at the end of a full reversal, names each array that did
not come back bit for bit.
"""

import functools
import hashlib

import numpy as np

from ..exact.buffer import BufferMismatchError, BufferUnderflowError, ReversalUnderflowError


class StepError(RuntimeError):
    """A step cannot be taken (names the step, the weight index and the reason); nothing was written."""


def as_gradient(grad, n, t, finite=False) -> np.ndarray:
    """``grad`` as a contiguous float64[n] array, or StepError naming step t: a value that is not a
    real number (complex, text, objects), a wrong shape, and with ``finite`` a NaN or infinity."""
    if np.iscomplexobj(grad):
        raise StepError(f"step {t}: the gradient is complex; it must be real (float64[{n}])")
    try:
        out = np.ascontiguousarray(grad, np.float64)
    except (TypeError, ValueError) as exc:
        raise StepError(f"step {t}: the gradient cannot be read as float64 numbers ({exc})") from None
    if out.shape != (n,):
        raise StepError(f"step {t}: gradient has shape {out.shape}, expected ({n},)")
    if finite:
        bad = ~np.isfinite(out)
        if bad.any():
            i = int(np.argmax(bad))
            raise StepError(f"step {t}, weight {i}: gradient is {float(out[i])!r}; nothing was written")
    return out


def as_group_ids(group, n, n_groups) -> np.ndarray:
    """``group`` (None: all 0) as int64[n] ids in [0, n_groups); ValueError for floats, booleans, a
    wrong shape or an id out of range (a float id would otherwise be truncated silently)."""
    if group is None:
        return np.zeros(n, np.int64)
    arr = np.asarray(group)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"group ids must be integers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, np.int64)
    if arr.shape != (n,) or (n and (arr.min() < 0 or arr.max() >= n_groups)):
        raise ValueError(f"group ids must be {n} values in [0, {n_groups}), got shape {arr.shape}"
                         + (f", ids from {arr.min()} to {arr.max()}" if arr.size else ""))
    return arr


def as_step_count(steps, available, direction):
    """``steps`` (None: all ``available``) as an int in [0, available]; StepError otherwise."""
    if steps is None:
        return available
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)):
        raise StepError(f"steps must be a whole number, got {steps!r}")
    if not 0 <= steps <= available:
        what = "remain in the schedule" if direction == "forward" else "were taken"
        raise StepError(f"cannot run {int(steps)} {direction} steps: only {available} {what}")
    return int(steps)


def reverse_half(method):
    """Decorator for the halves of a reverse step: a buffer underflow there becomes a
    ReversalUnderflowError naming the step (a reversal pops only what its forward steps pushed)."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        t = self.t - 1
        try:
            return method(self, *args, **kwargs)
        except BufferUnderflowError as exc:
            if isinstance(exc, ReversalUnderflowError):
                raise
            raise ReversalUnderflowError(
                f"reversing step {t}: {exc}. A reversal pops only what its forward steps pushed, so the "
                "gradient (or the state) differs from the forward run's (not deterministic?), or the "
                "buffer is not the one this run pushed into") from exc
    return wrapped


class HalfStep:
    """Mixin: which half of a reverse step comes next (``_half_done`` is True between the halves), and
    the atomic reverse step built from the halves the optimiser names ``unstep_first``,
    ``unstep_second`` and ``redo_first``."""

    _half_done = False

    def _begin_unstep(self, second_half):
        """Check the first half of reversing step t-1 may start; returns t-1."""
        if self._half_done:
            raise StepError(f"the first half of reversing step {self.t - 1} is already done; call "
                            f"{second_half} next (with the gradient at the restored weights)")
        if self.t <= 0:
            raise StepError("nothing to reverse: the optimiser is at step 0")
        return self.t - 1

    def _begin_second_half(self, first_half):
        """Check the second half may run (its first half is done); returns the step t-1 it finishes."""
        if not self._half_done:
            raise StepError(f"call {first_half} first: the second half of a reverse step needs the "
                            f"first (step {self.t}, {'nothing to reverse' if self.t == 0 else 'not started'})")
        return self.t - 1

    def _unstep_with(self, grad_fn, point):
        """Reverse one step atomically: ``unstep_first()``, then grad = grad_fn(point(t), t) at the
        restored point, then ``unstep_second(grad)``. If grad_fn raises (KeyboardInterrupt included),
        ``redo_first(t)`` undoes the first half before the exception propagates; the second half undoes
        it itself when it refuses the gradient. Returns the gradient."""
        self.unstep_first()
        t = self.t - 1
        try:
            grad = grad_fn(point(t), t)
        except BaseException:
            self.redo_first(t)
            raise
        self.unstep_second(grad)
        return grad

    def _refuse_mid_unstep(self):
        if self._half_done:
            raise StepError(f"reversing step {self.t - 1} is half done: finish it before stepping forward")


class Snapshots:
    """Mixin for walking a trajectory without reversing it (the store and checkpoint methods): copies of
    the state arrays that ``state()`` names, put back by ``restore``.

    A snapshot is ``(t, {name: int64[N]}, buffer content or None)``. Forward steps from a restored
    snapshot repeat the original ones bit for bit only with the buffer's content too (a reversible
    step pops bits to round), so take ``snapshot(buffer=True)`` to step on from it; a snapshot
    without it is for reading the state back.
    """

    def snapshot(self, buffer=False):
        kept = self.buffer.content_copy() if buffer and getattr(self, "buffer", None) is not None else None
        return self.t, {name: a.copy() for name, a in self.state().items()}, kept

    def restore(self, snap) -> None:
        t, arrays, kept = snap
        for name, a in arrays.items():
            getattr(self, name)[:] = a
        if kept is not None:
            self.buffer.restore_content(kept)
        self.t = t
        self._half_done = False

    @staticmethod
    def snapshot_bytes(snap) -> int:
        kept = 0 if snap[2] is None else sum(a.nbytes for a in snap[2])
        return int(sum(a.nbytes for a in snap[1].values()) + kept)


def _digest(a) -> bytes:
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
    return h.digest()


class StateFingerprint:
    """Digests of named state arrays, e.g. ``StateFingerprint(w=w, v=v)``: 16 bytes each."""

    def __init__(self, **arrays):
        self.digests = {name: _digest(a) for name, a in arrays.items()}

    def differing(self, **arrays):
        """Names of the arrays whose digest differs from the recorded one."""
        return [name for name, a in arrays.items() if _digest(a) != self.digests[name]]

    def verify(self, **arrays):
        """BufferMismatchError naming every array that is not bit for bit what was recorded."""
        bad = self.differing(**arrays)
        if bad:
            raise BufferMismatchError(
                f"the reversal reached step 0 but {', '.join(bad)} did not come back bit for bit to the "
                "values the run started from; the usual cause is a gradient function that returned "
                "other values on the way back than on the way forward (not deterministic)")
