"""The learning-rate range test (Leslie Smith, "Cyclical Learning Rates", 2017; popularised by fastai).

Train for ``steps`` mini-batches while the learning rate grows exponentially from ``min_lr`` to
``max_lr``, recording the loss of each step. The loss first stays flat (rate too low), then falls
(useful rates), then blows up (too high). A good rate sits where the smoothed loss falls fastest,
or about a tenth of the rate at the loss's minimum.

The test runs a fresh optimizer of the model's class and settings, so the model's own optimizer
state is never touched; the weights and random state are restored afterwards. Each step is the
one ``fit`` takes (``training.select_step``: the fused Dense step or the autograd step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import training
from .._errors import ConfigError, check_number, check_positive_int
from .state import capture, restore


@dataclass
class LRFinderResult:
    """The outcome of ``find_learning_rate``.

    Attributes:
        learning_rates: the rates tried, one per step (fewer than ``steps`` if the loss blew up).
        losses: the smoothed loss at each rate (exponential moving average, bias-corrected).
        raw_losses: the loss of each step's batch.
        suggestion: the rate where the smoothed loss falls fastest (or ``min_loss_lr / 10``).
        min_loss_lr: the rate at the smoothed loss's minimum.
    """

    learning_rates: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float
    min_loss_lr: float
    method: str = "steepest"
    extra: dict = field(default_factory=dict)

    def plot(self, path=None, ax=None):
        """Plot the smoothed loss against the learning rate (log scale), marking the suggestion.

        Args:
            path: file to save the figure to (PNG, SVG, PDF by extension); None keeps it in memory.
            ax: an existing matplotlib ``Axes`` to draw on (then no figure is created or saved).

        Returns:
            The matplotlib ``Figure``.
        """
        # Figure() without pyplot: no GUI backend and no global state, safe in scripts and servers.
        from matplotlib.figure import Figure

        fig = ax.figure if ax is not None else Figure(figsize=(6, 4), layout="tight")
        ax = ax if ax is not None else fig.subplots()
        ax.plot(self.learning_rates, self.losses, label="smoothed loss")
        ax.axvline(
            self.suggestion, color="tab:red", linestyle="--", label=f"suggestion {self.suggestion:.2g}"
        )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title("Learning-rate range test")
        ax.legend()
        if path is not None:
            fig.savefig(path)
        return fig


def _check_rates(min_lr, max_lr) -> tuple[float, float]:
    min_lr = check_number(min_lr, "min_lr", "find_learning_rate()", low=0, low_open=True, example=1e-7)
    max_lr = check_number(max_lr, "max_lr", "find_learning_rate()", low=0, low_open=True, example=10.0)
    if min_lr >= max_lr:
        raise ConfigError(f"find_learning_rate(): `min_lr` ({min_lr}) must be below `max_lr` ({max_lr}). "
                          "Pass for example min_lr=1e-7, max_lr=10.")
    return float(min_lr), float(max_lr)


def find_learning_rate(
    model,
    x,
    y,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    batch_size: int = 32,
    smoothing: float = 0.9,
    stop_factor: float = 4.0,
) -> LRFinderResult:
    """Run the exponential learning-rate range test on ``model``; its weights are restored afterwards.

    Args:
        model: a compiled, built model.
        x: input tensor of shape (n_samples, n_features) on the model's device.
        y: targets as the loop prepares them (``Sequential.find_learning_rate`` does this for arrays).
        min_lr: first learning rate. Defaults to 1e-7.
        max_lr: last learning rate. Defaults to 10.
        steps: number of mini-batch steps (rates tried). Defaults to 100.
        batch_size: rows per step. Defaults to 32.
        smoothing: weight of the past in the loss's moving average. Defaults to 0.9 (about 10 steps).
        stop_factor: stop once the smoothed loss exceeds this multiple of its minimum. Defaults to 4.

    Returns:
        An ``LRFinderResult``.

    Raises:
        ConfigError: for non-positive rates, ``min_lr >= max_lr`` or a non-positive ``steps``.

    Example:
        >>> result = model.find_learning_rate(X, y)
        >>> model.optimizer.learning_rate = result.suggestion
    """
    min_lr, max_lr = _check_rates(min_lr, max_lr)
    steps = check_positive_int(steps, "steps", "find_learning_rate()")
    batch_size = check_positive_int(batch_size, "batch_size", "find_learning_rate()")
    rates = np.geomspace(min_lr, max_lr, steps).tolist()
    saved = capture(model)
    try:
        raw, smooth = _range_test(model, x, y, rates, batch_size, smoothing, stop_factor)
    finally:
        restore(model, saved)
    rates = rates[: len(raw)]
    suggestion, min_loss_lr, method = suggest(rates, smooth)
    return LRFinderResult(rates, smooth, raw, suggestion, min_loss_lr, method)


def _range_test(model, x, y, rates, batch_size, smoothing, stop_factor) -> tuple[list[float], list[float]]:
    config = {**model.optimizer.get_config(), "learning_rate": rates[0]}
    optimizer = type(model.optimizer).from_config(config)  # fresh state; the model's optimizer is untouched
    optimizer.build(model.trainable_parameters())
    # The step fit would take (the fused Dense step or the autograd step, with the same loss fusion).
    ctx = training.StepContext(model)
    ctx.metrics = []  # the test reads the loss alone; the model's metrics keep their state
    step = training.select_step(ctx, optimizer)
    batches = _batches(x.shape[0], batch_size, x.device)
    raw, smooth, average, best = [], [], 0.0, math.inf
    model.train()
    for i, lr in enumerate(rates):
        optimizer.learning_rate = lr
        idx = next(batches)
        value = float(step(ctx, optimizer, x[idx], y[idx], None))  # one sync per step: the test needs each
        average = smoothing * average + (1 - smoothing) * value    # loss to decide when to stop
        smoothed = average / (1 - smoothing ** (i + 1))
        raw.append(value)
        smooth.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > stop_factor * best:
            break
        best = min(best, smoothed)
    return raw, smooth


def _batches(n: int, batch_size: int, device):
    """Endless shuffled mini-batches of row indices from a private generator (the global one is untouched)."""
    gen = torch.Generator().manual_seed(0)
    while True:
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def suggest(rates: list[float], losses: list[float]) -> tuple[float, float, str]:
    """The suggested rate: steepest fall of the smoothed loss before its minimum, else ``min_loss_lr / 10``.

    The first tenth of the steps is skipped when looking for the steepest fall: the moving average
    has not settled there, and a lucky first batch looks like a steep descent.

    Args:
        rates: learning rates, increasing.
        losses: smoothed losses at those rates.

    Returns:
        ``(suggestion, min_loss_lr, method)`` with method 'steepest' or 'min_loss/10'.

    Example:
        >>> suggest([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.9, 0.3, 5.0])[0]
        0.01
    """
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    if not finite:
        return rates[0], rates[0], "min_loss/10"
    lowest = min(finite, key=losses.__getitem__)
    min_loss_lr = rates[lowest]
    if lowest < 2:
        return min_loss_lr / 10, min_loss_lr, "min_loss/10"
    logs = np.log10(np.asarray(rates[: lowest + 1]))
    slope = np.gradient(np.asarray(losses[: lowest + 1]), logs)[:lowest]  # the minimum itself is flat
    start = min(len(rates) // 10, lowest - 1)
    return float(rates[start + int(np.argmin(slope[start:]))]), min_loss_lr, "steepest"
