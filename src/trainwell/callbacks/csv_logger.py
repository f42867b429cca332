"""``CSVLogger``: one CSV row of logs per epoch."""

from __future__ import annotations

import csv
import os

from trainwell._errors import ConfigError, ConfigTypeError, describe

from .base import Callback


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (0-based) then the log keys in sorted order.

    The columns are fixed at the first epoch (a key missing later is written as ``NA``); the file
    is flushed after each row so it can be read during training.

    Args:
        filename: path of the CSV file; parent folders are created.
        separator: column separator. Defaults to ``","``.
        append: keep existing rows (and skip the header if the file already has one).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> logger = CSVLogger(path); logger.on_train_begin()
        >>> logger.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.75}); logger.on_train_end()
        >>> print(open(path).read().strip())
        epoch,accuracy,loss
        0,0.75,0.5
    """

    writes_output = True  # rank 0 only in a distributed run

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)):
            raise ConfigTypeError(
                f"CSVLogger: `filename` expects a string or path, received {describe(filename)}. "
                "Pass e.g. filename='training.csv'."
            )
        if not isinstance(separator, str) or len(separator) != 1:
            raise ConfigError(
                f"CSVLogger: `separator` expects one character, received {describe(separator)}. "
                "Use separator=',' or separator=';'."
            )
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        self._close()
        parent = os.path.dirname(self.filename)
        if parent:
            os.makedirs(parent, exist_ok=True)
        has_header = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._write_header = not has_header
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self.keys = None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._file is None:  # used without on_train_begin (e.g. a hand-written loop)
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs)
            for name in getattr(self.model, "metrics_names", None) or []:
                if name.startswith("val_") and name not in self.keys:
                    self.keys.append(name)
            self._writer = csv.DictWriter(
                self._file, fieldnames=["epoch", *self.keys], delimiter=self.sep, lineterminator="\n"
            )
            if self._write_header:
                self._writer.writeheader()
        row = {"epoch": epoch, **{key: logs.get(key, "NA") for key in self.keys}}
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        self._close()

    def _close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._file = None
        self._writer = None
