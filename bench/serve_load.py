"""Load test of `trainwell serve` against a minimal hand-written FastAPI endpoint, on loopback.

    python -m bench.serve_load [--seconds 4] [--max-requests 4000] [--clients 1,8,64] [--write]

Trains two small models (the wages table through `trainwell train`'s pipeline, the MNIST subset
as a plain array model), starts both servers for each (one uvicorn process each, access logs
off), and for every number of concurrent clients sends one-row requests over keep-alive
connections for a bounded time and number of requests, trainwell and the baseline alternately.
It reports throughput (requests/s), p50 and p99 latency and the non-200 count, and checks that
both servers give the same numbers. The client runs in this process on the same machine, so
the figures are for the whole machine shared by client and server. `--write` puts the table
in bench/RESULTS.md between the serve-load markers (a full `python -m bench` rewrites that file;
run this again afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MARK_BEGIN, MARK_END = "<!-- serve-load:begin -->", "<!-- serve-load:end -->"
STARTUP_S = 120


def build_models(folder: Path) -> dict:
    """Model files and one request body per model: the wages table and the MNIST array model."""
    import pandas as pd

    from trainwell.datasets import load_mnist
    from trainwell.datasets import path as dataset_path
    from trainwell.layers import Dense, Input
    from trainwell.models import Sequential
    from trainwell.pipeline import train_csv
    from trainwell.utils import set_random_seed

    run = train_csv(dataset_path("wages"), "wage_per_hour", epochs=20, diagnostics="off")
    run.model.save(folder / "wages.tw")
    row = pd.read_csv(dataset_path("wages")).drop(columns="wage_per_hour").iloc[:1]
    wages_body = {"columns": list(row.columns), "data": row.to_numpy().tolist()}
    set_random_seed(0)
    X, y = load_mnist()
    model = Sequential([Input(shape=(X.shape[1],)), Dense(50, activation="relu"),
                        Dense(50, activation="relu"), Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, y, epochs=3, verbose=0, diagnostics="off")
    model.save(folder / "mnist.tw")
    mnist_body = {"inputs": X[:1].tolist()}
    return {"wages": (folder / "wages.tw", wages_body), "mnist": (folder / "mnist.tw", mnist_body)}


class Server:
    """A server subprocess on 127.0.0.1; ready once it answers GET /health or POST /predict."""

    def __init__(self, kind: str, model: Path, port: int, threads: int, log: Path):
        if kind == "trainwell":
            command = [sys.executable, "-m", "trainwell.cli", "serve", str(model), "--port", str(port),
                       "--threads", str(threads), "--no-access-log", "--log-level", "warning"]
        else:
            command = [sys.executable, "-m", "bench.serve_baseline", str(model), "--port", str(port),
                       "--threads", str(threads)]
        self.kind, self.port = kind, port
        self.log = log.open("w")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    async def wait_ready(self, body: bytes) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}")
            try:
                status, _ = await one_request(self.port, body)
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.kind} server not ready after {STARTUP_S} s")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.proc.returncode


def request_bytes(body: bytes) -> bytes:
    return (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


async def read_response(reader) -> tuple[int, bytes]:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def one_request(port: int, body: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(body))
        return await read_response(reader)
    finally:
        writer.close()


async def load(port: int, body: bytes, clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` keep-alive connections sending requests back to back until the time or count is spent."""
    message = request_bytes(body)
    latencies, statuses = [], {}
    state = {"left": max_requests}

    async def client(until: float):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < until and state["left"] > 0:
                state["left"] -= 1
                start = time.perf_counter()
                writer.write(message)
                status, _ = await read_response(reader)
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*[client(start + seconds) for _ in range(clients)])
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "non_200": sum(n for status, n in statuses.items() if status != 200)}


