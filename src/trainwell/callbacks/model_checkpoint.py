"""``ModelCheckpoint``: save the model or its weights every epoch or N batches, or only the best."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from trainwell._errors import ConfigError, ConfigTypeError, check_verbose, describe

from ._checks import _check_save_freq
from .monitor import MonitorCallback


class ModelCheckpoint(MonitorCallback):
    """Save the model (or its weights) every epoch or every N batches, optionally only the best.

    Args:
        filepath: where to save; may hold fields filled from ``epoch`` (1-based), ``batch``
            (1-based, with an integer ``save_freq``) and the logs, e.g.
            ``"ckpt/model-{epoch:02d}-{val_loss:.3f}.tw"``. Parent folders are created.
        monitor: quantity compared when ``save_best_only``. Defaults to ``"val_loss"``.
        verbose: 1 prints each decision. Defaults to 0.
        save_best_only: save only when ``monitor`` improves on the best so far.
        save_weights_only: call ``model.save_weights(path)`` instead of ``model.save(path)``.
        mode: 'auto', 'min' or 'max'. Defaults to 'auto'.
        save_freq: ``"epoch"`` or a positive integer: save after that many training batches.
        initial_value_threshold: initial best value for ``save_best_only``.

    Raises:
        ConfigError: bad ``save_freq`` or ``mode``; at save time, a ``filepath`` field with no
            matching log key.
        ConfigTypeError: ``filepath`` is not a string or path.

    Example:
        >>> class Model:
        ...     def save(self, path):
        ...         print("saved", path)
        >>> ckpt = ModelCheckpoint("model-{epoch:02d}-{val_loss:.2f}.tw", save_best_only=True)
        >>> ckpt.set_model(Model())
        >>> for epoch, val_loss in enumerate([0.5, 0.6, 0.4]):
        ...     ckpt.on_epoch_end(epoch, {"val_loss": val_loss})
        saved model-01-0.50.tw
        saved model-03-0.40.tw
    """

    writes_output = True  # rank 0 only in a distributed run

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ):
        where = "ModelCheckpoint"
        super().__init__(monitor, mode, initial_value_threshold, 0)
        if not isinstance(filepath, (str, os.PathLike)):
            raise ConfigTypeError(
                f"{where}: `filepath` expects a string or path, received {describe(filepath)}. "
                "Pass e.g. filepath='checkpoints/model-{epoch:02d}.tw'."
            )
        self.save_freq = _check_save_freq(save_freq, where)
        self.filepath = os.fspath(filepath)
        self.verbose = check_verbose(verbose, where)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self._batches_since_save = 0
        self._last_batch = 0
        self._epoch = 0
        if save_freq == "epoch":
            self._skip_hook("on_train_batch_end")  # no per-batch dispatch needed

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def get_state(self) -> dict:
        return {"best": self.best}  # save_best_only compares with the best before the interruption

    def set_state(self, state: dict) -> None:
        self.best = state["best"]

    def on_train_batch_end(self, batch, logs=None):
        # Count batches as Keras does: a batch index that does not grow means a new epoch.
        seen = batch + 1 if batch <= self._last_batch else batch - self._last_batch
        self._batches_since_save += seen
        self._last_batch = batch
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _save(self, epoch: int, batch, logs) -> None:
        path = self._format_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, path):
            return
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)

    def _format_path(self, epoch: int, batch, logs) -> str:
        fields = _PathFields(logs if logs is not None else {}, epoch=epoch + 1)
        if batch is not None:
            fields.extra["batch"] = batch + 1
        try:
            # format_map looks up only the fields the path names, so lazy batch logs are read
            # (and the device synced) only for those.
            return self.filepath.format_map(fields)
        except KeyError as err:
            raise ConfigError(
                f"ModelCheckpoint: `filepath` {self.filepath!r} names the field {err.args[0]!r}, which is "
                f"not logged. Available: {', '.join(fields)}. "
                "Use only these names in braces."
            ) from None

    def _should_save(self, epoch: int, logs, path: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: saving model to {path}")
            return True
        logs = logs if logs is not None else {}
        current = logs.get(self.monitor)  # one read: batch logs may sync the device per read
        if current is None:
            # Keras 3 saves anyway, with a warning, when the monitored value is missing.
            warnings.warn(
                f"ModelCheckpoint: save_best_only needs monitor={self.monitor!r} in the logs; saving "
                f"anyway. Available keys: {', '.join(logs) or '(none)'}.",
                UserWarning,
                stacklevel=3,
            )
            return True
        current = float(current)
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print(
                    f"Epoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, "
                    f"saving model to {path}"
                )
            self.best = current
            return True
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False


class _PathFields(Mapping):
    """Fields for ``str.format_map``: ``epoch``/``batch`` first, then the (possibly lazy) logs."""

    def __init__(self, logs: Mapping, **extra):
        self.logs, self.extra = logs, extra

    def __getitem__(self, key):
        if key in self.extra:
            return self.extra[key]
        return self.logs[key]

    def __iter__(self):
        yield from self.extra
        yield from (k for k in self.logs if k not in self.extra)

    def __len__(self) -> int:
        return len(set(self.extra) | set(self.logs))
