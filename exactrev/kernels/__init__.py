"""Numba kernels on integer arrays. Importing sets a short OpenMP spin unless the user chose one
(``threads.apply_spin_default``; docs/engine.md, "Threads"), and stamps the kernels' on-disk cache with
every kernel source (``cache.install_locators``), before any kernel is defined."""

from .cache import install_locators
from .threads import apply_spin_default

install_locators()
apply_spin_default()