async def measure(models: dict, levels: list[int], seconds: float, max_requests: int, threads: int,
                  logs: Path) -> list[dict]:
    rows = []
    port = 18100
    for name, (model, body_dict) in models.items():
        body = json.dumps(body_dict).encode()
        servers = {kind: Server(kind, model, port + i, threads, logs / f"{name}-{kind}.log")
                   for i, kind in enumerate(("trainwell", "baseline"))}
        port += 2
        try:
            for server in servers.values():
                await server.wait_ready(body)
            answers = {kind: json.loads((await one_request(s.port, body))[1]) for kind, s in servers.items()}
            ours = np.asarray(answers["trainwell"].get("probabilities", answers["trainwell"]["predictions"]))
            theirs = np.asarray(answers["baseline"]["predictions"])
            diff = float(np.max(np.abs(ours.reshape(-1) - theirs.reshape(-1))))
            for turn, clients in enumerate(levels):
                order = ("trainwell", "baseline") if turn % 2 == 0 else ("baseline", "trainwell")
                for kind in order:
                    warm = min(1.0, seconds)
                    await load(servers[kind].port, body, clients, warm, max_requests // 4)
                    result = await load(servers[kind].port, body, clients, seconds, max_requests)
                    rows.append({"model": name, "server": kind, "clients": clients, "max_abs_diff": diff,
                                 **result})
                    print(f"{name:6} {kind:9} {clients:3} clients: {result['rps']:7.0f} req/s  "
                          f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                          f"non-200 {result['non_200']}", flush=True)
        finally:
            codes = {kind: server.stop() for kind, server in servers.items()}
            print(f"{name}: exit status after SIGTERM {codes}", flush=True)
    return rows


def render(rows: list[dict], command: str, load_before: tuple, load_after: tuple) -> str:
    lines = [MARK_BEGIN, "## Serving: `trainwell serve` vs a hand-written FastAPI endpoint", "",
             f"`{command}` on {platform.machine()} with {os.cpu_count()} cores; client and servers share "
             f"the machine (load average {load_before[0]:.2f} before, {load_after[0]:.2f} after). One-row "
             f"requests over keep-alive loopback connections, one uvicorn process per server, access logs "
             f"off, the same torch thread count (--threads), a 1 s warm-up before each measurement. "
             f"Ratio = trainwell ÷ baseline throughput.", "",
             "| model | clients | trainwell req/s | baseline req/s | ratio | trainwell p50 / p99 ms "
             "| baseline p50 / p99 ms | non-200 |", "|---|---|---|---|---|---|---|---|"]
    by_key = {(r["model"], r["server"], r["clients"]): r for r in rows}
    for model, clients in dict.fromkeys((r["model"], r["clients"]) for r in rows):
        ours, base = by_key[(model, "trainwell", clients)], by_key[(model, "baseline", clients)]
        lines.append(f"| {model} | {clients} | {ours['rps']:,.0f} | {base['rps']:,.0f} | "
                     f"{ours['rps'] / base['rps']:.2f} | {ours['p50_ms']:.2f} / {ours['p99_ms']:.2f} | "
                     f"{base['p50_ms']:.2f} / {base['p99_ms']:.2f} | {ours['non_200'] + base['non_200']} |")
    diffs = {r["model"]: r["max_abs_diff"] for r in rows}
    lines += ["", "Largest difference between the two servers' outputs: "
              + ", ".join(f"{m} {d:.1e}" for m, d in diffs.items()) + ".", MARK_END]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path) -> None:
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END) + "\n?", re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per server and level")
    parser.add_argument("--max-requests", type=int, default=4000,
                        help="requests per server and level at most")
    parser.add_argument("--clients", default="1,8,64", help="numbers of concurrent clients")
    parser.add_argument("--models", default="wages,mnist")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both servers")
    parser.add_argument("--write", action="store_true", help="update the section in bench/RESULTS.md")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp)
        models = {k: v for k, v in build_models(folder).items() if k in args.models.split(",")}
        rows = asyncio.run(measure(models, levels, args.seconds, args.max_requests, args.threads, folder))
    command = "python -m bench.serve_load " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(rows, command.strip(), load_before, os.getloadavg())
    print(text)
    if args.write:
        write_section(text, Path(__file__).with_name("RESULTS.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
