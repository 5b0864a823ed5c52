"""Exact multiplication of fixed-point arrays by a rational, the lost remainder kept in an InfoBuffer.

    multiply:  x <- hi n + (lo n + pop_n) // d, push (lo n + pop_n) % d, where x = hi d + lo
               (x * n/d within one unit; log2(d/n) bits pushed)
    divide:    the exact inverse, x <- x * d/n               (pops those bits back)

These are the building block of every reversible optimiser step; they are exposed for users who build
their own reversible updates.
"""

from fractions import Fraction

import numpy as np

from ..kernels.momentum import (ERR_BUFFER_UNDERFLOW, ERR_MESSAGES, group_rational_multiply_kernel,
                                rational_multiply_kernel)
from ..kernels.threads import for_lanes
from .buffer import BufferUnderflowError, InfoBuffer
from .fixedpoint import FixedPointRangeError
from .rational import as_momentum


def _apply(x, frac: Fraction, buffer: InfoBuffer, inverse: bool):
    if not isinstance(x, np.ndarray) or x.dtype != np.int64 or x.ndim != 1 or not x.flags.c_contiguous:
        raise TypeError("x must be a contiguous 1-D int64 array (fixed-point integers)")
    if x.shape[0] != buffer.n_lanes:
        raise ValueError(f"x has {x.shape[0]} values, the buffer {buffer.n_lanes} lanes")
    frac = as_momentum(frac, name="ratio")
    # plain ints (d <= 2**16) reach the kernel as int64 and cost less to pass than np.int64 scalars
    _run_with_rollback(rational_multiply_kernel, x, (frac.numerator, frac.denominator), inverse, buffer, "x")


def group_apply(x, group, fracs, buffer: InfoBuffer, inverse: bool, name="x") -> None:
    """In place: x[i] <- x[i] * fracs[group[i]] exactly (or its inverse), remainders in ``buffer``.

    ``fracs`` are Fractions in (0, 1] with denominators <= 2**16. All lanes are checked; on any failure
    the lanes already done are undone and the error names the first bad index (nothing is left written).
    """
    nums = np.array([f.numerator for f in fracs], np.int64)
    dens = np.array([f.denominator for f in fracs], np.int64)
    _run_with_rollback(group_rational_multiply_kernel, x, (group, nums, dens), inverse, buffer, name)


def _run_with_rollback(kernel, x, extra, inverse, buffer, name):
    """Run a one-pass lane kernel on (x, buffer arrays, *extra); if any lane failed, run its inverse on
    the lanes that went through (each lane step is a bijection) and raise naming the first bad lane.

    The buffer grows *before* its arrays are taken: the kernel must write into the current words array.
    """
    buffer.ensure_free(1)
    arrays = (x, buffer.heads, buffer.counts, buffer.words, buffer.floor, *extra)
    errs = buffer.lane_flags()
    kernel = for_lanes(kernel, x.shape[0])
    if kernel(*arrays, inverse, None, errs):
        try:
            kernel(*arrays, not inverse, errs, np.zeros_like(errs))
            i = int(np.argmax(errs != 0))
            exc = BufferUnderflowError if errs[i] == ERR_BUFFER_UNDERFLOW else FixedPointRangeError
            msg = f"{name}[{i}] = {x[i]}: {ERR_MESSAGES[int(errs[i])]}; nothing was written"
        finally:
            errs[:] = 0
        raise exc(msg)


def multiply(x, frac, buffer: InfoBuffer) -> None:
    """In place: x <- x * frac exactly (0 < frac <= 1), remainders pushed on ``buffer``."""
    _apply(x, frac, buffer, inverse=False)


def divide(x, frac, buffer: InfoBuffer) -> None:
    """In place: the exact inverse of :func:`multiply` (pops the remainders back)."""
    _apply(x, frac, buffer, inverse=True)
