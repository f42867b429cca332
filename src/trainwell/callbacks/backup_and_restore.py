"""``BackupAndRestore``: back up the training state during ``fit`` so a restarted ``fit`` resumes."""

from __future__ import annotations

import os
import sys
import warnings

from trainwell import saving
from trainwell._errors import ConfigTypeError, ModelFileError, describe

from ._checks import _check_save_freq
from .base import Callback


class BackupAndRestore(Callback):
    """Back up the whole training state during ``fit``; a restarted ``fit`` continues from it.

    At each epoch end the model file (weights, optimizer state, epoch count, shuffle seed, torch's
    random state, history) is written atomically to ``backup_dir/latest.tw``, with the number of
    finished epochs and the state of the other callbacks (``Callback.get_state``: EarlyStopping's
    patience count, best value and best weights, ReduceLROnPlateau's, ModelCheckpoint's best).
    When ``fit`` starts and a backup exists, all of it is restored and the loop skips the finished
    epochs, so a run killed at any moment and started again with the same code ends with the same
    weights, and stops at the same epoch, as one that was never interrupted (CPU, same data).
    Callbacks are matched by class and order; one the backup does not know starts afresh. When
    ``fit`` ends normally the backup is deleted (``delete_checkpoint``); an interrupted or failed
    fit keeps it.

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

    writes_output = True  # rank 0 only in a distributed run

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
        self._siblings: list = []
        self._pending_states: dict = {}
        if save_freq == "epoch":
            self._skip_hook("on_train_batch_end")

    def set_siblings(self, callbacks: list) -> None:
        """The callbacks of this fit (given by ``CallbackList``), whose state is backed up."""
        self._siblings = [c for c in callbacks if c is not self]

    def _keyed_siblings(self) -> dict:
        """The callbacks with a state, keyed by class name and rank among that class."""
        keyed, seen = {}, {}
        for callback in self._siblings:
            name = type(callback).__name__
            seen[name] = seen.get(name, -1) + 1
            keyed[f"{name}_{seen[name]}"] = callback
        return keyed

    def on_train_begin(self, logs=None):
        self._batches = 0
        self._restored_epochs = []
        self._pending_states = {}
        candidates = [self.LATEST] + ([self.PREVIOUS] if self.double_checkpoint else [])
        for name in candidates:
            path = os.path.join(self.backup_dir, name)
            if not os.path.exists(path):
                continue
            try:
                header, tensors = saving.restore_training_state(self.model, path)
            except ModelFileError:
                if name == candidates[-1]:
                    raise
                continue  # a damaged latest backup: fall back to the previous one
            self._resume(header)
            self._pending_states = _join_states(header.get("callbacks") or {}, tensors)
            return

    def _resume(self, header: dict) -> None:
        backup = header.get("backup") or {}
        epoch = int(backup.get("epoch", 0))
        self.model._initial_epoch_override = epoch  # declared in Sequential.__init__
        saved = header.get("history") or {}
        history = getattr(self.model, "history", None)
        if history is not None and isinstance(saved.get("history"), dict):
            history.history = {k: list(v) for k, v in saved["history"].items()}
            self._restored_epochs = list(saved.get("epoch") or [])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._pending_states:  # now that every callback's on_train_begin has reset it
            for key, callback in self._keyed_siblings().items():
                if key in self._pending_states:
                    try:
                        callback.set_state(self._pending_states[key])
                    except (KeyError, TypeError, ValueError) as exc:
                        warnings.warn(f"BackupAndRestore: could not restore the state of {key} from the "
                                      f"backup ({exc!r}); it starts afresh.", RuntimeWarning, stacklevel=2)
            self._pending_states = {}
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
        header, tensors = saving.model_state(self.model)
        history = getattr(self.model, "history", None)
        lists = {k: list(v) for k, v in (getattr(history, "history", None) or {}).items()}
        epochs = list(getattr(history, "epoch", None) or [])
        if ended is not None and (not epochs or epochs[-1] != ended[0]):
            # fit puts History first, but a hand-built CallbackList may not: add the logs it lacks.
            epochs.append(ended[0])
            for key, value in (ended[1] or {}).items():
                lists.setdefault(key, []).append(value)
        header["history"] = {"history": lists, "epoch": epochs}
        header["backup"] = {"epoch": finished_epochs}
        states = {key: c.get_state() for key, c in self._keyed_siblings().items()}
        header["callbacks"], arrays = _split_states({k: v for k, v in states.items() if v is not None})
        tensors = {**tensors, **arrays}
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


# A callback state's arrays go to the file's tensors (``callbacks/<key>/<name>/<i>``), the rest to
# its JSON header, where each array or list of arrays leaves a marker with its count.
_ARRAYS = "__arrays__"


def _split_states(states: dict) -> tuple[dict, dict]:
    import numpy as np
    import torch

    plain, tensors = {}, {}
    for key, state in states.items():
        plain[key] = {}
        for name, value in state.items():
            single = isinstance(value, np.ndarray)
            if single or (isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray)):
                items = [value] if single else list(value)
                for i, array in enumerate(items):
                    tensors[f"callbacks/{key}/{name}/{i}"] = torch.from_numpy(np.ascontiguousarray(array))
                plain[key][name] = {_ARRAYS: len(items), "single": single}
            else:
                plain[key][name] = value
    return plain, tensors


def _join_states(plain: dict, tensors: dict) -> dict:
    states = {}
    for key, state in plain.items():
        states[key] = dict(state)
        for name, value in state.items():
            if isinstance(value, dict) and _ARRAYS in value:
                names = [f"callbacks/{key}/{name}/{i}" for i in range(int(value[_ARRAYS]))]
                if not all(n in tensors for n in names):
                    states[key] = None  # a damaged entry: set_state fails and the callback starts afresh
                    break
                items = [tensors[n].numpy().copy() for n in names]
                states[key][name] = items[0] if value.get("single") else items
    return states
