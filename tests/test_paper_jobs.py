"""The paper's other experiments on tiny settings: meta-learning lowers the validation loss it
optimises, each job's hypergradient agrees with the store reference, the commands write their files.
How the results compare with the baselines is reported by the jobs, not asserted here."""

import json

import numpy as np
import pytest

import exactrev
from exactrev.faces.cli import main
from exactrev.paper.distill import DistillConfig, DistillProblem, run_distill
from exactrev.paper.regularize import RegularizeConfig, RegularizeProblem, run_regularize
from exactrev.paper.sharing import MultiTaskLoss, SharingConfig, SharingProblem, make_tasks, run_sharing


@pytest.fixture(scope="module")
def data():
    return exactrev.load_digits(300, 150, seed=3)


def _agree(rev, ref, names):
    assert rev.restored
    for name in names:
        scale = np.abs(ref.grads[name]).max()
        assert scale > 0, name
        assert np.abs(rev.grads[name] - ref.grads[name]).max() <= 1e-6 * scale, name


def test_each_jobs_hypergradient_agrees_with_the_store_reference(data):
    d = DistillProblem(data, DistillConfig(steps=8, seed=1))
    d.images.X[:] = data.train.X[:10]
    _agree(d.hypergradient(), d.hypergradient(method="store"), ["train_X", "log_lr"])
    r = RegularizeProblem(data, RegularizeConfig(steps=8, seed=1))
    _agree(r.hypergradient(), r.hypergradient(method="store"), ["log_l2", "log_lr"])
    s = SharingProblem(data, SharingConfig(steps=8, per_task=40, batch=20, seed=1))
    _agree(s.hypergradient(), s.hypergradient(method="store"), ["log_indep", "log_coupling", "log_lr"])


def test_the_multitask_loss_mixed_terms_match_finite_differences(data):
    net = exactrev.MLP((64, 5, 10))
    trains = [t[0] for t in make_tasks(data, ("original", "mirrored", "rotated"), 30)]
    rng = np.random.default_rng(0)
    a, c = rng.normal(-3, 1, (2, 3)), rng.normal(-2, 1, (2, 3, 3))
    w, u = 0.3 * rng.normal(size=3 * net.n_params), rng.normal(size=3 * net.n_params)
    grad, hvp, mixed = MultiTaskLoss(net, trains, 10, 0, a, c).grad_and_vjp(w, 2, u)
    np.testing.assert_array_equal(grad, MultiTaskLoss(net, trains, 10, 0, a, c).grad(w, 2))
    h = 1e-6
    for name, arr, idx in (("log_indep", a, (1, 2)), ("log_coupling", c, (0, 0, 2))):
        up, down = arr.copy(), arr.copy()
        up[idx] += h
        down[idx] -= h
        args = (lambda x: (x, c)) if name == "log_indep" else (lambda x: (a, x))
        g_up = MultiTaskLoss(net, trains, 10, 0, *args(up)).grad(w, 2)
        g_down = MultiTaskLoss(net, trains, 10, 0, *args(down)).grad(w, 2)
        np.testing.assert_allclose(mixed[name][idx], u @ (g_up - g_down) / (2 * h), rtol=1e-5)
    g_up = MultiTaskLoss(net, trains, 10, 0, a, c).grad(w + h * u, 2)
    g_down = MultiTaskLoss(net, trains, 10, 0, a, c).grad(w - h * u, 2)
    np.testing.assert_allclose(hvp, (g_up - g_down) / (2 * h), rtol=1e-4, atol=1e-7)


def test_meta_learning_lowers_each_jobs_validation_loss(data):
    quiet = dict(progress=False, log=lambda *a: None)
    runs = [run_distill(data, DistillConfig(steps=20, meta_iters=6, meta_lr=0.05, other_inits=1), **quiet),
            run_regularize(exactrev.load_digits(60, 150, seed=3),  # few examples: the penalty matters
                           RegularizeConfig(steps=100, lr=1.0, meta_iters=6, meta_lr=0.5), **quiet),
            run_sharing(data, SharingConfig(steps=20, per_task=40, batch=20, meta_iters=6), **quiet)]
    for result in runs:
        losses = [r["valid_loss"] for r in result["curve"] if "valid_loss" in r]
        assert losses[-1] < losses[0], result["job"]
        json.dumps(result)  # the results are JSON-ready


def test_bad_tasks_are_refused_by_name(data):
    with pytest.raises(ValueError, match="transforms are"):
        make_tasks(data, ("original", "sideways"), 10)
    with pytest.raises(ValueError, match="need 600"):
        make_tasks(data, ("original", "mirrored"), 300)


@pytest.mark.parametrize("job, extra, files", [
    ("distill", ["--hidden", "8"], ["distill.json", "distill_images.png", "distill_meta_curve.png"]),
    ("regularize", ["--n-train", "60"], ["regularize.json", "regularize_penalties.png",
                                          "regularize_meta_curve.png"]),
    ("sharing", ["--per-task", "30", "--tasks", "original,flipped"],
     ["sharing.json", "sharing_coupling.png", "sharing_meta_curve.png"]),
])
def test_each_command_writes_its_json_and_pictures(tmp_path, job, extra, files, capsys):
    out = tmp_path / job
    assert main([job, "--meta-iters", "2", "--steps", "5", "--out", str(out), "--no-progress", *extra]) == 0
    for name in files:
        assert (out / name).stat().st_size > 0
    result = json.loads((out / files[0]).read_text())
    assert result["job"] == job and len(result["curve"]) == 2
    assert "wrote" in capsys.readouterr().out


def test_a_bad_task_on_the_command_line_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sharing", "--tasks", "original,upside", "--out", str(tmp_path), "--no-progress"])
    assert info.value.code == 2
    assert "transforms are" in capsys.readouterr().err
