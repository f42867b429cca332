"""``MonitorCallback``: the shared logic of callbacks that watch one logged quantity."""

from __future__ import annotations

import math
import warnings

import numpy as np

from trainwell._errors import ConfigError, ConfigTypeError, check_number, describe, unknown_name

from .base import Callback

MODES = ("auto", "min", "max")

# For mode='auto': which way is better, from the metric's name (with any 'val_' prefix removed).
# Keras 3 asks each compiled metric for its direction; names are what our narrow interface has.
_MAX_HINTS = (
    "acc",
    "auc",
    "precision",
    "recall",
    "f1",
    "fbeta",
    "r2",
    "iou",
    "true_positives",
    "true_negatives",
    "cosine_similarity",
    "specificity",
    "sensitivity",
)
_MIN_HINTS = (
    "loss",
    "error",
    "crossentropy",
    "hinge",
    "divergence",
    "poisson",
    "cosh",
    "false_positives",
    "false_negatives",
)
_MIN_NAMES = ("mse", "mae", "mape", "msle", "rmse", "kld")


def direction_from_name(monitor: str) -> str | None:
    """'min' or 'max' for a logged quantity's name, or None when the name does not tell.

    Example:
        >>> direction_from_name("val_accuracy"), direction_from_name("val_loss"), direction_from_name("foo")
        ('max', 'min', None)
    """
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("loss"):
        return "min"
    if any(hint in name for hint in _MAX_HINTS):
        return "max"
    if name in _MIN_NAMES or any(hint in name for hint in _MIN_HINTS):
        return "min"
    return None


def _check_mode(mode, where: str) -> str:
    if mode not in MODES:
        raise unknown_name("mode", mode, MODES, argument=f"{where}(mode=...)")
    return mode


def _check_monitor(monitor, where: str) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ConfigTypeError(
            f"{where}: `monitor` expects the name of a logged quantity such as 'val_loss', "
            f"received {describe(monitor)}. Pass a key of history.history."
        )
    return monitor


class MonitorCallback(Callback):
    """Shared logic of callbacks that watch one logged quantity: direction and "is it better".

    Args:
        monitor: the logs key to watch, e.g. ``"val_loss"``.
        mode: 'min', 'max', or 'auto' (from the name; see ``direction_from_name``; a model
            metric with a ``direction`` attribute of 'up'/'down' also counts).
        baseline: initial ``best`` (None: the first value seen).
        min_delta: an improvement must beat ``best`` by more than ``|min_delta|``.

    Raises:
        ConfigError: unknown ``mode``, non-numeric ``min_delta`` or ``baseline``; at the first
            epoch end, a ``mode='auto'`` whose direction cannot be inferred.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        where = type(self).__name__
        self.monitor = _check_monitor(monitor, where)
        self.mode = _check_mode(mode, where)
        self.min_delta = abs(check_number(min_delta, "min_delta", where, allow_inf=True, example=0.01))
        self.best = check_number(baseline, "baseline", where, allow_none=True, allow_inf=True)
        self.direction = mode if mode != "auto" else direction_from_name(monitor)

    @property
    def monitor_op(self):
        """``np.less`` when smaller is better, ``np.greater`` when larger is, None if unknown yet."""
        return {"min": np.less, "max": np.greater}.get(self.direction)

    def _resolve_direction(self) -> str:
        if self.direction is None:
            self.direction = self._direction_from_model()
        if self.direction is None:
            raise ConfigError(
                f"{type(self).__name__}: cannot tell whether monitor={self.monitor!r} should be "
                "minimized or maximized. Pass mode='min' (e.g. for an error) or mode='max' "
                "(e.g. for a score)."
            )
        return self.direction

    def _direction_from_model(self) -> str | None:
        name = self.monitor.removeprefix("val_")
        for metric in getattr(self.model, "metrics", None) or []:
            if getattr(metric, "name", None) == name:
                found = getattr(metric, "direction", None) or getattr(metric, "_direction", None)
                if found in ("up", "down"):
                    return "max" if found == "up" else "min"
        return None

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        # NaN is never an improvement (Keras would take a first NaN as the best and never move
        # on from it, since every comparison with NaN is False).
        if math.isnan(value):
            return False
        if reference is None:
            return True
        if self._resolve_direction() == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def _monitor_value(self, logs) -> float | None:
        logs = logs if logs is not None else {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                f"{type(self).__name__}: monitor={self.monitor!r} is not in the logs, so this epoch is "
                f"skipped. Available keys: {', '.join(logs) or '(none)'}. Pass one of them as monitor=; "
                "'val_' keys need validation data.",
                UserWarning,
                stacklevel=3,
            )
            return None
        self._resolve_direction()
        return float(value)
