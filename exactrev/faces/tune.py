"""``exactrev tune``: an Optuna study over the discrete settings, exact hypergradients inside each trial.

Each trial chooses the optimiser (sgd, nesterov, adam, adamw), the hidden width and depth, the batch
size, the number of steps T and the meta learning rate; it then meta-learns the continuous schedules as
``exactrev hyperopt`` does (``run_hyperopt`` without its baselines), reports the validation loss of
every meta-iteration to Optuna, which may prune it (``MedianPruner``), and returns the validation loss
of the learned schedules, trained once more on a fresh batch order.

The study lives in a database: SQLite in the output folder by default (``study.db``: embedded, nothing
to start) or any URL Optuna accepts (``--storage postgresql://...``), so several processes and machines
can work on one study, and a study name that exists is resumed, never overwritten. ``workers`` runs
that many processes here, each with its share of the trials still to run and of the cores. Each trial
writes ``hyperparameters.json`` and its plots into ``trials/trial-<number>/`` under the folder of the
process that ran it, and its figures into the database (user attributes). At the end the folder gets
``trials.csv`` (every trial), ``best/`` (the best trial's files), and Optuna's own plots.
"""

import csv
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class TuneConfig:
    """The study: how many trials, and the space each trial draws its discrete settings from."""

    trials: int = 20
    meta_iters: int = 10              # meta-iterations inside each trial
    optimizers: tuple = OPTIMIZERS
    width: tuple = (20, 100)          # hidden units per layer, in steps of 10
    depth: tuple = (1, 3)             # hidden layers
    batches: tuple = (50, 100, 200)
    steps: tuple = (20, 100)          # training steps T, in steps of 10
    meta_lr: tuple = (0.005, 0.2)     # log-uniform
    n_train: int = 1000
    n_valid: int = 400
    seed: int = 0
    pruner_startup: int = 4           # trials before the median pruner may prune
    pruner_warmup: int = 3            # meta-iterations of each trial it never prunes
    extra: dict = field(default_factory=dict)

    def check(self):
        if int(self.trials) < 1 or int(self.meta_iters) < 1:
            raise ValueError(f"trials and meta_iters must be >= 1, got {self.trials} and {self.meta_iters}")
        unknown = set(self.optimizers) - set(OPTIMIZERS)
        if unknown or not self.optimizers:
            raise ValueError(f"optimizers must be among {OPTIMIZERS}, got {tuple(self.optimizers)}")
        for name in ("width", "depth", "steps", "meta_lr"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(lo, hi)}")
        if max(self.batches) > self.n_train:
            raise ValueError(f"a batch of {max(self.batches)} is larger than the {self.n_train} training examples")


SCHEMA_TRIES = 5


def storage_url(folder, storage=None):
    """``storage``, or SQLite in ``folder/study.db``."""
    return storage or "sqlite:///" + os.path.abspath(os.path.join(folder, "study.db"))


def _created_meanwhile(exc):
    """Whether ``exc`` is what opening a new database raises when another process creates its schema at
    the same moment: both create the tables (the later one: "table ... already exists") and both stamp
    the schema version (the later one: a unique-constraint violation, ``sqlalchemy.exc.IntegrityError``).
    Opened again, the database is found complete."""
    import sqlalchemy.exc

    return isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)


def open_study(url, name, create=True, startup=4, warmup=3):
    """The study ``name`` in ``url`` (created if missing, resumed if it exists): minimise, median pruner
    (no pruning in the first ``startup`` trials, nor in a trial's first ``warmup`` meta-iterations).
    Trials send a heartbeat, so one whose process was killed is marked failed after two minutes."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(SCHEMA_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)   # the heartbeat
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=30,
                                                     grace_period=120)
            break
        except Exception as exc:
            if not _created_meanwhile(exc) or attempt == SCHEMA_TRIES - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    if not create:
        return optuna.load_study(study_name=name, storage=storage)
    return optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=startup,
                                                                  n_warmup_steps=warmup))


def _counts(study):
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {s.name: states.count(s) for s in TrialState}


def suggest(trial, cfg: TuneConfig):
    """The trial's discrete settings as ``HyperoptConfig`` fields."""
    opt = trial.suggest_categorical("optimizer", list(cfg.optimizers))
    width = trial.suggest_int("width", *cfg.width, step=10)
    depth = trial.suggest_int("depth", *cfg.depth)
    batch = trial.suggest_categorical("batch", list(cfg.batches))
    steps = trial.suggest_int("steps", *cfg.steps, step=10)
    meta_lr = trial.suggest_float("meta_lr", *cfg.meta_lr, log=True)
    return dict(optimizer=opt, hidden=(width,) * depth, batch=batch, steps=steps, meta_lr=meta_lr,
                init_lr=0.3 if opt in ("sgd", "nesterov") else 0.01, meta_iters=cfg.meta_iters, seed=cfg.seed,
                **cfg.extra)


