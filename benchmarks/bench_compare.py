"""Reversal against store and Revolve checkpointing at T = 100 on the paper MLP (asv).

The full table at T = 100, 1000 and 10000 is ``exactrev bench --compare`` (docs/compare.md).
"""

from exactrev.faces.bench_training import PaperProblem
from exactrev.hyper.checkpointing import default_snapshots


class CompareMethods:
    """One hypergradient per method: wall time, and bytes the method keeps beyond (w, v)."""

    params = (["reversal", "store", "checkpoint"],)
    param_names = ["method"]
    timeout = 900

    def setup(self, method):
        self.prob = PaperProblem(100)
        self.kwargs = {"snapshots": default_snapshots(100)} if method == "checkpoint" else {}
        self.prob.hypergradient(method, **self.kwargs)

    def time_hypergradient(self, method):
        self.prob.hypergradient(method, **self.kwargs)

    def track_kept_bytes(self, method):
        return self.prob.hypergradient(method, **self.kwargs).extra_bytes

    track_kept_bytes.unit = "bytes"

    def track_forward_steps(self, method):
        return self.prob.hypergradient(method, **self.kwargs).stats["forward_steps"]

    track_forward_steps.unit = "steps"
