"""What the training doctor costs: fit time with diagnostics='auto' (and 'full') against 'off'.

Three measures per workload, on one CPU thread (the machine may be shared):

- the median wall time of several fits per mode, the modes interleaved so that a change in the
  machine's load hits all of them alike; overhead = median(auto) / median(off) - 1;
- the same with the process's CPU time (``time.process_time``), which a busy machine distorts
  less: time spent waiting for a core is not counted;
- the CPU time spent inside the monitor itself (its hooks plus the detectors), summed per fit
  with a stopwatch around each call, as a share of the fit's CPU time with diagnostics off.

Usage:
    python -m bench.diagnostics_overhead                 # wages, titanic, digits; 7 fits per mode
    python -m bench.diagnostics_overhead --repeats 11 --workloads wages
    python -m bench.diagnostics_overhead --l2 0.01 --no-full   # every Dense with kernel_regularizer=l2(0.01)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import trainwell.diagnostics as diagnostics_module
from bench.peers.trainwell_peer import build, prepare_targets
from bench.workloads import WORKLOADS, make_data

HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end", "findings")


class Stopwatch:
    """CPU seconds spent inside the monitors' hooks during the current fit."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        return timed


def install(stopwatch: Stopwatch) -> None:
    """Make ``fit`` build monitors whose hooks run under ``stopwatch``."""
    original = diagnostics_module.monitor.monitor_for_fit

    def timed_monitor(model, mode, data):
        monitor = original(model, mode, data)
        for hook in HOOKS:
            setattr(monitor, hook, stopwatch.wrap(getattr(monitor, hook)))
        return monitor

    diagnostics_module.monitor_for_fit = timed_monitor


L2_FACTOR = None
"""Set by --l2: every Dense layer gets kernel_regularizer=l2(L2_FACTOR) (issue 18 measured +120%)."""


def build_model(spec, n_features):
    model = build(spec, n_features)
    if L2_FACTOR is not None:
        from trainwell.regularizers import l2

        for layer in model.layers:
            layer.kernel_regularizer = l2(L2_FACTOR)
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        model.compile(optimizer=optimizer, loss=model.loss, metrics=model.metrics_identifiers)
    return model


def one_fit(spec, X, y, mode: str, stopwatch: Stopwatch) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, CPU seconds inside the monitor) of one fit."""
    model = build_model(spec, X.shape[1])
    stopwatch.seconds = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(
        X,
        y,
        batch_size=spec.batch_size,
        epochs=spec.epochs,
        validation_split=spec.validation_split,
        verbose=0,
        diagnostics=mode,
    )
    return time.perf_counter() - wall, time.process_time() - cpu, stopwatch.seconds


def measure(name: str, repeats: int, modes: tuple[str, ...], stopwatch: Stopwatch) -> dict:
    spec = WORKLOADS[name]
    X, labels = make_data(spec)
    y = prepare_targets(spec, labels)
    for mode in modes:  # warm-up: first-call costs (imports, allocator) are not the doctor's
        one_fit(spec, X, y, mode, stopwatch)
    runs = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode in modes:
            runs[mode].append(one_fit(spec, X, y, mode, stopwatch))
    med = {mode: [statistics.median(column) for column in zip(*runs[mode])] for mode in modes}
    off_wall, off_cpu, _ = med["off"]
    row = {"workload": name, "off_s": off_wall, "off_cpu_s": off_cpu}
    for mode in modes[1:]:
        wall, cpu, inside = med[mode]
        row.update(
            {
                f"{mode}_s": wall,
                f"{mode}_overhead": wall / off_wall - 1,
                f"{mode}_cpu_s": cpu,
                f"{mode}_cpu_overhead": cpu / off_cpu - 1,
                f"{mode}_monitor_s": inside,
                f"{mode}_monitor_share": inside / off_cpu,
            }
        )
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["wages", "titanic", "digits"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-full", action="store_true", help="measure 'auto' only")
    parser.add_argument("--l2", type=float, default=None, help="kernel_regularizer=l2(L2) on every Dense")
    args = parser.parse_args(argv)
    global L2_FACTOR
    L2_FACTOR = args.l2
    torch.set_num_threads(1)
    stopwatch = Stopwatch()
    install(stopwatch)
    modes = ("off", "auto") if args.no_full else ("off", "auto", "full")
    rows = []
    print(
        f"{'workload':9s} {'mode':5s} {'wall s':>7s} {'wall +%':>8s} {'cpu s':>7s} {'cpu +%':>8s} "
        f"{'monitor ms':>10s} {'monitor %':>9s}"
    )
    for name in args.workloads:
        row = measure(name, args.repeats, modes, stopwatch)
        rows.append(row)
        print(f"{name:9s} {'off':5s} {row['off_s']:7.3f} {'':>8s} {row['off_cpu_s']:7.3f}")
        for m in modes[1:]:
            print(
                f"{'':9s} {m:5s} {row[f'{m}_s']:7.3f} {100 * row[f'{m}_overhead']:+7.1f}% "
                f"{row[f'{m}_cpu_s']:7.3f} {100 * row[f'{m}_cpu_overhead']:+7.1f}% "
                f"{1000 * row[f'{m}_monitor_s']:10.1f} {100 * row[f'{m}_monitor_share']:8.1f}%"
            )
    return rows


if __name__ == "__main__":
    main()
