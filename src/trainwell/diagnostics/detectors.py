"""The detectors: one small function per finding code, each reading a ``RunRecord``.

A detector takes the record and returns a list of ``Finding`` (empty when all is well). They run
in the order of ``DETECTORS``; a later detector can see what earlier ones found
(``record.has(code)``), which is how "without other explanation" is written. To add one::

    @detector
    def my_check(record):
        return [Finding("my_code", "warning", None, {...}, "what is wrong", "what to do")]

``run_detectors`` calls each inside ``try``: a detector that fails becomes an 'info' finding.

The thresholds are module constants, named and explained, so that tests and users can read them.
"""

from __future__ import annotations

import math
import statistics

from .findings import Finding, sort_findings
from .record import RunRecord

DETECTORS: list = []
"""The registered detectors, in the order they run."""


def detector(fn):
    """Register ``fn(record) -> list[Finding]`` as a detector (appended to ``DETECTORS``)."""
    DETECTORS.append(fn)
    return fn


def run_detectors(record: RunRecord, detectors=None) -> list[Finding]:
    """Run every detector on ``record``; failures become 'info' findings. Returns them sorted by severity."""
    record.findings = [_failure(where, error) for where, error in record.failures]
    for fn in DETECTORS if detectors is None else detectors:
        try:
            record.findings.extend(fn(record) or [])
        except Exception as exc:  # noqa: BLE001 - a broken detector must not hide the others
            record.findings.append(_failure(getattr(fn, "__name__", repr(fn)), f"{type(exc).__name__}: {exc}"))
    return sort_findings(record.findings)


def _failure(where: str, error: str) -> Finding:
    return Finding("detector_failed", "info", None, {"where": where, "error": error},
                   f"The training doctor could not finish '{where}' ({error}); the fit itself is unaffected.",
                   "Nothing to change in the model; please report this if it repeats.")


def _epoch(probe_epoch: int) -> str:
    """A probe's epoch in the 1-based words Keras's logs use."""
    return "the start" if probe_epoch < 0 else f"epoch {probe_epoch + 1}"


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _default_lr(optimizer: str) -> float:
    """Keras's default learning rate of an optimizer class: a safe first choice."""
    return 0.01 if optimizer == "SGD" else 0.001


def _lower_lr(lr: float, optimizer: str) -> float:
    """10x lower, or straight to Keras's default when the rate is far above it."""
    default = _default_lr(optimizer)
    return default if lr >= 10 * default else lr / 10


# ----------------------------------------------------------------------------------------------
# static checks: the model and the data, before any step


PROBABILITY_OUTPUT = {"binary": "sigmoid", "categorical": "softmax", "sparse": "softmax"}
# Output ranges of bounded activations, for regression targets they must be able to reach.
OUTPUT_RANGE = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "tanh": (-1.0, 1.0),
                "softsign": (-1.0, 1.0), "relu": (0.0, math.inf), "relu6": (0.0, 6.0),
                "softplus": (0.0, math.inf), "exponential": (0.0, math.inf)}


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
        return [Finding("loss_output_mismatch", "error", record.output.name, evidence,
                        f"The last layer uses softmax (its {units} outputs share one probability) but the loss is "
                        f"{loss}, which scores each output as a separate yes/no probability.",
                        "One label per sample: keep softmax with loss='categorical_crossentropy' (one-hot y) or "
                        "'sparse_categorical_crossentropy' (integer y). A yes/no target: Dense(1, "
                        "activation='sigmoid') with binary_crossentropy.")]
    if kind in ("categorical", "sparse") and (act == "sigmoid" or units == 1):
        what = "a single unit" if units == 1 else f"{units} sigmoid units"
        return [Finding("loss_output_mismatch", "error", record.output.name, evidence,
                        f"{loss} needs one probability per class that sum to 1, but the last layer has {what} "
                        f"({act}); the loss cannot teach it anything useful.",
                        "Two classes: Dense(1, activation='sigmoid') with loss='binary_crossentropy'. K classes: "
                        "Dense(K, activation='softmax') with categorical_crossentropy.")]
    if kind in PROBABILITY_OUTPUT and not record.from_logits and act not in ("sigmoid", "softmax"):
        want = PROBABILITY_OUTPUT[kind]
        return [Finding("loss_output_mismatch", "error", record.output.name, evidence,
                        f"The last layer's outputs are {act}, not probabilities, but {loss} expects "
                        "probabilities (it clips them to [1e-7, 1 - 1e-7]).",
                        f"Use activation='{want}' on the last layer, or keep it linear and compile with the "
                        f"loss's from_logits=True form.")]
    return _continuous_target(record, evidence) + _unreachable_target(record, act, evidence)


