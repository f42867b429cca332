"""Callbacks that set the learning rate: ``ReduceLROnPlateau`` and ``LearningRateScheduler``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from trainwell._errors import ConfigError, describe

from ._checks import _check_callable, _check_non_negative_int, _check_real, _check_verbose
from .base import Callback
from .monitor import MonitorCallback


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when the monitored quantity stops improving.

    Keras semantics: a non-improving epoch outside cooldown adds 1 to ``wait``; at ``wait >=
    patience`` the rate becomes ``max(lr * factor, min_lr)`` (only while ``lr > min_lr``), then
    ``cooldown`` epochs pass during which ``wait`` stays 0.

    Args:
        monitor: quantity to watch. Defaults to ``"val_loss"``.
        factor: ``new_lr = lr * factor``, in [0, 1). Defaults to 0.1.
        patience: epochs without improvement before reducing. Defaults to 10.
        verbose: 1 prints each reduction. Defaults to 0.
        mode: 'auto', 'min' or 'max'. Defaults to 'auto'.
        min_delta: smallest change that counts as improvement. Defaults to 1e-4.
        cooldown: epochs to wait after a reduction before counting again. Defaults to 0.
        min_lr: lower bound on the learning rate. Defaults to 0.0.

    Raises:
        ConfigError: ``factor >= 1`` or negative, negative ``patience``/``cooldown``/``min_lr``.

    Example:
        >>> class Opt:
        ...     learning_rate = 1.0
        >>> class Model:
        ...     optimizer = Opt()
        >>> reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
        >>> reduce.set_model(Model()); reduce.on_train_begin()
        >>> for epoch, loss in enumerate([1.0, 1.0, 0.5]):
        ...     reduce.on_epoch_end(epoch, {"loss": loss})
        >>> Model.optimizer.learning_rate
        0.5
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        where = "ReduceLROnPlateau"
        super().__init__(monitor, mode, None, min_delta)
        factor = _check_real(factor, "factor", where, minimum=0.0)
        if factor >= 1.0:
            raise ConfigError(
                f"{where}: `factor` expects a number below 1 (new_lr = lr * factor), received {factor!r}. "
                "Use e.g. factor=0.5 to halve the learning rate."
            )
        self.factor = factor
        self.patience = _check_non_negative_int(patience, "patience", where)
        self.cooldown = _check_non_negative_int(cooldown, "cooldown", where)
        self.min_lr = _check_real(min_lr, "min_lr", where, minimum=0.0)
        self.verbose = _check_verbose(verbose, where)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def get_state(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict) -> None:
        self.best, self.wait = state["best"], int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])

    def in_cooldown(self) -> bool:
        """Whether a recent reduction is still cooling down."""
        return self.cooldown_counter > 0

    adds_to_logs = True  # 'learning_rate': CallbackList runs it before History at an epoch's end

    def on_epoch_end(self, epoch, logs=None):
        _log_learning_rate(self.model, logs)
        current = self._monitor_value(logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                self._reduce(epoch)

    def _reduce(self, epoch: int) -> None:
        old_lr = float(self.model.optimizer.learning_rate)
        # Compare in float32 as Keras does, so a rate stored at min_lr is not "reduced" forever.
        if old_lr > float(np.float32(self.min_lr)):
            new_lr = max(old_lr * self.factor, self.min_lr)
            self.model.optimizer.learning_rate = new_lr
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``.

    Args:
        schedule: function of the 0-based epoch and the current rate (a float) returning the new
            rate; a one-argument ``schedule(epoch)`` is also accepted, as in Keras.
        verbose: 1 prints each new rate. Defaults to 0.

    Raises:
        ConfigTypeError: ``schedule`` is not callable.
        ConfigError: ``schedule`` returned something that is not a number.

    Example:
        >>> class Opt:
        ...     learning_rate = 0.1
        >>> class Model:
        ...     optimizer = Opt()
        >>> sched = LearningRateScheduler(lambda epoch, lr: lr if epoch < 1 else lr / 2)
        >>> sched.set_model(Model())
        >>> for epoch in range(3):
        ...     sched.on_epoch_begin(epoch)
        >>> Model.optimizer.learning_rate
        0.025
    """

    def __init__(self, schedule: Callable, verbose: int = 0):
        super().__init__()
        self.schedule = _check_callable(schedule, "schedule", "LearningRateScheduler")
        self.verbose = _check_verbose(verbose, "LearningRateScheduler")
        self._takes_lr = _accepts_two_args(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if self._takes_lr:
            new_lr = self.schedule(epoch, float(optimizer.learning_rate))
        else:
            new_lr = self.schedule(epoch)
        try:
            if isinstance(new_lr, (bool, str)):
                raise TypeError
            new_lr = float(new_lr)
        except (TypeError, ValueError):
            raise ConfigError(
                f"LearningRateScheduler: `schedule` must return a float learning rate, returned "
                f"{describe(new_lr)} at epoch {epoch}. Return e.g. lr * 0.9."
            ) from None
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new_lr}.")

    adds_to_logs = True  # 'learning_rate': CallbackList runs it before History at an epoch's end

    def on_epoch_end(self, epoch, logs=None):
        _log_learning_rate(self.model, logs)


def _log_learning_rate(model, logs) -> None:
    # As Keras 3: the rate this epoch trained with joins the epoch's logs, so History gets a
    # 'learning_rate' list (and CSVLogger a column) whenever a learning-rate callback runs.
    if logs is not None:
        logs["learning_rate"] = float(model.optimizer.learning_rate)


def _accepts_two_args(fn) -> bool:
    # Inspect instead of Keras's try/except TypeError, which would also swallow a TypeError
    # raised inside the user's schedule.
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature
        return True
    try:
        signature.bind(0, 0.0)
        return True
    except TypeError:
        return False
