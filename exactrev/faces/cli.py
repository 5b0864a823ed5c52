"""The ``exactrev`` command line."""

import argparse
import sys


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="exactrev",
        description="Bit-exactly reversible training and exact hypergradients (Maclaurin et al. 2015).")
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
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")

    bench = sub.add_parser("bench", help="measure the buffer and training against baselines",
                           description="Run the benchmarks quickly in this process and print tables "
                                       "of ratios against baselines measured in the same run.")
    bench.add_argument("--weights", type=_positive_int, default=10_000,
                       help="weights N for the buffer-cost table (default 10000)")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a first look")
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
            parser.error(str(exc))
        return 0 if ok else 1
    if args.command == "bench":
        from .bench_buffer import buffer_report

        if args.quick:
            buffer_report(n_weights=min(args.weights, 2000), depths=(100, 1000), bits_steps=1000)
        else:
            buffer_report(n_weights=args.weights)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
