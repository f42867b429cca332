"""One (peer, workload) measurement, in a fresh process.

    python -m bench.worker --peer torch_lean --workload wages --json out.json

Order of work, so that each number means one thing:

1. import the peer module (timed: this is the cold import of the peer's framework);
2. generate the data and encode the targets (not timed);
3. build a model (not timed) and fit it: the *cold* fit, first in this process;
4. `repeats` more build + fit; the fit times' median is the *warm* fit time;
5. predict one row, after a few warm-up calls, many times: the median is the latency;
6. predict all rows (median of a few calls): bulk rows per second; these predictions give
   the train and validation losses, computed by `bench.scoring`, not by the peer;
7. peak resident memory of the whole process.

Any exception is caught and written as {"error": "<type>: <message>"}, so one broken peer
never stops the suite.
"""

from __future__ import annotations

import os

# Thread limits must be in the environment before numpy or torch load their thread pools.
THREADS = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

from bench.peers import PEERS  # noqa: E402
from bench.scoring import score_split  # noqa: E402
from bench.workloads import WORKLOADS, Workload, make_data, quick_version  # noqa: E402

# Predict-one-row calls: stop after LATENCY_CALLS calls or LATENCY_BUDGET_S seconds,
# whichever comes first, but never before LATENCY_MIN_CALLS calls.
LATENCY_CALLS = 200
LATENCY_BUDGET_S = 4.0
LATENCY_MIN_CALLS = 20
LATENCY_WARMUP = 5


def _limit_threads() -> None:
    """Give torch the same 2 threads in every worker (numpy's BLAS reads the environment)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(THREADS)


def _rss_mib() -> float:
    """Current resident set size of this process, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _timed(fn, *args):
    """Return (seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def _cpu_s() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    t = os.times()
    return t.user + t.system


def _latency(peer, model, x1: np.ndarray, calls: int, budget_s: float) -> tuple[float, int]:
    """Median seconds of `peer.predict(model, x1)` after warm-up, and how many calls it took."""
    for _ in range(LATENCY_WARMUP):
        peer.predict(model, x1)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < calls and (len(times) < LATENCY_MIN_CALLS or time.perf_counter() < deadline):
        times.append(_timed(peer.predict, model, x1)[0])
    return statistics.median(times), len(times)


def measure(peer_name: str, spec: Workload, latency_calls: int, latency_budget_s: float) -> dict:
    """Run steps 1-7 of the module docstring for one peer and one workload.

    Args:
        peer_name: a key of `bench.peers.PEERS`.
        spec: the workload (already shrunk for `--quick`).
        latency_calls: most predict-one-row calls.
        latency_budget_s: time after which the latency loop stops (past its minimum count).

    Returns:
        A flat dict of JSON-serialisable numbers.
    """
    import_s, peer = _timed(importlib.import_module, PEERS[peer_name])
    _limit_threads()

    X, y = make_data(spec)
    y_peer = peer.prepare_targets(spec, y)
    rss_before = _rss_mib()

    model = peer.build(spec, X.shape[1])
    cold_s, model = _timed(peer.fit, model, spec, X, y_peer)
    warm: list[float] = []
    warm_cpu: list[float] = []
    for _ in range(spec.repeats):
        model = peer.build(spec, X.shape[1])
        cpu_start = _cpu_s()
        seconds, model = _timed(peer.fit, model, spec, X, y_peer)
        warm.append(seconds)
        # CPU time next to wall time shows when a fit was starved by other load on the machine.
        warm_cpu.append(_cpu_s() - cpu_start)
    fit_s = statistics.median(warm) if warm else cold_s

    latency_s, latency_n = _latency(peer, model, np.ascontiguousarray(X[:1]), latency_calls, latency_budget_s)
    bulk: list[float] = []
    for _ in range(1 if spec.big else 3):
        seconds, pred = _timed(peer.predict, model, X)
        bulk.append(seconds)
    bulk_s = statistics.median(bulk)

    n_train = spec.split_index(len(X))
    flops = spec.flops_per_epoch() * spec.epochs
    return {
        "import_s": import_s,
        "cold_fit_s": cold_s,
        "fit_s": fit_s,
        "warm_fit_s": warm,
        "warm_fit_cpu_s": warm_cpu,
        "epoch_s": fit_s / spec.epochs,
        "samples_per_s": n_train * spec.epochs / fit_s,
        "gflops_per_s": flops / fit_s / 1e9,
        "predict1_s": latency_s,
        "predict1_calls": latency_n,
        "bulk_predict_s": bulk_s,
        "bulk_rows_per_s": len(X) / bulk_s,
        "rss_before_fit_mib": rss_before,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "load_average": os.getloadavg()[0],
        **score_split(spec, y, pred),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, and write the JSON file (an error is a result too)."""
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, choices=sorted(PEERS))
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=None, help="warm fits (default: the workload's)")
    parser.add_argument("--quick", action="store_true", help="the smoke-run variant of the workload")
    parser.add_argument("--latency-calls", type=int, default=LATENCY_CALLS)
    parser.add_argument("--latency-budget", type=float, default=LATENCY_BUDGET_S)
    parser.add_argument("--json", required=True, help="where to write the result")
    args = parser.parse_args(argv)

    spec = WORKLOADS[args.workload]
    if args.quick:
        spec = quick_version(spec)
    if args.repeats is not None:
        spec = dataclasses.replace(spec, repeats=args.repeats)
    result: dict = {"peer": args.peer, "workload": args.workload, "spec": dataclasses.asdict(spec)}
    try:
        result.update(measure(args.peer, spec, args.latency_calls, args.latency_budget))
    except Exception as exc:  # a failing peer is reported, not fatal
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result["error"] = f"{type(exc).__name__}: {message}"[:300]
        traceback.print_exc()
    with open(args.json, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
