"""Vectorised push/pop kernels on the information buffer's arrays (one lane per weight).

Arrays (all owned by :class:`exactrev.exact.buffer.InfoBuffer`):
    heads  int64[N]        rANS head per lane, in [2**47, 2**63)
    counts int64[N]        number of 16-bit words on each lane's stack
    words  uint16[R, N]    word k of lane i at words[k, i] (row-major, so a step touches one row band)

Kernels trust their inputs: the caller has checked the bases (1 <= M <= 2**16), the symbols
(0 <= x < M) and that ``words`` has at least ``counts.max() + 1`` rows before a push.
"""

import numba as nb
import numpy as np

from .rans import CPU

push_symbol, pop_symbol_head, refill, uniform_code = (CPU.push_symbol, CPU.pop_symbol_head, CPU.refill,
                                                      CPU.uniform_code)
stack_top, commit_stack = CPU.stack_top, CPU.commit_stack


@nb.njit(parallel=True, cache=True)
def push_kernel(heads, counts, words, symbols, bases):
    """Push symbols[i] uniform over bases[i] onto lane i, for every lane. Bit-identical for any thread count."""
    for i in nb.prange(heads.shape[0]):
        s, emitted, word = push_symbol(heads[i], symbols[i], uniform_code(bases[i]))
        if emitted:
            words[counts[i], i] = np.uint16(word)
            counts[i] += 1
        heads[i] = s


@nb.njit(parallel=True, cache=True)
def pop_kernel(heads, counts, words, bases, floor, out, commit, errs):
    """Pop one symbol uniform over bases[i] from every lane into out[i].

    A lane that would read a word at stack index < ``floor`` gets errs[i] = 1. With ``commit`` False
    nothing but ``errs`` is written (a dry run that checks before the caller writes).
    """
    for i in nb.prange(heads.shape[0]):
        x, s, needs = pop_symbol_head(heads[i], uniform_code(bases[i]))
        if needs and counts[i] <= floor:
            errs[i] = 1
            continue
        if commit:
            if needs:
                s = refill(s, stack_top(words, counts, i))
                counts[i] -= 1
            heads[i] = s
            out[i] = x
