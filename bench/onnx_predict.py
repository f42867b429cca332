"""Prediction speed: a trainwell model exported to ONNX under onnxruntime, against trainwell's own
``predict`` and scikit-learn's MLP, on the bench workloads.

Per workload, trainwell and scikit-learn train the workload's network with their bench peers
(``bench/peers``); the trainwell model is exported with ``model.export`` and loaded in an
onnxruntime session. Every runtime gets one thread (torch, onnxruntime's intra- and inter-op
pools, and numpy's BLAS through threadpoolctl), so the figures compare the code paths, not the
number of cores. Two measures, the runtimes interleaved call by call so that a change in the
machine's load hits all of them alike:

- latency: the median wall time of one call on one row (each call's public API: ``predict``,
  ``predict_proba``, ``session.run``), over ``--calls`` calls;
- throughput: rows per second of one call on ``--rows`` rows (median over ``--repeats`` calls).

Before timing, the ONNX outputs are checked against trainwell's ``predict`` (largest absolute
difference printed). The big ``mnist`` workload is trained as ``--quick`` does (a tenth of the
rows, one epoch): the speed of a forward pass does not depend on how well it was trained.

Usage:
    python -m bench.onnx_predict                          # wages, titanic, digits, mnist
    python -m bench.onnx_predict --workloads wages --calls 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from threadpoolctl import threadpool_limits

from bench.peers import sklearn_mlp, trainwell_peer
from bench.workloads import WORKLOADS, make_data, quick_version


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _runtimes(name: str, folder: str):
    """``(X, {runtime: predict function})`` for one workload, models trained and exported."""
    spec = WORKLOADS[name]
    spec = quick_version(spec) if spec.big else spec
    X, y = make_data(spec)
    model = trainwell_peer.build_and_fit(spec, X, trainwell_peer.prepare_targets(spec, y))
    mlp = sklearn_mlp.build_and_fit(spec, X, sklearn_mlp.prepare_targets(spec, y))
    path = model.export(os.path.join(folder, f"{name}.onnx"))
    session = _session(path)
    gap = np.abs(session.run(None, {"input": X})[0] - model.predict(X, verbose=0)).max()
    print(f"{name}: ONNX vs trainwell predict, largest absolute difference {gap:.2e} on {len(X)} rows")
    return X, {
        "onnxruntime": lambda rows: session.run(None, {"input": rows})[0],
        "trainwell": lambda rows: model.predict(rows, verbose=0),
        "sklearn MLP": lambda rows: sklearn_mlp.predict(mlp, rows),
    }


def _interleaved(runtimes: dict, rows: np.ndarray, calls: int) -> dict[str, float]:
    """Median seconds per call of each runtime on ``rows``, the runtimes taking turns."""
    times = {name: [] for name in runtimes}
    for fn in runtimes.values():  # warm-up: first-call allocations and caches
        fn(rows)
    for _ in range(calls):
        for name, fn in runtimes.items():
            start = time.perf_counter()
            fn(rows)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="wages,titanic,digits,mnist")
    parser.add_argument("--calls", type=int, default=2000, help="one-row calls per runtime")
    parser.add_argument("--rows", type=int, default=10000, help="rows per throughput call")
    parser.add_argument("--repeats", type=int, default=30, help="throughput calls per runtime")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs; one thread per runtime)")
    lines = ["| workload | runtime | 1-row latency (ms) | latency / trainwell's | rows/s "
             "| rate / trainwell's |", "|---|---|---|---|---|---|"]
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as folder:
        for name in args.workloads.split(","):
            X, runtimes = _runtimes(name, folder)
            batch = X[np.arange(args.rows) % len(X)]
            latency = _interleaved(runtimes, X[:1], args.calls)
            per_call = _interleaved(runtimes, batch, args.repeats)
            for runtime in runtimes:
                rate = args.rows / per_call[runtime]
                lines.append(
                    f"| {name} | {runtime} | {latency[runtime] * 1e3:.3f} | "
                    f"{latency[runtime] / latency['trainwell']:.2f}x | {rate:,.0f} | "
                    f"{rate * per_call['trainwell'] / args.rows:.2f}x |")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
