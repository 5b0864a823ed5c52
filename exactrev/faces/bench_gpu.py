"""GPU benchmark (needs a CUDA GPU; runs on the simulator only as a smoke test at tiny sizes).

Measures, on the same device:
- the reversible momentum step (dry run + commit, buffer push/pop), in weights x steps per second,
  and the memory bandwidth it achieves, against a device-to-device copy's bandwidth;
- the plain float64 momentum step, the same way;
- the buffer alone: push and pop of symbols uniform over 10, in ns per weight-step;
- that the device integers equal the CPU's: w, v and the buffer's heads, counts and words, bit for bit;
- one hypergradient (forward + exact reverse sweep) of the paper-sized MLP on the bundled digits, against
  the CPU path in the same process and, where JAX is installed, JAX's unrolled autodiff on the device.
"""

import time

import numpy as np
from numba import cuda

from ..exact.buffer import InfoBuffer
from ..kernels import cuda as K
from ..kernels.rans import WORD_BITS
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


def buffer_push_pop_ns(n, steps, base=10, seed=0):
    """(push ns, pop ns) per weight-step: ``steps`` symbols uniform over ``base`` pushed onto each of
    ``n`` lanes on the device, then popped back (checked equal to what was pushed)."""
    rng = np.random.default_rng(seed)
    host = InfoBuffer(n)
    host.reserve(int(np.ceil(steps * np.log2(base) / WORD_BITS)) + 4)
    heads, counts, words = (cuda.to_device(a) for a in (host.heads, host.counts, host.words))
    bases = cuda.to_device(np.full(n, base, np.int64))
    symbols = [cuda.to_device(rng.integers(0, base, n)) for _ in range(2)]
    out, errs = cuda.device_array(n, np.int64), cuda.to_device(np.zeros(n, np.int8))
    grid = blocks(n)
    cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(steps):
        K.push_kernel[grid, THREADS](heads, counts, words, symbols[t % 2], bases)
    cuda.synchronize()
    push = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in range(steps - 1, -1, -1):
        K.pop_kernel[grid, THREADS](heads, counts, words, bases, host.floor, out, True, errs)
    cuda.synchronize()
    pop = time.perf_counter() - t0
    if not np.array_equal(out.copy_to_host(), symbols[0].copy_to_host()) or errs.copy_to_host().any():
        raise AssertionError("the device buffer did not pop back what was pushed")
    if not (np.array_equal(heads.copy_to_host(), host.heads)
            and np.array_equal(counts.copy_to_host(), host.counts)):
        raise AssertionError("the device buffer is not empty after popping every symbol")
    return 1e9 * push / (n * steps), 1e9 * pop / (n * steps)


def integers_match_cpu(n=1_000_000, steps=20, groups=4, seed=0):
    """Run the CPU and GPU optimisers on the same gradients (random schedule, groups and values) and
    compare w, v, buffer heads, counts and words bit for bit, then reverse the GPU run to w_0.

    Returns a dict of booleans: 'w', 'v', 'buffer' (identical after the forward run) and 'restored'.
    """
    from fractions import Fraction

    from ..optim.sgd import ReversibleSGD

    rng = np.random.default_rng(seed)
    mom = np.array([[Fraction(int(rng.integers(1, 65536)), 65536) for _ in range(groups)]
                    for _ in range(steps)], dtype=object)
    sched = MomentumSchedule.build(rng.uniform(0.01, 0.5, (steps, groups)), mom)
    w0, v0, group = rng.normal(size=n), rng.normal(size=n), rng.integers(0, groups, n)
    grads = [rng.normal(size=n) * 10.0 ** rng.integers(-6, 2) for _ in range(steps)]
    cpu = ReversibleSGD(w0, sched, v0=v0, group=group)
    gpu = CudaReversibleSGD(w0, sched, v0=v0, group=group)
    start_w, start_v = gpu.w.copy_to_host(), gpu.v.copy_to_host()
    for g in grads:
        cpu.step(g)
        gpu.step(cuda.to_device(g))
    gpu.check()
    same = {"w": bool(np.array_equal(gpu.w.copy_to_host(), cpu.w)),
            "v": bool(np.array_equal(gpu.v.copy_to_host(), cpu.v)),
            "buffer": gpu.buffer_to_host() == cpu.buffer}
    for t in range(steps - 1, -1, -1):
        gpu.unstep_weights()
        gpu.unstep_velocity(cuda.to_device(grads[t]))
    gpu.check()
    same["restored"] = bool(gpu.buffer_restored() and np.array_equal(gpu.w.copy_to_host(), start_w)
                            and np.array_equal(gpu.v.copy_to_host(), start_v))
    return same


