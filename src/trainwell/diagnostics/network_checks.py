"""Checks of the network's internals, from the probes: dead ReLU units, exploding and vanishing
gradients (layer by layer), saturated tanh/sigmoid units.
"""

from __future__ import annotations

import math
import statistics

from .findings import Finding
from .record import RunRecord
from .registry import _epoch, _lower_lr, detector

DEAD_FRACTION = 0.4
"""A ReLU layer with at least this fraction of units silent on every probe row is reported."""


@detector
def dead_units(record: RunRecord) -> list[Finding]:
    """ReLU-family units that output zero for every probe row at the end of training."""
    first, last = record.first_probe, record.last_probe
    if last is None:
        return []
    found = []
    for name, flags in last.dead.items():
        n, n_dead = len(flags), sum(flags)
        if n == 0 or n_dead / n < DEAD_FRACTION:
            continue
        born = first.dead.get(name, flags) if first is not None else flags
        died = sum(1 for was, now in zip(born, flags) if now and not was)
        since = _dead_since(record, name, n_dead)
        severity = "error" if n_dead == n else "warning"
        lr = record.learning_rate
        evidence = {
            "dead": n_dead,
            "units": n,
            "fraction": n_dead / n,
            "died_during_training": died,
            "dead_by_epoch": None if since < 0 else since + 1,
            "learning_rate": lr,
        }
        fix, repairs = _dead_fix(record, died, lr)
        found.append(
            Finding(
                "dead_units",
                severity,
                name,
                evidence,
                f"{n_dead / n:.0%} of its {n} ReLU {_unit_word(record, name)} ({n_dead}) output zero for "
                "every probe sample "
                f"({'from the start' if since < 0 else f'dead by epoch {since + 1}'}; {died} of them were "
                "alive at the start). Dead units get no gradient and "
                "never recover.",
                fix,
                repairs=repairs,
            )
        )
    return found


def _unit_word(record: RunRecord, name: str) -> str:
    """'channels' for a convolution (a unit is a channel, dead at every position), else 'units'."""
    kind = next((layer.kind for layer in record.layers if layer.name == name), "")
    return "channels" if "Conv" in kind else "units"


def _dead_fix(record: RunRecord, died: int, lr: float) -> tuple[str, tuple[str, ...]]:
    """The fix for dead units: a lower rate only when units died during training (else it cannot help)."""
    init = (
        "use kernel_initializer='he_uniform' with bias_initializer='zeros' (the default initializers "
        "for ReLU)"
    )
    if died == 0:  # dead from the first step: the initialisation did it, at any learning rate
        return f"Units were dead before training: {init}, or activation='leaky_relu'.", (
            "default_initializers",
        )
    lower = f"learning_rate={_lower_lr(lr, record.optimizer):g}" if math.isfinite(lr) else "10x lower"
    return (
        f"Lower the learning rate ({lower}; the units died during training), {init}, or "
        "activation='leaky_relu'.",
        ("lower_learning_rate", "default_initializers"),
    )


def _dead_since(record: RunRecord, name: str, n_dead_end: int) -> int:
    # Probes are a few epochs apart, so this says "dead by then", not the exact epoch of death.
    """Epoch of the first probe from which the layer kept at least 90% of its final dead count."""
    since = record.last_probe.epoch
    for probe in reversed(record.probes):
        if sum(probe.dead.get(name, [])) < 0.9 * n_dead_end:
            break
        since = probe.epoch
    return since


SIGNAL_SHRINK = 1e-3
"""Back-propagated gradient at the first weight layer (Dense or convolution) / at the last one,
below which gradients vanish."""
SIGNAL_GROWTH = 1e2
"""The same ratio above which gradients explode."""
SATURATED_FRACTION = 0.5
"""A tanh/sigmoid hidden layer with at least this fraction of outputs on its flat part is saturated."""
SATURATION_SHRINK = 0.1
"""Saturation is reported only when the first weight layer's gradient is below this fraction of the last's."""
GRAD_TO_WEIGHT = 1e3
"""A kernel gradient this many times larger than the kernel itself (norms) has exploded."""


def _signal_ratios(record: RunRecord) -> list[float]:
    """Per probe: RMS gradient at the first weight layer's pre-activation / at the last one's."""
    ratios = []
    for probe in record.probes:
        values = [v for _, v in probe.signal]
        if (
            len(values) >= 2
            and probe.weights_finite
            and all(math.isfinite(v) for v in values)
            and values[-1] > 0
        ):
            ratios.append(values[0] / values[-1])
    return ratios


