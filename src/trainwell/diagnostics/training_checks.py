"""Checks of the training curves: the learning rate (too high, too low), over- and underfitting,
and stalls that nothing else explains.
"""

from __future__ import annotations

import math
import statistics

from .findings import Finding
from .record import RunRecord
from .registry import _default_lr, _finite, _lower_lr, detector

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
    fix = (
        f"Lower the learning rate: learning_rate={_lower_lr(lr, record.optimizer):g} (Keras's default for "
        f"{record.optimizer or 'this optimizer'} is {_default_lr(record.optimizer):g}); "
        "model.find_learning_rate(x, y) suggests a value."
    )
    evidence = {
        "learning_rate": lr,
        "loss_first_epoch": losses[0],
        "loss_last_epoch": losses[-1],
        "median_update_ratio": _median_update_ratio(record),
    }
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        evidence["nan_epoch"] = record.epochs[bad] + 1 if bad < len(record.epochs) else bad + 1
        return [
            Finding(
                "lr_too_high",
                "error",
                None,
                evidence,
                f"The training loss became {losses[bad]} at epoch {evidence['nan_epoch']} "
                f"(learning_rate={lr:g}): the steps overshoot until the numbers overflow.",
                fix,
                ("lower_learning_rate",),
            )
        ]
    reason = _unstable_loss(losses, record)
    if reason is None:
        return []
    return [
        Finding(
            "lr_too_high", "warning", None, evidence, f"{reason} (learning_rate={lr:g}).", fix,
            ("lower_learning_rate",),
        )
    ]


