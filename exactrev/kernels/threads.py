"""How the parallel CPU kernels use threads: a short spin at barriers, and serial runs below a size.

Every parallel kernel call is one OpenMP region that ends at a barrier. GNU OpenMP (the runtime behind
Numba's ``omp`` layer on Linux) lets a waiting thread spin up to ``GOMP_SPINCOUNT`` times before it
sleeps; its default, 300 000 spins (milliseconds), is a whole scheduler slice. When another process
holds a core, the thread a barrier waits for is descheduled and the spinning one burns the core it
needs: a busy machine then made small kernels 10-100x slower. Two measures, both measured on the
2-core development machine (docs/engine.md, "Threads"):

- ``SPIN_COUNT``: unless the user chose (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set), importing
  exactrev sets ``GOMP_SPINCOUNT`` to a short spin, tens of microseconds: as fast as the default on a
  quiet machine, and a waiting thread yields its core soon on a busy one. Sleeping at once
  (``OMP_WAIT_POLICY=PASSIVE``) costs a wake-up of about 50 us per region on that machine, 10x the
  work of a 1000-weight kernel. The runtime reads the setting when it is loaded, so it applies only
  if no OpenMP runtime was loaded before exactrev's first parallel kernel (see ``settings()``).
- ``SERIAL_BELOW``: a kernel over fewer lanes runs a serial build of the same loop (``prange`` runs
  as ``range``), so small problems do not pay for threads they cannot use. The size is where two
  threads' gain on a quiet machine (1.8x at 10^4 lanes) stops outweighing their loss beside one busy
  process (1.9x at 10^4 lanes, 1.1x at 3 * 10^4). Integer results are the same either way.
"""

import os
import types

import numba as nb

SPIN_COUNT = 1000
SERIAL_BELOW = 16384

_USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def openmp_loaded() -> bool:
    """True when an OpenMP runtime (libgomp, libiomp, libomp) is already mapped into this process."""
    try:
        with open("/proc/self/maps") as maps:
            return any(name in line for line in maps for name in ("libgomp", "libiomp", "libomp."))
    except OSError:  # not Linux: nothing to inspect
        return False


def apply_spin_default(environ=os.environ) -> bool:
    """Set ``GOMP_SPINCOUNT = SPIN_COUNT`` unless the user set a wait policy; True when it was set."""
    if any(k in environ for k in _USER_CHOICES):
        return False
    environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True


def settings() -> dict:
    """The threading settings in force: layer (once a kernel ran), threads, spin and wait policy."""
    try:
        layer = nb.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = "not started"
    return {"threading_layer": layer, "threads": nb.get_num_threads(), "serial_below": SERIAL_BELOW,
            "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "unset"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset")}


_SERIAL = {}


def serial_build(kernel, **callees):
    """``kernel``'s Python function compiled without ``parallel`` and cached under its own name; the
    jitted functions it calls may be replaced by name (``callees``), e.g. by their serial builds.
    Built once per kernel."""
    serial = _SERIAL.get(kernel)
    if serial is None:
        fn = kernel.py_func
        scope = dict(fn.__globals__, **callees) if callees else fn.__globals__
        copy = types.FunctionType(fn.__code__, scope, fn.__name__ + "_serial", fn.__defaults__,
                                  fn.__closure__)
        copy.__qualname__ = fn.__qualname__ + "_serial"
        copy.__module__ = fn.__module__
        copy.__doc__ = fn.__doc__
        serial = _SERIAL[kernel] = nb.njit(cache=True)(copy)
    return serial


def for_lanes(kernel, n_lanes: int):
    """``kernel`` itself for ``n_lanes >= SERIAL_BELOW``, else its serial build (same integers)."""
    return kernel if n_lanes >= SERIAL_BELOW else serial_build(kernel)
