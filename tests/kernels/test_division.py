"""Division by magic reciprocals (lanes.magic63 / magic31 / floor_divmod_code) and the two builds of the
128-bit multiply-high: exact against Python's integers, on random values and on the edges."""

import numba as nb
import numpy as np
from hypothesis import given, strategies as st

from exactrev.kernels.lanes import C_BASE, C_Q, C_R, MAX_BASE, TOTAL, build_lanes
from exactrev.kernels.rans import CPU
from exactrev.kernels.wide import mulhi_shr

# the CUDA build's product, compiled for the CPU
portable_mulhi_shr = build_lanes(nb.njit(inline="always")).portable_mulhi_shr
magic63, magic31, uniform_code, floor_divmod_code = CPU.magic63, CPU.magic31, CPU.uniform_code, CPU.floor_divmod_code
U64 = 1 << 64


def _python_mulhi_shr(a, b, k):
    return ((int(a) % U64) * (int(b) % U64) >> 64) >> int(k)


@nb.njit(cache=True)
def _mulhi_both(a, b, k, fast, portable):
    for i in range(a.shape[0]):
        fast[i] = mulhi_shr(a[i], b[i], k[i])
        portable[i] = portable_mulhi_shr(a[i], b[i], k[i])


@nb.njit(cache=True)
def _divide_63(v, f, out):
    m, sh = magic63(f)
    for i in range(v.shape[0]):
        out[i] = mulhi_shr(v[i] << 1, m, sh)


@nb.njit(cache=True)
def _divide_31(v, f, out):
    m, t = magic31(f)
    for i in range(v.shape[0]):
        out[i] = (v[i] * m) >> t


@nb.njit(cache=True)
def _floor_divmod_code(z, base, q, r):
    code = uniform_code(base)
    for i in range(z.shape[0]):
        q[i], r[i] = floor_divmod_code(z[i], code)


def _values(rng, lo, hi, extra):
    """Random int64 values in [lo, hi] plus the edges and ``extra``."""
    edges = [lo, lo + 1, hi - 1, hi, 0, 1, -1, *extra]
    edges = [e for e in edges if lo <= e <= hi]
    return np.concatenate([np.array(edges, np.int64), rng.integers(lo, hi, 2000, endpoint=True, dtype=np.int64)])


@given(st.integers(0, 2 ** 32 - 1))
def test_the_intrinsic_and_the_limb_product_are_the_unsigned_high_product(seed):
    rng = np.random.default_rng(seed)
    a = np.concatenate([rng.integers(-2 ** 63, 2 ** 63 - 1, 500, endpoint=True, dtype=np.int64),
                        np.array([0, 1, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 62, 2 ** 31 - 1, 2 ** 31])])
    b = rng.permutation(a)
    k = rng.integers(0, 64, a.shape[0])
    fast, portable = np.empty_like(a), np.empty_like(a)
    _mulhi_both(a, b, k, fast, portable)
    expected = [_python_mulhi_shr(x, y, s) for x, y, s in zip(a, b, k)]
    assert [int(x) % U64 for x in fast] == expected
    assert [int(x) % U64 for x in portable] == expected


@given(st.one_of(st.integers(1, 2 ** 31), st.sampled_from([1, 2, 3, 2 ** 15, 2 ** 16, 2 ** 31 - 1, 2 ** 31])),
       st.integers(0, 2 ** 32 - 1))
