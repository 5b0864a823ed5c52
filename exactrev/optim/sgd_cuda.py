"""Reversible momentum SGD with every array on the GPU (numba.cuda): the device twin of ReversibleSGD.

State (w, v, buffer heads/counts/words) and the whole schedule (code tables, learning rates, (1-g) scale)
are uploaded once; a step is two kernel launches (dry run, commit) with no host transfer. Errors are
collected on the device in a sticky flag (see ``kernels/cuda.py``) and raised by :meth:`check`, which
``forward``/``reverse`` call at the end of a run. After a failure the state is that of the failing
step, unchanged, and ``t`` is set back to it.

The buffer format is the CPU one: :meth:`buffer_to_host` gives an ``InfoBuffer`` that can be saved,
loaded and popped on the CPU, bit for bit what the CPU kernels would have produced.
"""

import numpy as np
from numba import cuda

from ..exact.buffer import BufferUnderflowError, InfoBuffer, ReversalUnderflowError
from ..exact.fixedpoint import FixedFormat, FixedPointRangeError
from ..kernels import cuda as K
from ..kernels.cuda_device import require_cuda
from ..kernels.momentum import ERR_MESSAGES
from ..kernels.rans import CODE_LEN, WORD_BITS, code_table
from .checks import HalfStep, StateFingerprint, as_group_ids, as_step_count
from .progress import progress_range
from .schedule import MomentumSchedule
from .sgd import BufferMismatchError, StepError

THREADS = 256
_MESSAGES = {**ERR_MESSAGES, K.ERR_BUFFER_FULL: "device buffer full (reserve more rows)"}


def blocks(n, threads=THREADS):
    return (n + threads - 1) // threads


def step_tables(schedule: MomentumSchedule, scale):
    """Per-step code tables for n and d (int64[T, G, CODE_LEN]) and (1-g) * scale."""
    T, G = schedule.lr.shape
    ci_n = np.empty((T, G, CODE_LEN), np.int64)
    ci_d = np.empty((T, G, CODE_LEN), np.int64)
    for t in range(T):
        ci_n[t] = code_table(schedule.nums[t])
        ci_d[t] = code_table(schedule.dens[t])
    return ci_n, ci_d, schedule.one_minus_g * scale


