"""GPU benchmark script: ``python -m benchmarks.gpu`` on a machine with a CUDA GPU.

Not an asv suite (asv runs on the CPU machines); prints the table of exactrev.faces.bench_gpu.
"""

import argparse

from exactrev.faces.bench_gpu import gpu_report

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=int, default=10_000_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--mlp-steps", type=int, default=100)
    args = parser.parse_args()
    gpu_report(args.weights, args.steps, args.mlp_steps)