def _continuous_target(record: RunRecord, evidence: dict) -> list[Finding]:
    if record.loss_kind not in ("binary", "categorical") or record.y_integer or record.y_distinct <= 10:
        return []
    return [Finding("loss_output_mismatch", "warning", record.output.name, evidence,
                    f"{record.loss_name} expects class labels (0/1 or one-hot), but y takes "
                    f"{record.y_distinct} distinct values from {record.y_min:.3g} to {record.y_max:.3g}: this "
                    "looks like a continuous (regression) target.",
                    "For a quantity use a linear Dense(1) output with loss='mean_squared_error'; for classes, "
                    "turn y into labels first (e.g. y > threshold).")]


def _unreachable_target(record: RunRecord, act: str, evidence: dict) -> list[Finding]:
    if record.loss_kind != "regression" or act not in OUTPUT_RANGE or not math.isfinite(record.y_min):
        return []
    lo, hi = OUTPUT_RANGE[act]
    if lo <= record.y_min and record.y_max <= hi:
        return []
    return [Finding("loss_output_mismatch", "error", record.output.name, evidence,
                    f"The last layer's {act} outputs lie in [{lo:g}, {hi:g}], but the targets range from "
                    f"{record.y_min:.3g} to {record.y_max:.3g}: the model cannot reach them.",
                    "Use a linear output for regression: Dense(1) with no activation (or rescale y into "
                    f"the {act} range).")]


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
    described = ", ".join(f"column {j} (mean {record.x_mean[j]:.3g}, std {record.x_std[j]:.3g})" for j in show)
    more = f" and {len(cols) - len(show)} more" if len(cols) > len(show) else ""
    evidence = {"columns": cols, "means": [record.x_mean[j] for j in cols], "stds": [record.x_std[j] for j in cols],
                "median_std": typical, "largest_std_ratio": max(record.x_std) / typical}
    return [Finding("unscaled_inputs", "warning", None, evidence,
                    f"Input features are on very different or large scales: {described}{more}, while the median "
                    f"feature's std is {typical:.3g}. Large inputs saturate or kill units and force a small "
                    "learning rate.",
                    "Standardise the inputs inside the model: norm = Normalization(); norm.adapt(X_train); "
                    "then put norm first: Sequential([Input(shape=(n_features,)), norm, Dense(...), ...]).")]


# ----------------------------------------------------------------------------------------------
# the network's internals, from the probes


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
        lower = f"e.g. learning_rate={_lower_lr(lr, record.optimizer):g}" if math.isfinite(lr) else "e.g. 10x lower"
        evidence = {"dead": n_dead, "units": n, "fraction": n_dead / n, "died_during_training": died,
                    "since_epoch": None if since < 0 else since + 1, "learning_rate": lr}
        found.append(Finding(
            "dead_units", severity, name, evidence,
            f"{n_dead / n:.0%} of its {n} ReLU units ({n_dead}) output zero for every probe sample since "
            f"{_epoch(since)}; {died} of them were alive at the start. Dead units get no gradient and never "
            "recover.",
            f"Lower the learning rate ({lower}), use kernel_initializer='he_uniform' with "
            "bias_initializer='zeros', or activation='leaky_relu'."))
    return found


def _dead_since(record: RunRecord, name: str, n_dead_end: int) -> int:
    """Epoch of the first probe from which the layer kept at least 90% of its final dead count."""
    since = record.last_probe.epoch
    for probe in reversed(record.probes):
        if sum(probe.dead.get(name, [])) < 0.9 * n_dead_end:
            break
        since = probe.epoch
    return since