def _signal_evidence(record: RunRecord, ratio: float) -> dict:
    probe = record.last_probe
    return {
        "first_to_last_ratio": ratio,
        "signal_rms_by_layer": dict(probe.signal),
        "kernel_grad_norms": dict(probe.grad_norms),
        "probe_epochs": [p.epoch + 1 for p in record.probes],
    }


@detector
def exploding_gradients(record: RunRecord) -> list[Finding]:
    """Gradients that grow by orders of magnitude towards the input or over time, or become inf/NaN.

    ``evidence['at_start']`` says whether they were already too large before the first step: then the
    initialisation is the cause (a lower learning rate does not help), else the steps made them so.
    """
    ratios = _signal_ratios(record)
    first = record.first_probe
    # Growth before the first step is the initialisation's doing, even if the optimiser (Adam's
    # per-weight scaling) tames it later; growth in most probes is a problem at any time.
    at_start = bool(ratios and ratios[0] > SIGNAL_GROWTH and first is not None and first.epoch < 0)
    if ratios and (statistics.median(ratios) > SIGNAL_GROWTH or at_start):
        ratio = ratios[0] if at_start else statistics.median(ratios)
        evidence = {**_signal_evidence(record, ratio), "at_start": at_start}
        return [
            Finding(
                "exploding_gradients",
                "warning",
                None,
                evidence,
                f"Gradients grow {ratio:.2g}x from the last weight layer back to the first"
                f"{' from the start' if at_start else ''}: each layer amplifies them, so the early "
                "layers take huge, unstable steps.",
                *_exploding_fix(record, at_start),
            )
        ]
    broken = [p for p in record.probes if p.weights_finite and not p.grads_finite]
    if broken:
        at_start = broken[0].epoch < 0
        return [
            Finding(
                "exploding_gradients",
                "error",
                None,
                {"epoch": broken[0].epoch + 1, "at_start": at_start},
                f"Gradients became inf or NaN at {_epoch(broken[0].epoch)} while the weights were "
                "still finite.",
                *_exploding_fix(record, at_start),
            )
        ]
    return _oversized_gradients(record) or _large_initial_outputs(record)


START_LOSS = 20.0
"""A loss before training this many times the constant-prediction loss, from non-default initial
weights, means the outputs (and so the gradients) start far too large. Healthy course runs start
at 1-6 times it (wages' unscaled target gives the 6)."""
DEFAULT_INITIALIZERS = (
    "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunNormal", "LecunUniform"
)


def _large_initial_outputs(record: RunRecord) -> list[Finding]:
    first = record.first_probe
    custom = [layer.name for layer in record.dense_layers
              if layer.initializer is not None and layer.initializer not in DEFAULT_INITIALIZERS]
    if first is None or first.epoch >= 0 or not custom or not record.baseline_loss > 0:
        return []
    ratio = first.loss / record.baseline_loss
    if not ratio >= START_LOSS:  # also False for nan
        return []
    evidence = {"loss_before_training": first.loss, "constant_prediction_loss": record.baseline_loss,
                "ratio": ratio, "layers": custom, "at_start": True,
                "kernel_grad_norms": dict(first.grad_norms), "kernel_norms": dict(first.weight_norms)}
    return [
        Finding(
            "exploding_gradients",
            "warning",
            None,
            evidence,
            f"Before training the loss is {ratio:.3g} times that of a constant prediction "
            f"({first.loss:.4g} vs {record.baseline_loss:.4g}): the initial weights of "
            f"{', '.join(custom)} make the outputs, "
            "and with them the gradients, far too large.",
            *_exploding_fix(record, True),
        )
    ]


def _exploding_fix(record: RunRecord, at_start: bool) -> tuple[str, str, tuple[str, ...]]:
    """(fix, repairs): the initialisation first when the gradients were too large before any step."""
    large_init = [
        layer.name
        for layer in record.dense_layers
        if layer.initializer not in (None, *DEFAULT_INITIALIZERS)
    ]
    if at_start:
        which = f" (layers {', '.join(large_init)} use another)" if large_init else ""
        return (
            f"Use the default initializers{which}: kernel_initializer='glorot_uniform' "
            "(he_uniform for relu) and bias_initializer='zeros'; clip the gradients too (e.g. "
            "optimizer=Adam(clipnorm=1.0)). A lower learning rate alone does not help: the gradients "
            "are too large before the first step.",
            ("default_initializers", "clip_gradients"),
        )
    return (
        "Clip the gradients (e.g. optimizer=Adam(clipnorm=1.0)) and lower the learning rate 10x; keep "
        "the default kernel_initializer='glorot_uniform' (he_uniform for relu) instead of large "
        "initial weights.",
        ("clip_gradients", "lower_learning_rate"),
    )


