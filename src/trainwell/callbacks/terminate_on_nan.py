"""``TerminateOnNaN``: stop training when the loss becomes NaN or infinite."""

from __future__ import annotations

import math

from .base import Callback


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite.

    Keras reads the loss after every batch; here each read may sync the device, so the batch
    loss is read only every 16th batch (batches 0, 16, 32, ...), and the epoch loss is always
    checked at epoch end. The batch ``loss`` is the running mean of the epoch, so a NaN stays
    visible until the next check: at most 15 batches are lost.

    Args:
        raise_error: raise a RuntimeError instead of setting ``model.stop_training``.

    Example:
        >>> class Model:
        ...     stop_training = False
        >>> nan_stop = TerminateOnNaN(); nan_stop.set_model(Model())
        >>> nan_stop.on_train_batch_end(0, {"loss": float("nan")})
        Batch 0: Invalid loss, terminating training
        >>> nan_stop.model.stop_training
        True
    """

    CHECK_EVERY = 16

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.CHECK_EVERY == 0 and logs is not None:
            self._check(logs.get("loss"), f"Batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        self._check((logs or {}).get("loss"), f"Epoch {epoch + 1}")

    def _check(self, loss, where: str) -> None:
        if loss is None or math.isfinite(float(loss)):
            return
        if self.raise_error:
            raise RuntimeError(
                f"TerminateOnNaN: loss is {float(loss)} at {where.lower()}. Lower the learning rate, "
                "scale the inputs, or check the data for NaN/inf."
            )
        print(f"{where}: Invalid loss, terminating training")
        self.model.stop_training = True