SIGNAL_SHRINK = 1e-3
"""Back-propagated gradient at the first Dense layer / at the last one, below which gradients vanish."""
SIGNAL_GROWTH = 1e2
"""The same ratio above which gradients explode."""
SATURATED_FRACTION = 0.5
"""A tanh/sigmoid hidden layer with at least this fraction of outputs on its flat part is saturated."""
GRAD_TO_WEIGHT = 1e3
"""A kernel gradient this many times larger than the kernel itself (norms) has exploded."""


def _signal_ratios(record: RunRecord) -> list[float]:
    """Per probe: RMS gradient at the first Dense layer's pre-activation / at the last one's."""
    ratios = []
    for probe in record.probes:
        values = [v for _, v in probe.signal]
        if len(values) >= 2 and probe.weights_finite and all(math.isfinite(v) for v in values) and values[-1] > 0:
            ratios.append(values[0] / values[-1])
    return ratios


def _signal_evidence(record: RunRecord, ratio: float) -> dict:
    probe = record.last_probe
    return {"first_to_last_ratio": ratio, "signal_rms_by_layer": dict(probe.signal),
            "kernel_grad_norms": dict(probe.grad_norms), "probe_epochs": [p.epoch + 1 for p in record.probes]}


@detector
def exploding_gradients(record: RunRecord) -> list[Finding]:
    """Gradients that grow by orders of magnitude towards the input or over time, or become inf/NaN."""
    ratios = _signal_ratios(record)
    if ratios and statistics.median(ratios) > SIGNAL_GROWTH:
        ratio = statistics.median(ratios)
        return [Finding("exploding_gradients", "warning", None, _signal_evidence(record, ratio),
                        f"Gradients grow {ratio:.2g}x from the last Dense layer back to the first: each layer "
                        "amplifies them, so early layers take huge, unstable steps.",
                        _EXPLODING_FIX)]
    broken = [p for p in record.probes if p.weights_finite and not p.grads_finite]
    if broken:
        return [Finding("exploding_gradients", "error", None, {"epoch": broken[0].epoch + 1},
                        f"Gradients became inf or NaN at {_epoch(broken[0].epoch)} while the weights were "
                        "still finite.", _EXPLODING_FIX)]
    return _oversized_gradients(record)


_EXPLODING_FIX = ("Clip the gradients (e.g. optimizer=Adam(clipnorm=1.0)), keep the default "
                  "kernel_initializer='glorot_uniform' (he_uniform for relu) instead of large initial weights, "
                  "and lower the learning rate 10x.")


def _oversized_gradients(record: RunRecord) -> list[Finding]:
    """Kernel gradients far larger than the kernels: one step would throw the weights far away."""
    if record.has("unscaled_inputs"):  # huge inputs give huge first-layer gradients; that finding says why
        return []
    for probe in record.probes:
        ratios = {name: g / probe.weight_norms[name] for name, g in probe.grad_norms.items()
                  if probe.weight_norms.get(name, 0) > 0 and math.isfinite(g)}
        name = max(ratios, key=ratios.get, default=None)
        if name is not None and probe.weights_finite and ratios[name] > GRAD_TO_WEIGHT:
            evidence = {"grad_norm": probe.grad_norms[name], "weight_norm": probe.weight_norms[name],
                        "ratio": ratios[name], "epoch": probe.epoch + 1}
            return [Finding("exploding_gradients", "warning", name, evidence,
                            f"At {_epoch(probe.epoch)} the kernel's gradient is {ratios[name]:.2g} times larger "
                            f"than the kernel itself ({probe.grad_norms[name]:.3g} vs "
                            f"{probe.weight_norms[name]:.3g}).", _EXPLODING_FIX)]
    return []


@detector
def vanishing_gradients(record: RunRecord) -> list[Finding]:
    """Gradients that shrink by orders of magnitude towards the input, or saturated tanh/sigmoid units."""
    found = _saturation(record)
    ratios = _signal_ratios(record)
    # Dead ReLU layers also stop the gradient; dead_units already explains that.
    if ratios and not record.has("dead_units", "exploding_gradients"):
        ratio = statistics.median(ratios)
        if ratio < SIGNAL_SHRINK:
            found.insert(0, Finding(
                "vanishing_gradients", "warning", None, _signal_evidence(record, ratio),
                f"The gradient reaching the first Dense layer is {ratio:.2g} times the one at the last layer "
                f"({len(record.probes[-1].signal)} layers): the early layers barely learn.",
                "Use activation='relu' with kernel_initializer='he_uniform' in the hidden layers, keep the "
                "default glorot_uniform rather than tiny initial weights, use fewer layers, or add "
                "BatchNormalization() between them."))
    return found


