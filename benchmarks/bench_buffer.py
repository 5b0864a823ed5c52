"""Information buffer: cost per weight per step against the 2015 big-integer design, and bits used."""

from fractions import Fraction

from exactrev.faces.bench_buffer import (bigint_ns_per_weight_step, bits_per_weight_step,
                                         ns_per_weight_step, ours_ns_per_weight_step)


class BufferCost:
    """ns per weight per step at depth T (N = 10**4, g = 9/10); tracked as numbers, not timed twice."""

    params = ([1_000, 10_000],)
    param_names = ["T"]
    timeout = 600

    def track_exactrev_ns_per_weight_step(self, depth):
        return ours_ns_per_weight_step(10_000, depth)

    track_exactrev_ns_per_weight_step.unit = "ns"

    def track_bigint_ns_per_weight_step(self, depth):
        return bigint_ns_per_weight_step(10_000, depth)

    track_bigint_ns_per_weight_step.unit = "ns"

    def track_speedup(self, depth):
        ours, base = ns_per_weight_step(10_000, depth)
        return base / ours

    track_speedup.unit = "x"


class BufferBits:
    """Bits per weight per step over T = 10**4, relative to the bound log2(d/n)."""

    params = ([0.5, 0.9, 0.99],)
    param_names = ["g"]
    timeout = 600

    def track_bits_over_bound(self, g):
        measured, bound = bits_per_weight_step(Fraction(g).limit_denominator(2 ** 16), 10_000)
        return measured / bound

    track_bits_over_bound.unit = "ratio"