def hypergradient_seconds(steps=100, hidden=(50, 50, 50), batch=200, device="cuda"):
    """(seconds of one hypergradient after a warm-up one, its result, the problem) on ``device``."""
    from .bench_training import PaperProblem
    from ..hyper.api import hypergradient

    prob = PaperProblem(steps, hidden, batch)
    run = lambda: hypergradient(prob.meta, prob.train, prob.valid, prob.noise, prob.types,  # noqa: E731
                                device=device)
    run()
    t0 = time.perf_counter()
    res = run()
    return time.perf_counter() - t0, res, prob


def gpu_report(n=10_000_000, steps=100, mlp_steps=(100,), mlp_hidden=(50, 50, 50), mlp_batch=200,
               match_weights=1_000_000, cpu=True, jax_modes=(), out=print):
    """Print the GPU table; see the module docstring. Returns the figures as a dict."""
    import numba

    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    out(f"device: {name.decode() if isinstance(name, bytes) else name}")
    figures = {}
    if match_weights:
        same = integers_match_cpu(match_weights)
        figures["match"] = same
        out(f"integers against the CPU kernels ({match_weights} weights, 20 steps, 4 groups): "
            f"w {same['w']}, v {same['v']}, buffer heads/counts/words {same['buffer']}; "
            f"reversed to w_0, v_0 and the empty buffer: {same['restored']}")
    bw = copy_bandwidth(n)
    rev, flt = step_throughput(n, steps)
    push, pop = buffer_push_pop_ns(n, steps)
    figures.update(bandwidth=bw, reversible=rev, float=flt, push_ns=push, pop_ns=pop)
    out(f"copy bandwidth: {bw / 1e9:.0f} GB/s")
    out(f"reversible step: {rev / 1e9:.3f} G weight-steps/s, {rev * REVERSIBLE_BYTES_PER_WEIGHT / 1e9:.0f} GB/s "
        f"({100 * rev * REVERSIBLE_BYTES_PER_WEIGHT / bw:.0f}% of copy bandwidth)")
    out(f"float64 momentum step: {flt / 1e9:.3f} G weight-steps/s, {flt * FLOAT_BYTES_PER_WEIGHT / 1e9:.0f} GB/s; "
        f"reversible / float64 time: {flt / rev:.2f}x")
    out(f"buffer, base 10: push {push:.4f} ns, pop {pop:.4f} ns per weight-step")
    for T in mlp_steps:
        sec, res, prob = hypergradient_seconds(T, mlp_hidden, mlp_batch)
        figures[f"hypergradient_s_{T}"] = sec
        out(f"hypergradient, MLP 64-{'-'.join(map(str, mlp_hidden))}-10 ({res.final_weights.shape[0]} "
            f"weights), batch {mlp_batch}, T = {T}: GPU {sec:.2f} s (forward {res.stats['forward_s']:.2f} s, "
            f"reverse sweep {res.stats['reverse_s']:.2f} s), w_0 restored bit for bit: {res.restored}")
        if cpu:
            csec, cres, _ = hypergradient_seconds(T, mlp_hidden, mlp_batch, device="cpu")
            figures[f"cpu_hypergradient_s_{T}"] = csec
            diff = max(float(np.max(np.abs(res.grads[k] - cres.grads[k])) / np.max(np.abs(cres.grads[k])))
                       for k in ("lr", "momentum", "log_init_scale"))
            out(f"  CPU path ({numba.get_num_threads()} threads): {csec:.2f} s = {csec / sec:.2f}x the GPU; "
                f"hypergradients differ by {diff:.1e} (relative)")
        for mode in jax_modes:
            from .peers_jax import jax_hypergradient, max_relative_difference

            jsec, _, jgrads, peak = jax_hypergradient(prob, mode)
            figures[f"jax_{mode}_s_{T}"] = jsec
            mem = f", XLA temporaries {peak / 2 ** 20:.0f} MiB" if peak else ""
            out(f"  JAX float64 {mode} on the same device: {jsec:.2f} s{mem}; exactrev / JAX time "
                f"{sec / jsec:.2f}x; hypergradients differ by {max_relative_difference(res.grads, jgrads):.1e}")
    return figures