def _saturation(record: RunRecord) -> list[Finding]:
    last = record.last_probe
    if last is None:
        return []
    found = []
    for name, fraction in last.saturated.items():
        if fraction >= SATURATED_FRACTION:
            act = next((layer.activation for layer in record.layers if layer.name == name), "tanh")
            found.append(Finding(
                "vanishing_gradients", "warning", name, {"saturated_fraction": fraction, "activation": act},
                f"{fraction:.0%} of its {act} outputs sit on the flat part of the curve, where the "
                "gradient is almost zero.",
                "Scale the inputs (a Normalization layer first), keep the default glorot_uniform "
                "initialisation, lower the learning rate, or use activation='relu'."))
    return found


# ----------------------------------------------------------------------------------------------
# the learning rate


OSCILLATION_JUMP = 0.25
"""An epoch whose training loss rises by this fraction over the previous one is a jump."""
FIRST_EPOCH_JUMP = 3.0
"""A first epoch whose mean loss is this many times the loss before training overshot."""
UPDATE_HIGH = 0.1
"""Per-step update-to-weight ratio above which steps are far too large (rule of thumb: about 1e-3)."""
UPDATE_LOW = 1e-5
"""Per-step update-to-weight ratio below which steps are far too small."""
BARELY_MOVED = 0.02
"""A relative change of the probe loss over the whole fit below this means the loss barely moved."""


def _median_update_ratio(record: RunRecord) -> float:
    values = _finite(v for ratios in record.update_ratios.values() for v in ratios.values())
    return statistics.median(values) if values else math.nan


@detector
def lr_too_high(record: RunRecord) -> list[Finding]:
    """A loss that becomes NaN, diverges or oscillates; weights that move far too much per step."""
    losses, lr = record.series("loss"), record.learning_rate
    if not losses:
        return []
    fix = (f"Lower the learning rate: learning_rate={_lower_lr(lr, record.optimizer):g} (Keras's default for "
           f"{record.optimizer or 'this optimizer'} is {_default_lr(record.optimizer):g}); "
           "model.find_learning_rate(x, y) suggests a value.")
    evidence = {"learning_rate": lr, "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1],
                "median_update_ratio": _median_update_ratio(record)}
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        evidence["nan_epoch"] = record.epochs[bad] + 1 if bad < len(record.epochs) else bad + 1
        return [Finding("lr_too_high", "error", None, evidence,
                        f"The training loss became {losses[bad]} at epoch {evidence['nan_epoch']} "
                        f"(learning_rate={lr:g}): the steps overshoot until the numbers overflow.", fix)]
    reason = _unstable_loss(losses, record)
    if reason is None:
        return []
    return [Finding("lr_too_high", "warning", None, evidence, f"{reason} (learning_rate={lr:g}).", fix)]


