"""GPU check: the models users build next, trained on CUDA, against the CPU and a lean torch loop.

For each workload (Keras's simple MNIST convnet on the bundled digits, a two-input functional
model, the course's wages Dense model) it trains the same seeded model on the CPU and on the GPU
and prints the final losses side by side (they agree to float32 rounding of a different kernel
order, not bit for bit), then times warm fits on the GPU: trainwell against a lean hand-written
torch loop of the same convnet (channels-first, ``F.cross_entropy`` on logits, torch's Adam).

Run with ``python -m bench.gpu_check [--epochs 3]``; prints Markdown. Without CUDA it says so
and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.convnet import BATCH, mnist, one_hot


def convnet():
    from trainwell.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from trainwell.models import Sequential

    model = Sequential([Input(shape=(28, 28, 1)), Conv2D(32, (3, 3), activation="relu"),
                        MaxPooling2D((2, 2)), Conv2D(64, (3, 3), activation="relu"), MaxPooling2D((2, 2)),
                        Flatten(), Dropout(0.5), Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def two_inputs():
    from trainwell import Input, Model
    from trainwell.layers import Concatenate, Dense

    a, b = Input(shape=(6,), name="a"), Input(shape=(3,), name="b")
    x = Concatenate()([Dense(16, activation="relu")(a), b])
    model = Model([a, b], Dense(1, name="out")(Dense(8, activation="relu")(x)))
    model.compile(optimizer="adam", loss="mse")
    return model


def wages():
    from trainwell.layers import Dense
    from trainwell.models import Sequential

    model = Sequential([Dense(50, activation="relu", input_shape=(9,)), Dense(32, activation="relu"),
                        Dense(1)])
    model.compile(optimizer="adam", loss="mean_squared_error")
    return model


def data():
    from trainwell.datasets import load_wages

    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(2000, 6)).astype("float32"), rng.normal(size=(2000, 3)).astype("float32")
    y2 = (xa[:, :1] - xb[:, 1:2]).astype("float32")
    wx, wy = load_wages()
    images, digits = mnist()
    return {"convnet": (convnet, images, one_hot(digits)), "two_inputs": (two_inputs, [xa, xb], y2),
            "wages": (wages, wx, wy)}


def fit(build, x, y, device: str, epochs: int) -> tuple[float, float]:
    from trainwell.utils import set_random_seed

    set_random_seed(0)
    model = build()
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_split=0.1, verbose=0,
                        device=device, diagnostics="off")
    if device == "cuda":
        torch.cuda.synchronize()
    return history.history["loss"][-1], time.perf_counter() - start


def lean_convnet(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """The same convnet written by hand on the GPU; returns the fit's wall time."""
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    dev = torch.device("cuda")
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10)).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    n = int(len(x) * 0.9)
    xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous().to(dev)
    yt = torch.tensor(y.argmax(1)).to(dev)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n, device=dev)
        for i in range(0, n, BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        with torch.inference_mode():
            net.eval()
            F.cross_entropy(net(xt[n:]), yt[n:]).item()
            net.train()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA device: nothing to check.")
        return
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}\n")
    print("| workload | final loss, CPU | final loss, GPU | warm GPU fit (s), median |")
    print("|---|---|---|---|")
    workloads = data()
    for name, (build, x, y) in workloads.items():
        cpu_loss, _ = fit(build, x, y, "cpu", args.epochs)
        fit(build, x, y, "cuda", 1)  # warm-up: CUDA context, kernels
        runs = [fit(build, x, y, "cuda", args.epochs) for _ in range(args.rounds)]
        gpu_loss = runs[0][0]
        print(f"| {name} | {cpu_loss:.5f} | {gpu_loss:.5f} | {statistics.median(t for _, t in runs):.3f} |")
    _, images, targets = workloads["convnet"]
    lean_convnet(images, targets, 1)
    lean = statistics.median(lean_convnet(images, targets, args.epochs) for _ in range(args.rounds))
    ours = statistics.median(fit(convnet, images, targets, "cuda", args.epochs)[1]
                             for _ in range(args.rounds))
    print(f"\nconvnet, {args.epochs} epochs on the GPU: trainwell {ours:.3f} s, lean torch loop {lean:.3f} s "
          f"({ours / lean:.2f}x)")


if __name__ == "__main__":
    main()
