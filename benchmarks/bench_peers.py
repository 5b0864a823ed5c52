"""exactrev against JAX in the same run: JAX's time over exactrev's for one hypergradient (above 1: exactrev
is faster), the MLP passes' share of the float64 peak, and the JAX adapter's forward overhead. Skipped
where JAX is not installed (``pip install -e ".[peers]"``)."""

import importlib.util
import time


def _need_jax():
    if importlib.util.find_spec("jax") is None:
        raise NotImplementedError("needs JAX")  # asv skips the benchmark


class AgainstJax:
    """One hypergradient of the paper MLP at T = 100 and 1000, against JAX's three memory modes."""

    params = ([100, 1000], ["store", "checkpoint", "segments"])
    param_names = ["steps", "jax_mode"]
    timeout = 900

    def setup(self, steps, mode):
        _need_jax()

    def track_jax_time_over_exactrev(self, steps, mode):
        from exactrev.faces.bench_training import PaperProblem
        from exactrev.faces.peers_jax import jax_hypergradient

        prob = PaperProblem(steps)
        prob.hypergradient()  # compiled kernels loaded
        t0 = time.perf_counter()
        prob.hypergradient()
        ours = time.perf_counter() - t0
        return jax_hypergradient(prob, mode)[0] / ours

    track_jax_time_over_exactrev.unit = "ratio"


class MlpPeak:
    """GFLOP/s of the MLP passes over numpy's float64 matmul peak, same process and threads."""

    params = (["grad", "grad_hvp"],)
    param_names = ["pass_"]

    def track_fraction_of_peak(self, pass_):
        from exactrev.faces.bench_training import flop_rates

        rates = flop_rates()
        return rates[pass_] / rates["peak"]

    track_fraction_of_peak.unit = "fraction"


class JaxAdapter:
    """A JaxModel's forward run over the same jitted JAX gradient in a plain float64 loop."""

    timeout = 600

    def setup(self):
        _need_jax()

    def track_forward_overhead(self):
        from exactrev.faces.bench_adapter import adapter_report

        ours, base = adapter_report(steps=100, out=lambda *a: None)
        return ours / base

    track_forward_overhead.unit = "ratio"
