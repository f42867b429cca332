"""Training from a ``PyDataset`` over a memory-mapped ``.npy`` file larger than the process may hold.

    python -m bench.pydataset [--gb 1.5] [--cap-gb 1.0] [--epochs 1] [--batch-size 4096] [--json out.json]

1. Writes one float32 ``.npy`` of shape (n, 64) (63 features and the target, ``--gb`` gigabytes)
   into a temporary directory, chunk by chunk (the writer holds one chunk), deleted at the end.
2. ``streamed``: a child process whose data memory is capped at ``--cap-gb`` (``RLIMIT_DATA``:
   heap and private writable mappings, where every array and tensor lives; a read-only file
   mapping is page cache, not counted) fits Dense(64, relu) -> Dense(1) with Adam from a
   ``PyDataset`` that slices each batch out of ``np.load(path, mmap_mode="r")`` and then tells
   the kernel it may drop those pages (``madvise(MADV_DONTNEED)``), so its resident set stays a
   few batches big. It records the peak of its resident anonymous and file-backed memory.
3. ``in_memory``: a child process without a cap loads the whole file (``np.load``) and fits the
   same model on the array, same batch size, ``shuffle=True`` (Keras's default: every batch
   gathers rows from all over the array).
4. ``in_memory_unshuffled``: the same with ``shuffle=False`` (batches are contiguous slices, as
   the PyDataset's are: the closest like-for-like reading pattern).

The PyDataset fit uses ``shuffle=True`` (it shuffles its batch order); all use
``diagnostics='off'`` and one torch thread. The children alternate, ``--repeats`` times each, in
the same run, and each keeps its best time (other load only ever slows a try down). The figures:
rows per second of each fit, their ratio, and the peak memory.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

FEATURES = 63
# One torch thread in both fits: the comparison is of the data paths, and on a shared machine a
# second thread makes every operation wait for a descheduled thread (bench/NOTES.md).
THREADS = 1
CHUNK_ROWS = 1 << 18
KINDS = ("streamed", "in_memory", "in_memory_unshuffled")


def write_data(path: str, gigabytes: float, seed: int = 0) -> int:
    """Write a seeded regression problem of about ``gigabytes`` GB to ``path``; returns its rows."""
    rows = int(gigabytes * 1e9 // ((FEATURES + 1) * 4))
    rng = np.random.default_rng(seed)
    w = rng.normal(size=FEATURES).astype(np.float32) / np.sqrt(FEATURES)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, FEATURES + 1))
    for start in range(0, rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, rows)
        x = rng.standard_normal((stop - start, FEATURES), dtype=np.float32)
        out[start:stop, :FEATURES] = x
        out[start:stop, FEATURES] = x @ w + 0.1 * rng.standard_normal(stop - start, dtype=np.float32)
    out.flush()
    del out
    return rows


def memory_kb() -> dict[str, int]:
    """This process's resident anonymous and file-backed memory, in kB (Linux /proc)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                fields[key] = int(value.split()[0])
    return fields


def build_model(seed: int = 0):
    import torch

    from trainwell.layers import Dense
    from trainwell.models import Sequential
    from trainwell.utils import set_random_seed

    torch.set_num_threads(THREADS)
    set_random_seed(seed)
    model = Sequential([Dense(64, activation="relu", input_shape=(FEATURES,)), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def run_streamed(path: str, batch_size: int, epochs: int, cap_bytes: int) -> dict:
    """The capped child: fit from a PyDataset over the memory-mapped file."""
    resource.setrlimit(resource.RLIMIT_DATA, (cap_bytes, cap_bytes))
    from trainwell.utils import PyDataset

    peak = {"RssAnon": 0, "RssFile": 0}

    class MappedBatches(PyDataset):
        def __init__(self):
            super().__init__()
            self.data = np.load(path, mmap_mode="r")
            self.map = self.data._mmap  # the mmap object under the array, for madvise
            self.offset = self.data.offset
            self.row_bytes = self.data.shape[1] * 4

        def __len__(self):
            return -(-self.data.shape[0] // batch_size)

        def __getitem__(self, index):
            rows = self.data[index * batch_size:(index + 1) * batch_size]
            x, y = np.array(rows[:, :FEATURES]), np.array(rows[:, FEATURES:])  # copies: the pages can go
            start = self.offset + index * batch_size * self.row_bytes
            begin = start - start % mmap.PAGESIZE
            self.map.madvise(mmap.MADV_DONTNEED, begin, start + rows.nbytes - begin)
            if index % 32 == 0:
                for key, value in memory_kb().items():
                    peak[key] = max(peak[key], value)
            return x, y

    data = MappedBatches()
    model = build_model()
    started = time.perf_counter()
    history = model.fit(data, epochs=epochs, verbose=0, diagnostics="off")
    seconds = time.perf_counter() - started
    return {"rows": data.data.shape[0] * epochs, "seconds": seconds,
            "final_loss": history.history["loss"][-1], "peak_rss_anon_mb": peak["RssAnon"] / 1024,
            "peak_rss_file_mb": peak["RssFile"] / 1024, "cap_mb": cap_bytes / 2**20}


def run_in_memory(path: str, batch_size: int, epochs: int, shuffle: bool = True) -> dict:
    """The uncapped child: the same fit on the whole file loaded as one array."""
    data = np.load(path)
    x, y = data[:, :FEATURES], data[:, FEATURES:]
    model = build_model()
    started = time.perf_counter()
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=shuffle, verbose=0,
                        diagnostics="off")
    seconds = time.perf_counter() - started
    return {"rows": x.shape[0] * epochs, "seconds": seconds, "final_loss": history.history["loss"][-1],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(mode: str, path: str, args) -> dict:
    """Run one fit in a fresh process (so neither inherits the other's memory) and return its figures."""
    cmd = [sys.executable, "-m", "bench.pydataset", "--child", mode, "--path", path,
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--cap-gb", str(args.cap_gb)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.5, help="size of the data file (GB)")
    parser.add_argument("--cap-gb", type=float, default=1.0, help="data-memory cap of the streamed fit (GiB)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3, help="fits of each kind, alternating")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "streamed":
        print(json.dumps(run_streamed(args.path, args.batch_size, args.epochs, int(args.cap_gb * 2**30))))
        return {}
    if args.child in ("in_memory", "in_memory_unshuffled"):
        shuffle = args.child == "in_memory"
        print(json.dumps(run_in_memory(args.path, args.batch_size, args.epochs, shuffle)))
        return {}
    with tempfile.TemporaryDirectory(prefix="trainwell-bench-") as tmp:
        path = os.path.join(tmp, "data.npy")
        started = time.perf_counter()
        rows = write_data(path, args.gb)
        results = {"file_gb": os.path.getsize(path) / 1e9, "rows": rows, "batch_size": args.batch_size,
                   "epochs": args.epochs, "repeats": args.repeats,
                   "write_seconds": time.perf_counter() - started}
        tries = {kind: [] for kind in KINDS}
        for _ in range(args.repeats):
            for kind in tries:
                tries[kind].append(child(kind, path, args))
    for kind, runs in tries.items():
        best = min(runs, key=lambda run: run["seconds"])
        results[kind] = {**best, "all_seconds": [run["seconds"] for run in runs],
                         "rows_per_second": best["rows"] / best["seconds"]}
    for kind in KINDS[1:]:
        results[f"streamed_over_{kind}"] = (results["streamed"]["rows_per_second"]
                                            / results[kind]["rows_per_second"])
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
