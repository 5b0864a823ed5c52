"""GPU benchmark script: ``python -m benchmarks.gpu`` on a machine with a CUDA GPU.

Not an asv suite (asv runs on the CPU machines); prints the table of exactrev.faces.bench_gpu.
"""

import argparse
import sys
import warnings

from numba.core.errors import NumbaPerformanceWarning

from exactrev.faces.bench_gpu import gpu_report
from exactrev.kernels.cuda_device import NoCudaDeviceError, require_cuda

def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--weights", type=int, default=10_000_000, help="weights in the step benchmarks")
    parser.add_argument("--steps", type=int, default=100, help="steps timed in the step benchmarks")
    parser.add_argument("--mlp-steps", type=int, nargs="*", default=[100],
                        help="training steps T of the paper-MLP hypergradients (several allowed)")
    parser.add_argument("--match-weights", type=int, default=1_000_000,
                        help="weights in the CPU/GPU integer comparison (0 skips it)")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU-path hypergradient")
    parser.add_argument("--jax", nargs="*", default=[], choices=["store", "checkpoint", "segments"],
                        help="also time JAX's unrolled autodiff on the device in these memory modes")
    return parser


if __name__ == "__main__":
    args = build_parser().parse_args()
    try:
        require_cuda()
    except NoCudaDeviceError as exc:
        sys.exit(f"python -m benchmarks.gpu: {exc}")
    # the MLP's small kernels launch few blocks by design; numba-cuda warns about each launch shape
    warnings.filterwarnings("ignore", message="Grid size", category=NumbaPerformanceWarning)
    gpu_report(args.weights, args.steps, tuple(args.mlp_steps), match_weights=args.match_weights,
               cpu=not args.no_cpu, jax_modes=tuple(args.jax))
