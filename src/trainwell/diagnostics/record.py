"""What the monitor writes down during a fit, and what every detector reads.

The record holds plain Python numbers only (no tensors), so detectors are pure functions of
it and can be tested on hand-made records without training anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LayerInfo:
    """The parts of a layer the detectors care about.

    Args:
        name: layer name.
        kind: class name ('Dense', 'Activation', 'Normalization', ...).
        activation: activation name, or None for layers without one.
        units: output width of a Dense layer, else None.
        is_output: True for the last layer of the model.
        initializer: the kernel initializer's name for Dense layers.
    """

    name: str
    kind: str
    activation: str | None = None
    units: int | None = None
    is_output: bool = False
    initializer: str | None = None


@dataclass
class Probe:
    """The network's internals on the probe rows at one moment of training.

    Args:
        epoch: -1 before training, else the 0-based epoch after which it was taken.
        loss: the loss on the probe rows (nan when it could not be computed).
        dead: ReLU-family layer name → per-unit flags, True when the unit outputs 0 for every row.
        saturated: tanh/sigmoid hidden layer name → fraction of outputs on the flat part.
        signal: Dense layer names, input to output, with the RMS of the loss gradient at the
            layer's pre-activation (the back-propagated signal).
        grad_norms: Dense layer name → norm of the kernel's gradient.
        weight_norms: Dense layer name → norm of the kernel.
        weights_finite: all weights are finite.
        grads_finite: all probed gradients are finite.
    """

    epoch: int
    loss: float = math.nan
    dead: dict[str, list[bool]] = field(default_factory=dict)
    saturated: dict[str, float] = field(default_factory=dict)
    signal: list[tuple[str, float]] = field(default_factory=list)
    grad_norms: dict[str, float] = field(default_factory=dict)
    weight_norms: dict[str, float] = field(default_factory=dict)
    weights_finite: bool = True
    grads_finite: bool = True


@dataclass
class RunRecord:
    """Everything known about one fit; detectors read it and add to ``findings``.

    Static part (known before the first step): the model, the loss, the data statistics.
    Dynamic part: per-epoch logs and learning rates, probes, update-to-weight ratios.
    """

    layers: list[LayerInfo] = field(default_factory=list)
    loss_name: str = ""
    loss_kind: str = "regression"  # 'binary', 'categorical', 'sparse' or 'regression'
    from_logits: bool = False
    optimizer: str = ""
    n_train: int = 0
    n_features: int = 0
    n_params: int = 0
    inputs_normalized_in_model: bool = False
    # Statistics of what enters the first Dense layer (after leading Normalization layers).
    x_mean: list[float] = field(default_factory=list)
    x_std: list[float] = field(default_factory=list)
    # The raw inputs' range (before any layer): 0-255 whole numbers over many columns are pixels.
    x_min: float = math.nan
    x_max: float = math.nan
    x_integer: bool = False
    # Statistics of the targets (from the probe rows).
    y_min: float = math.nan
    y_max: float = math.nan
    y_mean: float = math.nan
    y_std: float = math.nan
    y_distinct: int = 0
    y_integer: bool = False
    y_columns: int = 1
    baseline_loss: float = math.nan  # loss of predicting the mean / the class frequencies
    epochs_planned: int = 0
    stopped_early: bool = False  # a callback (EarlyStopping, ...) ended the fit before epochs_planned
    restored_epoch: int | None = None  # 0-based epoch whose weights EarlyStopping restored at the end
    penalty_start: float = 0.0  # the regularizers' penalty before training (the probe loss leaves it out)
    steps_per_epoch: int = 0
    epochs: list[int] = field(default_factory=list)
    logs: list[dict[str, float]] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    update_ratios: dict[int, dict[str, float]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    findings: list = field(default_factory=list)

    # -- conveniences the detectors share ------------------------------------------------
    def series(self, key: str) -> list[float]:
        """Per-epoch values of a log key ('loss', 'val_loss', ...); epochs without it are skipped."""
        return [float(logs[key]) for logs in self.logs if key in logs]

    @property
    def output(self) -> LayerInfo | None:
        return self.layers[-1] if self.layers else None

    @property
    def dense_layers(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.kind == "Dense"]

    @property
    def first_probe(self) -> Probe | None:
        return self.probes[0] if self.probes else None

    @property
    def last_probe(self) -> Probe | None:
        return self.probes[-1] if self.probes else None

    @property
    def learning_rate(self) -> float:
        """The learning rate at the start of training (nan when unknown)."""
        return self.learning_rates[0] if self.learning_rates else math.nan

    def has(self, *codes: str) -> bool:
        """Whether an earlier detector already reported one of ``codes`` as a problem."""
        return any(f.code in codes and f.is_problem for f in self.findings)
