"""Per-step, per-group hyperparameter schedules for reversible momentum SGD.

A schedule for T steps and G parameter groups holds learning rates ``lr[t, k]`` (finite float64) and
momenta ``g[t, k] = nums[t, k] / dens[t, k]`` (exact fractions in (0, 1], d <= 2**16).
"""

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from ..exact.rational import HyperparameterError, as_momentum


@dataclass(frozen=True)
class MomentumSchedule:
    """Validated schedule arrays, each of shape (T, G)."""

    lr: np.ndarray            # float64 learning rates a_t
    nums: np.ndarray          # int64 numerators n_t
    dens: np.ndarray          # int64 denominators d_t

    @property
    def steps(self) -> int:
        return self.lr.shape[0]

    @property
    def groups(self) -> int:
        return self.lr.shape[1]

    @cached_property
    def one_minus_g(self) -> np.ndarray:
        """(d - n) / d as float64, the weight of the gradient in the velocity update."""
        return (self.dens - self.nums) / self.dens

    @cached_property
    def momenta(self) -> np.ndarray:
        """n / d as float64 (the value the hypergradients are taken with respect to)."""
        return self.nums / self.dens

    def bits_per_step(self) -> np.ndarray:
        """Entropy bound log2(d/n) per step and group, in bits per weight (float64[T, G])."""
        return np.log2(self.dens) - np.log2(self.nums)

    @classmethod
    def build(cls, lr, momentum, steps=None, groups=None, tolerance=0.01) -> "MomentumSchedule":
        """Broadcast scalars, (T,), (G,)-per-step or (T, G) inputs into a checked schedule.

        ``lr`` is any finite float(s); ``momentum`` any float(s) or Fraction(s) in (0, 1]. A 1-D input
        is read as per-step when ``steps`` matches its length, else per-group. A float momentum g < 1
        whose 1 - g the nearest fraction (denominator <= 2**16) misses by more than ``tolerance``
        (relative) is refused with the limit named; ``tolerance=None`` accepts the nearest fraction.
        The arrays are copied, so later edits to the caller's arrays do not change the schedule.
        """
        lr_arr = np.asarray(lr, dtype=np.float64)
        mom_obj = np.asarray(momentum, dtype=object)
        T = steps if steps is not None else _infer(lr_arr, mom_obj, 0)
        G = groups if groups is not None else _infer(lr_arr, mom_obj, 1)
        lr_full = _broadcast(lr_arr, T, G, "learning rate")
        mom_full = _broadcast(mom_obj, T, G, "momentum")
        bad = ~np.isfinite(lr_full)
        if bad.any():
            t, k = np.argwhere(bad)[0]
            raise HyperparameterError(f"learning rate at step {t}, group {k} is {float(lr_full[t, k])!r}")
        nums = np.empty((T, G), np.int64)
        dens = np.empty((T, G), np.int64)
        cache = {}
        for (t, k), g in np.ndenumerate(mom_full):
            key = (type(g), g)
            frac = cache.get(key)
            if frac is None:
                frac = cache[key] = as_momentum(g, name=f"momentum at step {t}, group {k}",
                                                tolerance=tolerance)
            nums[t, k], dens[t, k] = frac.numerator, frac.denominator
        lr_own = np.array(lr_full, dtype=np.float64, order="C")   # a copy the caller cannot edit
        lr_own.flags.writeable = False
        nums.flags.writeable = False
        dens.flags.writeable = False
        return cls(lr_own, nums, dens)

    def fraction(self, t, k) -> Fraction:
        return Fraction(int(self.nums[t, k]), int(self.dens[t, k]))

    def total_bits_bound(self) -> float:
        """Sum over steps of the largest per-group bound: words per lane a whole run may need x 16."""
        return float(self.bits_per_step().max(axis=1).sum())


def _infer(lr, mom, axis):
    for arr in (lr, mom):
        if arr.ndim == 2:
            return arr.shape[axis]
    if axis == 0:
        for arr in (lr, mom):
            if arr.ndim == 1:
                return arr.shape[0]
        raise HyperparameterError("cannot tell the number of steps: pass steps=")
    return 1


def _broadcast(arr, T, G, name):
    if arr.ndim == 0:
        return np.full((T, G), arr.item(), dtype=arr.dtype)
    if arr.ndim == 1:
        if arr.shape[0] == T:
            return np.repeat(arr[:, None], G, axis=1)
        if arr.shape[0] == G:
            return np.repeat(arr[None, :], T, axis=0)
    if arr.ndim == 2 and arr.shape == (T, G):
        return arr
    raise HyperparameterError(f"{name} schedule of shape {arr.shape} does not fit {T} steps x {G} groups")

