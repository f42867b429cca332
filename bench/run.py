"""The suite's driver: every (peer, workload) in its own fresh process, then one report.

    python -m bench                          # everything, about 15 minutes on 2 cores
    python -m bench --quick                  # smoke run: small workloads, one warm fit
    python -m bench --peers trainwell,torch_lean --workloads wages,mnist

Steps: machine facts and versions; the float32 matmul rate (`bench.matmul`); the time of
`import trainwell` and of `trainwell --help` (median of 5 fresh processes); then one
`bench.worker` process per (workload, peer), run one after another so they never share the
cores; finally bench/RESULTS.md and bench/results.json (or --out-dir).

This machine's speed swings by up to 2x from one minute to the next (bench/NOTES.md), and a
workload's peers run minutes apart. So on the small workloads the peers the targets name
(`ROUND_PEERS`) run in `--rounds` interleaved rounds, each a fresh process, and their numbers
are pooled (`pool_rounds`): a slow minute then hits each of them once rather than one of them
entirely. The other peers are 3-30x slower there and run once, to keep the suite under 15 min.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.peers import PEERS
from bench.workloads import WORKLOADS

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
THREADS = 2
STARTUP_RUNS = 5
# Peers run in several rounds on the small workloads (the ones issue targets compare).
ROUND_PEERS = ("trainwell", "sklearn", "torch_lean")
VERSIONED = ["trainwell", "torch", "numpy", "scikit-learn", "keras", "jax", "jaxlib", "scipy"]


def worker_env(add_src: bool) -> dict[str, str]:
    """Environment of every child process: 2 threads for every library, the repo importable.

    Args:
        add_src: also put the repository's src/ on the path (trainwell not installed).

    Returns:
        A copy of this process's environment with the settings applied.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(THREADS)
    paths = [str(REPO)] + ([str(REPO / "src")] if add_src else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("KERAS_BACKEND", None)  # each Keras peer picks its own backend
    return env


def machine_info() -> dict:
    """CPU model, cores, memory, OS, Python and library versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(
            int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in x
        )
    except (OSError, StopIteration):
        mem_kib = 0
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "threads": THREADS,
        "versions": versions,
    }


def _last_line(text: str) -> str:
    """Last non-empty line of a child's stderr, for an error message."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _median_seconds(cmd: list[str], env: dict[str, str], runs: int, printed: bool) -> float | str:
    """Median over `runs` fresh processes of their wall time, or of the seconds each prints last.

    Args:
        cmd: the command line.
        env: its environment.
        runs: how many processes.
        printed: take the number the process prints instead of its wall time.

    Returns:
        Seconds, or "error: <last stderr line>" when a process fails.
    """
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            return f"error: {_last_line(proc.stderr)}"
        times.append(float(proc.stdout.split()[-1]) if printed else wall)
    return statistics.median(times)


def time_startup(env: dict[str, str], runs: int) -> dict:
    """Median time of `import trainwell` (in-process clock) and of `trainwell --help` (whole process).

    Args:
        env: environment for the child processes.
        runs: fresh processes per measurement.

    Returns:
        {"import_s": ..., "help_s": ..., "help_command": ...}; a time is "error: ..." when it failed.
    """
    code = "import time; t = time.perf_counter(); import trainwell; print(time.perf_counter() - t)"
    script = Path(sys.executable).with_name("trainwell")
    if script.exists():
        help_cmd, shown = [str(script), "--help"], "trainwell --help"
    else:  # not installed: the same entry point through the interpreter
        entry = "import sys; from trainwell.cli import main; sys.exit(main())"
        help_cmd, shown = [sys.executable, "-c", entry, "--help"], "python -c 'trainwell.cli.main()' --help"
    return {
        "import_s": _median_seconds([sys.executable, "-c", code], env, runs, printed=True),
        "help_s": _median_seconds(help_cmd, env, runs, printed=False),
        "help_command": shown,
    }


def run_child(args: list[str], env: dict[str, str], timeout: float) -> dict:
    """Run `python -m <args> --json <tmp>` and return its JSON, or {"error": ...}.

    Args:
        args: module and arguments, without `--json`.
        env: the child's environment.
        timeout: seconds before the child is killed.

    Returns:
        The child's result dict.
    """
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        path = Path(tmp) / "result.json"
        try:
            proc = subprocess.run(
                [sys.executable, "-m", *args, "--json", str(path)],
                env=env,
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if path.exists():
            return json.loads(path.read_text())
        return {"error": f"exit code {proc.returncode}: {_last_line(proc.stderr)}"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: wages, titanic, digits only (unless --workloads), one warm fit, "
        "fewer predict calls, small matmul; results go to bench/out/",
    )
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}"
    )
    parser.add_argument(
        "--workloads",
        default=None,
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all; --quick: the small ones)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="warm fits per process (default: per workload)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2,
        help=f"rounds of {', '.join(ROUND_PEERS)} on the small workloads, pooled "
        "(default: 2; 1 with --quick)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a worker is killed")
    parser.add_argument(
        "--out-dir", default=None, help="where RESULTS.md and results.json go (default: bench/)"
    )
    args = parser.parse_args(argv)
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if args.workloads is None:
        args.workloads = [w.name for w in WORKLOADS.values() if not (args.quick and w.big)]
    else:
        args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for name, known in [*((p, PEERS) for p in args.peers), *((w, WORKLOADS) for w in args.workloads)]:
        if name not in known:
            parser.error(f"unknown name {name!r}; choose from {', '.join(known)}")
    if args.out_dir is None:
        args.out_dir = BENCH_DIR / "out" if args.quick else BENCH_DIR
    if args.quick:
        args.rounds = 1
    return args


