"""The ``exactrev`` command line."""

import argparse
import sys


def _int_at_least(minimum):
    """An argparse type: an integer >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return value
    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _widths(text):
    try:
        widths = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers, e.g. 50,50,50") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every width must be >= 1")
    return widths


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: x)" only where there is a default to show and the help does not give it."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser():
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="exactrev",
        description="Bit-exactly reversible training and exact hypergradients (Maclaurin et al. 2015).")
    parser.add_argument("--version", action="version", version=f"exactrev {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="train an MLP reversibly on the bundled digits, reverse, check",
                          description="Train a tanh MLP on scikit-learn's bundled digits with "
                                      "reversible momentum SGD, run it backwards, and report whether "
                                      "every bit came back and the bits per weight per step used.")
    demo.add_argument("--steps", type=_positive_int, default=100, help="training steps (default 100)")
    demo.add_argument("--hidden", type=_widths, default=(50, 50, 50),
                      help="hidden widths, comma-separated (default 50,50,50)")
    demo.add_argument("--batch", type=_positive_int, default=200, help="mini-batch size (default 200)")
    demo.add_argument("--lr", type=_positive_float, default=0.5, help="learning rate (default 0.5)")
    demo.add_argument("--momentum", type=_positive_float, default=0.9,
                      help="momentum in (0, 1], made an exact fraction (default 0.9)")
    demo.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")

    hyp = sub.add_parser(
        "hyperopt", help="learn learning-rate and momentum schedules by exact hypergradients",
        description="Gradient-based hyperparameter optimisation through reversible learning: learn "
                    "learning-rate and momentum schedules per step and weight type (and init scales) "
                    "for an MLP, compare with the best constant schedule of a grid search on held-out "
                    "data, and write hyperparameters.json, schedules.png and meta_curve.png into --out. "
                    "Each meta-iteration is logged to meta_log.jsonl and meta_params.npz as it ends, "
                    "so an interrupted run keeps what it computed and --resume continues it.",
        formatter_class=_HelpWithDefaults)
    hyp.add_argument("--data", default="digits",
                     help="'digits' (bundled with scikit-learn) or a path to MNIST (IDX folder or .npz)")
    hyp.add_argument("--n-train", type=_positive_int, default=1000, help="training examples")
    hyp.add_argument("--n-valid", type=_positive_int, default=400, help="validation examples")
    hyp.add_argument("--hidden", type=_widths, default=(50, 50, 50), help="hidden widths, comma-separated")
    hyp.add_argument("--activation", choices=["tanh", "relu"], default="tanh",
                     help="nonlinearity of the hidden layers")
    hyp.add_argument("--batch", type=_positive_int, default=200, help="mini-batch size")
    hyp.add_argument("--steps", type=_positive_int, default=100, help="training steps T")
    hyp.add_argument("--meta-iters", type=_positive_int, default=50, help="meta-iterations of Adam")
    hyp.add_argument("--meta-lr", type=_positive_float, default=0.05, help="Adam step on the meta-parameters")
    hyp.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "nesterov"], default="sgd",
                     help="the reversible optimiser to learn schedules for (nesterov: with gradient "
                          "memory --nesterov-memory, see docs/optimizers.md)")
    hyp.add_argument("--nesterov-memory", type=_positive_float, default=1 / 256,
                     help="nesterov's gradient memory h in (0, 1): exact NAG is h -> 0, which is not "
                          "invertible; each step costs log2(1/h) extra bits per weight")
    hyp.add_argument("--init-lr", type=_positive_float, default=None,
                     help="initial learning rate (default 0.3 for sgd and nesterov, 0.01 for adam/adamw)")
    hyp.add_argument("--init-momentum", type=_positive_float, default=0.9,
                     help="initial momentum (sgd, nesterov) or b1 (adam), in (0, 1)")
    hyp.add_argument("--init-weight-decay", type=_positive_float, default=1e-2,
                     help="initial weight decay (adamw)")
    hyp.add_argument("--init-scale", type=_positive_float, default=0.1, help="initial init scale per type")
    hyp.add_argument("--learn-l2", action="store_true", help="also learn a log L2 penalty per layer")
    hyp.add_argument("--method", choices=["reversal", "checkpoint", "store"], default="reversal",
                     help="how the reverse sweep gets w_t, v_t: exact reversal, Revolve checkpointing, "
                          "or storing the whole trajectory")
    hyp.add_argument("--snapshots", type=_positive_int, default=None,
                     help="snapshots c for --method checkpoint (default ceil(sqrt(steps)))")
    hyp.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (data split, init noise, batches)")
    hyp.add_argument("--out", default="exactrev-out",
                     help="output folder; one that holds a run is refused unless --force or --resume")
    again = hyp.add_mutually_exclusive_group()
    again.add_argument("--force", action="store_true", help="overwrite the run already in --out")
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last meta-iteration (same settings; "
                            "--meta-iters may be raised)")
    hyp.add_argument("--no-progress", action="store_true", help="hide progress bars")

    bench = sub.add_parser("bench", help="measure the buffer and training against baselines",
                           description="Run the benchmarks quickly in this process and print tables "
                                       "of ratios against baselines measured in the same run.")
    bench.add_argument("--weights", type=_positive_int, default=10_000,
                       help="weights N for the buffer-cost table (default 10000)")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a first look")
    bench.add_argument("--suite", choices=["buffer", "training", "optimizers", "busy", "peers", "adapter",
                                                  "mpi", "all"],
                       default="all",
                       help="which tables to print (default all but peers; busy: the slowdown beside a "
                            "competing busy process; peers: one hypergradient against JAX's unrolled "
                            "autodiff at T = 100, 1000, 10000, minutes, needs pip install -e \".[peers]\"; "
                            "adapter: a JaxModel's forward run against the same jitted JAX gradient in a "
                            "float64 loop, needs JAX; mpi: data-parallel reversal on 1 and P ranks, run it "
                            "as mpiexec -n P exactrev bench --suite mpi)")
    bench.add_argument("--compare", action="store_true",
                       help="compare reversal, store and Revolve checkpointing at T = 100, 1000, 10000 "
                            "(about 3 minutes on 2 cores) and write compare.png")
    bench.add_argument("--out", default=".", help="folder for compare.png (default: here)")
    bench.add_argument("--time-limit", type=_positive_float, default=300.0,
                       help="longest single run in --compare, in seconds; longer ones are estimated")
    tune = sub.add_parser(
        "tune", help="an Optuna study over the discrete settings, exact hypergradients inside each trial",
        description="Search the settings hypergradients cannot move (optimizer, hidden width and depth, "
                    "batch size, steps, meta learning rate) with Optuna; each trial meta-learns the "
                    "schedules as hyperopt does and is pruned when its meta-curve is worse than the "
                    "median. The study lives in a database (SQLite in --out by default), so it can be "
                    "resumed, watched with optuna-dashboard, and shared by workers on several machines. "
                    "Writes trials.csv, best/ (the best trial's hyperparameters.json and plots), "
                    "optimization_history.png and param_importances.png into --out.",
        formatter_class=_HelpWithDefaults)
    tune.add_argument("--trials", type=_positive_int, default=20,
                      help="trials the study should finish (those already in the database count)")
    tune.add_argument("--meta-iters", type=_positive_int, default=10, help="meta-iterations inside each trial")
    tune.add_argument("--workers", type=_positive_int, default=1,
                      help="worker processes on this machine, each with its share of the cores")
    tune.add_argument("--storage", default=None,
                      help="a database URL Optuna accepts, e.g. postgresql://user@host/db (default: "
                           "sqlite in --out/study.db)")
    tune.add_argument("--study-name", default="exactrev", help="the study; one that exists is resumed")
    tune.add_argument("--optimizers", type=lambda s: tuple(s.split(",")),
                      default=("sgd", "nesterov", "adam", "adamw"), help="comma-separated optimizers a trial may choose")
    tune.add_argument("--batches", type=_widths, default=(50, 100, 200),
                      help="comma-separated batch sizes a trial may choose")
    tune.add_argument("--n-train", type=_positive_int, default=1000, help="training examples")
    tune.add_argument("--n-valid", type=_positive_int, default=400, help="validation examples")
    tune.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (data split, init, batches)")
    tune.add_argument("--out", default="exactrev-tune", help="output folder")
    tune.add_argument("--no-progress", action="store_true", help="hide progress bars")

    from .paper_jobs import add_parsers

    jobs = add_parsers(sub, _HelpWithDefaults, _positive_int, _nonneg_int, _positive_float, _widths)
    parser.subcommands = {"demo": demo, "hyperopt": hyp, "bench": bench, "tune": tune, **jobs}
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo
        from ..exact.rational import HyperparameterError

        try:
            ok = run_demo(steps=args.steps, hidden=args.hidden, batch=args.batch, lr=args.lr,
                          momentum=args.momentum, seed=args.seed, progress=not args.no_progress)
        except (HyperparameterError, ValueError) as exc:
            parser.subcommands["demo"].error(str(exc))
        return 0 if ok else 1
    if args.command == "tune":
        return _tune(parser.subcommands["tune"], args)
    if args.command in ("distill", "regularize", "sharing"):
        from .paper_jobs import run_job

        problem = _writable_folder(args.out)
        if problem:
            parser.subcommands[args.command].error(problem)
        return run_job(args.command, args, parser.subcommands[args.command])
    if args.command == "hyperopt":
        return _hyperopt(parser.subcommands["hyperopt"], args, sys.argv[1:] if argv is None else argv)
    if args.command == "bench":
        from .bench_buffer import buffer_report
        from .bench_training import training_report

        if args.compare:
            import os

            from .bench_compare import PAPER_HIDDEN, SMALL_HIDDEN, compare_report

            os.makedirs(args.out, exist_ok=True)
            sizes = (((20, PAPER_HIDDEN), (200, SMALL_HIDDEN)) if args.quick else
                     ((100, PAPER_HIDDEN), (1000, PAPER_HIDDEN), (10000, SMALL_HIDDEN)))
            compare_report(sizes, args.time_limit, os.path.join(args.out, "compare.png"))
            return 0
        if args.suite in ("buffer", "all"):
            if args.quick:
                buffer_report(n_weights=min(args.weights, 2000), depths=(100, 1000), bits_steps=1000)
            else:
                buffer_report(n_weights=args.weights)
            print()
        if args.suite in ("training", "all"):
            training_report(steps=20 if args.quick else 100, memory_steps=100 if args.quick else 1000)
            print()
        if args.suite in ("optimizers", "all"):
            from .bench_optimizers import optimizers_report

            optimizers_report(steps=20 if args.quick else 100)
            print()
        if args.suite in ("busy", "all"):
            from .bench_busy import busy_report

            busy_report()
        if args.suite == "peers":
            import importlib.util

            if importlib.util.find_spec("jax") is None:
                parser.subcommands["bench"].error('argument --suite: peers needs JAX: pip install -e ".[peers]"')
            from .bench_peers import peers_report

            peers_report(steps=(20, 100) if args.quick else (100, 1000, 10000))
        if args.suite == "adapter":
            import importlib.util

            if importlib.util.find_spec("jax") is None:
                parser.subcommands["bench"].error('argument --suite: adapter needs JAX: pip install -e ".[jax]"')
            from .bench_adapter import adapter_report

            adapter_report(steps=50 if args.quick else 200)
        if args.suite == "mpi":
            import importlib.util

            if importlib.util.find_spec("mpi4py") is None:
                parser.subcommands["bench"].error('argument --suite: mpi needs mpi4py: pip install -e ".[mpi]"')
            from .bench_mpi import mpi_report

            mpi_report(steps=10 if args.quick else 50)
        return 0
    return 0


def _tune(parser, args):
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        parser.error('tune needs Optuna: pip install -e ".[tune]"')
    from .tune import TuneConfig, run_tune

    cfg = TuneConfig(trials=args.trials, meta_iters=args.meta_iters, optimizers=args.optimizers,
                     batches=args.batches, n_train=args.n_train, n_valid=args.n_valid, seed=args.seed)
    try:
        cfg.check()
    except ValueError as exc:
        parser.error(str(exc))
    problem = _writable_folder(args.out)
    if problem:
        parser.error(problem)
    run_tune(cfg, args.out, storage=args.storage, study_name=args.study_name, workers=args.workers,
             progress=not args.no_progress)
    return 0


def _mpi_world():
    """MPI's world communicator when mpiexec started this process with more than one rank (each rank
    then gets its share of the cores for its threads), else None."""
    from ..parallel.comm import fair_share_threads, launched_by_mpiexec, world

    if not launched_by_mpiexec():
        return None
    comm = world()
    fair_share_threads(comm)
    return comm


def _winner(learned, constant):
    return "learned wins" if learned < constant else "constant wins" if constant < learned else "a tie"


def _flag(field):
    return "--" + field.replace("_", "-")


def _writable_folder(path):
    """Create ``path`` if needed and check a file can be written there; returns an error or None."""
    import os
    import tempfile

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"argument --out: cannot write to {path!r}: {exc.strerror or exc}"
    return None


def _run_folder_problem(args):
    """An error when --out already holds a run and neither --force nor --resume says what to do."""
    import os

    from ..hyper.hyperopt import MetaLog

    held = [f for f in (MetaLog.LOG, MetaLog.STATE, "hyperparameters.json")
            if os.path.exists(os.path.join(args.out, f))]
    if args.resume and MetaLog.STATE not in held:
        return f"argument --resume: {args.out!r} holds no run to resume (no {MetaLog.STATE})"
    if held and not (args.force or args.resume):
        return (f"argument --out: {args.out!r} already holds a run ({held[0]}): pass --resume to continue "
                f"it, --force to overwrite it, or another --out")
    return None


def _say_if_compiling():
    """One line before the first run of an installation, which compiles the kernels in silence."""
    from ..kernels.cache import on_disk
    from ..kernels.momentum import (group_rational_multiply_kernel, momentum_kick_kernel, velocity_back_kernel,
                                    weights_back_kernel)
    from ..kernels.threads import serial_build

    # what the main job runs: the buffer's kernels as compiled (on one thread or all), the light ones serial
    kernels = [group_rational_multiply_kernel, velocity_back_kernel, momentum_kick_kernel,
               serial_build(weights_back_kernel)]
    if not on_disk(*kernels):
        print("compiling kernels (first run only, about 30 s on 2 cores) ...", flush=True)


def _load_data(args):
    """The dataset named by --data, or a one-line error naming --data."""
    import zipfile

    from ..hyper.data import load_digits, load_mnist

    if args.data == "digits":
        return load_digits(args.n_train, args.n_valid, args.seed)
    try:
        return load_mnist(args.data, args.n_train, args.n_valid, args.seed)
    except KeyError:
        raise ValueError(f"argument --data: {args.data!r} lacks an array: an .npz needs x_train, y_train, "
                         "x_test and y_test") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"argument --data: cannot read {args.data!r}: {exc}") from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"argument --data: {args.data!r} is not an .npz archive of arrays") from None
        raise ValueError(f"argument --data: {exc}") from None


def _hyperopt(parser, args, argv):
    from ..hyper.meta_train import InitialSettingsError, MetaDivergenceError
    from ..hyper.hyperopt import ConfigError, HyperoptConfig, ResumeError, run_hyperopt
    from .report_files import run_record, timestamp, write_outputs

    default_lr = 0.3 if args.optimizer in ("sgd", "nesterov") else 0.01
    init_lr = args.init_lr if args.init_lr is not None else default_lr
    cfg = HyperoptConfig(hidden=args.hidden, activation=args.activation, batch=args.batch,
                         steps=args.steps, meta_iters=args.meta_iters, meta_lr=args.meta_lr,
                         init_lr=init_lr, init_momentum=args.init_momentum,
                         optimizer=args.optimizer, init_weight_decay=args.init_weight_decay,
                         nesterov_memory=args.nesterov_memory,
                         init_scale=args.init_scale, learn_l2=args.learn_l2, method=args.method,
                         snapshots=args.snapshots, seed=args.seed)
    comm = _mpi_world()
    lead = comm is None or comm.rank == 0
    try:
        cfg.check()
    except ConfigError as exc:
        parser.error(f"argument {_flag(exc.field)}: {exc.message}")
    if comm is not None and (args.optimizer, args.method) != ("sgd", "reversal"):
        parser.error(f"under mpiexec ({comm.size} ranks) hyperopt trains with --optimizer sgd --method reversal")
    if comm is not None and args.resume:
        parser.error("argument --resume: a run under mpiexec cannot be resumed; start it again")
    try:
        data = _load_data(args)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.batch > len(data.train):
        parser.error(f"argument --batch: {args.batch} is larger than the {len(data.train)} training examples")
    problem = (_writable_folder(args.out) or _run_folder_problem(args)) if lead else None
    if comm is not None:
        problem = comm.bcast(problem, root=0)
    if problem:
        parser.error(problem)
    if not lead:
        run_hyperopt(data, cfg, progress=False, resume=False, comm=comm)
        return 0
    record = run_record(args, data, argv)
    if comm is not None:
        record["mpi_ranks"] = comm.size
    print(f"exactrev hyperopt: {data.name}, {len(data.train)} train / {len(data.valid)} valid / "
          f"{len(data.test)} test; MLP {data.n_features}-{'-'.join(map(str, args.hidden))}-"
          f"{data.n_classes} {args.activation}; T={args.steps} steps, batch {args.batch}, "
          f"{args.meta_iters} meta-iterations of Adam, optimizer={args.optimizer}, method={args.method}")
    _say_if_compiling()
    try:
        result = run_hyperopt(data, cfg, progress=not args.no_progress, log_folder=args.out,
                              resume=args.resume, comm=comm)
    except ResumeError as exc:
        parser.error(f"argument --resume: {exc}")
    except InitialSettingsError as exc:
        parser.error(f"training with the initial settings (--init-lr {init_lr:g}, --init-scale "
                     f"{args.init_scale:g}, --init-momentum {args.init_momentum:g}) fails: "
                     f"{str(exc).splitlines()[0]}; lower --init-lr or --init-scale")
    except MetaDivergenceError as exc:
        print(f"exactrev hyperopt: error: {exc}; lower --meta-lr. The meta-iterations so far are in "
              f"{args.out}/meta_log.jsonl and meta_params.npz", file=sys.stderr)
        return 1
    done = [c for c in result.curve if "valid_loss" in c]
    first, last = done[0]["valid_loss"], done[-1]["valid_loss"]
    learned = result.learned
    restored = (f"; every reversal restored w_0 bit for bit: {all(c['restored'] for c in done)}"
                if args.method == "reversal" else "")
    print(f"meta-curve: validation loss {first:.4f} -> {last:.4f}{restored}")
    print(f"held-out test: learned {learned['test_loss']:.4f} loss / {100 * learned['test_error']:.2f}% error")
    for name, b in (("best constant of the grid", result.baseline["best"]),
                    ("best of a random search", result.baseline["random_search"]["best"])):
        print(f"  vs {name} (lr={b['lr']:.3g}, momentum={b['momentum']}): {b['test_loss']:.4f} / "
              f"{100 * b['test_error']:.2f}% (by test loss: {_winner(learned['test_loss'], b['test_loss'])}; "
              f"by test error: {_winner(learned['test_error'], b['test_error'])})")
    record["finished"] = timestamp()
    for path in write_outputs(result, args.out, run=record):
        print(f"wrote {path}")
    print(f"total {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
