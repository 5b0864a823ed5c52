"""The command line and the report functions: results, not timings."""

import numpy as np
import pytest

from exactrev.faces.bench_buffer import bits_per_weight_step, buffer_report
from exactrev.faces.cli import main


def test_demo_restores_every_bit(capsys):
    assert main(["demo", "--steps", "15", "--hidden", "8", "--batch", "50", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "restored bit for bit: True" in out
    assert "bits per weight per step" in out


@pytest.mark.parametrize("argv", [["demo", "--steps", "0"], ["demo", "--hidden", "a,b"],
                                  ["demo", "--momentum", "1.5"], ["demo", "--lr", "nan"], ["nope"]])
def test_bad_arguments_get_a_clear_message(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_buffer_report_prints_ratios(capsys):
    figures = buffer_report(n_weights=200, depths=(10, 100), momenta=(0.9,), bits_steps=200)
    out = capsys.readouterr().out
    assert "speed-up" in out and "log2(d/n)" in out
    assert len(figures["cost"]) == 2


def test_bits_per_weight_step_is_near_the_bound():
    measured, bound = bits_per_weight_step(0.5, 500, n_weights=100)
    assert measured == pytest.approx(bound, rel=0.01)


def test_bench_command_quick_training_suite(capsys):
    from exactrev.faces.bench_training import training_report

    figures = training_report(steps=5, memory_steps=10)
    out = capsys.readouterr().out
    assert "ratio" in out and "store / reversal" in out and "plain numpy float64 training" in out
    assert len(figures["forward"]) == 3 and min(figures["forward"]) > 0
    peak_rev, peak_store = figures["memory"]["reversal"][0], figures["memory"]["store"][0]
    assert peak_store > peak_rev > 0


def test_plain_numpy_training_follows_the_float_loop_on_exactrevs_mlp_passes():
    from exactrev.faces.bench_training import PaperProblem
    from exactrev.faces.peers_numpy import layer_views, numpy_training, tanh_mlp_grad

    prob = PaperProblem(8)
    w = prob.w0()
    X, y = prob.data.train.X[:50], prob.data.train.y[:50]
    g = np.empty_like(w)
    loss = tanh_mlp_grad(layer_views(w, prob.net.sizes), layer_views(g, prob.net.sizes), X, y)
    want_loss, want_grad = prob.net.loss_grad(w, X, y)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    np.testing.assert_allclose(g, want_grad, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(numpy_training(prob), prob.forward_float(), rtol=1e-10, atol=1e-13)


def test_compare_report_rows_and_plot(tmp_path, capsys):
    from exactrev.faces.bench_compare import compare_report

    blocks = compare_report(((12, (4,)),), time_limit=60, plot_path=str(tmp_path / "c.png"))
    rows = blocks[0]["rows"]
    assert [r["method"] for r in rows][:2] == ["reversal", "store"]
    for r in rows:
        if r["method"] == "checkpoint" and r["ran"]:
            assert r["fwd"] == r["sched"]          # exactly the schedule's forward steps
            assert r["kept"] <= r["theory"]
    store = rows[1]
    assert store["kept"] == store["theory"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "time/rev" in out and "agree to" in out


def test_compare_marks_runs_over_the_time_limit_as_estimates():
    from exactrev.faces.bench_compare import compare

    block = compare(30, (4,), time_limit=1e-9)
    cps = [r for r in block["rows"] if r["method"] == "checkpoint"]
    assert cps and not any(r["ran"] for r in cps)
    assert all(r["kept"] is None and r["seconds"] > 0 for r in cps)


def test_optimizers_report_rows(capsys):
    from exactrev.faces.bench_optimizers import optimizers_report

    rows = optimizers_report(steps=5)
    assert [r["optimizer"] for r in rows] == ["sgd", "nesterov", "adam", "adamw"]
    assert all(r["restored"] for r in rows)
    assert "bits/w/step" in capsys.readouterr().out


def test_busy_report_times_each_workload_quiet_and_busy(capsys):
    from exactrev.faces import bench_busy

    figures = bench_busy.busy_report(tasks={"tiny": lambda: bench_busy._buffer_work(n=50, steps=20)})
    quiet, busy = figures["tiny"]
    assert quiet > 0 and busy > 0
    printed = capsys.readouterr().out
    assert "slowdown" in printed and "GOMP_SPINCOUNT" in printed


def test_busy_workloads_cover_both_buffer_sizes_and_the_main_job():
    from exactrev.faces.bench_busy import workloads

    names = " ".join(workloads())
    assert "10^4 lanes" in names and "10^5 lanes" in names and "chosen by load" in names
    assert "hypergradient" in names


def test_smoothing_keeps_length_and_constants_and_averages_a_window():
    from exactrev.faces.report_files import smoothed

    y = np.array([0.0, 0, 0, 10, 0, 0, 0])
    s = smoothed(y, 3)
    assert s.shape == y.shape and s[3] == pytest.approx(10 / 3) and s[0] == 0
    np.testing.assert_allclose(smoothed(np.full(9, 2.5), 4), 2.5)
    np.testing.assert_array_equal(smoothed(y, 1), y)
