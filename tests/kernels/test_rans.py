"""The rANS lane functions, called from user @njit code as the public kernel API allows."""

import numba as nb
import numpy as np
from hypothesis import given, strategies as st

from exactrev.kernels.lanes import C_Q, C_R
from exactrev.kernels.rans import (MAX_BASE, STATE_LOWER, floor_divmod, pop_symbol_head, push_symbol,
                                   refill, uniform_code)


@nb.njit(cache=True)
def _user_push_all(symbols, bases, stack):
    """A user's own @njit loop: push a sequence on one lane, keeping words in a plain array."""
    s = np.int64(STATE_LOWER)
    n = 0
    for j in range(symbols.shape[0]):
        s, emitted, word = push_symbol(s, symbols[j], uniform_code(bases[j]))
        if emitted:
            stack[n] = word
            n += 1
    return s, n


@nb.njit(cache=True)
def _user_pop_all(s, n, bases, stack, out):
    for j in range(bases.shape[0] - 1, -1, -1):
        x, s, needs = pop_symbol_head(s, uniform_code(bases[j]))
        if needs:
            n -= 1
            s = refill(s, stack[n])
        out[j] = x
    return s, n


@st.composite
def symbol_sequences(draw):
    length = draw(st.integers(1, 300))
    bases = draw(st.lists(st.integers(1, MAX_BASE), min_size=length, max_size=length))
    symbols = [draw(st.integers(0, b - 1)) for b in bases]
    return np.array(symbols, np.int64), np.array(bases, np.int64)


@given(symbol_sequences())
def test_pushed_symbols_pop_back_in_reverse_order(seq):
    symbols, bases = seq
    stack = np.zeros(symbols.shape[0] + 1, np.int64)
    s, n = _user_push_all(symbols, bases, stack)
    assert STATE_LOWER <= s < 2 ** 63
    out = np.empty_like(symbols)
    s_back, n_back = _user_pop_all(s, n, bases, stack, out)
    np.testing.assert_array_equal(out, symbols)
    assert (s_back, n_back) == (STATE_LOWER, 0)


@given(st.integers(1, MAX_BASE))
def test_uniform_code_covers_the_total_exactly(base):
    code = uniform_code(np.int64(base))
    q, r = code[C_Q], code[C_R]
    assert (base - r) * q + r * (q + 1) == 2 ** 31
    assert q >= 2 ** 15  # the bound behind "at most one word per push or pop"


def test_base_one_is_the_identity():
    code = uniform_code(np.int64(1))
    s = np.int64(STATE_LOWER + 12345)
    assert push_symbol(s, np.int64(0), code) == (s, 0, 0)
    assert pop_symbol_head(s, code) == (0, s, 0)


@given(st.one_of(st.tuples(st.integers(-(2 ** 62), 2 ** 62), st.integers(1, 2 ** 31)),
                 st.tuples(st.integers(0, 2 ** 63 - 1), st.integers(2 ** 15, 2 ** 31))))
def test_floor_divmod_is_exact(ab):
    a, b = ab
    assert floor_divmod(np.int64(a), np.int64(b), 1.0 / b) == divmod(a, b)
