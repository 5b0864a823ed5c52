"""Vectorised push/pop kernels on the information buffer's arrays (one lane per weight).

Arrays (all owned by :class:`exactrev.exact.buffer.InfoBuffer`):
    heads  int64[N]        rANS head per lane, in [2**47, 2**63)
    counts int64[N]        number of 16-bit words on each lane's stack
    words  uint16[R, N]    word k of lane i at words[k, i] (row-major, so a step touches one row band)

Kernels trust the bases (1 <= M <= 2**16) and the symbols (0 <= x < M), which the caller checks; they
never read or write outside ``words``: a lane without a free row is not pushed (``push_kernel``
returns how many), and one whose count exceeds the rows is not popped.
"""

import numba as nb
import numpy as np

from .rans import CPU

push_symbol, pop_symbol_head, refill, uniform_code = (CPU.push_symbol, CPU.pop_symbol_head, CPU.refill,
                                                      CPU.uniform_code)
stack_top, commit_stack = CPU.stack_top, CPU.commit_stack


@nb.njit(parallel=True, cache=True)
def push_kernel(heads, counts, words, symbols, bases):
    """Push symbols[i] uniform over bases[i] onto lane i, for every lane. Bit-identical for any thread count.

    A lane whose stack has no free row (counts[i] >= words.shape[0]) is left unchanged; returns how many
    lanes were left so (0 when the caller made room first, as InfoBuffer.push does).
    """
    full = 0
    for i in nb.prange(heads.shape[0]):
        if counts[i] >= words.shape[0] or counts[i] < 0:
            full += 1
            continue
        s, emitted, word = push_symbol(heads[i], symbols[i], uniform_code(bases[i]))
        if emitted:
            words[counts[i], i] = np.uint16(word)
            counts[i] += 1
        heads[i] = s
    return full


@nb.njit(parallel=True, cache=True)
def pop_kernel(heads, counts, words, bases, floor, out, commit, errs):
    """Pop one symbol uniform over bases[i] from every lane into out[i].

    A lane that would read a word at stack index < ``floor`` gets errs[i] = 1. With ``commit`` False
    nothing but ``errs`` is written (a dry run that checks before the caller writes).
    """
    for i in nb.prange(heads.shape[0]):
        x, s, needs = pop_symbol_head(heads[i], uniform_code(bases[i]))
        if needs and (counts[i] <= floor or counts[i] > words.shape[0]):
            errs[i] = 1
            continue
        if commit:
            if needs:
                s = refill(s, stack_top(words, counts, i))
                counts[i] -= 1
            heads[i] = s
            out[i] = x
