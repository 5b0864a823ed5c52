"""Training benchmarks on the paper-sized MLP: what exactness costs, measured in one run.

- forward: reversible fixed-point momentum SGD against plain float64 momentum SGD with the same MLP
  kernels and the same mini-batches (no fixed point, no buffer), and against plain numpy float64
  training of the same network (``peers_numpy``: numpy's matmul and tanh);
- reverse: the hypergradient's reverse sweep (gradient + Hessian-vector product per step) against the
  forward run;
- memory: peak memory allocated during a whole hypergradient (tracemalloc sees NumPy's allocations)
  for exact reversal and for the store-everything reference, beside the theoretical figures;
- the physical limit: GFLOP/s of the MLP's gradient and gradient + Hessian-vector product passes
  against numpy's float64 matrix product on large matrices, in the same process and threads.
"""

import time
import tracemalloc

import numpy as np

from ..hyper.data import load_digits
from ..hyper.api import hypergradient
from ..hyper.meta import MetaParams, initial_weights
from ..hyper.losses import MLPTrainingLoss, MLPValidationLoss
from ..model.mlp import MLP
from ..optim.sgd import ReversibleSGD
from .bench_buffer import best_time, best_times
from .peers_numpy import numpy_training


class PaperProblem:
    """3 x 50 tanh MLP on the bundled digits, batch 200, constant lr 0.3 and momentum 0.9."""

    def __init__(self, steps=100, hidden=(50, 50, 50), batch=200, seed=0):
        self.data = load_digits(seed=seed)
        self.net = MLP((self.data.n_features, *hidden, self.data.n_classes), "tanh")
        self.types = self.net.weight_types()
        self.noise = self.net.init_noise(np.random.default_rng(seed))
        self.meta = MetaParams.constant(steps, self.net.n_types)
        # the hypergradients of the schedules and the initial scales, as the JAX peer computes
        self.train = MLPTrainingLoss(self.net, self.data.train, batch, seed, 0, meta=())
        self.valid = MLPValidationLoss(self.net, self.data.valid)
        self.steps = steps

    def w0(self):
        return initial_weights(self.meta, self.noise, self.types)

    def forward_reversible(self):
        opt = ReversibleSGD(self.w0(), self.meta.schedule(), group=self.types)
        opt.forward(self.train.grad)
        return opt.weights

    def forward_float(self, grad_fn=None):
        """Plain float64 momentum SGD, same batches: v <- g v - (1-g) grad, w += a v, with grad =
        grad_fn(w, t) (default: exactrev's MLP pass, ``self.train.grad``). Returns the weights."""
        grad_fn = self.train.grad if grad_fn is None else grad_fn
        sched = self.meta.schedule()
        w = self.w0()
        v = np.zeros_like(w)
        for t in range(self.steps):
            g = sched.momenta[t][self.types]
            v *= g
            v -= (1.0 - g) * grad_fn(w, t)
            w += sched.lr[t][self.types] * v
        return w

    def hypergradient(self, method="reversal", snapshots=None):
        return hypergradient(self.meta, self.train, self.valid, self.noise, self.types, method=method,
                             snapshots=snapshots)


def forward_times(steps=100, repeat=3):
    """(reversible, float64 on the same MLP passes, plain numpy float64) seconds of one forward run of
    ``steps`` steps: the fastest of ``repeat`` rounds that run the first two in turn, then the fastest
    of ``repeat`` numpy runs (numpy's BLAS at its own threads). Numpy goes last because its threaded
    BLAS leaves worker threads spinning after a product, which slowed a two-thread run right after
    it by up to 1.6x."""
    prob = PaperProblem(steps)
    prob.forward_reversible()  # compile
    prob.forward_float()
    rev, flt = best_times((prob.forward_reversible, prob.forward_float), repeat)  # alternately
    numpy_training(prob)
    plain = best_time(lambda: numpy_training(prob), repeat)
    return rev, flt, plain


def reverse_over_forward(steps=100, repeat=2):
    """(hypergradient seconds, forward seconds): the sweep includes its own forward run."""
    prob = PaperProblem(steps)
    prob.hypergradient()
    total = best_time(prob.hypergradient, repeat)
    fwd = best_time(prob.forward_reversible, repeat)
    return total, fwd


def mlp_flops(sizes, batch, hvp=False, input_terms=False):
    """Floating-point operations of the matrix products of one pass (2 per multiply-add): a gradient
    is the forward product of every layer, its weight gradient, and the input gradient of every layer
    but the first; gradient + HVP adds the R-images of each (``model/mlp_blas.py``)."""
    per_layer = [2 * batch * n * m for n, m in zip(sizes[:-1], sizes[1:])]
    every, above_first = sum(per_layer), sum(per_layer[1:])
    if not hvp:
        return 2 * every + above_first + (per_layer[0] if input_terms else 0)
    return 4 * every + 5 * above_first + (3 * per_layer[0] if input_terms else 0)


