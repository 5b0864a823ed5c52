"""Numba kernels on integer arrays. Importing sets a short OpenMP spin unless the user chose one
(``threads.apply_spin_default``; docs/engine.md, "Threads")."""

from .threads import apply_spin_default

apply_spin_default()
