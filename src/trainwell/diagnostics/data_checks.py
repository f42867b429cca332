"""Static checks, before any step: the loss, the output layer and the targets must agree; the
inputs must be on comparable, moderate scales. They read statistics gathered once per fit.
"""

from __future__ import annotations

import math
import statistics

from .findings import Finding
from .record import RunRecord
from .registry import detector

PROBABILITY_OUTPUT = {"binary": "sigmoid", "categorical": "softmax", "sparse": "softmax"}
# Output ranges of bounded activations, for regression targets they must be able to reach.
OUTPUT_RANGE = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "relu": (0.0, math.inf),
    "relu6": (0.0, 6.0),
    "softplus": (0.0, math.inf),
    "exponential": (0.0, math.inf),
}


def _output_activation(record: RunRecord) -> str | None:
    for layer in reversed(record.layers):
        if layer.activation is not None:
            return layer.activation
        if layer.kind == "Dense":
            return "linear"
    return None


@detector
def loss_output_mismatch(record: RunRecord) -> list[Finding]:
    """The last layer's activation, the loss and the targets must agree."""
    act, kind, loss = _output_activation(record), record.loss_kind, record.loss_name
    if act is None:
        return []
    units = record.output.units or record.y_columns
    evidence = {"activation": act, "loss": loss, "units": units, "y_min": record.y_min, "y_max": record.y_max}
    if kind == "binary" and act == "softmax":
        return _mismatch(
            record, "error", evidence,
            f"The last layer uses softmax (its {units} outputs share one probability) but the loss is "
            f"{loss}, which scores each output as a separate yes/no probability.",
            "One label per sample: keep softmax with loss='categorical_crossentropy' (one-hot y) or "
            "'sparse_categorical_crossentropy' (integer y). A yes/no target: Dense(1, "
            "activation='sigmoid') with binary_crossentropy.",
        )
    if kind in ("categorical", "sparse") and (act == "sigmoid" or units == 1):
        what = "a single unit" if units == 1 else f"{units} sigmoid units"
        return _mismatch(
            record, "error", evidence,
            f"{loss} needs one probability per class that sum to 1, but the last layer has {what} "
            f"({act}); the loss cannot teach it anything useful.",
            "Two classes: Dense(1, activation='sigmoid') with loss='binary_crossentropy'. K classes: "
            "Dense(K, activation='softmax') with categorical_crossentropy.",
        )
    if kind in PROBABILITY_OUTPUT and not record.from_logits and act not in ("sigmoid", "softmax"):
        want = PROBABILITY_OUTPUT[kind]
        return _mismatch(
            record, "error", evidence,
            f"The last layer's outputs are {act}, not probabilities, but {loss} expects "
            "probabilities (it clips them to [1e-7, 1 - 1e-7]).",
            f"Use activation='{want}' on the last layer, or keep it linear and compile with the "
            "loss's from_logits=True form.",
        )
    return _continuous_target(record, evidence) + _unreachable_target(record, act, evidence)


def _mismatch(record: RunRecord, severity: str, evidence: dict, message: str, fix: str) -> list[Finding]:
    return [
        Finding(
            "loss_output_mismatch", severity, record.output.name, evidence, message, fix, ("match_output",)
        )
    ]


def _continuous_target(record: RunRecord, evidence: dict) -> list[Finding]:
    if record.loss_kind not in ("binary", "categorical") or record.y_integer or record.y_distinct <= 10:
        return []
    return _mismatch(
        record, "warning", evidence,
        f"{record.loss_name} expects class labels (0/1 or one-hot), but y takes "
        f"{record.y_distinct} distinct values from {record.y_min:.3g} to {record.y_max:.3g}: this "
        "looks like a continuous (regression) target.",
        "For a quantity use a linear Dense(1) output with loss='mean_squared_error'; for classes, "
        "turn y into labels first (e.g. y > threshold).",
    )


def _unreachable_target(record: RunRecord, act: str, evidence: dict) -> list[Finding]:
    if record.loss_kind != "regression" or act not in OUTPUT_RANGE or not math.isfinite(record.y_min):
        return []
    lo, hi = OUTPUT_RANGE[act]
    if lo <= record.y_min and record.y_max <= hi:
        return []
    return _mismatch(
        record, "error", evidence,
        f"The last layer's {act} outputs lie in [{lo:g}, {hi:g}], but the targets range from "
        f"{record.y_min:.3g} to {record.y_max:.3g}: the model cannot reach them.",
        "Use a linear output for regression: Dense(1) with no activation (or rescale y into "
        f"the {act} range).",
    )


