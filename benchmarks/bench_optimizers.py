"""Reversible optimisers on the paper-sized MLP (T = 100): bits per weight per step over the bound, and
forward / reverse milliseconds per step, for momentum SGD, Nesterov (gradient memory 1/256), Adam and
AdamW. Tracked as numbers from one measurement each, as ``exactrev bench --suite optimizers`` prints."""

from exactrev.faces.bench_optimizers import measure_optimizer
from exactrev.faces.bench_training import PaperProblem


class Optimizers:
    params = (["sgd", "nesterov", "adam", "adamw"],)
    param_names = ["optimizer"]
    timeout = 900

    def setup_cache(self):
        prob = PaperProblem(100)
        return {name: measure_optimizer(prob, name) for name in self.params[0]}

    def track_bits_over_bound(self, rows, name):
        return rows[name]["bits"] / rows[name]["bound"]

    track_bits_over_bound.unit = "ratio"

    def track_bits_per_weight_step(self, rows, name):
        return rows[name]["bits"]

    track_bits_per_weight_step.unit = "bits"

    def track_forward_ms_per_step(self, rows, name):
        return rows[name]["forward_ms"]

    track_forward_ms_per_step.unit = "ms"

    def track_reverse_ms_per_step(self, rows, name):
        return rows[name]["reverse_ms"]

    track_reverse_ms_per_step.unit = "ms"