def _unstable_loss(losses: list[float], record: RunRecord) -> str | None:
    """Why the loss curve looks like a learning rate that is too high, or None."""
    # The epoch losses include the regularizers' penalty; the probe's loss does not: add it back.
    best = min(losses)
    start = record.first_probe.loss + record.penalty_start if record.first_probe else math.nan
    if math.isfinite(start) and start > 0 and losses[0] > FIRST_EPOCH_JUMP * start:
        return (
            f"The loss jumped from {start:.4g} before training to an average of {losses[0]:.4g} in "
            "epoch 1: "
            "the first steps overshoot"
        )
    if len(losses) >= 3 and losses[-1] > losses[0] and losses[-1] > 1.5 * best:
        return (
            f"The training loss diverges: {losses[0]:.4g} in epoch 1, down to {best:.4g}, then up to "
            f"{losses[-1]:.4g}"
        )
    # Jumps near zero loss (a memorised training set) are noise, not instability: count only those
    # above a tenth of the first epoch's loss.
    floor = 0.1 * losses[0]
    jumps = sum(1 for a, b in zip(losses, losses[1:]) if b > a * (1 + OSCILLATION_JUMP) and b > floor)
    if jumps >= max(3, len(losses) // 5):
        return (
            f"The training loss oscillates: it jumped up by more than 25% in {jumps} of {len(losses)} epochs"
        )
    ratio = _median_update_ratio(record)
    if ratio > UPDATE_HIGH:
        return f"Each step changes the weights by about {ratio:.0%} of their size (healthy: about 0.1%)"
    return None


@detector
def lr_too_low(record: RunRecord) -> list[Finding]:
    """A loss that barely moves while each step changes the weights by far less than 1e-3 of their size."""
    first, last = record.first_probe, record.last_probe
    if (
        first is None
        or last is first
        or record.has("vanishing_gradients", "dead_units", "exploding_gradients", "loss_output_mismatch")
    ):
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
    evidence = {
        "learning_rate": lr,
        "loss_start": first.loss,
        "loss_end": last.loss,
        "relative_change": change,
        "median_update_ratio": ratio,
        "epochs": len(record.epochs),
    }
    return [
        Finding(
            "lr_too_low",
            "warning",
            None,
            evidence,
            f"The loss barely moved in {len(record.epochs)} epochs ({first.loss:.4g} to "
            f"{last.loss:.4g}, "
            f"{change:.1%}) and each step changes the weights by about {ratio:.1e} of their size "
            f"(healthy: about 1e-3): learning_rate={lr:g} is too small.",
            f"Raise the learning rate, e.g. learning_rate={suggest:g}; model.find_learning_rate(x, "
            "y) "
            "suggests a value.",
            ("raise_learning_rate",),
        )
    ]


# ----------------------------------------------------------------------------------------------
# the loss curves


OVERFIT_RISE = 0.2
"""Validation loss this fraction above its best, while the training loss keeps falling, is overfitting."""
OVERFIT_GAP = 0.1
"""...and only with a gap: the last epochs' validation loss at least this fraction above the training loss."""


@detector
def overfitting(record: RunRecord) -> list[Finding]:
    """Validation loss rising while the training loss falls.

    The validation curve is smoothed over 3 epochs first, so one lucky epoch is not taken as the best.
    """
    val, train = record.series("val_loss"), record.series("loss")
    if len(val) < 5 or len(val) != len(train) or not all(map(math.isfinite, val + train)):
        return []
    smooth = [statistics.mean(val[max(0, i - 1) : i + 2]) for i in range(len(val))]
    best = min(range(len(val)), key=smooth.__getitem__)
    since = len(val) - 1 - best
    recent = statistics.mean(val[-3:])
    rise = recent / smooth[best] - 1 if smooth[best] > 0 else 0.0
    if since < max(5, len(val) // 5) or rise < OVERFIT_RISE or train[-1] > 0.9 * train[best]:
        return []
    # Overfitting means a gap: validation loss well above the training loss at the end.
    gap = recent / statistics.mean(train[-3:]) - 1 if statistics.mean(train[-3:]) > 0 else math.inf
    if gap < OVERFIT_GAP:
        return []
    if record.restored_epoch is not None:  # EarlyStopping already put the best weights back
        return []
    epoch = record.epochs[best] + 1 if best < len(record.epochs) else best + 1
    evidence = {
        "best_epoch": epoch,
        "best_val_loss": val[best],
        "val_loss_last": val[-1],
        "loss_at_best": train[best],
        "loss_last": train[-1],
        "epochs": len(val),
        "gap": gap,
    }
    return [
        Finding(
            "overfitting",
            "warning",
            None,
            evidence,
            f"The validation loss was lowest around epoch {epoch} ({val[best]:.4g}) and has risen "
            f"{rise:.0%} since (to {val[-1]:.4g}), while the training loss kept falling "
            f"({train[best]:.4g} to {train[-1]:.4g}): the model memorises the training rows.",
            "Add EarlyStopping(monitor='val_loss', patience=5, restore_best_weights=True); use fewer "
            "units, Dropout(0.3) between layers, or more data.",
            ("early_stopping",),
        )
    ]


UNDERFIT_LEVEL = 0.5
"""A final training loss above this fraction of the constant-prediction loss is high (R² < 0.5)."""
UNDERFIT_LEVEL_CLASSES = 0.8
"""The same for cross-entropy: noisy labels leave a good classifier well above half the constant loss
(Titanic's course model ends near 0.7 of it), so only a loss this close to the constant one is 'high'."""
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
    high = UNDERFIT_LEVEL if record.loss_kind == "regression" else UNDERFIT_LEVEL_CLASSES
    if level < high or fall > FLAT_CHANGE or not _is_small(record):
        return []
    hidden = [layer.units for layer in record.dense_layers[:-1]]
    evidence = {
        "loss": last.loss,
        "constant_prediction_loss": record.baseline_loss,
        "level": level,
        "fall_last_epochs": fall,
        "hidden_units": hidden,
        "params": record.n_params,
        "samples": record.n_train,
    }
    shape = f"hidden layers of {hidden} units" if hidden else "no hidden layer"
    return [
        Finding(
            "underfitting",
            "warning",
            None,
            evidence,
            f"The training loss is stuck at {level:.0%} of what predicting a constant would give "
            f"({last.loss:.4g} vs {record.baseline_loss:.4g}) and no longer falls; the model "
            f"({shape}, {record.n_params} weights) is too small for {record.n_train} samples.",
            "Give it more capacity: a hidden layer or more units, e.g. Dense(64, activation='relu'), "
            "then train for more epochs.",
            ("more_capacity",),
        )
    ]


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
    # A fall counts as progress when it beats both STALL_GAIN and the windows' own noise: a loss
    # bouncing by tens of percent from epoch to epoch moves a window's mean by ~10% by chance.
    if gain >= _progress_threshold(values, window) or gain < -OVERFIT_RISE:
        return []  # still improving, or getting worse (other checks)
    if values[-1] < min(values[:-1]):
        return []  # the last epoch set a new best: progress, however noisy
    stuck = train_gain < _progress_threshold(train, window)
    # A training loss bouncing from epoch to epoch: the rate is too large to settle, so lowering it
    # on the plateau helps, whether or not its mean still creeps down. Flat and smooth: converged
    # (at the data's noise floor); a lower rate would not help, only early stopping saves epochs.
    jitter = _jitter(train[-window:])
    bouncing = jitter >= STALL_JITTER
    converged = stuck and not bouncing
    if record.stopped_early and not (stuck and bouncing):  # early stopping already cut the epochs
        return []
    best = min(range(len(values)), key=values.__getitem__)
    evidence = {
        "monitor": key,
        "best": values[best],
        "best_epoch": best + 1,
        "epochs": len(values),
        "window": window,
        "gain": gain,
        "train_gain": train_gain,
        "learning_rate": record.learning_rate,
    }
    evidence["jitter"] = jitter
    if converged:
        words = "the training loss is flat and smooth too: the run converged, and the epochs since are wasted"
    elif bouncing:
        words = (
            f"the training loss {'is flat too but bounces' if stuck else 'bounces'} from epoch to epoch "
            f"({jitter:.1%}): the optimiser cannot settle at learning_rate={record.learning_rate:g}"
        )
    else:
        words = "the training loss still falls, but that no longer helps"
    stop = f"EarlyStopping(monitor='{key}', patience=10, restore_best_weights=True)"
    if bouncing:
        fix = (
            f"Add ReduceLROnPlateau(monitor='{key}', factor=0.5, patience=5) so the learning rate drops "
            f"when progress stops, and {stop} to skip the wasted epochs."
        )
        repairs = ("reduce_lr_on_plateau", "early_stopping")
    else:
        fix = f"Add {stop} to stop when progress stops."
        repairs = ("early_stopping",)
    return [
        Finding(
            "stalled",
            "warning" if bouncing else "info",
            None,
            evidence,
            f"The mean {key} of the last {window} epochs is no better than that of the {window} "
            f"before ({gain:+.1%}; best {values[best]:.4g} at epoch {best + 1}); {words}.",
            fix,
            repairs,
        )
    ]


STALL_JITTER = 0.05
"""Mean epoch-to-epoch change of the training loss, relative to its level, below which it is smooth.
Dropout's noise moves it by 1-2%; an optimiser bouncing on a plateau by tens of percent."""


def _jitter(values: list[float]) -> float:
    """Mean absolute change between consecutive values, relative to their mean."""
    level = statistics.mean(values)
    steps = [abs(b - a) for a, b in zip(values, values[1:])]
    return statistics.mean(steps) / abs(level) if steps and level else 0.0


def _progress_threshold(values: list[float], window: int) -> float:
    """The relative fall between two window means that noise alone would rarely give.

    For independent epoch-to-epoch noise of standard deviation sigma, consecutive values differ
    by 2 sigma / sqrt(pi) on average, and two means of ``window`` values by sigma sqrt(2 / window);
    a fall under twice that (or under STALL_GAIN) is no evidence of progress.
    """
    sigma = _jitter(values[-2 * window:]) * math.sqrt(math.pi) / 2
    return max(STALL_GAIN, 2 * sigma * math.sqrt(2 / window))


def _window_gain(values: list[float], window: int) -> float:
    """Relative fall of the mean over the last ``window`` values against the ``window`` before them."""
    before = statistics.mean(values[-2 * window : -window])
    recent = statistics.mean(values[-window:])
    return (before - recent) / abs(before) if before else 0.0
