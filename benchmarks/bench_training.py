"""Training on the paper-sized MLP: reversible forward vs plain float64, reverse sweep, memory."""

from exactrev.faces.bench_training import PaperProblem, peak_memory
from exactrev.faces.peers_numpy import numpy_training


class Forward:
    """One forward run of T = 100 steps: reversible fixed point + buffer against plain float64 on the
    same MLP passes and against plain numpy float64 training."""

    timeout = 600

    def setup(self):
        self.prob = PaperProblem(100)
        self.prob.forward_reversible()
        self.prob.forward_float()

    def time_reversible(self):
        self.prob.forward_reversible()

    def time_float64(self):
        self.prob.forward_float()

    def time_numpy_float64(self):
        numpy_training(self.prob)

    def time_hypergradient(self):
        self.prob.hypergradient()


class Memory:
    """Peak bytes (tracemalloc) of one hypergradient at T = 1000, by method."""

    params = (["reversal", "store"],)
    param_names = ["method"]
    timeout = 900

    def track_peak_bytes(self, method):
        return peak_memory(method, 1000)[0]

    track_peak_bytes.unit = "bytes"
