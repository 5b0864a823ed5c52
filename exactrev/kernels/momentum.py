"""Reversible momentum-SGD step kernels on fixed-point integers (Maclaurin et al. 2015, Alg. 1 and 2).

One step, per weight i of parameter group k = group[i], with momentum g = n/d and learning rate a
(all integers in units of 2**-frac_bits, ``scale = 2**frac_bits``):

    forward:  v <- v * n/d exactly (within one unit), the remainder kept in the buffer (see
              :func:`rational_multiply_lane`)
              v <- v - rint((1 - g) * grad * scale)
              w <- w + rint(a * v)
    reverse:  w <- w - rint(a * v)                            (then the caller recomputes grad at w)
              v <- v + rint((1 - g) * grad * scale)
              v <- v * d/n, the exact inverse (:func:`rational_divide_lane`)

Each kernel has a ``commit`` flag: with commit False it only fills ``errs`` (a dry run, so the caller
checks every lane before any lane is written). Error codes are the ERR_* constants. The lane arithmetic
is integer or a single rounded float product, so results are identical for any thread count.
"""

import numba as nb
import numpy as np

from .buffer_ops import stack_top
from .fixed import MAX_MAGNITUDE, fixed_in_range
from .rans import code_at, code_table, floor_divmod, push_symbol, pop_symbol_head, refill, uniform_code

ERR_OK = 0
ERR_GRAD_NOT_FINITE = 1
ERR_VELOCITY_RANGE = 2
ERR_WEIGHT_RANGE = 3
ERR_BUFFER_UNDERFLOW = 4
ERR_MESSAGES = {
    ERR_GRAD_NOT_FINITE: "gradient is NaN or infinite",
    ERR_VELOCITY_RANGE: "velocity would leave the fixed-point range",
    ERR_WEIGHT_RANGE: "weight would leave the fixed-point range",
    ERR_BUFFER_UNDERFLOW: "information buffer underflow (more popped than pushed)",
}


@nb.njit(inline="always", cache=True)
def _pop_lane(s, count, top, code):
    """Pop from one lane: (symbol, head, words_read, err); words_read is 0 or 1 (the top word)."""
    y, s, needs = pop_symbol_head(s, code)
    if needs:
        if count == 0:
            return y, s, np.int64(0), ERR_BUFFER_UNDERFLOW
        return y, refill(s, top), np.int64(1), ERR_OK
    return y, s, np.int64(0), ERR_OK


@nb.njit(inline="always", cache=True)
def rational_multiply_lane(x, s, count, top, code_num, code_den):
    """x -> x * n/d exactly, within one unit: split x = hi d + lo, pop y < n, z = lo n + y,
    x' = hi n + z // d, push z % d (base d). Error |x' - x n/d| < 1; net log2(d/n) bits pushed.

    ``code_num``/``code_den`` are :func:`uniform_code` of n and d. Returns (x', s, dcount, wrote, word,
    err): the lane's stack loses its top word when the pop read one, then gains ``word`` when ``wrote``
    (see :func:`commit_stack`). err is ERR_BUFFER_UNDERFLOW or ERR_OK (|x'| <= |x| cannot overflow).
    """
    n, d = code_num[0], code_den[0]
    hi, lo = floor_divmod(x, d, code_den[3])
    y, s, read, err = _pop_lane(s, count, top, code_num)
    if err != ERR_OK:
        return x, s, np.int64(0), np.int64(0), np.int64(0), err
    q, r = floor_divmod(lo * n + y, d, code_den[3])
    s, wrote, word = push_symbol(s, r, code_den)
    return hi * n + q, s, wrote - read, wrote, word, ERR_OK


@nb.njit(inline="always", cache=True)
def rational_divide_lane(x, s, count, top, code_num, code_den):
    """The exact inverse of :func:`rational_multiply_lane`: pop r (base d), hi, q = divmod(x, n),
    z = q d + r, lo, y = divmod(z, n), push y (base n), x <- hi d + lo. err: range or underflow."""
    n, d = code_num[0], code_den[0]
    hi, q = floor_divmod(x, n, code_num[3])
    if abs(hi) > (MAX_MAGNITUDE - d) // d:
        return x, s, np.int64(0), np.int64(0), np.int64(0), ERR_VELOCITY_RANGE
    r, s, read, err = _pop_lane(s, count, top, code_den)
    if err != ERR_OK:
        return x, s, np.int64(0), np.int64(0), np.int64(0), err
    lo, y = floor_divmod(q * d + r, n, code_num[3])
    s, wrote, word = push_symbol(s, y, code_num)
    return hi * d + lo, s, wrote - read, wrote, word, ERR_OK


@nb.njit(inline="always", cache=True)
def commit_stack(words, counts, i, dcount, wrote, word):
    """Apply a lane's stack change: the top word was consumed if dcount - wrote == -1, then ``word``
    is written on top when ``wrote``."""
    c = counts[i] + dcount
    if wrote:
        words[c - 1, i] = np.uint16(word)
    counts[i] = c


@nb.njit(inline="always", cache=True)
def rounded_product(coef, x):
    """rint(coef * x) as a float, x an int64 or float: the one rounded product every step uses."""
    return np.rint(coef * np.float64(x))


