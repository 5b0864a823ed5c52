"""Reversible momentum-SGD step kernels on fixed-point integers (Maclaurin et al. 2015, Alg. 1 and 2).

One step, per weight i of parameter group k = group[i], with momentum g = n/d and learning rate a
(all integers in units of 2**-frac_bits, ``scale = 2**frac_bits``):

    forward:  v <- v * n/d exactly (within one unit), the remainder kept in the buffer
                                                      (group_rational_multiply_kernel: no gradient)
              v <- v - round((1 - g) * grad * scale)
              w <- w + round(a * v)                   (momentum_kick_kernel)
    reverse:  w <- w - round(a * v)                          (then the caller recomputes grad at w)
              v <- v + round((1 - g) * grad * scale)
              v <- v * d/n, the exact inverse

The lane arithmetic lives in ``lanes.py`` (shared with the CUDA kernels); these are the CPU loops. The
forward step is two kernels so that its first half, which needs no gradient, can run while the
gradient is still being computed elsewhere (an asynchronous JAX call). A kernel either has a ``commit``
flag (with commit False it only fills ``errs``: a dry run that checks every lane before any is
written) or is one pass in which a failing lane writes nothing, undone on the other lanes by its
``inverse``. Results are identical for any thread count.

Every kernel that pops takes ``floor`` (0 for an InfoBuffer): a lane whose stack would end an
operation below ``floor`` words has popped bits that nobody pushed, and fails with
ERR_BUFFER_UNDERFLOW. (A forward multiply by n/d <= 1 may borrow the virtual zero word under an empty
stack inside the operation, but always ends at or above the bottom.) A lane whose stack has no free row
fails with ERR_BUFFER_FULL, so no kernel reads or writes outside ``words``.
"""

import numba as nb
import numpy as np

from .buffer_ops import commit_stack, stack_top
from .lanes import (ERR_BUFFER_FULL, ERR_BUFFER_UNDERFLOW, ERR_GRAD_NOT_FINITE, ERR_OK,  # noqa: F401
                    ERR_VELOCITY_RANGE, ERR_WEIGHT_RANGE, MAX_MAGNITUDE)
from .rans import CPU, code_table
from .threads import light

ERR_MESSAGES = {
    ERR_GRAD_NOT_FINITE: "gradient is NaN or infinite",
    ERR_VELOCITY_RANGE: "velocity would leave the fixed-point range",
    ERR_WEIGHT_RANGE: "weight would leave the fixed-point range",
    ERR_BUFFER_UNDERFLOW: "information buffer underflow (more popped than pushed)",
    ERR_BUFFER_FULL: "information buffer full (no free row above the stack)",
}

code_at = CPU.code_at
uniform_code = CPU.uniform_code
rational_multiply_lane = CPU.rational_multiply_lane
rational_divide_lane = CPU.rational_divide_lane
rational_multiply_in_place = CPU.rational_multiply_in_place
rational_divide_in_place = CPU.rational_divide_in_place
kick_lane = CPU.kick_lane
kick_back_lane = CPU.kick_back_lane
weights_back_lane = CPU.weights_back_lane
gradient_term_lane = CPU.gradient_term_lane
rounded_product = CPU.rounded_product
fixed_in_range = CPU.fixed_in_range
nearest_multiply = CPU.nearest_multiply


LANE_BLOCK = 1024
"""Lanes per block of the per-group kernels: a block is one unit of parallel work, and inside it the
codes of a group are read from the tables once per run of equal group ids, not once per lane."""


@nb.njit(inline="always", cache=True)
def lane_blocks(n):
    """Number of LANE_BLOCK blocks that cover n lanes."""
    return (n + LANE_BLOCK - 1) // LANE_BLOCK


@nb.njit(inline="always", cache=True)
def block_range(b, n):
    """Lanes [lo, hi) of block b of n lanes."""
    lo = b * LANE_BLOCK
    return lo, min(n, lo + LANE_BLOCK)


@nb.njit(inline="always", cache=True)
def codes_of(ni, di, k_lane, k, code_num, code_den):
    """(k_lane, its codes): the codes held when the lane's group k_lane is the held group k, else
    read from the tables (group ids come in runs: the MLP's weight types are contiguous)."""
    if k_lane != k:
        return k_lane, code_at(ni, k_lane), code_at(di, k_lane)
    return k, code_num, code_den


