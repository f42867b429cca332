"""Benchmark: N learning rates of the wages model trained as one batched model vs one model alone.

The goal (issue 6, point 4): 16 learning rates of the wages model (9 inputs, Dense 50 relu,
Dense 32 relu, Dense 1; batch 32; 30 epochs) in at most 2x the wall time of one of them alone.
Reported for 4, 16 and 64 candidates, with one torch thread. The machine may be shared, so the
load average is printed beside the figures; each timing is the best of ``--repeats`` runs.

Run with ``python -m bench.compare_speed [--repeats 3] [--sizes 4,16,64]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from trainwell import Sequential, set_random_seed
from trainwell.datasets import load_wages
from trainwell.experiments import compare
from trainwell.layers import Dense

FIT = dict(batch_size=32, epochs=30, validation_split=0.3, verbose=0)


def layers():
    return [Dense(50, activation="relu"), Dense(32, activation="relu"), Dense(1)]


def time_alone(x, y) -> float:
    set_random_seed(0)
    model = Sequential(layers())
    model.compile(optimizer="adam", loss="mean_squared_error")
    start = time.perf_counter()
    model.fit(x, y, **FIT)
    return time.perf_counter() - start


def time_compare(x, y, n: int) -> tuple[float, int]:
    rates = np.geomspace(1e-4, 1e-1, n).tolist()
    start = time.perf_counter()
    result = compare(
        {"wages": layers()},
        x,
        y,
        compile=dict(optimizer="adam", loss="mean_squared_error"),
        fit=FIT,
        grid={"learning_rate": rates},
        workers=1,
    )
    seconds = time.perf_counter() - start
    return seconds, max(r["group_size"] for r in result.records.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="4,16,64")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = load_wages()
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    time_alone(x, y)  # warm-up: first-call costs (imports, allocator) are not the comparison
    alone = min(time_alone(x, y) for _ in range(args.repeats))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch threads: 1")
    print(f"one model alone: {alone:.3f} s (best of {args.repeats})")
    print(f"{'candidates':>10} {'batched as':>10} {'seconds':>9} {'ratio':>7} {'per model':>10}")
    for n in (int(s) for s in args.sizes.split(",")):
        best, group = min(time_compare(x, y, n) for _ in range(args.repeats))
        print(f"{n:>10} {group:>10} {best:>9.3f} {best / alone:>6.2f}x {best / n / alone:>9.3f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