@nb.njit(parallel=True, cache=True)
def momentum_forward_kernel(w, v, heads, counts, words, group, nums, dens, one_minus_g, lr,
                            grad, scale, commit, errs):
    """One forward step for every weight (see module docstring). grad is float64[N] at the current w."""
    ni, nf = code_table(nums)
    di, df = code_table(dens)
    for i in nb.prange(w.shape[0]):
        k = group[i]
        if not np.isfinite(grad[i]):
            errs[i] = ERR_GRAD_NOT_FINITE
            continue
        x, s, dcount, wrote, word, err = rational_multiply_lane(
            v[i], heads[i], counts[i], stack_top(words, counts, i),
            code_at(ni, nf, k), code_at(di, df, k))
        if err != ERR_OK:
            errs[i] = err
            continue
        gterm = rounded_product(one_minus_g[k] * scale, grad[i])
        if not fixed_in_range(gterm):
            errs[i] = ERR_VELOCITY_RANGE
            continue
        x = x - np.int64(gterm)
        if abs(x) > MAX_MAGNITUDE:
            errs[i] = ERR_VELOCITY_RANGE
            continue
        dw = rounded_product(lr[k], x)
        if not fixed_in_range(dw) or abs(w[i] + np.int64(dw)) > MAX_MAGNITUDE:
            errs[i] = ERR_WEIGHT_RANGE
            continue
        if commit:
            w[i] += np.int64(dw)
            v[i] = x
            heads[i] = s
            commit_stack(words, counts, i, dcount, wrote, word)


@nb.njit(parallel=True, cache=True)
def weights_back_kernel(w, v, group, lr, commit, errs):
    """First half of a reverse step: w <- w - rint(a * v)."""
    for i in nb.prange(w.shape[0]):
        dw = rounded_product(lr[group[i]], v[i])
        if not fixed_in_range(dw) or abs(w[i] - np.int64(dw)) > MAX_MAGNITUDE:
            errs[i] = ERR_WEIGHT_RANGE
            continue
        if commit:
            w[i] -= np.int64(dw)


@nb.njit(parallel=True, cache=True)
def velocity_back_kernel(v, heads, counts, words, group, nums, dens, one_minus_g, grad, scale,
                         commit, errs):
    """Second half of a reverse step, given grad at the restored w: v <- (v + rint((1-g) grad)) / g."""
    ni, nf = code_table(nums)
    di, df = code_table(dens)
    for i in nb.prange(v.shape[0]):
        k = group[i]
        if not np.isfinite(grad[i]):
            errs[i] = ERR_GRAD_NOT_FINITE
            continue
        gterm = rounded_product(one_minus_g[k] * scale, grad[i])
        if not fixed_in_range(gterm) or abs(v[i] + np.int64(gterm)) > MAX_MAGNITUDE:
            errs[i] = ERR_VELOCITY_RANGE
            continue
        x, s, dcount, wrote, word, err = rational_divide_lane(
            v[i] + np.int64(gterm), heads[i], counts[i], stack_top(words, counts, i),
            code_at(ni, nf, k), code_at(di, df, k))
        if err != ERR_OK:
            errs[i] = err
            continue
        if commit:
            v[i] = x
            heads[i] = s
            commit_stack(words, counts, i, dcount, wrote, word)


@nb.njit(parallel=True, cache=True)
def rational_multiply_kernel(x, heads, counts, words, num, den, inverse, skip, errs):
    """x <- x * num/den exactly (or its inverse) on every lane with skip[i] == 0, one ratio for all.

    One pass: a lane that fails sets errs[i] and writes nothing; the others are committed. Undo them
    with ``inverse`` flipped and ``skip = errs`` (each lane step is a bijection).
    """
    code_num = uniform_code(num)
    code_den = uniform_code(den)
    for i in nb.prange(x.shape[0]):
        if skip[i]:
            continue
        top = stack_top(words, counts, i)
        if inverse:
            y, s, dcount, wrote, word, err = rational_divide_lane(
                x[i], heads[i], counts[i], top, code_num, code_den)
        else:
            y, s, dcount, wrote, word, err = rational_multiply_lane(
                x[i], heads[i], counts[i], top, code_num, code_den)
        if err != ERR_OK:
            errs[i] = err
        else:
            x[i] = y
            heads[i] = s
            commit_stack(words, counts, i, dcount, wrote, word)


@nb.njit(inline="always", cache=True)
def nearest_multiply(x, n, d, inv_d):
    """rint(x * n/d) with ties to even, exactly, without overflow: x = hi d + lo, hi n + rint(lo n / d)."""
    hi, lo = floor_divmod(x, d, inv_d)
    q, r = floor_divmod(lo * n, d, inv_d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return hi * n + q


@nb.njit(parallel=True, cache=True)
def plain_momentum_kernel(w, v, group, nums, dens, one_minus_g, lr, grad, scale, commit, errs):
    """A forward step without a buffer (not reversible): v <- rint(v n/d) - rint((1-g) grad scale),
    w <- w + rint(a v). The baseline arithmetic of the store and checkpoint back-ends."""
    for i in nb.prange(w.shape[0]):
        k = group[i]
        if not np.isfinite(grad[i]):
            errs[i] = ERR_GRAD_NOT_FINITE
            continue
        gterm = rounded_product(one_minus_g[k] * scale, grad[i])
        if not fixed_in_range(gterm):
            errs[i] = ERR_VELOCITY_RANGE
            continue
        x = nearest_multiply(v[i], nums[k], dens[k], 1.0 / dens[k]) - np.int64(gterm)
        if abs(x) > MAX_MAGNITUDE:
            errs[i] = ERR_VELOCITY_RANGE
            continue
        dw = rounded_product(lr[k], x)
        if not fixed_in_range(dw) or abs(w[i] + np.int64(dw)) > MAX_MAGNITUDE:
            errs[i] = ERR_WEIGHT_RANGE
            continue
        if commit:
            w[i] += np.int64(dw)
            v[i] = x
