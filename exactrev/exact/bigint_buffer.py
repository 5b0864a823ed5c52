"""The 2015 design, kept as a benchmark baseline: one Python big integer per weight.

Maclaurin et al. (2015) stored the information buffer as a NumPy object array of Python integers,
``store <- store * d + r`` to push and ``r, store <- store % n, store // n`` to pop. Each operation
costs O(bits stored) per weight, so a run of T steps costs O(T**2) in total. Exact, but slow; exactrev's
:class:`InfoBuffer` does the same job in O(1) per push. Do not use this outside benchmarks.
"""

import numpy as np


class BigIntBuffer:
    """Per-lane Python-integer stack: push(r, base) and pop(base) as in the 2015 reference code."""

    def __init__(self, n_lanes: int):
        self.store = np.array([0] * int(n_lanes), dtype=object)

    def push(self, symbols, base) -> None:
        self.store *= int(base)
        self.store += np.asarray(symbols, dtype=np.int64).astype(object)

    def pop(self, base) -> np.ndarray:
        base = int(base)
        out = (self.store % base).astype(np.int64)
        self.store //= base
        return out

    def multiply(self, x: np.ndarray, num: int, den: int) -> None:
        """x <- x * num/den in place, exactly (x int64): push x % den, pop base num."""
        quo, rem = np.divmod(x, den)
        self.push(rem, den)
        x[:] = quo * num + self.pop(num)

    def size_bits(self) -> float:
        return float(sum(int(v).bit_length() for v in self.store))

    def fill_bits(self, bits: int, rng) -> None:
        """Put every lane in the state of a run that pushed ``bits`` bits (random content)."""
        nbytes = (bits + 7) // 8
        self.store = np.array([int.from_bytes(rng.bytes(nbytes), "little") >> (8 * nbytes - bits)
                               | (1 << (bits - 1)) for _ in range(self.store.shape[0])], dtype=object)
