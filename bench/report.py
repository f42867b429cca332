"""Render the suite's results (the dict `bench.run` builds) as bench/RESULTS.md.

Ratios are always "peer ÷ trainwell" on a cost (seconds, seconds per row, MiB), so a ratio
above 1 means trainwell is cheaper there, and below 1 means the peer is.
"""

from __future__ import annotations

from bench.peers import PEERS
from bench.workloads import Workload

DASH = "—"
# (key in a run, column title, how to show it); costs are the ones ratios are taken of.
COLUMNS = [
    ("fit_s", "fit s (median warm)", lambda v: f"{v:.3g}"),
    ("cold_fit_s", "cold fit s", lambda v: f"{v:.3g}"),
    ("epoch_s", "s / epoch", lambda v: f"{v:.3g}"),
    ("samples_per_s", "train samples / s", lambda v: f"{v:,.0f}"),
    ("predict1_s", "predict 1 row ms", lambda v: f"{v * 1e3:.3g}"),
    ("bulk_rows_per_s", "bulk predict rows / s", lambda v: f"{v:,.0f}"),
    ("peak_rss_mib", "peak RSS MiB", lambda v: f"{v:,.0f}"),
    ("rss_before_fit_mib", "RSS before fit MiB", lambda v: f"{v:,.0f}"),
    ("train_loss", "train loss", lambda v: f"{v:.4f}"),
    ("val_loss", "val loss", lambda v: f"{v:.4f}"),
    ("train_accuracy", "train acc", lambda v: f"{v:.3f}"),
    ("val_accuracy", "val acc", lambda v: f"{v:.3f}"),
]
RATIOS = [
    ("fit_s", "Warm fit time"),
    ("cold_fit_s", "Cold fit time (first fit in a fresh process)"),
    ("predict1_s", "Predict-one-row latency"),
    ("bulk_predict_s", "Bulk predict time"),
    ("peak_rss_mib", "Peak resident memory"),
]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _spec_line(spec: dict) -> str:
    """One-line description of a workload, from its dict form."""
    w = Workload(**{**spec, "hidden": tuple(spec["hidden"])})
    task = f"{w.n_classes} classes" if w.is_classification else "regression"
    layers = "-".join(str(u) for u in (*w.hidden, w.n_outputs))
    val = f"validation_split {w.validation_split}" if w.validation_split else "no validation"
    opt = f"{w.optimizer} lr {w.learning_rate}"
    return (
        f"{w.n_samples:,} x {w.n_features}, {task}; Dense {layers} ({w.loss}); {opt}; batch {w.batch_size}; "
        f"{w.epochs} epoch{'s' if w.epochs != 1 else ''}; {val}; cold fit + {w.repeats} warm fit(s)"
    )


def _ordered(runs: list[dict]) -> tuple[list[str], list[str]]:
    """Workloads in run order, peers in registry order."""
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    seen = {r["peer"] for r in runs}
    return workloads, [p for p in PEERS if p in seen]


def _secs(v) -> str:
    """Seconds as milliseconds (or the error text as it is)."""
    return f"{v * 1e3:.0f} ms" if isinstance(v, (int, float)) else str(v)


def _header(doc: dict) -> list[str]:
    """Title, command, machine and versions."""
    m = doc["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        "# trainwell benchmark results",
        "",
        f"Command: `{doc['command']}`"
        + ("  (**quick smoke run: not comparable to a full run**)" if doc["quick"] else ""),
        f"Date: {doc['date']}; the whole suite took {doc['total_s'] / 60:.1f} min.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['memory_gib']} GiB; "
        f"{m['os']}; Python {m['python']}; every library limited to {m['threads']} threads.",
        "",
        f"Versions: {versions}.",
    ]
    if doc.get("trainwell_from_src"):
        lines.append("trainwell was imported from the repository's src/ (not installed).")
    start, end = doc["load_average_start"], doc["load_average_end"]
    # The end value counts the suite's own 2-thread workers; only the start says whether
    # something else was running.
    lines.append(f"Load average (1 min) at start / end: {start:.1f} / {end:.1f} (the end includes the "
                 "suite's own workers).")
    if doc.get("rounds", 1) > 1:
        lines.append(f"On the small workloads trainwell, sklearn and torch_lean ran in {doc['rounds']} "
                     "interleaved rounds (a fresh process each); their warm fits are pooled and the other "
                     "figures are the median of the rounds (`bench.run.pool_rounds`). "
                     "The other peers ran once.")
    if start > m["cores_usable"] * 0.75:
        lines.append("**Warning: the machine was busy with other work; timings are inflated and noisy.**")
    return lines


