"""exactrev tune: workers share one SQLite study without duplicates, a killed study resumes with its
finished trials intact, the best trial's files match its database row, pruning stops a trial."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")

from exactrev.faces.tune import TuneConfig, objective, open_study, run_tune, storage_url  # noqa: E402

TINY = dict(meta_iters=2, width=(10, 20), depth=(1, 1), batches=(20,), steps=(10, 20), n_train=100,
            n_valid=60, optimizers=("sgd", "adam"))
QUIET = dict(progress=False, log=lambda *a, **k: None)


def _trials(folder):
    return open_study(storage_url(folder), "exactrev").get_trials()


def test_two_workers_finish_the_requested_trials_of_one_study_without_duplicates(tmp_path):
    study = run_tune(TuneConfig(trials=5, **TINY), tmp_path, workers=2, **QUIET)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert len({(t.params["optimizer"], t.params["width"], t.params["steps"], t.params["meta_lr"])
                for t in trials}) == 5
    rows = open(tmp_path / "trials.csv").read().splitlines()
    assert len(rows) == 6 and rows[0].startswith("number,state,value")
    for name in ("optimization_history.png", "param_importances.png", "best/hyperparameters.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_best_trials_json_matches_its_database_row(tmp_path):
    study = run_tune(TuneConfig(trials=3, **TINY), tmp_path, **QUIET)
    best = study.best_trial
    saved = json.loads((tmp_path / "best" / "hyperparameters.json").read_text())
    assert saved["trial"] == {"number": best.number, "value": best.value, "params": best.params}
    assert saved["final"]["learned"]["valid_loss"] == best.value
    cfg = saved["config"]
    assert (cfg["optimizer"], cfg["batch"], cfg["steps"], cfg["meta_lr"]) == (
        best.params["optimizer"], best.params["batch"], best.params["steps"], best.params["meta_lr"])
    assert cfg["hidden"] == [best.params["width"]] * best.params["depth"]
    assert (tmp_path / "best" / "schedules.png").exists()


def test_a_study_killed_mid_trial_resumes_with_every_finished_trial_intact(tmp_path):
    cmd = [sys.executable, "-m", "exactrev.faces.cli", "tune", "--trials", "6", "--meta-iters", "4",
           "--n-train", "100", "--n-valid", "60", "--optimizers", "sgd", "--batches", "20", "--out", str(tmp_path),
           "--no-progress"]
    errors = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if os.path.exists(tmp_path / "study.db"):
            finished = [t for t in _trials(tmp_path) if t.state.name == "COMPLETE"]
            if len(finished) >= 2:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    errors.seek(0)
    assert len(finished) >= 2, f"the study did not get far enough to be killed:\n{errors.read()[-3000:]}"
    errors.close()
    before = {t.number: (t.value, t.params) for t in _trials(tmp_path) if t.state.name == "COMPLETE"}
    run_tune(TuneConfig(trials=6, meta_iters=4, n_train=100, n_valid=60, optimizers=("sgd",), batches=(20,)),
             tmp_path, **QUIET)
    after = {t.number: t for t in _trials(tmp_path)}
    for number, (value, params) in before.items():
        assert after[number].state.name == "COMPLETE"
        assert (after[number].value, after[number].params) == (value, params)
    assert sum(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in after.values()) == 6


class _Trial:
    """What objective() asks of an Optuna trial, with a pruner that prunes at once."""

    number = 0

    def __init__(self):
        self.reported, self.attrs = [], {}

    def suggest_categorical(self, name, choices):
        return choices[0]

    def suggest_int(self, name, low, high, step=1):
        return low

    def suggest_float(self, name, low, high, log=False):
        return low

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return True

    def set_user_attr(self, key, value):
        self.attrs[key] = value


def test_a_trial_whose_meta_curve_the_pruner_rejects_stops_after_its_first_report(tmp_path):
    import exactrev

    trial = _Trial()
    with pytest.raises(optuna.TrialPruned, match="meta-iteration 0"):
        objective(trial, TuneConfig(**TINY), exactrev.load_digits(100, 60), str(tmp_path))
    assert [s for s, _ in trial.reported] == [0] and trial.attrs == {}


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="optimizers must be among"):
        TuneConfig(optimizers=("sgd", "lbfgs")).check()
    with pytest.raises(ValueError, match="width must be a range"):
        TuneConfig(width=(50, 10)).check()
    with pytest.raises(ValueError, match="larger than the 100 training examples"):
        TuneConfig(batches=(200,), n_train=100).check()


def test_opening_a_study_whose_tables_another_process_is_creating_tries_again(tmp_path, monkeypatch):
    """Two processes opening a new database at once: the later one's "table already exists" is met by
    opening again; any other failure, or the same one on every try, is raised."""
    import optuna

    from exactrev.faces import tune

    real, calls, failures = optuna.storages.RDBStorage, [], []

    class Racing(real):
        """RDBStorage that first fails with each message left in ``failures``."""

        def __init__(self, *args, **kwargs):
            calls.append(1)
            if failures:
                raise RuntimeError(failures.pop(0))
            super().__init__(*args, **kwargs)
    monkeypatch.setattr(optuna.storages, "RDBStorage", Racing)
    failures.append("(sqlite3.OperationalError) table studies already exists")
    study = open_study(storage_url(tmp_path), "exactrev")
    assert len(calls) == 2 and study.study_name == "exactrev"

    failures[:] = ["table studies already exists"] * tune.SCHEMA_TRIES
    with pytest.raises(RuntimeError, match="already exists"):
        open_study(storage_url(tmp_path), "exactrev")

    calls.clear()
    failures[:] = ["disk I/O error"]
    with pytest.raises(RuntimeError, match="disk I/O"):
        open_study(storage_url(tmp_path), "exactrev")
    assert len(calls) == 1 and tune.SCHEMA_TRIES > 1


def _open_each(folders, barrier, results):
    """Open the study in each of ``folders``, all processes starting each one together."""
    for folder in folders:
        barrier.wait()
        try:
            open_study(storage_url(folder), "exactrev")
            results.put("ok")
        except Exception as exc:
            results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_database_at_the_same_moment_all_get_the_study(tmp_path):
    """Four processes create the same new SQLite study together, ten times over: the losers of the table
    creation and of the schema-version stamp open it again instead of failing."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fork would copy JAX's and the pools' threads
    folders = [tmp_path / str(i) for i in range(10)]
    for folder in folders:
        folder.mkdir()
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_each, args=(folders, barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=120) for _ in range(4 * len(folders))]
    for proc in procs:
        proc.join(timeout=60)
    assert got == ["ok"] * len(got), [g for g in got if g != "ok"][:3]
    assert all(len(open_study(storage_url(f), "exactrev").get_trials()) == 0 for f in folders)