def _unstable_loss(losses: list[float], record: RunRecord) -> str | None:
    """Why the loss curve looks like a learning rate that is too high, or None."""
    best, start = min(losses), record.first_probe.loss if record.first_probe else math.nan
    if math.isfinite(start) and start > 0 and losses[0] > FIRST_EPOCH_JUMP * start:
        return (f"The loss jumped from {start:.4g} before training to an average of {losses[0]:.4g} in epoch 1: "
                "the first steps overshoot")
    if len(losses) >= 3 and losses[-1] > losses[0] and losses[-1] > 1.5 * best:
        return (f"The training loss diverges: {losses[0]:.4g} in epoch 1, down to {best:.4g}, then up to "
                f"{losses[-1]:.4g}")
    # Jumps near zero loss (a memorised training set) are noise, not instability: count only those
    # above a tenth of the first epoch's loss.
    jumps = sum(1 for a, b in zip(losses, losses[1:]) if b > a * (1 + OSCILLATION_JUMP) and b > 0.1 * losses[0])
    if jumps >= max(3, len(losses) // 5):
        return f"The training loss oscillates: it jumped up by more than 25% in {jumps} of {len(losses)} epochs"
    ratio = _median_update_ratio(record)
    if ratio > UPDATE_HIGH:
        return f"Each step changes the weights by about {ratio:.0%} of their size (healthy: about 0.1%)"
    return None


@detector
def lr_too_low(record: RunRecord) -> list[Finding]:
    """A loss that barely moves while each step changes the weights by far less than 1e-3 of their size."""
    first, last = record.first_probe, record.last_probe
    if first is None or last is first or record.has("vanishing_gradients", "dead_units", "exploding_gradients",
                                                    "loss_output_mismatch"):
        return []
    if not (math.isfinite(first.loss) and math.isfinite(last.loss)) or abs(first.loss) < 1e-8:
        return []
    change = (first.loss - last.loss) / abs(first.loss)
    ratio = _median_update_ratio(record)
    # A ratio of exactly 0 means no gradient at all: no learning rate would help.
    if change >= BARELY_MOVED or not 0 < ratio < UPDATE_LOW:
        return []
    lr = record.learning_rate
    default = _default_lr(record.optimizer)
    suggest = default if lr < default / 10 else lr * 10
    evidence = {"learning_rate": lr, "loss_start": first.loss, "loss_end": last.loss, "relative_change": change,
                "median_update_ratio": ratio, "epochs": len(record.epochs)}
    return [Finding("lr_too_low", "warning", None, evidence,
                    f"The loss barely moved in {len(record.epochs)} epochs ({first.loss:.4g} to {last.loss:.4g}, "
                    f"{change:.1%}) and each step changes the weights by about {ratio:.1e} of their size "
                    f"(healthy: about 1e-3): learning_rate={lr:g} is too small.",
                    f"Raise the learning rate, e.g. learning_rate={suggest:g}; model.find_learning_rate(x, y) "
                    "suggests a value.")]


# ----------------------------------------------------------------------------------------------
# the loss curves


OVERFIT_RISE = 0.2
"""Validation loss this fraction above its best, while the training loss keeps falling, is overfitting."""


@detector
def overfitting(record: RunRecord) -> list[Finding]:
    """Validation loss rising while the training loss falls.

    The validation curve is smoothed over 3 epochs first, so one lucky epoch is not taken as the best.
    """
    val, train = record.series("val_loss"), record.series("loss")
    if len(val) < 5 or len(val) != len(train) or not all(map(math.isfinite, val + train)):
        return []
    smooth = [statistics.mean(val[max(0, i - 1):i + 2]) for i in range(len(val))]
    best = min(range(len(val)), key=smooth.__getitem__)
    since = len(val) - 1 - best
    recent = statistics.mean(val[-3:])
    rise = recent / smooth[best] - 1 if smooth[best] > 0 else 0.0
    if since < max(5, len(val) // 5) or rise < OVERFIT_RISE or train[-1] > 0.9 * train[best]:
        return []
    epoch = record.epochs[best] + 1 if best < len(record.epochs) else best + 1
    evidence = {"best_epoch": epoch, "best_val_loss": val[best], "val_loss_last": val[-1],
                "loss_at_best": train[best], "loss_last": train[-1], "epochs": len(val)}
    return [Finding("overfitting", "warning", None, evidence,
                    f"The validation loss was lowest around epoch {epoch} ({val[best]:.4g}) and has risen "
                    f"{rise:.0%} since (to {val[-1]:.4g}), while the training loss kept falling "
                    f"({train[best]:.4g} to {train[-1]:.4g}): the model memorises the training rows.",
                    "Add EarlyStopping(monitor='val_loss', patience=5, restore_best_weights=True); use fewer "
                    "units, Dropout(0.3) between layers, or more data.")]


UNDERFIT_LEVEL = 0.5
"""A final training loss above this fraction of the constant-prediction loss is high."""
FLAT_CHANGE = 0.05
"""Less than this relative fall of the training loss over the last third of the epochs is flat."""


def _is_small(record: RunRecord) -> bool:
    hidden = [layer.units for layer in record.dense_layers[:-1] if layer.units]
    return not hidden or min(hidden) <= 4 or record.n_params * 10 < record.n_train


@detector
def underfitting(record: RunRecord) -> list[Finding]:
    """A high, flat training loss from a model that is small for the data."""
    last, losses = record.last_probe, record.series("loss")
    if last is None or len(losses) < 5 or not math.isfinite(last.loss) or not record.baseline_loss > 0:
        return []
    if record.has("loss_output_mismatch", "lr_too_low", "lr_too_high", "vanishing_gradients", "dead_units"):
        return []
    level = last.loss / record.baseline_loss
    k = max(3, len(losses) // 3)
    fall = (losses[-k] - losses[-1]) / abs(losses[-k]) if losses[-k] else 0.0
    if level < UNDERFIT_LEVEL or fall > FLAT_CHANGE or not _is_small(record):
        return []
    hidden = [layer.units for layer in record.dense_layers[:-1]]
    evidence = {"loss": last.loss, "constant_prediction_loss": record.baseline_loss, "level": level,
                "fall_last_epochs": fall, "hidden_units": hidden, "params": record.n_params,
                "samples": record.n_train}
    shape = f"hidden layers of {hidden} units" if hidden else "no hidden layer"
    return [Finding("underfitting", "warning", None, evidence,
                    f"The training loss is stuck at {level:.0%} of what predicting a constant would give "
                    f"({last.loss:.4g} vs {record.baseline_loss:.4g}) and no longer falls; the model "
                    f"({shape}, {record.n_params} weights) is too small for {record.n_train} samples.",
                    "Give it more capacity: a hidden layer or more units, e.g. Dense(64, activation='relu'), "
                    "then train for more epochs.")]


STALL_EPOCHS = 10
"""The shortest window compared (or a third of the run, if longer)."""
STALL_GAIN = 0.02
"""Less than this relative fall of the mean loss from one window to the next is no progress."""


@detector
def stalled(record: RunRecord) -> list[Finding]:
    """No progress of the monitored loss for many epochs, and no other finding explains it.

    The mean of the last window of epochs is compared with the mean of the window before (means,
    not minima, so a lucky epoch does not count as progress). When the validation loss is flat but
    the training loss still falls, extra epochs are merely wasted: an 'info'. When both are flat,
    the optimiser is stuck: a 'warning'.
    """
    key = "val_loss" if record.series("val_loss") else "loss"
    values, train = record.series(key), record.series("loss")
    window = max(STALL_EPOCHS, len(values) // 3)
    if len(values) < 2 * window or len(train) < 2 * window or not all(map(math.isfinite, values + train)):
        return []
    if any(f.is_problem for f in record.findings):
        return []
    gain, train_gain = _window_gain(values, window), _window_gain(train, window)
    if gain >= STALL_GAIN or gain < -OVERFIT_RISE:  # still improving, or getting worse (other checks)
        return []
    stuck = train_gain < STALL_GAIN
    best = min(range(len(values)), key=values.__getitem__)
    evidence = {"monitor": key, "best": values[best], "best_epoch": best + 1, "epochs": len(values),
                "window": window, "gain": gain, "train_gain": train_gain, "learning_rate": record.learning_rate}
    words = (f"the training loss is flat too, so the optimiser is stuck at learning_rate={record.learning_rate:g}"
             if stuck else "the training loss still falls, but that no longer helps")
    return [Finding("stalled", "warning" if stuck else "info", None, evidence,
                    f"The mean {key} of the last {window} epochs is no better than that of the {window} before "
                    f"({gain:+.1%}; best {values[best]:.4g} at epoch {best + 1}); {words}.",
                    f"Add ReduceLROnPlateau(monitor='{key}', factor=0.5, patience=5) so the learning rate drops "
                    f"when progress stops, and EarlyStopping(monitor='{key}', patience=10, "
                    "restore_best_weights=True) to skip the wasted epochs.")]


def _window_gain(values: list[float], window: int) -> float:
    """Relative fall of the mean over the last ``window`` values against the ``window`` before them."""
    before = statistics.mean(values[-2 * window:-window])
    recent = statistics.mean(values[-window:])
    return (before - recent) / abs(before) if before else 0.0
