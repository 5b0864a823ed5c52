"""GPU benchmark (needs a CUDA GPU; runs on the simulator only as a smoke test at tiny sizes).

Measures, on the same device:
- the reversible momentum step (dry run + commit, buffer push/pop), in weights x steps per second,
  and the memory bandwidth it achieves, against a device-to-device copy's bandwidth;
- the plain float64 momentum step, the same way;
- one hypergradient (forward + exact reverse sweep) of the paper-sized MLP on the bundled digits.
"""

import time

import numpy as np
from numba import cuda

from ..kernels import cuda as K
from ..optim.schedule import MomentumSchedule
from ..optim.sgd_cuda import THREADS, CudaReversibleSGD, blocks

# bytes one reversible step moves per weight, both kernels: the dry run reads w, v, head, count, grad
# and the top word (42); the commit reads the same and writes w, v, head, count and a word (76)
REVERSIBLE_BYTES_PER_WEIGHT = 42 + 76
FLOAT_BYTES_PER_WEIGHT = 5 * 8  # read w, v, grad; write w, v


def _timed(fn, repeat):
    fn()
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def copy_bandwidth(n, repeat=20):
    """Device-to-device copy bandwidth in bytes/s (bytes read + bytes written)."""
    src, dst = cuda.to_device(np.arange(n, dtype=np.float64)), cuda.device_array(n)
    sec = _timed(lambda: K.copy_kernel[blocks(n), THREADS](src, dst), repeat)
    return 16 * n / sec


def step_throughput(n, steps, repeat=3):
    """(reversible weight-steps/s, float64 weight-steps/s) for n weights over ``steps`` steps."""
    rng = np.random.default_rng(0)
    sched = MomentumSchedule.build(lr=0.01, momentum=0.9, steps=steps * (repeat + 1))
    opt = CudaReversibleSGD(rng.normal(size=n), sched)
    grad = cuda.to_device(rng.normal(size=n) * 1e-3)

    def reversible():
        for _ in range(steps):
            opt.step(grad)
    rev = _timed(reversible, repeat)
    opt.check()
    w, v = cuda.to_device(rng.normal(size=n)), cuda.to_device(np.zeros(n))

    def plain():
        for _ in range(steps):
            K.float_momentum_kernel[blocks(n), THREADS](w, v, 0.9, 0.01, grad)
    flt = _timed(plain, repeat)
    return n * steps / rev, n * steps / flt


def hypergradient_seconds(steps=100, hidden=(50, 50, 50), batch=200):
    from .bench_training import PaperProblem
    from ..hyper.hypergrad import hypergradient

    prob = PaperProblem(steps, hidden, batch)
    run = lambda: hypergradient(prob.meta, prob.train, prob.valid, prob.noise, prob.types,  # noqa: E731
                                device="cuda")
    run()
    t0 = time.perf_counter()
    res = run()
    return time.perf_counter() - t0, res


def gpu_report(n=10_000_000, steps=100, mlp_steps=100, mlp_hidden=(50, 50, 50), mlp_batch=200, out=print):
    """Print the GPU table; see the module docstring."""
    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    out(f"device: {name.decode() if isinstance(name, bytes) else name}")
    bw = copy_bandwidth(n)
    rev, flt = step_throughput(n, steps)
    out(f"copy bandwidth: {bw / 1e9:.0f} GB/s")
    out(f"reversible step: {rev / 1e9:.3f} G weight-steps/s, {rev * REVERSIBLE_BYTES_PER_WEIGHT / 1e9:.0f} GB/s "
        f"({100 * rev * REVERSIBLE_BYTES_PER_WEIGHT / bw:.0f}% of copy bandwidth)")
    out(f"float64 momentum step: {flt / 1e9:.3f} G weight-steps/s, {flt * FLOAT_BYTES_PER_WEIGHT / 1e9:.0f} GB/s; "
        f"reversible / float64 time: {flt / rev:.2f}x")
    if not mlp_steps:
        return {"bandwidth": bw, "reversible": rev, "float": flt}
    sec, res = hypergradient_seconds(mlp_steps, mlp_hidden, mlp_batch)
    out(f"hypergradient, MLP 64-{'-'.join(map(str, mlp_hidden))}-10 ({res.final_weights.shape[0]} "
        f"weights), batch {mlp_batch}, T = {mlp_steps}: {sec:.2f} s on the GPU, "
        f"w_0 restored bit for bit: {res.restored}")
    return {"bandwidth": bw, "reversible": rev, "float": flt, "hypergradient_s": sec}
