"""Exact rational momenta g = n/d with 0 < g <= 1 and d <= MAX_DENOMINATOR = 2**16.

A float is turned into the nearest fraction with denominator at most 2**16 (``Fraction.limit_denominator``).
Why 2**16: the information buffer codes "uniform over d" with a total of 2**31, so d <= 2**16 keeps every
symbol's frequency >= 2**15. Then each push or pop moves at most one 16-bit word, and the coding overhead
is at most log2(1 + 2**-15), about 4.4e-5 bits per symbol. The resolution of g is then about 1.5e-5 near 1.
"""

from fractions import Fraction
from numbers import Real

import numpy as np

from ..kernels.rans import MAX_BASE

MAX_DENOMINATOR = MAX_BASE
COMPLEMENT_TOLERANCE = 0.01  # relative error allowed on a requested 1 - g, unless the caller says None


def shown(x) -> str:
    """A number as users typed it: numpy scalars print as Python floats/ints, not np.float64(...)."""
    if isinstance(x, np.floating):
        return repr(float(x))
    if isinstance(x, np.integer):
        return repr(int(x))
    return repr(x)


class HyperparameterError(ValueError):
    """A hyperparameter is out of its domain (named in the message)."""


def as_momentum(g, name="momentum", tolerance=COMPLEMENT_TOLERANCE) -> Fraction:
    """Exact fraction n/d for a momentum g in (0, 1]; floats are rounded to d <= 2**16.

    A float g < 1 whose 1 - g the fraction misses by more than ``tolerance`` (relative; default 1%) is
    refused, naming the limit (1 - g below about 1/65536 cannot be represented): 0.999999 is not
    silently made 1. ``tolerance=None`` takes the nearest fraction whatever it is (learned schedules).
    """
    if isinstance(g, Fraction):
        frac = g
        if frac.denominator > MAX_DENOMINATOR:
            raise HyperparameterError(
                f"{name} = {g} has denominator {frac.denominator} > {MAX_DENOMINATOR}")
        if 0 < frac.numerator <= frac.denominator:  # integer comparisons: the hot path of every step
            return frac
    elif isinstance(g, Real) and not isinstance(g, bool):
        gf = float(g)
        if not np.isfinite(gf):
            raise HyperparameterError(f"{name} = {shown(g)} is not finite")
        frac = Fraction(gf).limit_denominator(MAX_DENOMINATOR)
    else:
        raise HyperparameterError(f"{name} = {shown(g)} must be a float or a Fraction")
    if not 0 < frac <= 1:
        raise HyperparameterError(f"{name} = {float(g)!r} (as {frac}) must lie in (0, 1]")
    if tolerance is not None and not isinstance(g, Fraction) and float(g) < 1:
        check_complement(float(g), frac, f"{name} = {float(g)!r}", tolerance, f"1 - {name.split()[0]}")
    return frac


def check_complement(g: float, frac: Fraction, name, tolerance=0.01, complement=None):
    """HyperparameterError unless 1 - frac is within ``tolerance`` (relative) of the requested 1 - g.

    ``complement`` names 1 - g in the message (default "1 - name")."""
    want = 1.0 - g
    got = float(1 - frac)
    if abs(got - want) > tolerance * want:
        what = complement or f"1 - {name}"
        raise HyperparameterError(
            f"{name}: {what} = {want:.4g} becomes {got:.4g} with the exact fraction {frac} (denominator "
            f"<= {MAX_DENOMINATOR}), {abs(got - want) / want:.0%} off; {what} below about "
            f"1/{MAX_DENOMINATOR} = {1 / MAX_DENOMINATOR:.3g} cannot be represented within {tolerance:.0%}")


def bits_per_multiplication(frac: Fraction) -> float:
    """Entropy bound log2(d/n): bits of remainder one multiplication by n/d leaves in the buffer."""
    return float(np.log2(frac.denominator) - np.log2(frac.numerator))