def _startup(doc: dict, runs: list[dict], peers: list[str]) -> list[str]:
    """Import / --help times and each peer's cold import."""
    s, mm = doc["startup"], doc["matmul"]
    lines = ["", "## Start-up and machine yardstick", ""]
    lines += _table(
        ["measurement", "value"],
        [
            ["`import trainwell` (median of 5 fresh processes)", _secs(s["import_s"])],
            [f"`{s['help_command']}` (whole process, median of 5)", _secs(s["help_s"])],
            [
                f"float32 matmul, torch.mm {mm.get('size', '?')}² on {mm.get('threads', '?')} threads",
                f"{mm['torch_gflops']:.1f} GFLOP/s" if "torch_gflops" in mm else f"error: {mm.get('error')}",
            ],
            [
                "float32 matmul, numpy (same)",
                f"{mm['numpy_gflops']:.1f} GFLOP/s" if "numpy_gflops" in mm else DASH,
            ],
        ],
    )
    rows = []
    for peer in peers:
        times = sorted(r["import_s"] for r in runs if r["peer"] == peer and "import_s" in r)
        rows.append([peer, _secs(times[len(times) // 2]) if times else "error"])
    lines += ["", "Cold import of each peer's module and framework (median over its worker processes):", ""]
    return lines + _table(["peer", "import"], rows)


def _ratio_tables(runs: list[dict], workloads: list[str], peers: list[str]) -> list[str]:
    """One table per cost: peer ÷ trainwell for every workload."""
    by = {(r["peer"], r["workload"]): r for r in runs}
    others = [p for p in peers if p != "trainwell"]
    lines = ["", "## Ratios: peer ÷ trainwell (above 1: trainwell is cheaper)", ""]
    if "trainwell" not in peers:
        return lines + ["trainwell was not run."]
    for key, title in RATIOS:
        rows = []
        for peer in others:
            row = [peer]
            for w in workloads:
                mine, theirs = by.get(("trainwell", w), {}), by.get((peer, w), {})
                ok = key in mine and key in theirs and mine[key] > 0
                row.append(f"{theirs[key] / mine[key]:.2f}" if ok else DASH)
            rows.append(row)
        lines += [f"**{title}**", ""] + _table(["peer", *workloads], rows) + [""]
    return lines


def _workload_tables(runs: list[dict], workloads: list[str], peers: list[str]) -> list[str]:
    """One table per workload, a row per peer."""
    by = {(r["peer"], r["workload"]): r for r in runs}
    lines = ["## Per workload", ""]
    for w in workloads:
        spec = next((r["spec"] for r in runs if r["workload"] == w and "spec" in r), None)
        lines += [f"### {w}", "", _spec_line(spec) if spec else "", ""]
        classification = bool(spec and spec["n_classes"])
        validation = bool(spec and spec["validation_split"])
        cols = [
            c
            for c in COLUMNS
            if (classification or "accuracy" not in c[0]) and (validation or not c[0].startswith("val_"))
        ]
        base = by.get(("trainwell", w), {}).get("fit_s")
        rows = []
        for peer in peers:
            r = by.get((peer, w))
            if r is None:
                continue
            if "error" in r:
                rows.append([peer, f"error: {r['error']}"] + [""] * len(cols))
                continue
            cells = [fmt(r[key]) if r.get(key) is not None else DASH for key, _, fmt in cols]
            cells.append(f"{r['fit_s'] / base:.2f}" if base else DASH)
            rows.append([peer, *cells])
        lines += _table(["peer", *(title for _, title, _ in cols), "fit ÷ trainwell"], rows) + [""]
    return lines


def _efficiency(doc: dict, runs: list[dict], peers: list[str]) -> list[str]:
    """Achieved FLOP rate of the big workloads against the measured matmul rate."""
    reference = doc["matmul"].get("reference_gflops")
    rows = []
    for r in runs:
        if not r.get("spec", {}).get("big") or "gflops_per_s" not in r:
            continue
        w = Workload(**{**r["spec"], "hidden": tuple(r["spec"]["hidden"])})
        share = f"{100 * r['gflops_per_s'] / reference:.1f} %" if reference else DASH
        rows.append(
            [r["workload"], r["peer"], f"{w.flops_per_epoch() / 1e9:.1f}", f"{r['gflops_per_s']:.1f}", share]
        )
    if not rows:
        return []
    rate = f"{reference:.1f} GFLOP/s" if reference else "not measured"
    lines = [
        "## Compute efficiency of the big workloads",
        "",
        f"Share of this machine's float32 matmul rate ({rate}, the better of torch and "
        "numpy) reached by the warm fit. FLOPs per epoch = 6 x n_train x sum(in x out) "
        "+ 2 x n_val x sum(in x out).",
        "",
    ]
    return (
        lines
        + _table(["workload", "peer", "GFLOP / epoch", "achieved GFLOP/s", "% of matmul rate"], rows)
        + [""]
    )


NOTES = """## How to read this

- Every (peer, workload) ran in its own fresh process, one after another, with 2 threads.
- *cold fit*: the first fit in that process (lazy initialisation, tracing and compilation
  included). *fit*: median of the warm fits after it; each builds a new model, so per-fit set-up
  (e.g. Keras building its train function) is included, as a user running `fit` again sees it.
- *s / epoch* and *train samples / s* come from the warm fit time and the training rows
  (validation rows excluded; their forward pass is inside the fit time).
- *predict 1 row*: median over many calls of the peer's normal predict call on one row, after
  warm-up. *bulk predict*: the same call on every row (median of 3, of 1 for the big workloads).
- *peak RSS*: the worker process's high-water mark (data, framework and all fits);
  *RSS before fit* is the same process after import and data generation, so the difference
  is what fitting and predicting added.
- Losses and accuracies are computed by the suite from each peer's predictions (MSE;
  categorical cross-entropy with probabilities clipped to [1e-7, 1 - 1e-7]) on the training
  rows and on the held-out last rows. sklearn is fitted on the training rows only and skips
  the per-epoch validation pass the other peers pay for.
- See bench/README.md for what each peer is and what differs between them.
"""


# RESULTS.md from this marker on is written by `python -m bench.variants`; a suite run keeps it.
VARIANTS_MARKER = "<!-- bench.variants -->"


def kept_variants(previous: str) -> str:
    """The variants section of an earlier RESULTS.md ("" if it has none), to append to a new one."""
    at = previous.find(VARIANTS_MARKER)
    return "" if at < 0 else "\n" + previous[at:]


def render(doc: dict) -> str:
    """The whole RESULTS.md text.

    Args:
        doc: the dict written to results.json by `bench.run.main`.

    Returns:
        Markdown text ending in a newline.
    """
    runs = doc["runs"]
    workloads, peers = _ordered(runs)
    lines = _header(doc) + _startup(doc, runs, peers) + _ratio_tables(runs, workloads, peers)
    lines += _workload_tables(runs, workloads, peers) + _efficiency(doc, runs, peers) + [NOTES]
    return "\n".join(lines)
