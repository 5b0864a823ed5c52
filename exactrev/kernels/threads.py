"""How the parallel CPU kernels use threads: a spin that bridges a step's gaps; one thread or all, by
size and by the machine's load.

Every parallel kernel call is one OpenMP region that ends at a barrier. GNU OpenMP (the runtime behind
Numba's ``omp`` layer on Linux) lets a waiting thread spin up to ``GOMP_SPINCOUNT`` times before it
sleeps; its default, 300 000 spins, is milliseconds, a whole scheduler slice. When another process
holds a core, the thread a barrier waits for is descheduled and the spinning one burns the core it
needs: a busy machine then made small kernels 10-100x slower. A thread that sleeps instead costs a
wake-up at the next region: 45-135 us on the 2-core development machine (a virtual machine), more than
most kernels of a training step. Both measured there (docs/engine.md, "Threads"):

- ``SPIN_COUNT``: unless the user chose (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set), importing
  exactrev sets ``GOMP_SPINCOUNT`` to 10 000, a spin of 200-500 us there: long enough to bridge the
  Python between the regions of a step (tens of microseconds; with 1000 spins a thread slept after
  20-50 us and every region paid the wake-up), short next to a scheduler slice. The runtime reads the
  setting when it is loaded, so it applies only if no OpenMP runtime was loaded before exactrev's
  first parallel kernel (see ``settings()``).
- One thread, or by load, by size: a kernel over fewer than ``SERIAL_BELOW`` lanes runs on one thread
  (``serial_runner``: its parallel build on one thread, or for a few lanes or a ``light`` kernel its
  serial build, where ``prange`` runs as ``range``), so small problems do not pay for threads they
  cannot use; ``light`` kernels (a few ns per lane) do so below ``PARALLEL_FROM`` lanes. Every other
  parallel call, the MLP's batch chunks included (``by_load``), follows one ``LaneMode`` per process:
  all threads while the machine's load (``/proc/loadavg``) leaves a core free, one thread otherwise,
  so that no thread of exactrev spins at a barrier while another process waits for the core. Integer
  results, and the MLP's floats, are the same for every build and thread count.
"""

import os
import threading
import time
import types

import numba as nb

SPIN_COUNT = 10000
"""``GOMP_SPINCOUNT`` that importing exactrev sets unless the user chose a wait policy."""
SERIAL_BELOW = 4096
"""Lanes below which a kernel always runs on one thread (``serial_runner``)."""
PARALLEL_FROM = 65536
"""Lanes from which a ``light`` kernel follows the load too (below: one thread, its serial build)."""
SAMPLE_S = 0.02
"""Seconds between two samples of the machine's load by a ``LaneMode``."""
SMOOTHING = 0.25
"""Weight of the newest sample in a ``LaneMode``'s average load."""
FREE_MARGIN = 0.5
"""Runnable tasks of other processes, on average, beyond the cores this process's threads leave free,
with which a ``LaneMode`` still runs all threads."""

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
            "parallel_from": PARALLEL_FROM,
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


_LIGHT = set()


def light(kernel):
    """Mark ``kernel`` (a parallel Numba kernel) as light work per lane, a few nanoseconds (a
    conversion, a rounded product): ``for_lanes`` runs its serial build below ``PARALLEL_FROM`` lanes
    whatever the load, since starting a parallel region whose threads sleep costs more there (the
    8860 weights of the paper MLP: 34 us against 5 us for a conversion to floats). Returns it."""
    _LIGHT.add(kernel)
    return kernel


ONE_THREAD_FROM = 512
"""Lanes from which a kernel that is not ``light`` runs without a second thread as its parallel build
on one thread (``one_thread``) instead of its serial build."""


class _OneThread:
    """A parallel kernel called with Numba's threads set to one for the call (restored after)."""

    __slots__ = ("kernel",)

    def __init__(self, kernel):
        self.kernel = kernel

    def __call__(self, *args):
        if nb.config.NUMBA_NUM_THREADS == 1:  # one thread at most: no setting to read (about 1 us)
            return self.kernel(*args)
        threads = nb.get_num_threads()
        if threads == 1:
            return self.kernel(*args)
        nb.set_num_threads(1)
        try:
            return self.kernel(*args)
        finally:
            nb.set_num_threads(threads)


_ONE = {}


def one_thread(kernel):
    """``kernel`` (a parallel Numba kernel) run on one thread: the same compiled loop as on several
    (a parallel region of one thread, started in about 5 us, no other thread woken), which for the
    buffer's kernels is about 2x faster than their serial build on the same core (the development
    machine, 8860 lanes: x n/d then its inverse 188 against 414 us; the reverse step's velocity kernel
    98 against 193 us: the serial build counts references to the arrays handed to the inlined lane
    functions inside its loop). Same integers. One wrapper per kernel."""
    runner = _ONE.get(kernel)
    if runner is None:
        runner = _ONE[kernel] = _OneThread(kernel)
    return runner


def serial_runner(kernel, n_lanes: int):
    """What runs ``kernel`` on ``n_lanes`` lanes on one thread: its serial build for a ``light``
    kernel or fewer than ``ONE_THREAD_FROM`` lanes, else ``one_thread(kernel)``."""
    if kernel in _LIGHT or n_lanes < ONE_THREAD_FROM:
        return serial_build(kernel)
    return one_thread(kernel)


