"""``EarlyStopping`` and ``StopReason``: stop training when a quantity stops improving."""

from __future__ import annotations

import enum

import numpy as np

from trainwell._errors import check_number, check_verbose

from ._checks import _check_non_negative_int
from .monitor import MonitorCallback


class StopReason(enum.Enum):
    """Why ``EarlyStopping`` stopped training."""

    NOT_STOPPED = "not_stopped"
    PATIENCE_EXHAUSTED = "patience_exhausted"
    BASELINE_NOT_MET = "baseline_not_met"


class EarlyStopping(MonitorCallback):
    """Stop training when the monitored quantity stops improving (Keras 3 semantics).

    Each monitored epoch adds 1 to ``wait``; an improvement on ``best`` by more than ``min_delta``
    resets it (with a ``baseline``, only when the value also beats the baseline). Training stops
    at the end of an epoch when ``wait >= patience`` (never after the first epoch).

    Args:
        monitor: quantity to watch. Defaults to ``"val_loss"``.
        min_delta: smallest change that counts as improvement (its sign is ignored). Defaults to 0.
        patience: epochs without improvement before stopping. Defaults to 0.
        verbose: 1 prints when stopping and when restoring weights. Defaults to 0.
        mode: 'auto', 'min' or 'max'. Defaults to 'auto'.
        baseline: training stops if no epoch beats this value within ``patience`` epochs.
        restore_best_weights: at the end of training (stopped or not), restore the weights of the
            best epoch; if nothing beat the baseline, the best of the epochs seen. Defaults to False.
        start_from_epoch: epochs to ignore at the start (warm-up). Defaults to 0.

    Attributes:
        stopped_epoch: 0-based epoch at which training was stopped (0 when not stopped).
        best, best_epoch, wait: the best value, its epoch, and epochs since the last reset.
        stop_reason: a ``StopReason``; ``stop_message`` says it in a sentence.

    Raises:
        ConfigError: negative ``patience`` or ``start_from_epoch``, unknown ``mode``, bad numbers.

    Example:
        >>> class Model:
        ...     stop_training = False
        >>> stopper = EarlyStopping(monitor="loss", patience=1)
        >>> stopper.set_model(Model()); stopper.on_train_begin()
        >>> for epoch, loss in enumerate([0.5, 0.4, 0.45, 0.41]):
        ...     stopper.on_epoch_end(epoch, {"loss": loss})
        ...     if stopper.model.stop_training:
        ...         break
        >>> stopper.stopped_epoch, stopper.best_epoch, stopper.stop_reason.name
        (2, 1, 'PATIENCE_EXHAUSTED')
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        super().__init__(monitor, mode, None, min_delta)
        self.patience = _check_non_negative_int(patience, "patience", "EarlyStopping")
        self.start_from_epoch = _check_non_negative_int(start_from_epoch, "start_from_epoch", "EarlyStopping")
        self.verbose = check_verbose(verbose, "EarlyStopping")
        self.baseline = check_number(baseline, "baseline", "EarlyStopping", allow_none=True, allow_inf=True)
        self.restore_best_weights = bool(restore_best_weights)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        # Reset everything so one instance can serve several fit calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None
        self.stop_reason = StopReason.NOT_STOPPED

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = _snapshot(self.model.get_weights()), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _snapshot(self.model.get_weights())
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            self.stop_reason = (
                StopReason.BASELINE_NOT_MET if self._baseline_unmet() else StopReason.PATIENCE_EXHAUSTED
            )

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def set_state(self, state: dict) -> None:
        self.wait, self.best = int(state["wait"]), state["best"]
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best_weights = state.get("best_weights")

    def _baseline_unmet(self) -> bool:
        if self.baseline is None:
            return False
        return self.best is None or not self._is_improvement(self.best, self.baseline)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    @property
    def stop_message(self) -> str:
        """One sentence saying whether and why training stopped (epochs counted from 1)."""
        best = "none" if self.best is None else f"{self.best:.4g} at epoch {self.best_epoch + 1}"
        if self.stop_reason is StopReason.PATIENCE_EXHAUSTED:
            return (
                f"Stopped at epoch {self.stopped_epoch + 1}: {self.monitor} did not improve by more than "
                f"{self.min_delta:g} for {self.wait} epochs (patience={self.patience}; best {best})."
            )
        if self.stop_reason is StopReason.BASELINE_NOT_MET:
            return (
                f"Stopped at epoch {self.stopped_epoch + 1}: {self.monitor} did not beat the baseline "
                f"{self.baseline:g} within {self.wait} epochs (patience={self.patience}; best {best})."
            )
        return f"Not stopped early by EarlyStopping (best {self.monitor}: {best})."


def _snapshot(weights) -> list:
    # Copy: on the CPU a tensor's .numpy() shares memory with the parameter, so later optimizer
    # steps would silently overwrite the "best" weights.
    return [np.array(w, copy=True) for w in weights]
