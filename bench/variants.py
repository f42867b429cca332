"""Benchmark: the wages and titanic models as users change them (issue 19, point 4).

Each variant of the two small workloads (``bench.workloads``) is trained by

- trainwell on its fused step (the default, ``fused``); on its plain path as a model the fused
  step does not cover takes it (``plain``: autograd's gradients, the flat optimizer update of
  ``fastpath.FlatUpdateStep``; forced here by making ``fastpath.unsupported`` give a reason);
  and on the autograd step with torch.optim (``torch_optim``: ``training.FUSED_STEP = False``,
  what every variant but the plain model took before this work);
- the lean hand-written torch loop of ``bench.peers.torch_lean``, extended with the same change
  (input standardisation in the forward, ``F.dropout``, the L2 penalty in the loss,
  ``F.batch_norm`` with Keras's momentum and epsilon, ``F.leaky_relu``, a weighted loss);
- scikit-learn's MLP where it can express the same model: the plain model, L2 (``alpha``, scaled
  to Keras's per-batch penalty), Normalization (a ``StandardScaler`` pipeline) and the weights
  (``fit(sample_weight=...)``); Dropout, BatchNormalization and leaky_relu it cannot.

Variants: ``plain``; ``normalization`` (an adapted Normalization first); ``dropout`` (Dropout(0.2)
after each hidden layer); ``l2`` (``kernel_regularizer=l2(0.01)`` on every layer);
``batchnorm`` (BatchNormalization after each hidden layer); ``leaky_relu`` (the hidden
activation); ``weights`` (``class_weight={0: 1, 1: 2}`` on titanic, per-row ``sample_weight`` on
wages, which has no classes).

Everything runs in one process with one thread (trainwell picks it for these sizes; the lean loop
and scikit-learn get it too, which spares them the 2-thread penalty of a shared machine, see
NOTES.md section 1). After one untimed fit of each, ``--rounds`` rounds each run one block per
(workload, variant), the blocks in a shuffled order: the plain model's fused fit and one fit of
every peer of the variant, back to back in a shuffled order. The ratios are taken within a block
(about a second long), so the machine's swings in speed, which last longer, cancel out of them;
the tables give the median seconds per fit and the median of the per-block ratios. trainwell fits
with ``diagnostics='off'`` so the ratios compare the training steps, not the doctor's fixed cost.

Run with ``python -m bench.variants [--rounds 5] [--workloads wages,titanic] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from bench.peers import sklearn_mlp, torch_lean
from bench.workloads import MODEL_SEED, WORKLOADS, Workload, one_hot
from trainwell import fastpath, training
from trainwell.layers import BatchNormalization, Dense, Dropout, Input, Normalization
from trainwell.models import Sequential
from trainwell.optimizers import Adam
from trainwell.regularizers import l2
from trainwell.utils import set_random_seed

VARIANTS = ("plain", "normalization", "dropout", "l2", "batchnorm", "leaky_relu", "weights")
PEERS = ("fused", "plain", "torch_optim", "lean", "sklearn")
L2 = 0.01
DROPOUT = 0.2
# Variants scikit-learn's MLP can express as the same model.
SKLEARN_VARIANTS = ("plain", "normalization", "l2", "weights")


def weights_for(spec: Workload, y: np.ndarray) -> np.ndarray:
    """Per-row weights of the ``weights`` variant: class weights {0: 1, 1: 2}, or a fixed ramp."""
    if spec.is_classification:
        return np.where(y == 1, 2.0, 1.0).astype(np.float32)
    return np.linspace(0.5, 1.5, len(y)).astype(np.float32)


# -- trainwell ---------------------------------------------------------------------------------

_UNSUPPORTED = fastpath.unsupported


def trainwell_fit(spec: Workload, variant: str, x, y, path: str) -> None:
    """One fit on ``path``: 'fused', 'plain' (the fallback with the flat update) or 'torch_optim'."""
    training.FUSED_STEP = path != "torch_optim"
    fastpath.unsupported = (lambda *args, **kwargs: "benchmark") if path == "plain" else _UNSUPPORTED
    set_random_seed(MODEL_SEED)
    split = spec.split_index(len(x))
    act = "leaky_relu" if variant == "leaky_relu" else "relu"
    reg = l2(L2) if variant == "l2" else None
    layers = [Input(shape=(x.shape[1],))]
    if variant == "normalization":
        norm = Normalization()
        norm.adapt(x[:split])
        layers.append(norm)
    for units in spec.hidden:
        layers.append(Dense(units, activation=act, kernel_regularizer=reg))
        if variant == "dropout":
            layers.append(Dropout(DROPOUT))
        if variant == "batchnorm":
            layers.append(BatchNormalization())
    layers.append(Dense(spec.n_outputs, activation=spec.output_activation, kernel_regularizer=reg))
    model = Sequential(layers)
    extra = {"metrics": ["accuracy"]} if spec.is_classification else {}
    model.compile(optimizer=Adam(learning_rate=spec.learning_rate), loss=spec.loss, **extra)
    targets = one_hot(y, spec.n_classes) if spec.is_classification else y.reshape(-1, 1)
    weights = {}
    if variant == "weights":
        if spec.is_classification:
            weights["class_weight"] = {0: 1.0, 1: 2.0}
        else:
            weights["sample_weight"] = weights_for(spec, y)
    model.fit(x, targets, batch_size=spec.batch_size, epochs=spec.epochs,
              validation_split=spec.validation_split, verbose=0, diagnostics="off", **weights)


# -- the lean torch loop, with the same changes -----------------------------------------------

def lean_fit(spec: Workload, variant: str, x, y) -> None:
    model = torch_lean.build(spec, x.shape[1])
    kernels = [kernel for kernel, _ in model.params]
    split = spec.split_index(len(x))
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(torch_lean.prepare_targets(spec, y))
    w_t = torch.from_numpy(weights_for(spec, y))
    mean, std = x_t[:split].mean(0), x_t[:split].std(0, unbiased=False).clamp_min(1e-7)
    stats = [(torch.zeros(u), torch.ones(u)) for u in spec.hidden]

    def forward(xb, train):
        if variant == "normalization":
            xb = (xb - mean) / std
        for i, (kernel, bias) in enumerate(model.params[:-1]):
            h = torch.addmm(bias, xb, kernel)
            xb = F.leaky_relu(h, 0.2) if variant == "leaky_relu" else h.relu_()
            if variant == "dropout":
                xb = F.dropout(xb, DROPOUT, training=train)
            if variant == "batchnorm":
                xb = F.batch_norm(xb, *stats[i], training=train, momentum=0.01, eps=1e-3)
        kernel, bias = model.params[-1]
        return torch.addmm(bias, xb, kernel)

    def loss_of(out, yb, wb):
        if variant != "weights":
            loss = (F.cross_entropy if spec.is_classification else F.mse_loss)(out, yb)
        elif spec.is_classification:
            loss = (F.cross_entropy(out, yb, reduction="none") * wb).mean()
        else:
            loss = (F.mse_loss(out, yb, reduction="none")[:, 0] * wb).mean()
        if variant == "l2":
            loss = loss + L2 * sum(k.square().sum() for k in kernels)
        return loss

    optimizer = torch.optim.Adam(model.parameters(), lr=spec.learning_rate, eps=1e-7, fused=True)
    for _ in range(spec.epochs):
        perm = torch.randperm(split)
        total = torch.zeros(())
        for start in range(0, split, spec.batch_size):
            idx = perm[start:start + spec.batch_size]
            loss = loss_of(forward(x_t[idx], True), y_t[idx], w_t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        with torch.inference_mode():
            loss_of(forward(x_t[split:], False), y_t[split:], w_t[split:])


# -- scikit-learn --------------------------------------------------------------------------------

def sklearn_fit(spec: Workload, variant: str, x, y) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = sklearn_mlp.build(spec, x.shape[1])
    if variant == "l2":
        # sklearn adds alpha / (2 * batch) * sum(w**2) to each batch's loss, which is half the
        # squared error for regression and the log loss for classification; Keras adds l2 * sum(w**2).
        est.set_params(alpha=L2 * spec.batch_size * (2.0 if spec.is_classification else 1.0))
    split = spec.split_index(len(x))
    kwargs = {}
    if variant == "weights":
        kwargs["sample_weight"] = weights_for(spec, y)[:split]
    if variant == "normalization":
        est = make_pipeline(StandardScaler(), est)
        kwargs = {}
    with warnings.catch_warnings():
        # Reaching max_iter is the point here, not a convergence problem.
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x[:split], y[:split], **kwargs)


def run_one(spec, variant, peer, x, y) -> float:
    start = time.perf_counter()
    if peer in ("fused", "plain", "torch_optim"):
        trainwell_fit(spec, variant, x, y, peer)
    elif peer == "lean":
        lean_fit(spec, variant, x, y)
    else:
        sklearn_fit(spec, variant, x, y)
    return time.perf_counter() - start


def peers_of(variant: str) -> list[str]:
    return [peer for peer in PEERS if peer != "sklearn" or variant in SKLEARN_VARIANTS]


def time_blocks(names, data, rounds: int, seed: int = 0):
    """Seconds per fit of every (workload, variant, peer), and per-block ratios (see the module doc).

    Returns:
        ``times[(workload, variant, peer)]``: seconds (the plain model's fused fits include the
        reference runs of the other blocks); ``ratios[(workload, variant, key)]``: per-block
        ratios, keys "vs plain model", "vs lean", "vs sklearn" (the fused fit ÷ that one) and
        "plain path vs lean".
    """
    times = {(name, variant, peer): []
             for name in names for variant in VARIANTS for peer in peers_of(variant)}
    ratios = {}
    order = random.Random(seed)
    blocks = [(name, variant) for name in names for variant in VARIANTS]
    for _ in range(rounds):
        order.shuffle(blocks)
        for name, variant in blocks:
            runs = [(variant, peer) for peer in peers_of(variant)]
            if variant != "plain":
                runs.append(("plain", "fused"))
            order.shuffle(runs)
            took = {}
            for run in runs:
                took[run] = run_one(WORKLOADS[name], run[0], run[1], *data[name])
                times[(name, *run)].append(took[run])
            fused = took[(variant, "fused")]
            lean = took[(variant, "lean")]
            block = {"vs plain model": fused / took[("plain", "fused")], "vs lean": fused / lean,
                     "plain path vs lean": took[(variant, "plain")] / lean}
            if (variant, "sklearn") in took:
                block["vs sklearn"] = fused / took[(variant, "sklearn")]
            for key, value in block.items():
                ratios.setdefault((name, variant, key), []).append(value)
    return times, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", default="wages,titanic")
    parser.add_argument("--json", default=None, help="also write every timing to this file")
    parser.add_argument("--results", default=None,
                        help="replace the variants section of this RESULTS.md (appended if absent)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    from bench.workloads import make_data

    torch.set_num_threads(1)
    threadpool_limits(1)
    names = args.workloads.split(",")
    data = {name: make_data(WORKLOADS[name]) for name in names}
    jobs = [(name, variant, peer) for name in names for variant in VARIANTS for peer in peers_of(variant)]
    load_start = os.getloadavg()[0]
    for job in jobs:  # untimed: first-call costs (imports, allocator) out of the way
        run_one(WORKLOADS[job[0]], job[1], job[2], *data[job[0]])
    times, ratios = time_blocks(names, data, args.rounds)
    header = [f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds, one thread; "
              f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end "
              f"(2 cores shared with other work when above ~1); {_batch_norm_kernels()}.", ""]
    text = "\n".join(header + report(names, times, ratios))
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({" ".join(k): v for k, v in times.items()}, f, indent=1)
    if args.results:
        write_section(args.results, text, args)


def _batch_norm_kernels() -> str:
    """Which kernels the fused step's BatchNormalization ran (see ``fused_layers.BatchNormStage``)."""
    from trainwell.fused_layers import compiled_batch_norm

    if compiled_batch_norm() is None:
        return "BatchNormalization on torch's kernels (numba not installed, or TRAINWELL_NUMBA=0)"
    import numba

    return f"BatchNormalization on numba {numba.__version__}'s compiled loops"


