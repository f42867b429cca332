"""``History``: the per-epoch logs of a ``fit``, as ``history.history[key]`` lists."""

from __future__ import annotations

from .base import Callback, _try_setattr


class History(Callback):
    """Records the epoch logs: ``history.history["loss"]`` is the list of per-epoch losses.

    As in Keras 3, ``epoch`` restarts at each ``fit`` while ``history`` keeps appending if the
    same object is reused; ``fit`` creates a fresh History each call, so in practice both start
    empty. ``model.history`` points to it.

    Attributes:
        history: dict of lists, one list per logged key.
        epoch: list of epoch indices (0-based) seen in the current ``fit``.

    Example:
        >>> h = History()
        >>> h.on_train_begin()
        >>> h.on_epoch_end(0, {"loss": 0.5}); h.on_epoch_end(1, {"loss": 0.25})
        >>> h.history, h.epoch
        ({'loss': [0.5, 0.25]}, [0, 1])
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.diagnosis: list = []  # the training doctor's findings, set at the end of fit
        self.interrupted = False  # True when fit was stopped by Ctrl-C

    def on_train_begin(self, logs=None):
        self.epoch = []
        if self.model is not None:
            _try_setattr(self.model, "history", self)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