class CudaReversibleSGD(HalfStep):
    """Momentum SGD on the GPU whose trajectory runs backwards exactly (same integers as the CPU).

    Parameters as :class:`ReversibleSGD`. The buffer gets room for the whole schedule from its entropy
    bound when constructed.
    """

    def __init__(self, w0, schedule: MomentumSchedule, v0=None, group=None, fmt=FixedFormat()):
        require_cuda()
        self.fmt, self.schedule = fmt, schedule
        w = fmt.to_fixed(np.ravel(w0), name="w0")
        n = w.shape[0]
        v = np.zeros(n, np.int64) if v0 is None else fmt.to_fixed(np.ravel(v0), name="v0")
        if v.shape != (n,):
            raise ValueError(f"v0 has {v.shape[0]} values, w0 has {n}")
        group = as_group_ids(group, n, schedule.groups)
        host_buf = InfoBuffer(n)
        host_buf.reserve(int(np.ceil(schedule.bits_per_step().max(axis=1).sum() / WORD_BITS)) + 4)
        self.floor = host_buf.floor
        self.n_weights = n
        self.w, self.v = cuda.to_device(w), cuda.to_device(v)
        self.group = cuda.to_device(group)
        self.heads, self.counts = cuda.to_device(host_buf.heads), cuda.to_device(host_buf.counts)
        self.words = cuda.to_device(host_buf.words)
        self._start = (host_buf.heads.copy(), host_buf.counts.copy())
        self._start_state = StateFingerprint(w=w, v=v)
        tables = step_tables(schedule, fmt.scale)
        self.ci_n, self.ci_d, self.omg_scale = (cuda.to_device(a) for a in tables)
        self.lr = cuda.to_device(schedule.lr)
        self.errs = cuda.to_device(np.zeros(n, np.int8))
        self.flag = cuda.to_device(np.zeros(2, np.int64))
        self.t = 0
        self._wf = cuda.device_array(n, np.float64)
        self._vf = cuda.device_array(n, np.float64)

    # -- views ------------------------------------------------------------------------------------
    def weights_device(self):
        """Current weights as a float64 device array (exact image of the integers; reused buffer)."""
        K.to_float_kernel[blocks(self.n_weights), THREADS](self.w, self.fmt.resolution, self._wf)
        return self._wf

    def velocity_device(self, out=None):
        out = cuda.device_array(self.n_weights, np.float64) if out is None else out
        K.to_float_kernel[blocks(self.n_weights), THREADS](self.v, self.fmt.resolution, out)
        return out

    def gradient_point(self, t):
        """Where step t takes its gradient: the weights, as a device array (``weights_device``)."""
        return self.weights_device()

    def float_state(self):
        """(v,) as a float64 device array (reused buffer)."""
        return (self.velocity_device(self._vf),)

    @property
    def weights(self) -> np.ndarray:
        return self.fmt.to_float(self.w.copy_to_host())

    @property
    def velocity(self) -> np.ndarray:
        return self.fmt.to_float(self.v.copy_to_host())

    def buffer_to_host(self) -> InfoBuffer:
        """The buffer as a CPU InfoBuffer (same format: save, load and pop it on the CPU)."""
        buf = InfoBuffer(self.n_weights)
        buf.heads, buf.counts = self.heads.copy_to_host(), self.counts.copy_to_host()
        buf.words = self.words.copy_to_host()
        return buf

    # -- steps ------------------------------------------------------------------------------------
    def _launch(self, kernel, *args):
        grid = blocks(self.n_weights)
        kernel[grid, THREADS](*args, False, self.errs, self.flag)
        kernel[grid, THREADS](*args, True, self.errs, self.flag)

    def step(self, grad_device) -> None:
        """Forward step t with the gradient at the current weights (float64 device array)."""
        self._refuse_mid_unstep()
        if self.t >= self.schedule.steps:
            raise StepError(f"the schedule has {self.schedule.steps} steps; step {self.t} has none")
        self._launch(K.momentum_forward_kernel, self.w, self.v, self.heads, self.counts, self.words,
                     self.floor, self.group, self.ci_n, self.ci_d, self.omg_scale, self.lr,
                     grad_device, self.t)
        self.t += 1

    def unstep_weights(self) -> None:
        """First half of reversing step t-1: w <- w - round(a v). Follow with :meth:`unstep_velocity`."""
        t = self._begin_unstep("unstep_velocity")
        self._launch(K.weights_back_kernel, self.w, self.v, self.group, self.lr, t)
        self._half_done = True

    def unstep_velocity(self, grad_device) -> None:
        """Second half, with the gradient at the restored weights; then t <- t-1. If the device finds
        an error, the weights are moved forward again (see :meth:`check`)."""
        t = self._begin_second_half("unstep_weights")
        self._launch(K.velocity_back_kernel, self.v, self.heads, self.counts, self.words, self.floor,
                     self.group, self.ci_n, self.ci_d, self.omg_scale, grad_device, t)
        K.weights_redo_kernel[blocks(self.n_weights), THREADS](self.w, self.v, self.group, self.lr,
                                                               t, False, self.flag)
        self.t = t
        self._half_done = False

    def _redo_weights(self, t) -> None:
        """The exact inverse of unstep_weights for step t (the gradient function raised)."""
        K.weights_redo_kernel[blocks(self.n_weights), THREADS](self.w, self.v, self.group, self.lr,
                                                               t, True, self.flag)
        self._half_done = False

    unstep_first, unstep_second, redo_first = unstep_weights, unstep_velocity, _redo_weights

    def check(self) -> None:
        """Raise if any step since construction failed on the device (one small device->host copy).

        The state is then that of the failing step, and ``t`` is set to match it.
        """
        stage, t = (int(x) for x in self.flag.copy_to_host())
        if stage == 0:
            return
        errs = self.errs.copy_to_host()
        i = int(np.argmax(errs != 0))
        reversing = stage in (K.STAGE_WEIGHTS_BACK, K.STAGE_VELOCITY_BACK)
        self.t = t + 1 if reversing else t
        self._half_done = False
        code = int(errs[i])
        if code == K.ERR_BUFFER_UNDERFLOW:
            exc = ReversalUnderflowError if reversing else BufferUnderflowError
        else:
            exc = StepError if code in (1, K.ERR_BUFFER_FULL) else FixedPointRangeError
        raise exc(f"{'reverse' if reversing else 'forward'} step {t}, weight {i}: {_MESSAGES[code]} "
                  f"(on the GPU); nothing was written from that step on")

    # -- whole runs -------------------------------------------------------------------------------
    def forward(self, grad_fn, steps=None, progress=False) -> None:
        """grad_fn(w_device, t) -> float64 device array; runs to the end of the schedule by default."""
        steps = as_step_count(steps, self.schedule.steps - self.t, "forward")
        for _ in progress_range(steps, progress, "forward"):
            self.step(grad_fn(self.weights_device(), self.t))
        self.check()

    def reverse(self, grad_fn, steps=None) -> None:
        """Undo ``steps`` steps (default: all); at step 0, verify the buffer and (w, v). A reverse step
        whose grad_fn raises (Ctrl-C included) is undone before the exception propagates."""
        steps = as_step_count(steps, self.t, "reverse")
        for _ in range(steps):
            self._unstep_with(grad_fn, lambda t: self.weights_device())
        self.check()
        if self.t == 0:
            self.verify_restored()

    def buffer_restored(self) -> bool:
        return bool(np.array_equal(self.heads.copy_to_host(), self._start[0])
                    and np.array_equal(self.counts.copy_to_host(), self._start[1]))

    def verify_restored(self) -> None:
        """BufferMismatchError unless the buffer and (w, v) are back, bit for bit, where they started."""
        if not self.buffer_restored():
            raise BufferMismatchError("after reversal the GPU information buffer differs from its initial "
                                      "state; the usual cause is a gradient that is not deterministic")
        self._start_state.verify(w=self.w.copy_to_host(), v=self.v.copy_to_host())
