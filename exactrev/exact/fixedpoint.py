"""Fixed-point format for weights and velocities: int64 holding ``value * 2**frac_bits``.

Default ``frac_bits = 42``: resolution 2**-42 (about 2.3e-13) and range |value| <= (2**53 - 1) * 2**-42
(about 2048). The magnitude limit 2**53 - 1 makes fixed -> float64 exact; float64 -> fixed rounds to
nearest (ties to even) and refuses NaN, inf and values outside the range, naming the first bad index.
"""

from dataclasses import dataclass

import numpy as np

from ..kernels.fixed import MAX_MAGNITUDE, to_fixed_kernel, to_float_kernel
from ..kernels.threads import for_lanes

DEFAULT_FRAC_BITS = 42


class FixedPointRangeError(ValueError):
    """A value is NaN, infinite, or outside the fixed-point range."""


@dataclass(frozen=True)
class FixedFormat:
    """A fixed-point format: int64 ``k`` stands for ``k * 2**-frac_bits``, |k| <= 2**53 - 1."""

    frac_bits: int = DEFAULT_FRAC_BITS

    def __post_init__(self):
        if not isinstance(self.frac_bits, (int, np.integer)) or not 0 <= self.frac_bits <= 52:
            raise ValueError(f"frac_bits must be an integer in [0, 52], got {self.frac_bits!r}")

    @property
    def scale(self) -> float:
        """2**frac_bits: the number of integer units in 1.0."""
        return float(2 ** self.frac_bits)

    @property
    def resolution(self) -> float:
        """The value of one integer unit, 2**-frac_bits."""
        return 2.0 ** -self.frac_bits

    @property
    def max_value(self) -> float:
        """Largest representable magnitude, (2**53 - 1) * 2**-frac_bits."""
        return MAX_MAGNITUDE * self.resolution

    def to_fixed(self, x, name="value") -> np.ndarray:
        """float64 array -> new int64 array, rounding to nearest. Raises FixedPointRangeError."""
        flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
        out = np.empty(flat.shape, np.int64)
        errs = np.zeros(flat.shape, np.int8)
        for_lanes(to_fixed_kernel, flat.shape[0])(flat, self.scale, out, errs)
        if errs.any():
            i = int(np.argmax(errs))
            raise FixedPointRangeError(
                f"{name}[{i}] = {float(flat[i])!r} cannot be stored in fixed point with frac_bits="
                f"{self.frac_bits} (range +-{self.max_value:.6g}, NaN/inf refused)")
        return out.reshape(np.shape(x))

    def to_float(self, k) -> np.ndarray:
        """int64 array -> float64 array, exactly (k * 2**-frac_bits)."""
        k = np.asarray(k)
        if k.dtype != np.int64:
            raise TypeError(f"fixed-point arrays are int64, got {k.dtype}")
        flat = np.ravel(k)
        out = np.empty(flat.shape[0])
        for_lanes(to_float_kernel, flat.shape[0])(flat, self.resolution, out)
        return out.reshape(k.shape)