def flop_rates(hidden=(50, 50, 50), batch=200, peak_n=1500, repeat=20):
    """GFLOP/s of the paper MLP's gradient and gradient + HVP passes, and of numpy's matmul on two
    peak_n x peak_n float64 matrices (the machine's float64 peak at the current BLAS threads)."""
    prob = PaperProblem(2, hidden, batch)
    net, rng = prob.net, np.random.default_rng(0)
    w, u = prob.w0(), rng.standard_normal(net.n_params)
    X, y = prob.data.train.X[:batch], prob.data.train.y[:batch]
    grad_s = best_time(lambda: net.loss_grad(w, X, y), repeat)
    hvp_s = best_time(lambda: net.grad_hvp(w, X, y, u, input_terms=False), repeat)
    A, B = rng.standard_normal((peak_n, peak_n)), rng.standard_normal((peak_n, peak_n))
    peak_s = best_time(lambda: A @ B, 3)
    return {"grad": mlp_flops(net.sizes, batch) / grad_s / 1e9,
            "grad_hvp": mlp_flops(net.sizes, batch, hvp=True) / hvp_s / 1e9,
            "peak": 2 * peak_n ** 3 / peak_s / 1e9, "grad_ms": grad_s * 1e3, "grad_hvp_ms": hvp_s * 1e3}


def peak_memory(method, steps=1000, hidden=(50, 50, 50), **kwargs):
    """Peak bytes allocated during one hypergradient (tracemalloc), and the result."""
    PaperProblem(2, hidden).hypergradient(method, **kwargs)  # load compiled kernels outside the trace
    prob = PaperProblem(steps, hidden)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    res = prob.hypergradient(method, **kwargs)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, res, seconds, prob


def training_report(steps=100, memory_steps=1000, out=print):
    """Print the training benchmark table; return the figures."""
    rev, flt, plain = forward_times(steps)
    out(f"Forward training, paper MLP (64-50-50-50-10 tanh, batch 200), T = {steps}")
    out(f"  reversible fixed point + buffer: {rev:.3f} s   plain float64 momentum SGD on the same MLP "
        f"passes: {flt:.3f} s   ratio {rev / flt:.3f}x (target <= 1.1x)")
    out(f"  plain numpy float64 training (numpy's matmul and tanh): {plain:.3f} s   reversible / numpy "
        f"{rev / plain:.3f}x")
    total, fwd = reverse_over_forward(steps)
    out(f"  hypergradient (forward + reverse sweep): {total:.3f} s; reverse sweep alone "
        f"{total - fwd:.3f} s = {(total - fwd) / fwd:.2f}x the forward run")
    out("")
    out(f"Peak memory of a hypergradient at T = {memory_steps} (tracemalloc)")
    rows = {}
    for method in ("reversal", "store"):
        peak, res, seconds, prob = peak_memory(method, memory_steps)
        rows[method] = (peak, res.extra_bytes, seconds)
    n = prob.net.n_params
    theory_rev = n * memory_steps * np.log2(10 / 9) / 8
    theory_store = n * (memory_steps + 1) * 16
    out(f"{'method':>9} | {'peak bytes':>12} | {'kept bytes':>12} | {'theory':>12} | {'seconds':>8}")
    for method, theory in (("reversal", theory_rev), ("store", theory_store)):
        peak, kept, seconds = rows[method]
        out(f"{method:>9} | {peak:>12,} | {kept:>12,} | {int(theory):>12,} | {seconds:>8.2f}")
    out(f"store / reversal peak memory: {rows['store'][0] / rows['reversal'][0]:.1f}x")
    out("")
    rates = flop_rates()
    out(f"MLP passes against the float64 peak (numpy matmul 1500 x 1500, same threads): "
        f"{rates['peak']:.1f} GFLOP/s")
    out(f"  gradient: {rates['grad_ms']:.3f} ms, {rates['grad']:.1f} GFLOP/s "
        f"({rates['grad'] / rates['peak']:.0%} of peak); gradient + HVP: {rates['grad_hvp_ms']:.3f} ms, "
        f"{rates['grad_hvp']:.1f} GFLOP/s ({rates['grad_hvp'] / rates['peak']:.0%})")
    return {"forward": (rev, flt, plain), "reverse": (total, fwd), "memory": rows, "flops": rates}
