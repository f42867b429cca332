"""This machine's float32 matrix-multiply rate, the yardstick for the big workloads.

    python -m bench.matmul --json out.json [--size 4096] [--tries 3]

Times `torch.mm` and numpy's `@` on two square float32 matrices with 2 threads, after one
warm-up call, and keeps the best try of each (best, not median: the question is what the
hardware can do, and other load only ever slows a try down). One n x n product is 2*n**3 FLOPs.
"""

from __future__ import annotations

import os

THREADS = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def best_gflops(multiply, a, b, size: int, tries: int) -> float:
    """Best GFLOP/s of `multiply(a, b)` over `tries` calls, after one warm-up call.

    Args:
        multiply: a function of two square matrices.
        a, b: the operands, of shape (size, size).
        size: their side.
        tries: timed calls.

    Returns:
        2 * size**3 / best seconds / 1e9.
    """
    multiply(a, b)
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        multiply(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    """Measure torch and numpy float32 matmul rates and write them as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.matmul", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.size, args.size), dtype=np.float32)
    b = rng.standard_normal((args.size, args.size), dtype=np.float32)
    result = {
        "size": args.size,
        "threads": THREADS,
        "torch_gflops": best_gflops(
            torch.mm, torch.from_numpy(a), torch.from_numpy(b), args.size, args.tries
        ),
        "numpy_gflops": best_gflops(np.matmul, a, b, args.size, args.tries),
    }
    result["reference_gflops"] = max(result["torch_gflops"], result["numpy_gflops"])
    with open(args.json, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