@nb.njit(inline="always", cache=True)
def settle_lane(i, y, s, c, err, floor, x, heads, counts, errs):
    """Commit lane i's new value, head and count (y, s, c), or record its error (a lane that would end
    below ``floor`` words has underflowed) and write nothing else; returns 1 if it failed, else 0."""
    if err == ERR_OK and c < floor:
        err = ERR_BUFFER_UNDERFLOW
    if err != ERR_OK:
        errs[i] = err
        return 1
    x[i], heads[i], counts[i] = y, s, c
    return 0


@nb.njit(parallel=True, cache=True)
def momentum_kick_kernel(w, v, group, one_minus_g, lr, grad, scale, inverse, skip, errs):
    """The gradient's half of a forward step on every lane with skip[i] == 0, after the first half
    v <- v * n/d (``group_rational_multiply_kernel``, which needs no gradient):

        v <- v - round((1 - g) grad scale),   w <- w + round(a v)

    or with ``inverse`` its exact inverse for the same grad (w <- w - round(a v), then
    v <- v + round((1 - g) grad scale)). One pass: a lane that fails sets errs[i] and writes nothing;
    undo the others with ``inverse`` flipped and ``skip = errs``. ``skip`` may be None. Returns the
    number of failed lanes (the same for any thread count)."""
    failed = 0
    for i in nb.prange(w.shape[0]):
        if skip is not None and skip[i]:
            continue
        k = group[i]
        if inverse:
            wn, vn, err = kick_back_lane(w[i], v[i], one_minus_g[k] * scale, lr[k], grad[i])
        else:
            wn, vn, err = kick_lane(w[i], v[i], one_minus_g[k] * scale, lr[k], grad[i])
        if err != ERR_OK:
            errs[i] = err
            failed += 1
        else:
            w[i], v[i] = wn, vn
    return failed


@nb.njit(parallel=True, cache=True)
def velocity_redo_kernel(v, heads, counts, words, floor, group, nums, dens, one_minus_g, grad, scale,
                         failed):
    """Redo on every lane with failed[i] == 0 what ``velocity_back_kernel`` undid: the exact inverse,
    v <- v n/d (pushing the same bits back) - round((1-g) grad scale), with the same grad. Takes the
    arguments of ``velocity_back_kernel`` (``floor`` is not needed), then ``failed``, its errs."""
    ni = code_table(nums)
    di = code_table(dens)
    n = v.shape[0]
    for b in nb.prange(lane_blocks(n)):
        lo, hi = block_range(b, n)
        k = group[lo]
        cn, cd = code_at(ni, k), code_at(di, k)
        for i in range(lo, hi):
            k, cn, cd = codes_of(ni, di, group[i], k, cn, cd)
            if failed[i] != 0:
                continue
            x, s, dcount, wrote, word, _ = rational_multiply_lane(
                v[i], heads[i], counts[i], stack_top(words, counts, i), cn, cd)
            v[i] = x - np.int64(rounded_product(one_minus_g[k] * scale, grad[i]))
            heads[i] = s
            commit_stack(words, counts, i, dcount, wrote, word)


@light
@nb.njit(parallel=True, cache=True)
def weights_back_kernel(w, v, group, lr, commit, errs):
    """First half of a reverse step: w <- w - round(a * v). A lane that fails sets errs[i] and writes
    nothing; with ``commit`` the others are written. Returns the number of failed lanes."""
    failed = 0
    for i in nb.prange(w.shape[0]):
        wn, err = weights_back_lane(w[i], v[i], lr[group[i]])
        if err != ERR_OK:
            errs[i] = err
            failed += 1
        elif commit:
            w[i] = wn
    return failed