def objective(trial, cfg: TuneConfig, data, folder):
    """Meta-learn the schedules for the trial's settings; returns the learned schedules' validation loss."""
    import optuna

    from ..hyper.hyperopt import HyperoptConfig, run_hyperopt
    from .report_files import result_to_json, write_outputs

    hcfg = HyperoptConfig(**suggest(trial, cfg))

    def report(record):
        if "valid_loss" in record:
            trial.report(record["valid_loss"], record["meta_iter"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"meta-iteration {record['meta_iter']}: validation loss "
                                         f"{record['valid_loss']:.4g} is worse than the median")

    trial_folder = os.path.join(folder, "trials", f"trial-{trial.number}")
    result = run_hyperopt(data, hcfg, progress=False, log=lambda *a, **k: None, log_folder=trial_folder,
                          baselines=False, on_record=report)
    write_outputs(result, trial_folder)
    learned = result.learned
    for key in ("valid_loss", "test_loss", "test_error"):
        trial.set_user_attr(key, learned[key])
    trial.set_user_attr("result", json.dumps(result_to_json(result)))
    trial.set_user_attr("folder", os.path.abspath(trial_folder))
    return learned["valid_loss"]


def work(url, name, cfg: TuneConfig, folder, quota, threads=None):
    """One worker: run up to ``quota`` trials of the study, fewer when the study already has its
    ``cfg.trials`` trials finished (other processes or machines work on it too). Trials still running
    do not count: one whose process was killed stays RUNNING until its heartbeat is two minutes old."""
    from ..hyper.data import load_digits
    from ..hyper.meta_train import InitialSettingsError, MetaDivergenceError
    from ..parallel.comm import limit_threads

    if threads is not None:
        limit_threads(threads)
    study = open_study(url, name, startup=cfg.pruner_startup, warmup=cfg.pruner_warmup)
    data = load_digits(cfg.n_train, cfg.n_valid, seed=cfg.seed)
    for _ in range(quota):
        if sum(_counts(study).get(s, 0) for s in FINISHED) >= cfg.trials:
            break
        study.optimize(lambda trial: objective(trial, cfg, data, folder), n_trials=1,
                       catch=(InitialSettingsError, MetaDivergenceError, ArithmeticError))


def _worker_main(url, name, cfg_dict, folder, quota, threads):
    work(url, name, TuneConfig(**cfg_dict), folder, quota, threads)


def run_tune(cfg: TuneConfig, folder, storage=None, study_name="exactrev", workers=1, progress=True,
             log=print):
    """Run the study to ``cfg.trials`` finished trials with ``workers`` processes here, then write the
    outputs (``write_study``); returns the study. A study that exists in the storage is resumed."""
    from tqdm.auto import tqdm

    cfg.check()
    os.makedirs(folder, exist_ok=True)
    url = storage_url(folder, storage)
    study = open_study(url, study_name, startup=cfg.pruner_startup, warmup=cfg.pruner_warmup)
    counts = _counts(study)
    done = sum(counts.get(s, 0) for s in FINISHED)
    if done or counts.get("RUNNING"):
        log(f"resuming study {study_name!r} in {url}: {done} of {cfg.trials} trials already finished"
            + (f", {counts['RUNNING']} running (elsewhere, or killed: failed once its heartbeat is two "
               "minutes old)" if counts.get("RUNNING") else ""))
    else:
        log(f"study {study_name!r} in {url}: {cfg.trials} trials, {workers} worker(s)")
    remaining = max(0, cfg.trials - done)
    workers = max(1, min(int(workers), remaining or 1))
    quotas = [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    start = time.perf_counter()
    if workers == 1:
        work(url, study_name, cfg, folder, quotas[0])
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(url, study_name, asdict(cfg), folder, q, threads))
                 for q in quotas if q]
        for p in procs:
            p.start()
        bar = tqdm(total=cfg.trials, initial=done, desc="trials", disable=not progress)
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            now = sum(_counts(study).get(s, 0) for s in FINISHED)
            bar.update(now - bar.n)
        bar.close()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(procs)} workers stopped with an error (exit codes "
                               f"{failed}); the trials they finished are in {url}")
    log(f"{sum(quotas)} trials in {time.perf_counter() - start:.1f} s with {workers} worker(s)")
    write_study(study, folder, log)
    return study


def write_study(study, folder, log=print):
    """trials.csv, best/ (the best trial's hyperparameters.json and plots) and Optuna's plots; returns
    the paths written."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    paths = [os.path.join(folder, "trials.csv")]
    names = sorted({k for t in trials for k in t.params})
    with open(paths[0], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", "value", *names, "test_loss", "test_error", "seconds"])
        for t in trials:
            secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            w.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                        *(t.params.get(k, "") for k in names), t.user_attrs.get("test_loss", ""),
                        t.user_attrs.get("test_error", ""), secs])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        log("no trial completed: no best trial to write")
        return paths
    best = study.best_trial
    best_folder = os.path.join(folder, "best")
    os.makedirs(best_folder, exist_ok=True)
    source = best.user_attrs.get("folder")
    if source and os.path.isdir(source):
        for name in ("schedules.png", "meta_curve.png"):
            if os.path.exists(os.path.join(source, name)):
                shutil.copy(os.path.join(source, name), os.path.join(best_folder, name))
                paths.append(os.path.join(best_folder, name))
    record = {"trial": {"number": best.number, "value": best.value, "params": best.params},
              **json.loads(best.user_attrs["result"])}
    paths.append(os.path.join(best_folder, "hyperparameters.json"))
    with open(paths[-1], "w") as fh:
        json.dump(record, fh, indent=1)
    paths += _optuna_plots(study, folder, len(complete), log)
    log(f"best trial {best.number}: validation loss {best.value:.4f}, test loss "
        f"{best.user_attrs['test_loss']:.4f}, test error {100 * best.user_attrs['test_error']:.2f}% with "
        + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()))
    return paths


def _optuna_plots(study, folder, n_complete, log):
    import warnings

    import optuna.visualization.matplotlib as ovm

    from .report_files import _pyplot

    plt = _pyplot()
    out = []
    plots = [("optimization_history.png", ovm.plot_optimization_history)]
    if n_complete >= 2:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    else:
        log("fewer than 2 completed trials: no parameter importances")
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # Optuna marks its matplotlib plots experimental
            ax = plot(study)
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=100)
        plt.close(fig)
        out.append(os.path.join(folder, name))
    return out