def pool_rounds(results: list[dict]) -> dict:
    """One result from several rounds' worker results for the same (peer, workload).

    The warm fit times are pooled and their median taken; cold fit, predict latency and bulk
    predict time are the median of the rounds' values; peak memory the largest; the rates are
    recomputed from the pooled times. Losses come from the first round (same seeds, same numbers).
    A round that failed is left out; if all failed, the first error stands.
    """
    good = [r for r in results if "error" not in r]
    if len(good) < 2:
        return good[0] if good else results[0]
    out = dict(good[0])
    warm = [t for r in good for t in r["warm_fit_s"]]
    out["warm_fit_s"] = warm
    out["warm_fit_cpu_s"] = [t for r in good for t in r.get("warm_fit_cpu_s", [])]
    out["fit_s"] = statistics.median(warm)
    scale = good[0]["fit_s"] / out["fit_s"]
    out["epoch_s"] = good[0]["epoch_s"] / scale
    for key in ("samples_per_s", "gflops_per_s"):
        if out.get(key) is not None:
            out[key] = good[0][key] * scale
    for key in ("cold_fit_s", "predict1_s", "import_s"):
        out[key] = statistics.median(r[key] for r in good)
    rows = good[0]["bulk_rows_per_s"] * good[0]["bulk_predict_s"]
    out["bulk_predict_s"] = statistics.median(r["bulk_predict_s"] for r in good)
    out["bulk_rows_per_s"] = rows / out["bulk_predict_s"]
    out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in good)
    out["rounds"] = len(good)
    return out


def _progress(start: float, message: str) -> None:
    """One progress line on stderr, with the elapsed time."""
    print(f"[{time.perf_counter() - start:6.0f} s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the suite and write the report; returns the process exit code."""
    args = parse_args(argv)
    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    start = time.perf_counter()
    add_src = importlib.util.find_spec("trainwell") is None and (REPO / "src" / "trainwell").is_dir()
    env = worker_env(add_src)
    doc: dict = {
        "command": command.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "trainwell_from_src": add_src,
        "machine": machine_info(),
        "load_average_start": os.getloadavg()[0],
    }

    _progress(start, "matmul rate")
    matmul_args = ["bench.matmul"] + (["--size", "2048"] if args.quick else [])
    doc["matmul"] = run_child(matmul_args, env, args.timeout)
    _progress(start, "import trainwell / trainwell --help")
    doc["startup"] = time_startup(env, STARTUP_RUNS)

    doc["runs"] = []
    doc["rounds"] = args.rounds
    for workload in args.workloads:
        rounds: dict[str, list[dict]] = {}
        for round_index in range(args.rounds if not WORKLOADS[workload].big else 1):
            for peer in args.peers:
                if round_index and peer not in ROUND_PEERS:
                    continue
                label = f" (round {round_index + 1})" if round_index else ""
                _progress(start, f"{workload} / {peer}{label}")
                child = ["bench.worker", "--peer", peer, "--workload", workload]
                child += ["--quick", "--latency-calls", "50", "--latency-budget", "1"] if args.quick else []
                child += ["--repeats", str(args.repeats)] if args.repeats is not None else []
                result = run_child(child, env, args.timeout)
                result.update(peer=peer, workload=workload)
                if "error" in result:
                    _progress(start, f"  error: {result['error']}")
                rounds.setdefault(peer, []).append(result)
        doc["runs"] += [pool_rounds(rounds[peer]) for peer in args.peers]

    doc["total_s"] = time.perf_counter() - start
    doc["load_average_end"] = os.getloadavg()[0]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    results = out_dir / "RESULTS.md"
    previous = results.read_text(encoding="utf-8") if results.exists() else ""
    results.write_text(report.render(doc) + report.kept_variants(previous))
    _progress(start, f"wrote {out_dir / 'RESULTS.md'} and results.json")
    return 0