def _oversized_gradients(record: RunRecord) -> list[Finding]:
    """Kernel gradients far larger than the kernels: one step would throw the weights far away."""
    if record.has("unscaled_inputs"):  # huge inputs give huge first-layer gradients; that finding says why
        return []
    for probe in record.probes:
        ratios = {
            name: g / probe.weight_norms[name]
            for name, g in probe.grad_norms.items()
            if probe.weight_norms.get(name, 0) > 0 and math.isfinite(g)
        }
        name = max(ratios, key=ratios.get, default=None)
        if name is None or not probe.weights_finite or ratios[name] <= GRAD_TO_WEIGHT:
            continue
        over = [layer for layer, r in ratios.items() if r > GRAD_TO_WEIGHT]
        evidence = {
            "grad_norm": probe.grad_norms[name],
            "weight_norm": probe.weight_norms[name],
            "ratio": ratios[name],
            "ratios_by_layer": ratios,
            "layers_over": over,
            "epoch": probe.epoch + 1,
            "at_start": probe.epoch < 0,
        }
        # Say what the evidence shows: one layer, several, or every layer.
        where = (
            "every layer's kernel gradient is"
            if len(over) == len(ratios) and len(ratios) > 1
            else f"the kernel gradient of {', '.join(over)} is"
        )
        return [
            Finding(
                "exploding_gradients",
                "warning",
                name if len(over) == 1 else None,
                evidence,
                f"At {_epoch(probe.epoch)} {where} over {GRAD_TO_WEIGHT:.0e} times larger than the kernel "
                f"(largest: {name}, {probe.grad_norms[name]:.3g} vs {probe.weight_norms[name]:.3g}, "
                f"{ratios[name]:.2g}x): one step throws the weights far away.",
                *_exploding_fix(record, probe.epoch < 0),
            )
        ]
    return []


@detector
def vanishing_gradients(record: RunRecord) -> list[Finding]:
    """Gradients that shrink by orders of magnitude towards the input, or saturated tanh/sigmoid units."""
    ratios = _signal_ratios(record)
    # Saturated units only matter when the gradient does shrink on its way back: in a shallow net
    # whose first layer gets about the gradient of the last, saturation alone is no problem.
    shrinks = not ratios or statistics.median(ratios) < SATURATION_SHRINK
    found = _saturation(record) if shrinks else []
    # Dead ReLU layers also stop the gradient; dead_units already explains that.
    if ratios and not record.has("dead_units", "exploding_gradients"):
        ratio = statistics.median(ratios)
        if ratio < SIGNAL_SHRINK:
            found.insert(
                0,
                Finding(
                    "vanishing_gradients",
                    "warning",
                    None,
                    _signal_evidence(record, ratio),
                    f"The gradient reaching the first weight layer is {ratio:.2g} times the one at the last "
                    f"layer ({len(record.probes[-1].signal)} layers): the early layers barely learn.",
                    "Use activation='relu' with kernel_initializer='he_uniform' in the hidden layers, keep "
                    "the default glorot_uniform rather than tiny initial weights, use fewer layers, or add "
                    "BatchNormalization() between them.",
                    repairs=("relu_activations", "default_initializers"),
                ),
            )
    return found


def _saturation(record: RunRecord) -> list[Finding]:
    last = record.last_probe
    if last is None:
        return []
    found = []
    for name, fraction in last.saturated.items():
        if fraction >= SATURATED_FRACTION:
            act = next((layer.activation for layer in record.layers if layer.name == name), "tanh")
            found.append(
                Finding(
                    "vanishing_gradients",
                    "warning",
                    name,
                    {"saturated_fraction": fraction, "activation": act},
                    f"{fraction:.0%} of its {act} outputs sit on the flat part of the curve, where the "
                    "gradient is almost zero.",
                    "Scale the inputs (a Normalization layer first), keep the default glorot_uniform "
                    "initialisation, or use activation='relu' with kernel_initializer='he_uniform'.",
                    repairs=("normalize_inputs", "default_initializers", "relu_activations"),
                )
            )
    return found
