"""exactrev hyperopt: every user error is one line naming the flag (exit 2); a job keeps what it
computed as it goes, and a diverging meta-step is taken back instead of ending the run."""

import json

import numpy as np
import pytest

from exactrev.faces.cli import main
from exactrev.hyper.data import load_digits
from exactrev.hyper.hyperopt import HyperoptConfig, run_hyperopt
from exactrev.hyper.meta_train import InitialSettingsError

TINY = ["hyperopt", "--steps", "5", "--meta-iters", "2", "--hidden", "6", "--batch", "50",
        "--n-train", "200", "--n-valid", "100", "--no-progress"]


@pytest.fixture
def text_npz(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("not an archive")
    return str(path)


@pytest.fixture
def wrong_keys_npz(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, a=np.zeros(3))
    return str(path)


@pytest.mark.parametrize("extra, flag", [
    (["--init-lr", "1e6"], "--init-lr"),
    (["--init-scale", "1e6"], "--init-scale"),
    (["--init-momentum", "1e-7"], "--init-momentum"),
    (["--init-momentum", "0.999999"], "--init-momentum"),
    (["--optimizer", "nesterov", "--nesterov-memory", "1e-9"], "--nesterov-memory"),
    (["--meta-lr", "1000"], "--meta-lr"),
    (["--seed", "-1"], "--seed"),
    (["--snapshots", "3"], "--snapshots"),
    (["--out", "/proc/exactrev-cannot-write-here"], "--out"),
    (["--data", "TEXT"], "--data"),
    (["--data", "WRONG"], "--data"),
])
def test_user_errors_exit_2_with_one_line_naming_the_flag(extra, flag, tmp_path, text_npz, wrong_keys_npz,
                                                         capsys):
    extra = [text_npz if a == "TEXT" else wrong_keys_npz if a == "WRONG" else a for a in extra]
    if "--out" not in extra:
        extra += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main(TINY + extra)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("exactrev hyperopt: error:") and flag in last
    assert "Traceback" not in err and "usage: exactrev hyperopt" in err


def test_every_meta_iteration_is_logged_as_it_ends(tmp_path):
    data = load_digits(200, 100, 0)
    cfg = HyperoptConfig(hidden=(6,), batch=50, steps=5, meta_iters=3)
    res = run_hyperopt(data, cfg, progress=False, log=lambda *_: None, log_folder=str(tmp_path))
    lines = [json.loads(x) for x in (tmp_path / "meta_log.jsonl").read_text().splitlines()]
    assert [r["meta_iter"] for r in lines] == [0, 1, 2]
    assert [r["valid_loss"] for r in lines] == [c["valid_loss"] for c in res.curve]
    assert all(r["restored"] and r["kept_bytes"] > 0 and r["forward_steps"] == cfg.steps for r in lines)
    saved = np.load(tmp_path / "meta_params.npz")
    assert int(saved["meta_iter"]) == 2 and saved["log_lr"].shape == (5, 4)


def test_a_diverging_meta_step_is_taken_back_and_the_meta_learning_rate_halved(tmp_path):
    data = load_digits(1000, 400, 0)
    cfg = HyperoptConfig(hidden=(10,), steps=5, meta_iters=8, meta_lr=8.0)
    messages = []
    res = run_hyperopt(data, cfg, progress=False, log=messages.append, log_folder=str(tmp_path))
    diverged = [c for c in res.curve if c.get("diverged")]
    assert diverged, "meta_lr 8 diverges on this problem"
    assert [c["meta_lr"] for c in diverged] == [8.0 / 2 ** (i + 1) for i in range(len(diverged))]
    assert sum(1 for c in res.curve if "valid_loss" in c) == cfg.meta_iters
    assert any("halved the meta learning rate" in m for m in messages)
    assert np.isfinite(res.learned["test_loss"])


def test_training_that_fails_with_the_initial_settings_is_reported_before_any_meta_step():
    data = load_digits(200, 100, 0)
    cfg = HyperoptConfig(hidden=(6,), batch=50, steps=5, meta_iters=2, init_scale=1e6)
    with pytest.raises(InitialSettingsError, match="w0"):
        run_hyperopt(data, cfg, progress=False, log=lambda *_: None)


def test_the_verdict_names_both_figures(tmp_path, capsys):
    assert main(TINY + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "by test loss:" in out and "by test error:" in out
    assert (tmp_path / "meta_log.jsonl").exists()


def test_checkpointing_does_not_claim_a_reversal(tmp_path, capsys):
    assert main(TINY + ["--method", "checkpoint", "--snapshots", "2", "--out", str(tmp_path)]) == 0
    assert "reversal restored" not in capsys.readouterr().out


def test_a_folder_that_holds_a_run_is_refused_unless_force_or_resume(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert main(TINY + out) == 0
    before = (tmp_path / "meta_log.jsonl").read_text()
    with pytest.raises(SystemExit) as exc:
        main(TINY + out)
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--out" in last and "--force" in last and "--resume" in last
    assert (tmp_path / "meta_log.jsonl").read_text() == before
    assert main(TINY + out + ["--force"]) == 0


def test_resume_needs_a_run_and_the_same_settings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(TINY + ["--out", str(tmp_path), "--resume"])
    assert "holds no run to resume" in capsys.readouterr().err
    assert main(TINY + ["--out", str(tmp_path)]) == 0
    with pytest.raises(SystemExit):
        main(TINY + ["--out", str(tmp_path), "--resume", "--steps", "6"])
    assert "steps = 5, not 6" in capsys.readouterr().err.splitlines()[-1]


def test_the_json_records_what_reproduces_the_run(tmp_path):
    import exactrev

    assert main(TINY + ["--method", "checkpoint", "--snapshots", "2", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "hyperparameters.json").read_text())
    run = saved["run"]
    assert run["command"].startswith("exactrev hyperopt --steps 5 ") and "--snapshots 2" in run["command"]
    assert run["flags"]["snapshots"] == 2 and run["flags"]["steps"] == 5
    assert run["versions"]["exactrev"] == exactrev.__version__ and "numba" in run["versions"]
    assert run["data"] == {"name": "digits", "train": 200, "valid": 100, "test": 1497, "features": 64,
                           "classes": 10}
    assert saved["cost"]["method"] == "checkpoint" and saved["cost"]["kept_bytes_per_hypergradient"] > 0
    assert saved["cost"]["forward_steps_per_hypergradient"] > 5   # recomputation from snapshots
    assert len(saved["constant_grid"]) == len(saved["random_search"]) == 2   # the same budget each
    assert saved["final"]["best_random_search"]["lr"] in [r["lr"] for r in saved["random_search"]]


def test_random_search_draws_the_budget_in_range_and_repeats_with_the_seed():
    from exactrev.hyper.hyperopt import random_constants

    pairs = random_constants(50, (0.01, 10.0), seed=3)
    assert len(pairs) == 50 and pairs == random_constants(50, (0.01, 10.0), seed=3)
    assert all(0.01 <= lr <= 10 and 0.5 <= g <= 0.99 for lr, g in pairs)
    assert pairs != random_constants(50, (0.01, 10.0), seed=4)


def test_a_killed_run_resumes_to_the_result_of_an_uninterrupted_one(tmp_path):
    """Kill the job (SIGKILL) once it has logged a few meta-iterations, resume it, and compare with a
    run that was never interrupted: the meta-parameters agree bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = TINY[1:] + ["--meta-iters", "40", "--steps", "8"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, "-m", "exactrev.faces.cli", "hyperopt", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "meta_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    done = len(log.read_text().splitlines())
    assert 3 <= done < 40
    assert main(["hyperopt", *args, "--out", str(killed), "--resume"]) == 0
    assert main(["hyperopt", *args, "--out", str(whole)]) == 0
    a, b = np.load(killed / "meta_params.npz"), np.load(whole / "meta_params.npz")
    for name in ("log_lr", "logit_momentum", "log_init_scale"):
        np.testing.assert_array_equal(a[name], b[name])
    la = [json.loads(x) for x in log.read_text().splitlines()]
    lb = [json.loads(x) for x in (whole / "meta_log.jsonl").read_text().splitlines()]
    assert [r["meta_iter"] for r in la] == list(range(40))
    assert [r["valid_loss"] for r in la] == [r["valid_loss"] for r in lb]


def test_version_and_help_without_repeated_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("exactrev ")
    with pytest.raises(SystemExit):
        main(["hyperopt", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: 100)" in text


def test_resume_refuses_a_folder_whose_log_is_gone_or_short(tmp_path):
    from exactrev.hyper.hyperopt import ResumeError, load_resume

    data = load_digits(200, 100, 0)
    cfg = HyperoptConfig(hidden=(6,), batch=50, steps=5, meta_iters=3)
    run_hyperopt(data, cfg, progress=False, log=lambda *_: None, log_folder=str(tmp_path))
    log = tmp_path / "meta_log.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")
    with pytest.raises(ResumeError, match="1 records"):
        load_resume(str(tmp_path), cfg)
    log.unlink()
    with pytest.raises(ResumeError, match="lacks a readable"):
        load_resume(str(tmp_path), cfg)
