"""The meta-optimisation loop and the hyperopt command: results and files, small sizes."""

import json

import numpy as np
import pytest

from exactrev.faces.cli import main
from exactrev.hyper.data import load_digits
from exactrev.hyper.hyperopt import Adam, HyperoptConfig, constant_grid, run_hyperopt

SMALL = dict(hidden=(10,), steps=12, meta_iters=4, batch=50, meta_lr=0.1)


def test_adam_descends_a_quadratic():
    params = {"x": np.array([3.0, -2.0])}
    adam = Adam(lr=0.1)
    for _ in range(300):
        adam.step(params, {"x": 2 * params["x"]})
    assert np.abs(params["x"]).max() < 0.05


def test_constant_grid_spends_the_budget():
    assert len(constant_grid(50)) == 50
    assert constant_grid(1) == [(0.3, 0.9)]
    assert {g for _, g in constant_grid(10)} == {0.9, 0.5, 0.95, 0.8, 0.99}


def test_run_hyperopt_learns_and_reverses_exactly():
    data = load_digits(n_train=300, n_valid=200)
    res = run_hyperopt(data, HyperoptConfig(**SMALL), progress=False, log=lambda *_: None)
    assert len(res.curve) == 4
    assert all(c["restored"] for c in res.curve)
    assert res.curve[-1]["valid_loss"] < res.curve[0]["valid_loss"]
    assert res.meta.log_lr.shape == (12, 4)
    assert set(res.learned) >= {"valid_loss", "test_loss", "test_error"}
    assert len(res.baseline["grid"]) == 4


def test_learning_l2_adds_per_layer_penalties():
    data = load_digits(n_train=300, n_valid=200)
    res = run_hyperopt(data, HyperoptConfig(**{**SMALL, "meta_iters": 2, "learn_l2": True}),
                       progress=False, log=lambda *_: None)
    assert res.log_l2_per_layer.shape == (2,)
    assert not np.allclose(res.log_l2_per_layer, np.log(1e-4))


@pytest.mark.parametrize("bad", [dict(steps=0), dict(meta_lr=-1.0), dict(init_momentum=1.0),
                                 dict(init_scale=float("nan"))])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        HyperoptConfig(**bad).check()


def test_hyperopt_command_writes_json_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["hyperopt", "--hidden", "10", "--steps", "10", "--meta-iters", "2", "--batch", "50",
            "--n-train", "300", "--n-valid", "200", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "held-out test" in text and "restored w_0 bit for bit: True" in text
    saved = json.loads((out / "hyperparameters.json").read_text())
    assert len(saved["learned"]["learning_rate"]["W1"]) == 10
    assert len(saved["meta_curve"]) == 2
    for name in ("schedules.png", "meta_curve.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv", [["hyperopt", "--batch", "5000"], ["hyperopt", "--data", "/no/such/dir"],
                                  ["hyperopt", "--init-momentum", "1.5"], ["hyperopt", "--method", "x"],
                                  ["hyperopt", "--steps", "-3"]])
def test_hyperopt_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_hyperopt_learns_adam_schedules(optimizer, tmp_path, capsys):
    out = tmp_path / optimizer
    argv = ["hyperopt", "--optimizer", optimizer, "--hidden", "10", "--steps", "10", "--meta-iters", "2",
            "--batch", "50", "--n-train", "300", "--n-valid", "200", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((out / "hyperparameters.json").read_text())
    assert len(saved["learned"]["b1"]) == 10
    assert "restored w_0 bit for bit: True" in capsys.readouterr().out
    assert (out / "schedules.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hyperopt_learns_nesterov_schedules(tmp_path, capsys):
    out = tmp_path / "nesterov"
    argv = ["hyperopt", "--optimizer", "nesterov", "--nesterov-memory", "0.01", "--hidden", "10",
            "--steps", "10", "--meta-iters", "2", "--batch", "50", "--n-train", "300", "--n-valid", "200",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((out / "hyperparameters.json").read_text())
    assert len(saved["learned"]["momentum"]["W1"]) == 10
    assert saved["config"]["nesterov_memory"] == 0.01
    assert "restored w_0 bit for bit: True" in capsys.readouterr().out


@pytest.mark.parametrize("memory", ["1", "0", "1.5"])
def test_nesterov_memory_outside_the_open_interval_is_refused(memory, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["hyperopt", "--optimizer", "nesterov", "--nesterov-memory", memory])
    assert exc.value.code == 2
    assert "memory" in capsys.readouterr().err
