"""Shared test set-up: room for several Numba threads, and hypothesis profiles.

NUMBA_NUM_THREADS is raised before numba loads so tests can compare results at 1, 2, 3 and 4 threads
on any machine, and numba.cuda runs on its CPU simulator (set EXACTREV_REAL_GPU=1 on a GPU machine to
run the same tests on the device). Profiles: ``ci`` (chosen when CI is set) and ``dev``; pick one with
``--hypothesis-profile``.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "4")
# CUDA kernels run on Numba's simulator unless a real GPU is asked for (EXACTREV_REAL_GPU=1).
if os.environ.get("EXACTREV_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
               derandomize=False, print_blob=True)
settings.register_profile("ci", max_examples=25, **_common)
settings.register_profile("dev", max_examples=60, **_common)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

THREAD_COUNTS = (1, 2, 3, 4)
