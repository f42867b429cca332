"""Benchmark: Keras's simple MNIST convnet, trainwell vs Keras 3 (torch backend) vs a lean torch loop;
and a functional (graph) model of Dense layers vs the same Sequential.

Convnet workload: the bundled 2,001 MNIST digits reshaped to (28, 28, 1) and scaled to [0, 1];
Conv2D(32, 3, relu) → MaxPooling2D(2) → Conv2D(64, 3, relu) → MaxPooling2D(2) → Flatten →
Dropout(0.5) → Dense(10, softmax); Adam, categorical cross-entropy, accuracy, batch 128,
``validation_split=0.1``. Each peer runs in its own process (importing Keras changes torch's
global state), one short warm-up fit first (first-call costs are not the comparison), then the
timed fit. The peers run in interleaved rounds (A B C, A B C, ...) so a busy machine disturbs
them alike; the median of the rounds is reported, with the ratios and the load average.

The lean loop is what a careful engineer writes by hand: ``nn.Conv2d`` on channels-first data
permuted once, plain tensors, a per-epoch ``randperm`` gather, ``F.cross_entropy`` on logits,
torch's Adam with Keras's epsilon, validation under ``inference_mode``.

Graph vs Sequential: the same 3-layer Dense network on synthetic data (8,192 rows, 32 features),
built both ways in one process, timed alternately.

Run with ``python -m bench.convnet [--epochs 3] [--rounds 3] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

PEERS = ("trainwell", "keras_torch", "torch_lean")
BATCH, VALIDATION_SPLIT, SEED = 128, 0.1, 0


def mnist() -> tuple[np.ndarray, np.ndarray]:
    from trainwell.datasets import load_mnist

    pixels, digits = load_mnist()
    return (pixels.reshape(-1, 28, 28, 1) / 255.0).astype("float32"), digits


def one_hot(digits: np.ndarray) -> np.ndarray:
    return np.eye(10, dtype="float32")[digits]


# ----------------------------------------------------------------------------------------- peers
def run_trainwell(x, y, epochs: int) -> tuple[float, float]:
    from trainwell.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from trainwell.models import Sequential
    from trainwell.utils import set_random_seed

    def build():
        set_random_seed(SEED)
        model = Sequential([Input(shape=(28, 28, 1)), Conv2D(32, (3, 3), activation="relu"),
                            MaxPooling2D((2, 2)), Conv2D(64, (3, 3), activation="relu"), MaxPooling2D((2, 2)),
                            Flatten(), Dropout(0.5), Dense(10, activation="softmax")])
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        return model

    build().fit(x[:256], y[:256], batch_size=BATCH, epochs=1, verbose=0)  # warm-up
    model = build()
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_split=VALIDATION_SPLIT, verbose=0)
    return time.perf_counter() - start, history.history["val_accuracy"][-1]


def run_keras_torch(x, y, epochs: int) -> tuple[float, float]:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    from keras import layers

    def build():
        keras.utils.set_random_seed(SEED)
        model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
                                  layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
                                  layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
                                  layers.Flatten(), layers.Dropout(0.5),
                                  layers.Dense(10, activation="softmax")])
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        return model

    build().fit(x[:256], y[:256], batch_size=BATCH, epochs=1, verbose=0)
    model = build()
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_split=VALIDATION_SPLIT, verbose=0)
    return time.perf_counter() - start, history.history["val_accuracy"][-1]


def run_torch_lean(x, y, epochs: int) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
            self.dense = nn.Linear(1600, 10)

        def forward(self, images):  # channels-first images; flatten in Keras's (h, w, c) order
            h = F.max_pool2d(torch.relu(self.conv1(images)), 2)
            h = F.max_pool2d(torch.relu(self.conv2(h)), 2)
            return self.dense(F.dropout(h.permute(0, 2, 3, 1).flatten(1), 0.5, self.training))

    def train(x_np, y_np, n_epochs, split):
        torch.manual_seed(SEED)
        model = Net()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        images = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous()  # once, not per batch
        labels = torch.from_numpy(y_np).argmax(1)
        cut = int(len(images) * (1 - split))
        xt, yt, xv, yv = images[:cut], labels[:cut], images[cut:], labels[cut:]
        accuracy = float("nan")
        for _ in range(n_epochs):
            model.train()
            order = torch.randperm(len(xt))
            xs, ys = xt[order], yt[order]
            for i in range(0, len(xs), BATCH):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xs[i:i + BATCH]), ys[i:i + BATCH]).backward()
                opt.step()
            if len(xv):
                model.eval()
                with torch.inference_mode():
                    accuracy = float((model(xv).argmax(1) == yv).float().mean())
        return accuracy

    train(x[:256], y[:256], 1, 0.0)
    start = time.perf_counter()
    accuracy = train(x, y, epochs, VALIDATION_SPLIT)
    return time.perf_counter() - start, accuracy


RUNNERS = {"trainwell": run_trainwell, "keras_torch": run_keras_torch, "torch_lean": run_torch_lean}


def child(peer: str, epochs: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    x, digits = mnist()
    seconds, accuracy = RUNNERS[peer](x, one_hot(digits), epochs)
    print(json.dumps({"peer": peer, "seconds": seconds, "val_accuracy": float(accuracy)}))


# --------------------------------------------------------------------------- graph vs Sequential
def graph_vs_sequential(rounds: int, threads: int) -> list[tuple[float, float]]:
    """(graph seconds, sequential seconds) per round for the same Dense network and data."""
    import torch

    from trainwell.layers import Dense, Input
    from trainwell.models import Model, Sequential
    from trainwell.utils import set_random_seed

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8192, 32)).astype("float32")
    y = (x @ rng.normal(size=(32, 1))).astype("float32")

    def sequential():
        return Sequential([Input(shape=(32,)), Dense(64, activation="relu"), Dense(64, activation="relu"),
                           Dense(1)])

    def graph():
        inputs = Input(shape=(32,))
        h = Dense(64, activation="relu")(Dense(64, activation="relu")(inputs))
        return Model(inputs, Dense(1)(h))

    def timed(build) -> float:
        set_random_seed(0)
        model = build()
        model.compile(optimizer="adam", loss="mse")
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, verbose=0)
        return time.perf_counter() - start

    timed(graph), timed(sequential)  # warm-up
    return [(timed(graph), timed(sequential)) for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.peer:
        child(args.peer, args.epochs, args.threads)
        return
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch threads: "
          f"{args.threads}; {args.epochs} epochs, {args.rounds} interleaved rounds")
    results: dict[str, list[dict]] = {peer: [] for peer in PEERS}
    for _ in range(args.rounds):
        for peer in PEERS:
            cmd = [sys.executable, "-m", "bench.convnet", "--peer", peer, "--epochs", str(args.epochs),
                   "--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
            results[peer].append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = {peer: statistics.median(r["seconds"] for r in runs) for peer, runs in results.items()}
    print(f"{'peer':<12} {'median s':>9} {'rounds (s)':<28} {'val_accuracy':>12}")
    for peer, runs in results.items():
        rounds = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(f"{peer:<12} {median[peer]:>9.2f} {rounds:<28} {runs[-1]['val_accuracy']:>12.3f}")
    print(f"trainwell / keras_torch: {median['trainwell'] / median['keras_torch']:.2f}x   "
          f"trainwell / torch_lean: {median['trainwell'] / median['torch_lean']:.2f}x")
    pairs = graph_vs_sequential(args.rounds, args.threads)
    g, s = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    paired = statistics.median(a / b for a, b in pairs)
    print(f"Dense graph Model vs Sequential (3 epochs, 8,192 x 32): graph {g:.3f} s, sequential {s:.3f} s, "
          f"ratio of medians {g / s:.2f}x, median of paired ratios {paired:.2f}x "
          f"(rounds graph/sequential: {', '.join(f'{a:.3f}/{b:.3f}' for a, b in pairs)})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
