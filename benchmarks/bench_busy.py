"""Slowdown beside one competing busy process (busy time / quiet time, same run), per workload."""

from exactrev.faces.bench_busy import busy_report, workloads


class BusyMachine:
    """Each workload of ``exactrev bench --suite busy``, tracked as its slowdown ratio."""

    params = ([name for name in workloads() if "JAX" not in name],)
    param_names = ["workload"]
    timeout = 600

    def track_slowdown(self, workload):
        quiet, busy = busy_report(out=lambda *a: None, tasks={workload: workloads()[workload]})[workload]
        return busy / quiet

    track_slowdown.unit = "ratio"
