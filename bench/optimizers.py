"""Benchmark: the wages model (``bench.workloads``) trained with each of trainwell's optimizers.

Each optimizer's fit is timed three ways, back to back in a shuffled order within a block:

- ``fused``: trainwell's default, the fused step with the optimizer's flat update
  (``fastpath.FusedUpdate``: one pass over one flat buffer of all the weights);
- ``torch_optim``: trainwell's autograd step with the optimizer's torch.optim counterpart
  (``training.FUSED_STEP = False``), which is what the fused step ran for every optimizer but
  Adam, SGD and RMSprop before their flat updates;
- ``lean``: the lean hand-written loop of ``bench.peers.torch_lean`` with torch.optim's own
  optimizer of the same name and Keras's settings where torch has one (Adam in its fused CPU
  kernel, as the lean loop of the main suite; the others in their default foreach form; torch's
  Adamax puts epsilon elsewhere, its RMSprop too, so RMSprop is left out; torch.optim has no
  Lion or Ftrl).

Ratios are per block (the fused fit ÷ the other), so the machine's slower swings cancel out;
the table gives median seconds per fit and median ratios. One thread, ``diagnostics='off'``.

Run with ``python -m bench.optimizers [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from bench.peers import torch_lean
from bench.workloads import MODEL_SEED, WORKLOADS, Workload
from trainwell import optimizers, training
from trainwell.layers import Dense, Input
from trainwell.models import Sequential
from trainwell.utils import set_random_seed

# Learning rates of the usual size for each rule on this model (Lion wants a smaller one).
OPTIMIZERS = {
    "Adam": (lambda: optimizers.Adam(0.001), lambda p: torch.optim.Adam(p, lr=0.001, eps=1e-7, fused=True)),
    "SGD": (lambda: optimizers.SGD(0.01, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)),
    "RMSprop": (lambda: optimizers.RMSprop(0.001), None),  # torch's puts epsilon outside the root
    "Adagrad": (lambda: optimizers.Adagrad(0.01),
                lambda p: torch.optim.Adagrad(p, lr=0.01, initial_accumulator_value=0.1, eps=1e-7)),
    "Adadelta": (lambda: optimizers.Adadelta(1.0),
                 lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.95, eps=1e-7)),
    "Nadam": (lambda: optimizers.Nadam(0.001),
              lambda p: torch.optim.NAdam(p, lr=0.001, eps=1e-7, momentum_decay=1.0)),
    "Adamax": (lambda: optimizers.Adamax(0.002), lambda p: torch.optim.Adamax(p, lr=0.002, eps=1e-7)),
    "Lion": (lambda: optimizers.Lion(0.0003), None),
    "Ftrl": (lambda: optimizers.Ftrl(0.05), None),
}
PEERS = ("fused", "torch_optim", "lean")


def trainwell_fit(spec: Workload, name: str, x, y, fused: bool) -> None:
    training.FUSED_STEP = fused
    try:
        set_random_seed(MODEL_SEED)
        model = Sequential([Input(shape=(x.shape[1],))]
                           + [Dense(units, activation="relu") for units in spec.hidden] + [Dense(1)])
        model.compile(optimizer=OPTIMIZERS[name][0](), loss="mse")
        model.fit(x, y.reshape(-1, 1), batch_size=spec.batch_size, epochs=spec.epochs,
                  validation_split=spec.validation_split, verbose=0, diagnostics="off")
    finally:
        training.FUSED_STEP = True


def lean_fit(spec: Workload, name: str, x, y) -> None:
    model = torch_lean.build(spec, x.shape[1])
    optimizer = OPTIMIZERS[name][1](model.parameters())
    split = spec.split_index(len(x))
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y.reshape(-1, 1))
    for _ in range(spec.epochs):
        perm = torch.randperm(split)
        for start in range(0, split, spec.batch_size):
            idx = perm[start:start + spec.batch_size]
            loss = F.mse_loss(model(x_t[idx]), y_t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.inference_mode():
            F.mse_loss(model(x_t[split:]), y_t[split:])


def peers_of(name: str) -> list[str]:
    return [peer for peer in PEERS if peer != "lean" or OPTIMIZERS[name][1] is not None]


def run_one(spec, name, peer, x, y) -> float:
    start = time.perf_counter()
    if peer == "lean":
        lean_fit(spec, name, x, y)
    else:
        trainwell_fit(spec, name, x, y, peer == "fused")
    return time.perf_counter() - start


def time_blocks(spec, x, y, rounds: int, seed: int = 0):
    """Seconds per fit of every (optimizer, peer), and per-block ratios of the fused fit to each peer."""
    times = {(name, peer): [] for name in OPTIMIZERS for peer in peers_of(name)}
    ratios = {}
    order = random.Random(seed)
    names = list(OPTIMIZERS)
    for _ in range(rounds):
        order.shuffle(names)
        for name in names:
            peers = peers_of(name)
            order.shuffle(peers)
            took = {peer: run_one(spec, name, peer, x, y) for peer in peers}
            for peer, seconds in took.items():
                times[(name, peer)].append(seconds)
                if peer != "fused":
                    ratios.setdefault((name, peer), []).append(took["fused"] / seconds)
    return times, ratios


def report(times, ratios) -> list[str]:
    med = {key: statistics.median(v) for key, v in times.items()}
    ratio = {key: statistics.median(v) for key, v in ratios.items()}
    lines = ["| optimizer | fused | torch.optim path | lean loop | fused ÷ torch.optim path | fused ÷ lean |",
             "|---|---|---|---|---|---|"]
    for name in OPTIMIZERS:
        lean = med.get((name, "lean"))
        cells = [name, f"{med[(name, 'fused')]:.3f}", f"{med[(name, 'torch_optim')]:.3f}",
                 "n/a" if lean is None else f"{lean:.3f}", f"{ratio[(name, 'torch_optim')]:.2f}",
                 "n/a" if lean is None else f"{ratio[(name, 'lean')]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    from bench.workloads import make_data

    torch.set_num_threads(1)
    threadpool_limits(1)
    spec = WORKLOADS["wages"]
    x, y = make_data(spec)
    for name in OPTIMIZERS:  # untimed: first-call costs (imports, allocator) out of the way
        for peer in peers_of(name):
            run_one(spec, name, peer, x, y)
    times, ratios = time_blocks(spec, x, y, args.rounds)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, wages, {args.rounds} rounds, one thread; "
          "median seconds per warm fit, median per-block ratios.\n")
    print("\n".join(report(times, ratios)))


if __name__ == "__main__":
    main()
