"""The ceiling of the big workloads' matmul share: the products of one training step alone.

    python -m bench.step_ceiling

Runs exactly the matrix products of one step of `mnist` and `wide` (forward, weight gradients,
input gradients except the first layer's, as trainwell's fused step does) back to back with
preallocated outputs, through torch and through numpy, and prints their rate by the suite's
FLOP count (6 x batch x sum(in x out)) against the suite's yardstick (the faster of torch and
numpy on a 4096² product), measured in the same minute. No fit can beat its products, so this
bounds the share of the matmul rate a fit can reach with that library on this machine.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import timeit  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.workloads import WORKLOADS  # noqa: E402


def step_products(lib, batch: int, widths: list[int]):
    """A function running one step's products, and the suite's FLOP count for them."""
    if lib == "torch":
        new = torch.randn
    else:
        new = lambda *shape: np.random.rand(*shape).astype(np.float32)
    mm = (lambda a, b, out: torch.mm(a, b, out=out)) if lib == "torch" else np.matmul
    t = (lambda a: a.t()) if lib == "torch" else (lambda a: a.T)
    pairs = list(zip(widths[:-1], widths[1:]))
    ins = [new(batch, a) for a, _ in pairs]
    weights = [new(a, b) for a, b in pairs]
    outs = [new(batch, b) for _, b in pairs]
    grads = [new(a, b) for a, b in pairs]
    dx = [new(batch, a) for a, _ in pairs]

    def run():
        for x, w, o in zip(ins, weights, outs):
            mm(x, w, out=o)
        for i in range(len(pairs) - 1, -1, -1):
            mm(t(ins[i]), outs[i], out=grads[i])
            if i:
                mm(outs[i], t(weights[i]), out=dx[i])

    return run, 6 * batch * sum(a * b for a, b in pairs)


def rate(fn, flops: float, number: int) -> float:
    """Best GFLOP/s over a few repeats."""
    fn()
    return flops * number / min(timeit.repeat(fn, number=number, repeat=5)) / 1e9


def main() -> None:
    torch.set_num_threads(2)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    flops = 2 * 4096**3
    yard = {"torch": rate(lambda: torch.mm(a, b), flops, 2),
            "numpy": rate(lambda: np.matmul(a.numpy(), b.numpy()), flops, 2)}
    best = max(yard.values())
    print(f"yardstick 4096²: torch {yard['torch']:.0f} GFLOP/s, numpy {yard['numpy']:.0f} GFLOP/s")
    for name in ("mnist", "wide"):
        spec = WORKLOADS[name]
        widths = [spec.n_features, *spec.hidden, spec.n_outputs]
        for lib in ("torch", "numpy"):
            run, step_flops = step_products(lib, spec.batch_size, widths)
            r = rate(run, step_flops, 20)
            print(f"{name} step products through {lib}: {r:.0f} GFLOP/s = "
                  f"{100 * r / best:.0f} % of the yardstick")


if __name__ == "__main__":
    main()