def write_section(path: str, text: str, args) -> None:
    """Replace RESULTS.md's variants section (from ``report.VARIANTS_MARKER`` on) with ``text``."""
    from bench.report import VARIANTS_MARKER

    with open(path, encoding="utf-8") as f:
        old = f.read()
    at = old.find(VARIANTS_MARKER)
    keep = (old if at < 0 else old[:at]).rstrip("\n") + "\n\n"
    command = f"python -m bench.variants --rounds {args.rounds} --workloads {args.workloads}"
    section = (f"{VARIANTS_MARKER}\n## The models users change (issue 19)\n\n"
               f"Written by `{command} --results bench/RESULTS.md`; `bench/variants.py` says what each "
               f"variant and peer is. Median seconds per warm fit; ratios are medians of ratios taken "
               f"within a block of back-to-back fits.\n\n{text}\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(keep + section)


def report(names, times, ratios) -> list[str]:
    """Markdown tables: median seconds per fit and the median per-block ratios, one table per workload."""
    med = {job: statistics.median(v) for job, v in times.items()}
    ratio = {key: statistics.median(v) for key, v in ratios.items()}
    lines = []
    for name in names:
        lines += [f"**{name}**", "",
                  "| variant | fused | plain path | torch.optim path | lean loop | sklearn "
                  "| fused ÷ plain model fused | fused ÷ lean | fused ÷ sklearn | plain path ÷ lean |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for variant in VARIANTS:
            fused, plain, lean = (med[(name, variant, peer)] for peer in ("fused", "plain", "lean"))
            sk = med.get((name, variant, "sklearn"))
            before = med[(name, variant, "torch_optim")]
            vs_sk = ratio.get((name, variant, "vs sklearn"))
            cells = [variant, f"{fused:.3f}", f"{plain:.3f}", f"{before:.3f}", f"{lean:.3f}",
                     "n/a" if sk is None else f"{sk:.3f}", f"{ratio[(name, variant, 'vs plain model')]:.2f}",
                     f"{ratio[(name, variant, 'vs lean')]:.2f}", "n/a" if vs_sk is None else f"{vs_sk:.2f}",
                     f"{ratio[(name, variant, 'plain path vs lean')]:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines

if __name__ == "__main__":
    main()
