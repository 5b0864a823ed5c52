"""Gradient-based hyperparameter optimisation: train, reverse, update (Maclaurin et al. 2015, section 3).

Each meta-iteration m trains the MLP for T steps on mini-batches ``batch_indices(..., seed, m, t)``,
computes the exact hypergradient of the validation loss by reversal, and takes one Adam step on the
unconstrained meta-parameters (log learning rates and logit momenta per step and weight type, log init
scales per type, and optionally per-layer log L2 penalties). A grid of constant learning rates and
momenta, and a random search of constant (lr, momentum) pairs, each as many training runs as there are
meta-iterations, are the baselines; all are compared on the held-out test split.
"""

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..exact.rational import HyperparameterError, as_momentum
from ..model.mlp import MLP
from .data import Dataset
from .api import hypergradient, train
from .meta import AdamMetaParams, MetaParams
from .meta_train import MetaAdam, MetaTrainer
from .losses import MLPTrainingLoss, MLPValidationLoss, classification_error


@dataclass
class HyperoptConfig:
    """Everything that defines a run; defaults are the paper's headline experiment on digits."""

    hidden: tuple = (50, 50, 50)
    activation: str = "tanh"
    batch: int = 200
    steps: int = 100
    meta_iters: int = 50
    meta_lr: float = 0.05
    init_lr: float = 0.3
    init_momentum: float = 0.9
    init_scale: float = 0.1
    learn_l2: bool = False
    init_l2: float = 1e-4
    method: str = "reversal"
    snapshots: int = None
    seed: int = 0
    optimizer: str = "sgd"
    init_weight_decay: float = 1e-2
    nesterov_memory: float = 1 / 256

    def check(self):
        """ConfigError naming the first field whose value cannot work, before anything runs."""
        positive = dict(batch=self.batch, steps=self.steps, meta_iters=self.meta_iters)
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(name, f"must be >= 1, got {value}")
        if int(self.seed) < 0:
            raise ConfigError("seed", f"must be >= 0, got {self.seed}")
        for name in ("meta_lr", "init_lr", "init_scale", "init_l2"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(name, f"must be a finite number > 0, got {value}")
        if self.meta_lr > MAX_META_LR:
            raise ConfigError("meta_lr", f"{self.meta_lr:g} is above {MAX_META_LR}: each meta-step moves "
                              f"every log learning rate and logit momentum by up to meta_lr, a factor "
                              f"e**{self.meta_lr:g} per step")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("init_momentum", "nesterov_memory"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ConfigError(name, f"must lie in (0, 1), got {value}")
            try:  # refuses a value that rounds to 0, or whose 1 - value the fraction misses by > 1%
                as_momentum(value, name=name, tolerance=0.01)
            except HyperparameterError as exc:
                raise ConfigError(name, str(exc)) from None
        if self.snapshots is not None and self.method != "checkpoint":
            raise ConfigError("snapshots", "applies to method 'checkpoint' only")


class ConfigError(ValueError):
    """A HyperoptConfig field that cannot work; ``field`` names it."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


MAX_META_LR = 10.0


Adam = MetaAdam  # the meta-optimiser of the job (hyper/meta_train.py)


class _SGD:
    """Momentum SGD: learns log lr and logit momentum per step and type, and log init scales."""

    keys = ("log_lr", "logit_momentum", "log_init_scale")

    @staticmethod
    def initial(cfg, n_types):
        return MetaParams.constant(cfg.steps, n_types, cfg.init_lr, cfg.init_momentum, cfg.init_scale)

    @staticmethod
    def params(meta):
        return {k: getattr(meta, k) for k in _SGD.keys}

    name = "sgd"

    @classmethod
    def _memory(cls, cfg):
        return cfg.nesterov_memory if cls.name == "nesterov" else None

    @classmethod
    def hypergradient(cls, meta, tl, vl, noise, types, cfg, comm=None):
        return hypergradient(meta, tl, vl, noise, types, optimizer=cls.name, method=cfg.method,
                             snapshots=cfg.snapshots, nesterov_memory=cls._memory(cfg), comm=comm)

    @classmethod
    def train(cls, meta, noise, types, grad_fn, cfg, comm=None):
        return train(meta, grad_fn, noise, types, optimizer=cls.name, nesterov_memory=cls._memory(cfg),
                     comm=comm)

    @staticmethod
    def constant(cfg, n_types, lr, g):
        return MetaParams.constant(cfg.steps, n_types, lr, g, cfg.init_scale)

    grid_momenta = (0.9, 0.5, 0.95, 0.8, 0.99)
    grid_lrs = (0.01, 10.0)


class _Adam(_SGD):
    """Adam: learns log lr per step and type, logit b1 and b2 and log eps per step, log init scales."""

    name = "adam"
    keys = ("log_lr", "logit_b1", "logit_b2", "log_eps", "log_init_scale")
    weight_decay = False

    @classmethod
    def initial(cls, cfg, n_types):

        wd = cfg.init_weight_decay if cls.weight_decay else 0.0
        return AdamMetaParams.constant(cfg.steps, n_types, cfg.init_lr, cfg.init_momentum, 0.999, 1e-8,
                                       wd, cfg.init_scale)

    @classmethod
    def params(cls, meta):
        return {k: getattr(meta, k) for k in cls.keys}

    @classmethod
    def constant(cls, cfg, n_types, lr, b1):

        wd = cfg.init_weight_decay if cls.weight_decay else 0.0
        return AdamMetaParams.constant(cfg.steps, n_types, lr, b1, 0.999, 1e-8, wd, cfg.init_scale)

    grid_momenta = (0.9, 0.5, 0.95, 0.8, 0.99)
    grid_lrs = (1e-3, 0.3)


class _AdamW(_Adam):
    """AdamW: Adam plus a learned log weight decay per step and type."""

    name = "adamw"
    keys = _Adam.keys + ("log_weight_decay",)
    weight_decay = True


class _Nesterov(_SGD):
    """Nesterov momentum with gradient memory h (optim/nesterov.py): the same meta-parameters as SGD."""

    name = "nesterov"


OPTIMIZERS = {"sgd": _SGD, "adam": _Adam, "adamw": _AdamW, "nesterov": _Nesterov}


@dataclass
class HyperoptResult:
    config: dict
    net_sizes: tuple
    type_names: list
    meta: MetaParams
    log_l2_per_layer: np.ndarray
    curve: list            # per meta-iteration: dict(valid_loss, grad_norm, seconds, ...), or
                           # dict(diverged=True, message, meta_lr) for a meta-step taken back
    learned: dict          # final evaluation of the learned hyperparameters
    baseline: dict         # best constant schedule from the grid, and the grid itself
    seconds: float


class _Problem:
    """Data, network, weight types and the initial noise shared by every run of one optimisation."""

    def __init__(self, data: Dataset, cfg: HyperoptConfig, comm=None):
        self.data, self.cfg, self.comm = data, cfg, comm
        self.net = MLP((data.n_features, *cfg.hidden, data.n_classes), cfg.activation)
        self.types = self.net.weight_types()
        self.layer_of_param = self.types // 2
        self.noise = self.net.init_noise(np.random.default_rng(cfg.seed))
        self.valid = MLPValidationLoss(self.net, data.valid)

    def train_loss(self, meta_iter, log_l2_layer=None):
        log_l2 = None if log_l2_layer is None else log_l2_layer[self.layer_of_param]
        loss = MLPTrainingLoss(self.net, self.data.train, self.cfg.batch, self.cfg.seed, meta_iter, log_l2,
                               meta=() if log_l2 is None else ("log_l2",))
        if self.comm is None:
            return loss
        from ..parallel.data_parallel import DataParallelLoss

        return DataParallelLoss(loss, self.comm)

    def train_only(self, meta, meta_iter, log_l2_layer=None):
        """Train once (no reverse pass) and return the final weights."""
        return OPTIMIZERS[self.cfg.optimizer].train(meta, self.noise, self.types,
                                                    self.train_loss(meta_iter, log_l2_layer).grad, self.cfg,
                                                    self.comm)

    def evaluate(self, w):
        d = self.data
        return {"valid_loss": float(self.net.loss(w, d.valid.X, d.valid.y)),
                "test_loss": float(self.net.loss(w, d.test.X, d.test.y)),
                "test_error": classification_error(self.net, w, d.test),
                "train_loss": float(self.net.loss(w, d.train.X, d.train.y))}


def constant_grid(budget, centre_lr=0.3, momenta=_SGD.grid_momenta, lr_range=_SGD.grid_lrs):
    """(lr, momentum) pairs for the baseline search, ``budget`` training runs in all.

    Momenta (b1 for Adam) in order of preference 0.9, 0.5, 0.95, 0.8, 0.99 (as many as the budget
    allows, at most 5); for each, learning rates log-spaced over ``lr_range`` ([0.01, 10] for SGD),
    or ``centre_lr`` alone when only one fits.
    """
    momenta = momenta[:max(1, min(5, budget))]
    n_lr = max(1, budget // len(momenta))
    lrs = [centre_lr] if n_lr == 1 else np.geomspace(*lr_range, n_lr).tolist()
    return [(float(lr), g) for g in momenta for lr in lrs]


class MetaLog:
    """Per-meta-iteration records as JSON lines in ``folder/meta_log.jsonl`` (flushed as they come),
    and in ``folder/meta_params.npz`` the latest meta-parameters (under their own names) with
    everything a resumed run needs (``state.*``: the meta-optimiser, the best point so far, the next
    meta-iteration and the configuration), so a failed, interrupted or killed job keeps what it
    computed and ``resume`` continues it. ``folder=None`` writes nothing (the records are still in the
    result's curve)."""

    LOG, STATE = "meta_log.jsonl", "meta_params.npz"

    def __init__(self, folder=None, resume=False):
        self.folder = folder
        self.n_records = 0
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
            if not resume:
                open(os.path.join(folder, self.LOG), "w").close()

    def write(self, record, params, state=None):
        """Append ``record``; save ``params`` and, when given, the resumable ``state`` (a flat dict)."""
        if self.folder is None:
            return
        self.n_records += 1
        with open(os.path.join(self.folder, self.LOG), "a") as fh:
            fh.write(json.dumps(record) + "\n")
        extra = {f"state.{k}": v for k, v in (state or {}).items()}
        tmp = os.path.join(self.folder, "meta_params.tmp.npz")
        np.savez(tmp, meta_iter=record["meta_iter"], **params, **extra,
                 **{"state.n_records": self.n_records})
        os.replace(tmp, os.path.join(self.folder, self.STATE))


class ResumeError(ValueError):
    """The output folder holds no run that this configuration can continue."""


def _comparable(cfg):
    """The configuration fields a resumed run must share (all but the number of meta-iterations)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k != "meta_iters"}


def load_resume(folder, cfg):
    """(state dict, records) of the run saved in ``folder``; ResumeError unless ``cfg`` continues it."""
    path = os.path.join(folder, MetaLog.STATE)
    try:
        with np.load(path) as npz:
            state = {k[len("state."):]: npz[k] for k in npz.files if k.startswith("state.")}
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{folder} holds no resumable run ({MetaLog.STATE}: {exc})") from None
    if "next_iter" not in state:
        raise ResumeError(f"{path} was written without the state a resumed run needs")
    saved = json.loads(str(state["config"]))
    now = _comparable(cfg)
    differ = [k for k in now if saved.get(k) != now[k]]
    if differ:
        k = differ[0]
        raise ResumeError(f"the run in {folder} was made with {k} = {saved.get(k)!r}, not {now[k]!r}; "
                          f"resume with the same settings (only the number of meta-iterations may change)")
    try:
        with open(os.path.join(folder, MetaLog.LOG)) as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ResumeError(f"{folder} lacks a readable {MetaLog.LOG} ({exc.strerror})") from None
    n = int(state["n_records"])
    if len(lines) < n:
        raise ResumeError(f"{folder}/{MetaLog.LOG} holds {len(lines)} records, its state {n}: not the same run")
    records = [json.loads(line) for line in lines[:n]]
    with open(os.path.join(folder, MetaLog.LOG), "w") as fh:  # drop what was written after the state
        fh.writelines(json.dumps(r) + "\n" for r in records)
    return state, records


def run_hyperopt(data: Dataset, cfg: HyperoptConfig = HyperoptConfig(), progress=True,
                 log=print, log_folder=None, resume=False, comm=None, baselines=True,
                 on_record=None) -> HyperoptResult:
    """Optimise the hyperparameters on ``data`` and compare with the best constant schedule.

    Every meta-iteration is logged as it finishes (``MetaLog(log_folder)``). The meta-steps are
    ``meta_train.MetaTrainer``'s: when training after a meta-step fails or diverges, the run goes back
    to the best meta-parameters so far and halves the meta learning rate (a record with ``"diverged"``
    says so), up to MetaDivergenceError; InitialSettingsError when training fails with the initial
    settings. With ``resume``, the run saved in ``log_folder`` continues where it stopped
    (``load_resume``; the result is the same as that of an uninterrupted run).

    ``baselines=False`` skips the grid and random search (``baseline`` is then None); ``on_record(record)``
    is called with each meta-iteration's record as it is made (an outer search reports and prunes with
    it; what it raises stops the run).

    With ``comm`` (an MPI communicator), every rank runs this function with the same arguments: each
    training run is data-parallel across the ranks (``exactrev.parallel``; momentum SGD by reversal),
    every rank computes the same result, and only rank 0 logs, shows progress and writes files.
    """
    from tqdm.auto import tqdm

    cfg.check()
    if comm is not None:
        if (cfg.optimizer, cfg.method) != ("sgd", "reversal"):
            raise ConfigError("optimizer", "data-parallel runs (comm) train with sgd by reversal")
        if resume:
            raise ConfigError("resume", "a data-parallel run cannot be resumed; start it again")
        if comm.rank != 0:
            progress, log, log_folder = False, (lambda *a, **k: None), None
    saved = load_resume(log_folder, cfg) if resume else None
    meta_log = MetaLog(log_folder, resume=resume)
    start = time.perf_counter()
    prob = _Problem(data, cfg, comm)
    net = prob.net
    family = OPTIMIZERS[cfg.optimizer]
    meta = family.initial(cfg, net.n_types)
    params = family.params(meta)
    log_l2_layer = np.full(net.n_layers, np.log(cfg.init_l2)) if cfg.learn_l2 else None
    if log_l2_layer is not None:
        params["log_l2_layer"] = log_l2_layer

    def save(record, next_iter):
        meta_log.write(record, params, {"next_iter": next_iter, "config": json.dumps(_comparable(cfg)),
                                        **trainer.state()})
        if on_record is not None:
            on_record(record)
        if "diverged" in record:
            log(f"meta-iteration {record['meta_iter']}: training diverged ({record['message']}); went back "
                f"to the best meta-parameters so far and halved the meta learning rate to "
                f"{record['meta_lr']:.3g}")

    def grads_of(res):
        grads = {name: res.grads[name] for name in family.keys}
        if log_l2_layer is not None:
            grads["log_l2_layer"] = np.bincount(prob.layer_of_param, weights=res.grads["log_l2"],
                                                minlength=net.n_layers)
        return grads

    def hypergrad(m):
        return family.hypergradient(meta, prob.train_loss(m, log_l2_layer), prob.valid, prob.noise,
                                    prob.types, cfg, comm)

    trainer = MetaTrainer(params, cfg.meta_lr, grads_of=grads_of, on_record=save)
    first = 0
    if saved is not None:
        state, records = saved
        with np.load(os.path.join(log_folder, MetaLog.STATE)) as npz:
            for k in params:
                params[k][...] = npz[k]
        trainer.load_state(state, records)
        first = int(state["next_iter"])
        meta_log.n_records = len(records)
        log(f"resuming at meta-iteration {first} of {cfg.meta_iters} from {log_folder}")
    bar = tqdm(range(first, cfg.meta_iters), desc="meta-iterations", disable=not progress,
               initial=first, total=cfg.meta_iters)
    for m in bar:
        res = trainer.step(m, hypergrad)
        bar.set_postfix(valid_loss=f"{res.loss:.4f}")
    curve = trainer.curve
    bar.close()
    final_iter = cfg.meta_iters  # a fresh batch sequence for the final comparison
    learned = prob.evaluate(prob.train_only(meta, final_iter, log_l2_layer))
    log(f"learned schedules: valid loss {learned['valid_loss']:.4f}, test loss "
        f"{learned['test_loss']:.4f}, test error {100 * learned['test_error']:.2f}%")
    baseline = best_constant(prob, cfg, final_iter, progress) if baselines else None
    for name, b in ((("best constant of the grid", baseline["best"]),
                     ("best of the random search", baseline["random_search"]["best"])) if baselines else ()):
        log(f"{name} (lr={b['lr']:.4g}, momentum={b['momentum']}): valid loss {b['valid_loss']:.4f}, "
            f"test loss {b['test_loss']:.4f}, test error {100 * b['test_error']:.2f}%")
    return HyperoptResult(asdict(cfg), net.sizes, net.type_names(), meta,
                          None if log_l2_layer is None else log_l2_layer.copy(), curve, learned,
                          baseline, time.perf_counter() - start)


def best_constant(prob: _Problem, cfg: HyperoptConfig, final_iter, progress=False):
    """Grid-search constant (lr, momentum), pick by validation loss, report its test figures.

    Returns {"best": {lr, momentum, valid/test figures}, "grid": [{lr, momentum, valid_loss}, ...],
    "random_search": the same for ``random_search``}."""
    family = OPTIMIZERS[cfg.optimizer]
    grid = constant_grid(cfg.meta_iters, cfg.init_lr, family.grid_momenta, family.grid_lrs)
    best, tried = _search(prob, cfg, final_iter, grid, "constant-lr grid", progress)
    randoms = random_constants(cfg.meta_iters, family.grid_lrs, cfg.seed)
    rbest, rtried = _search(prob, cfg, final_iter, randoms, "random search", progress)
    return {"best": best, "grid": tried, "random_search": {"best": rbest, "trials": rtried}}


def random_constants(budget, lr_range, seed):
    """``budget`` random constant (lr, momentum) pairs: lr log-uniform over ``lr_range``, 1 - momentum
    log-uniform over [0.01, 0.5] (Bergstra & Bengio 2012's baseline for a search of the same cost)."""
    rng = np.random.default_rng([seed, 2012])
    lrs = np.exp(rng.uniform(*np.log(lr_range), budget))
    momenta = 1 - np.exp(rng.uniform(np.log(0.01), np.log(0.5), budget))
    return [(float(lr), round(float(g), 4)) for lr, g in zip(lrs, momenta)]


def _search(prob, cfg, final_iter, candidates, desc, progress):
    """Train each constant (lr, momentum) once, pick the lowest validation loss, evaluate it on a fresh
    batch sequence; returns (best with its test figures, every candidate with its validation loss)."""
    from tqdm.auto import tqdm

    family = OPTIMIZERS[cfg.optimizer]
    tried = []
    for lr, g in tqdm(candidates, desc=desc, disable=not progress):
        meta = family.constant(cfg, prob.net.n_types, lr, g)
        try:
            w = prob.train_only(meta, 0)
            valid = float(prob.net.loss(w, prob.data.valid.X, prob.data.valid.y))
        except (ArithmeticError, RuntimeError, ValueError):
            valid = float("inf")  # diverged out of the fixed-point range
        tried.append({"lr": lr, "momentum": g, "valid_loss": valid})
    best = min(tried, key=lambda r: r["valid_loss"])
    meta = family.constant(cfg, prob.net.n_types, best["lr"], best["momentum"])
    figures = prob.evaluate(prob.train_only(meta, final_iter))
    return {"lr": best["lr"], "momentum": best["momentum"], **figures}, tried