SCALE_SPREAD = 50.0
"""A feature whose standard deviation is this many times the median feature's is 'unscaled'."""
SCALE_SIZE = 100.0
"""A feature whose typical magnitude sqrt(mean² + std²) reaches this is 'unscaled'."""


@detector
def unscaled_inputs(record: RunRecord) -> list[Finding]:
    """Features whose scales differ by orders of magnitude, or that sit far from zero."""
    if record.inputs_normalized_in_model or not record.x_std:
        return []
    stds = [s for s in record.x_std if s > 1e-8]
    if not stds:
        return []
    typical = statistics.median(stds)
    sizes = [math.hypot(m, s) for m, s in zip(record.x_mean, record.x_std)]
    wide = [j for j, s in enumerate(record.x_std) if s > SCALE_SPREAD * typical]
    big = [j for j, size in enumerate(sizes) if size >= SCALE_SIZE]
    cols = sorted(set(wide) | set(big))
    if not cols:
        return []
    show = cols[:5]
    described = ", ".join(
        f"column {j} (mean {record.x_mean[j]:.3g}, std {record.x_std[j]:.3g})" for j in show
    )
    more = f" and {len(cols) - len(show)} more" if len(cols) > len(show) else ""
    evidence = {
        "columns": cols,
        "means": [record.x_mean[j] for j in cols],
        "stds": [record.x_std[j] for j in cols],
        "median_std": typical,
        "largest_std_ratio": max(record.x_std) / typical,
    }
    if _pixels(record):
        fix = (
            "Divide the pixels by 255 inside the model: put Normalization(mean=0.0, variance=255.0**2) "
            "first. Not Normalization().adapt(X): pixels that are constant in the training images get "
            "a std of almost 0 and blow up on new images."
        )
    else:
        fix = (
            "Standardise the inputs inside the model: norm = Normalization(); norm.adapt(X_train); "
            "then put norm first: Sequential([Input(shape=(n_features,)), norm, Dense(...), ...])."
        )
    return [
        Finding(
            "unscaled_inputs",
            "warning",
            None,
            {**evidence, "pixels": _pixels(record)},
            f"Input features are on very different or large scales: {described}{more}, while the "
            f"median feature's std is {typical:.3g}. Large inputs saturate or kill units and force a small "
            "learning rate.",
            fix,
            repairs=("normalize_inputs",),
        )
    ]


PIXEL_COLUMNS = 64
"""Inputs of at least this many columns, all whole numbers in [0, 255], are taken as pixels."""


def _pixels(record: RunRecord) -> bool:
    return (
        record.x_integer
        and record.n_features >= PIXEL_COLUMNS
        and record.x_min >= 0
        and 1 < record.x_max <= 255
    )


TARGET_SIZE = 100.0
"""A regression target whose typical magnitude sqrt(mean² + std²) reaches this is 'unscaled': a freshly
initialised network outputs values of about 1, so it must first grow its weights a hundredfold."""


@detector
def unscaled_target(record: RunRecord) -> list[Finding]:
    """A regression target far from the scale of about 1 a fresh network outputs."""
    if record.loss_kind != "regression" or not math.isfinite(record.y_std):
        return []
    size = math.hypot(record.y_mean, record.y_std)
    if size < TARGET_SIZE:
        return []
    start = record.first_probe.loss if record.first_probe else math.nan
    evidence = {
        "y_mean": record.y_mean,
        "y_std": record.y_std,
        "loss_before_training": start,
        "constant_prediction_loss": record.baseline_loss,
    }
    at_start = f"the loss starts at {start:.3g}, " if math.isfinite(start) else ""
    return [
        Finding(
            "unscaled_target",
            "warning",
            None,
            evidence,
            f"The target's scale is far from the network's (mean {record.y_mean:.4g}, std "
            f"{record.y_std:.4g}): {at_start}the gradients are huge and the output layer must first "
            "grow its weights by orders of magnitude; units die and the learning rate looks too high.",
            "Standardise the target: train on (y - y.mean()) / y.std() and turn predictions back with "
            "y_pred * std + mean (`trainwell train` does this by default).",
            repairs=("standardize_target",),
        )
    ]