def test_magic63_divides_every_non_negative_int64_exactly(f, seed):
    v = _values(np.random.default_rng(seed), 0, 2 ** 63 - 1, [f - 1, f, f + 1, (2 ** 63 - 1) // f * f])
    out = np.empty_like(v)
    _divide_63(v, np.int64(f), out)
    assert out.tolist() == [int(x) // f for x in v]


@given(st.one_of(st.integers(1, 2 ** 31), st.sampled_from([1, 2, 2 ** 15, 2 ** 15 + 1, 2 ** 31])),
       st.integers(0, 2 ** 32 - 1))
def test_magic31_divides_every_slot_exactly_and_negatives_stay_negative(f, seed):
    rng = np.random.default_rng(seed)
    v = _values(rng, 0, 2 ** 31 - 1, [f - 1, f, f + 1])
    out = np.empty_like(v)
    _divide_31(v, np.int64(f), out)
    assert out.tolist() == [int(x) // f for x in v]
    neg = _values(rng, -(2 ** 31) + 1, -1, [])
    out = np.empty_like(neg)
    _divide_31(neg, np.int64(f), out)
    assert (out < 0).all()  # the pop's max() needs only that


@given(st.one_of(st.integers(1, MAX_BASE), st.sampled_from([1, 2, 3, 10, MAX_BASE - 1, MAX_BASE])),
       st.integers(0, 2 ** 32 - 1))
def test_floor_divmod_code_is_python_divmod_for_every_int64(base, seed):
    z = _values(np.random.default_rng(seed), -2 ** 63, 2 ** 63 - 1, [base, -base, base - 1, -base + 1])
    q, r = np.empty_like(z), np.empty_like(z)
    _floor_divmod_code(z, np.int64(base), q, r)
    assert list(zip(q.tolist(), r.tolist())) == [divmod(int(x), base) for x in z]


@given(st.integers(1, MAX_BASE), st.integers(0, 2 ** 32 - 1))
def test_pop_finds_the_symbol_that_owns_the_slot(base, seed):
    """Layout: the first r symbols own q + 1 slots, the rest q; check the slots at every boundary."""
    code = CPU.uniform_code(np.int64(base))
    q, r = int(code[C_Q]), int(code[C_R])
    rng = np.random.default_rng(seed)
    symbols = np.unique(np.concatenate([[0, base - 1, max(r - 1, 0), min(r, base - 1)],
                                        rng.integers(0, base, 50)]))
    for x in symbols.tolist():
        start = x * q + min(x, r)
        size = q + (1 if x < r else 0)
        for slot in (start, start + 1, start + size - 2, start + size - 1):
            s = np.int64((1 << 47) + slot)  # slot = s mod 2**31; s >= 2**47
            got, s_after, _ = CPU.pop_symbol_head(s, code)
            assert got == x, (base, slot)
            assert s_after == size * (int(s) >> 31) + slot - start
    assert code[C_BASE] == base and (base - r) * q + r * (q + 1) == TOTAL


multiply_lane, divide_lane = CPU.rational_multiply_lane, CPU.rational_divide_lane
multiply_in_place, divide_in_place = CPU.rational_multiply_in_place, CPU.rational_divide_in_place


@nb.njit(cache=True)
def _both_forms(x, s, counts, words, n, d, inverse, by_top, in_place, words_after):
    """Run each lane with the top-word form and with the in-place form; record (x', s', count', err)."""
    cn, cd = uniform_code(n), uniform_code(d)
    for i in range(x.shape[0]):
        c = counts[i]
        top = np.int64(words[c - 1, i]) if c > 0 else np.int64(0)   # stack_top: 0 for an empty stack
        if inverse:
            y, h, dcount, wrote, word, err = divide_lane(x[i], s[i], c, top, cn, cd)
        else:
            y, h, dcount, wrote, word, err = multiply_lane(x[i], s[i], c, top, cn, cd)
        by_top[i, 0], by_top[i, 1], by_top[i, 2], by_top[i, 3] = y, h, c + dcount, err
        if wrote and c + dcount > 0:   # at 0 the word is the borrowed virtual zero (commit_stack)
            words_after[c + dcount - 1, i] = word
        if inverse:
            y, h, c2, err = divide_in_place(x[i], s[i], words, c, i, cn, cd)
        else:
            y, h, c2, err = multiply_in_place(x[i], s[i], words, c, i, cn, cd)
        in_place[i, 0], in_place[i, 1], in_place[i, 2], in_place[i, 3] = y, h, c2, err


@given(st.integers(1, MAX_BASE), st.integers(1, MAX_BASE), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_the_in_place_ratio_lanes_match_the_top_word_lanes(a, b, inverse, seed):
    """Same integers, same stack change, same errors (empty stacks and out-of-range x included)."""
    n, d = min(a, b), max(a, b)
    rng = np.random.default_rng(seed)
    lanes = 600
    x = rng.integers(-(2 ** 53), 2 ** 53, lanes)
    x[:8] = [0, -1, 2 ** 46 - 1, -(2 ** 46), 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, -(2 ** 62)]
    s = rng.integers(2 ** 47, 2 ** 63 - 1, lanes, dtype=np.int64)
    s[8:200] = 2 ** 47 + rng.integers(0, 2 ** 20, 192)  # heads that need a word on a pop
    counts = rng.integers(0, 3, lanes)
    words = rng.integers(0, 2 ** 16, (4, lanes)).astype(np.uint16)
    expected_words = words.copy()
    by_top, in_place = np.zeros((lanes, 4), np.int64), np.zeros((lanes, 4), np.int64)
    _both_forms(x, s, counts, words, np.int64(n), np.int64(d), inverse, by_top, in_place, expected_words)
    ok = by_top[:, 3] == 0
    np.testing.assert_array_equal(in_place[ok], by_top[ok])
    np.testing.assert_array_equal(in_place[~ok, 3], by_top[~ok, 3])
    np.testing.assert_array_equal(words, expected_words)  # an emitted word lands on the same row