@nb.njit(parallel=True, cache=True)
def velocity_back_kernel(v, heads, counts, words, floor, group, nums, dens, one_minus_g, grad, scale, errs):
    """Second half of a reverse step, given grad at the restored w: v <- (v + round((1-g) grad)) / g.

    One pass: a lane that fails sets errs[i] and writes nothing (its stack is changed in place only
    by an operation that succeeds: every check comes before the push's word is written); the others
    are committed. Undo them with ``velocity_redo_kernel``. Returns the number of failed lanes."""
    ni = code_table(nums)
    di = code_table(dens)
    n = v.shape[0]
    failed = 0
    for b in nb.prange(lane_blocks(n)):
        lo, hi = block_range(b, n)
        k = group[lo]
        cn, cd = code_at(ni, k), code_at(di, k)
        for i in range(lo, hi):
            k, cn, cd = codes_of(ni, di, group[i], k, cn, cd)
            x, err = gradient_term_lane(v[i], one_minus_g[k] * scale, grad[i], 1)
            s, c = heads[i], counts[i]
            if err == ERR_OK:
                x, s, c, err = rational_divide_in_place(x, s, words, c, i, cn, cd)
            failed += settle_lane(i, x, s, c, err, floor, v, heads, counts, errs)
    return failed


@nb.njit(inline="always", cache=True)
def _ratio_lane(x, s, words, c, i, code_num, code_den, inverse):
    """x * n/d (or x * d/n with ``inverse``) on lane i, its stack in place: (x', s, c, err)."""
    if inverse:
        return rational_divide_in_place(x, s, words, c, i, code_num, code_den)
    return rational_multiply_in_place(x, s, words, c, i, code_num, code_den)


@nb.njit(parallel=True, cache=True)
def rational_multiply_kernel(x, heads, counts, words, floor, num, den, inverse, skip, errs):
    """x <- x * num/den exactly (or its inverse) on every lane with skip[i] == 0, one ratio for all.

    One pass: a lane that fails sets errs[i] and writes nothing; the others are committed. Undo them
    with ``inverse`` flipped and ``skip = errs`` (each lane step is a bijection). Returns the number of
    failed lanes (an integer sum: the same for any thread count). ``skip`` may be None (no lane is
    skipped: a separate compilation without the test), or the same array as ``errs``: each lane reads
    its own skip flag before it writes its own error. A lane without a free row above its stack fails
with ERR_BUFFER_FULL; one that would end below ``floor`` words with ERR_BUFFER_UNDERFLOW.
    """
    code_num = uniform_code(num)
    code_den = uniform_code(den)
    failed = 0
    for i in nb.prange(x.shape[0]):
        if skip is not None and skip[i]:
            continue
        y, s, c, err = _ratio_lane(x[i], heads[i], words, counts[i], i, code_num, code_den, inverse)
        failed += settle_lane(i, y, s, c, err, floor, x, heads, counts, errs)
    return failed


@nb.njit(parallel=True, cache=True)
def plain_momentum_kernel(w, v, group, nums, dens, one_minus_g, lr, grad, scale, commit, errs):
    """A forward step without a buffer (not reversible): v <- round(v n/d) - round((1-g) grad scale),
    w <- w + round(a v). The baseline arithmetic of the store and checkpoint back-ends."""
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


@nb.njit(parallel=True, cache=True)
def group_rational_multiply_kernel(x, heads, counts, words, floor, group, nums, dens, inverse, skip, errs):
    """x[i] <- x[i] * nums[k]/dens[k] exactly (or the inverse), k = group[i], on lanes with skip[i] == 0.

    One pass with per-lane errors, like :func:`rational_multiply_kernel`; undo with ``inverse``
    flipped and ``skip = errs``. A lane's codes are read from the tables only where its group differs
    from the lane before it in its block (``codes_of``), so on the contiguous groups of an MLP this runs
    near the one-ratio kernel's speed; both share :func:`_ratio_lane`.
    """
    ni = code_table(nums)
    di = code_table(dens)
    n = x.shape[0]
    failed = 0
    for b in nb.prange(lane_blocks(n)):
        lo, hi = block_range(b, n)
        k = group[lo]
        cn, cd = code_at(ni, k), code_at(di, k)
        for i in range(lo, hi):
            k, cn, cd = codes_of(ni, di, group[i], k, cn, cd)
            if skip is not None and skip[i]:
                continue
            y, s, c, err = _ratio_lane(x[i], heads[i], words, counts[i], i, cn, cd, inverse)
            failed += settle_lane(i, y, s, c, err, floor, x, heads, counts, errs)
    return failed
