"""``BackupAndRestore``: back up the training state during ``fit`` so a restarted ``fit`` resumes."""

from __future__ import annotations

import os
import sys

from trainwell._errors import ConfigTypeError, describe

from ._checks import _check_save_freq
from .base import Callback


class BackupAndRestore(Callback):
    """Back up the whole training state during ``fit``; a restarted ``fit`` continues from it.

    At each epoch end the model file (weights, optimizer state, epoch count, shuffle seed, torch's
    random state, history) is written atomically to ``backup_dir/latest.tw``, with the number of
    finished epochs. When ``fit`` starts and a backup exists, it is restored and the loop skips the
    finished epochs, so a run killed at any moment and started again with the same code ends with
    the same weights as one that was never interrupted (CPU, same data). When ``fit`` ends
    normally the backup is deleted (``delete_checkpoint``); an interrupted or failed fit keeps it.

    Args:
        backup_dir: folder for the backup; created if needed. Use one folder per training job.
        save_freq: ``"epoch"``, or a positive integer: back up after every that many batches. As in
            Keras, a resume from a mid-epoch backup restarts that epoch from its first batch with
            the mid-epoch weights, so only epoch backups repeat an uninterrupted run exactly.
        double_checkpoint: also keep the backup before the latest (``previous.tw``), used when the
            latest cannot be read.
        delete_checkpoint: delete the backup when ``fit`` finishes normally.

    Raises:
        ConfigTypeError: ``backup_dir`` is not a string or path.
        ConfigError: bad ``save_freq``. ModelFileError: (in ``fit``) the backup belongs to another
            model architecture.

    Example:
        >>> model.fit(x, y, epochs=50, callbacks=[BackupAndRestore("backup")])  # doctest: +SKIP
    """

    LATEST, PREVIOUS = "latest.tw", "previous.tw"

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        save_freq: str | int = "epoch",
        double_checkpoint: bool = False,
        delete_checkpoint: bool = True,
    ):
        super().__init__()
        where = "BackupAndRestore"
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ConfigTypeError(
                f"{where}: `backup_dir` expects a folder path, received "
                f"{describe(backup_dir)}. Pass e.g. backup_dir='backup'."
            )
        self.save_freq = _check_save_freq(save_freq, where)
        self.backup_dir = os.fspath(backup_dir)
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._epoch = 0
        self._batches = 0
        self._restored_epochs: list[int] = []
        if save_freq == "epoch":
            self._skip_hook("on_train_batch_end")

    def on_train_begin(self, logs=None):
        from trainwell import saving
        from trainwell._errors import ModelFileError

        self._batches = 0
        self._restored_epochs = []
        candidates = [self.LATEST] + ([self.PREVIOUS] if self.double_checkpoint else [])
        for name in candidates:
            path = os.path.join(self.backup_dir, name)
            if not os.path.exists(path):
                continue
            try:
                header = saving.restore_training_state(self.model, path)
            except ModelFileError:
                if name == candidates[-1]:
                    raise
                continue  # a damaged latest backup: fall back to the previous one
            self._resume(header)
            return

    def _resume(self, header: dict) -> None:
        backup = header.get("backup") or {}
        epoch = int(backup.get("epoch", 0))
        self.model._initial_epoch_override = epoch
        saved = header.get("history") or {}
        history = getattr(self.model, "history", None)
        if history is not None and isinstance(saved.get("history"), dict):
            history.history = {k: list(v) for k, v in saved["history"].items()}
            self._restored_epochs = list(saved.get("epoch") or [])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        history = getattr(self.model, "history", None)
        if self._restored_epochs and history is not None:
            # History.on_train_begin emptied its epoch list after our restore: put the old epochs back.
            history.epoch[:0] = self._restored_epochs
            self._restored_epochs = []

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches >= self.save_freq:
            self._batches = 0
            self._backup(self._epoch, None)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._backup(epoch + 1, (epoch, logs))

    def _backup(self, finished_epochs: int, ended) -> None:
        """Write the training state; ``ended`` = (epoch, logs) of the epoch that just ended, if any."""
        from trainwell import saving

        header, tensors = saving.model_state(self.model)
        history = getattr(self.model, "history", None)
        lists = {k: list(v) for k, v in (getattr(history, "history", None) or {}).items()}
        epochs = list(getattr(history, "epoch", None) or [])
        if ended is not None and (not epochs or epochs[-1] != ended[0]):
            # History runs after user callbacks, so this epoch's logs are not in it yet.
            epochs.append(ended[0])
            for key, value in (ended[1] or {}).items():
                lists.setdefault(key, []).append(value)
        header["history"] = {"history": lists, "epoch": epochs}
        header["backup"] = {"epoch": finished_epochs}
        os.makedirs(self.backup_dir, exist_ok=True)
        latest = os.path.join(self.backup_dir, self.LATEST)
        if self.double_checkpoint and os.path.exists(latest):
            os.replace(latest, os.path.join(self.backup_dir, self.PREVIOUS))
        saving.write_container(latest, header, tensors)

    def on_train_end(self, logs=None):
        interrupted = sys.exc_info()[0] is not None or getattr(self.model.history, "interrupted", False)
        if not self.delete_checkpoint or interrupted:
            return  # keep the backup: the next fit resumes from it
        for name in (self.LATEST, self.PREVIOUS):
            try:
                os.remove(os.path.join(self.backup_dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.backup_dir)  # only if empty: never delete files we did not write
        except OSError:
            pass