LOADAVG = "/proc/loadavg"
_LOADAVG_FD = []  # the kept descriptor of LOADAVG, once opened
_LOADAVG_LOCK = threading.Lock()


def _read_load_file(path):
    """The text of ``path``. ``LOADAVG`` stays open and is read again at offset 0 (``os.pread``: 2.6
    against 39 us to open, read and close it on the development machine; the kernel writes the file
    anew on each read); any other path is opened for each read."""
    if path != LOADAVG:
        with open(path, "rb") as f:
            return f.read()
    if not _LOADAVG_FD:
        with _LOADAVG_LOCK:
            if not _LOADAVG_FD:
                _LOADAVG_FD.append(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
    return os.pread(_LOADAVG_FD[0], 256, 0)


def runnable_tasks(path=LOADAVG):
    """Tasks the kernel has running or ready to run this instant, this one included (the fourth field
    of ``/proc/loadavg``, before the slash); None where that file is missing or unreadable."""
    try:
        return int(_read_load_file(path).split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LaneMode:
    """One thread or all threads for parallel kernels, by the machine's load.

    Two threads win only when a second core is free: on the 2-core development machine, inside a
    hypergradient of the paper MLP (8860 weights), two threads made a step 12-21% faster than the
    serial builds when it was quiet and 9-14% slower beside one busy process, and timing each kernel
    does not tell the two apart (a parallel kernel may time well and still slow the step around it).
    With a spin that bridges a step's gaps (``SPIN_COUNT``), a thread left spinning beside a busy
    process is worse still, so every parallel call of a step (the MLP's chunks too) follows the mode.
    The mode follows the runnable tasks of ``/proc/loadavg`` (``runnable_tasks``), sampled right
    after a call, at most every ``SAMPLE_S`` seconds, when this process's own runnable threads are
    known: after a call on all threads every one of its ``threads`` (the waiting ones spin), after a
    call on one thread this one. The sample less those is the others' tasks, averaged as
    ``o <- o + SMOOTHING (others - o)``. The kernels run on all threads while o + min(threads, c) <= c +
    ``FREE_MARGIN`` (c = ``usable_cores()``), and on one thread (``one_thread``) otherwise, before the
    first sample, where the load cannot be read, or with one Numba thread; ``forced`` (True or False)
    overrides the load. Both compute the same integers, so the mode changes only the time. ``load``
    and ``clock`` are the sampler and the timer (seconds)."""

    def __init__(self, load=runnable_tasks, clock=time.monotonic):
        self.load, self.clock = load, clock
        self.average = None
        self.sampled = -float("inf")
        self.parallel = False
        self.forced = None
        """None: follow the load; True or False: all threads or one thread, whatever the load."""

    def _sample(self, now, ran_parallel):
        """Take a sample of the load right after a call (on all threads if ``ran_parallel``) and set
        the mode from the average."""
        self.sampled = now
        threads = nb.get_num_threads()
        sample = self.load() if threads > 1 else None
        if sample is None:  # one thread, or no load to read
            self.parallel = False
            return
        cores = usable_cores()
        others = sample - (threads if ran_parallel else 1)  # after a region its waiting threads spin
        self.average = others if self.average is None else self.average + SMOOTHING * (others - self.average)
        self.parallel = self.average + min(threads, cores) <= cores + FREE_MARGIN

    def run(self, kernel, args):
        """kernel(*args) on several threads or on one (``one_thread``), as the load calls for; then,
        at most every ``SAMPLE_S``, a sample of the load."""
        if self.forced is not None:
            return (kernel if self.forced else one_thread(kernel))(*args)
        parallel = self.parallel
        out = (kernel if parallel else one_thread(kernel))(*args)
        now = self.clock()
        if now - self.sampled >= SAMPLE_S:
            self._sample(now, parallel)
        return out


class _OnLanes:
    """``kernel`` run through a ``LaneMode`` (the process's: ``by_load``): call it like the kernel."""

    __slots__ = ("kernel", "mode")

    def __init__(self, kernel, mode):
        self.kernel, self.mode = kernel, mode

    def __call__(self, *args):
        return self.mode.run(self.kernel, args)


_LOAD_MODE = LaneMode()
_RUNNERS = {}


def load_mode() -> LaneMode:
    """The process's ``LaneMode``: every kernel that may run on several threads follows it."""
    return _LOAD_MODE


def by_load(kernel):
    """``kernel`` (a parallel Numba kernel) on all threads or on one, as ``load_mode()`` calls for."""
    runner = _RUNNERS.get(kernel)
    if runner is None:
        runner = _RUNNERS[kernel] = _OnLanes(kernel, load_mode())
    return runner


def for_lanes(kernel, n_lanes: int):
    """What runs ``kernel`` on ``n_lanes`` lanes: one thread (``serial_runner``) below
    ``SERIAL_BELOW``, and from there one or all threads as the machine's load calls for
    (``by_load``); a ``light`` kernel runs its serial build below ``PARALLEL_FROM``. All compute the
    same integers."""
    if n_lanes < SERIAL_BELOW or (kernel in _LIGHT and n_lanes < PARALLEL_FROM):
        return serial_runner(kernel, n_lanes)
    return by_load(kernel)
