"""``ProgbarLogger``: the progress display, and the one-line epoch summary it prints."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping

from trainwell._errors import check_verbose

from .base import Callback


def _format_value(value) -> str:
    # Keras's progress-bar rule: 4 decimals, scientific below 1e-3 so small losses stay visible.
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def format_logs_line(title: str, seconds: float, logs: Mapping | None) -> str:
    """``"Epoch 3/20 - 0.12s - loss: 0.1234 - val_loss: 0.2345"``: the one-line epoch summary.

    Keys keep the order of ``logs``; ``learning_rate`` is left out (it is in the History).

    Example:
        >>> format_logs_line("Epoch 1/2", 0.5, {"loss": 0.25, "learning_rate": 0.01})
        'Epoch 1/2 - 0.50s - loss: 0.2500'
    """
    parts = [title, f"{seconds:.2f}s"]
    parts += [f"{k}: {_format_value(v)}" for k, v in (logs or {}).items() if k != "learning_rate"]
    return " - ".join(parts)


class ProgbarLogger(Callback):
    """Prints training progress to ``sys.stdout``, without ever flooding a log.

    - ``verbose=1`` in a terminal (or Jupyter): a live rich bar per epoch with batches done, ETA
      and the running loss, then one summary line per epoch. The loss is read from the lazy batch
      logs at most every 0.1 s, since each read may sync the device.
    - ``verbose=1`` writing to a file or pipe, and ``verbose=2``: exactly one line per epoch,
      ``Epoch 3/20 - 0.12s - loss: 0.1234 - val_loss: 0.2345``; per-batch hooks are switched off.
    - ``verbose=0``: nothing.

    Inside ``fit``, validation passes are silent; ``evaluate`` and ``predict`` get one line each.

    Args:
        verbose: 0, 1, 2 or 'auto' (= 1). None (default) follows ``params["verbose"]``, i.e. the
            ``verbose`` given to ``fit``.

    Raises:
        ConfigError: ``verbose`` is not one of the above.

    Example:
        >>> bar = ProgbarLogger(verbose=2)
        >>> bar.set_params({"epochs": 2, "steps": 4, "verbose": 1})
        >>> bar.on_train_begin(); bar.on_epoch_begin(0)
        >>> bar.on_epoch_end(0, {"loss": 0.5})  # doctest: +ELLIPSIS
        Epoch 1/2 - ...s - loss: 0.5000
    """

    writes_output = True  # rank 0 only in a distributed run

    READ_INTERVAL = 0.1  # seconds between two reads of the (device-syncing) batch loss

    def __init__(self, verbose: int | str | None = None):
        super().__init__()
        self._verbose_arg = None if verbose is None else check_verbose(verbose, "ProgbarLogger")
        self.verbose = 1 if verbose is None else self._verbose_arg
        self.epochs = 1
        self.steps = None
        self.live = False
        self._progress = None
        self._in_fit = False
        self._title, self._start, self._last_read = "", 0.0, -math.inf
        self._clock = time.monotonic  # replaced by tests to make throttling deterministic

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        params = params or {}
        if self._verbose_arg is None:
            verbose = params.get("verbose")
            self.verbose = 1 if verbose is None else check_verbose(verbose, "fit")
        self.epochs = params.get("epochs") or 1
        self.steps = params.get("steps")
        self.live = self.verbose == 1 and _stdout_is_interactive()
        for hook in ("on_train_batch_end", "on_test_batch_end", "on_predict_batch_end"):
            if self.live:
                self._unskip_hook(hook)
            else:
                self._skip_hook(hook)

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._stop_bar()
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._begin(f"Epoch {epoch + 1}/{self.epochs}")

    def on_epoch_end(self, epoch, logs=None):
        self._end(logs)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._begin("Evaluate")

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._end(logs)

    def on_predict_begin(self, logs=None):
        self._begin("Predict")

    def on_predict_end(self, logs=None):
        self._end(None)

    def on_train_batch_end(self, batch, logs=None):
        self._advance(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._advance(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(batch, None)

    def _begin(self, title: str) -> None:
        self._stop_bar()  # a bar left over from an interrupted stage
        self._title = title
        self._start = self._clock()
        self._last_read = -math.inf
        if self.live and self.verbose:
            self._start_bar(title)

    def _end(self, logs) -> None:
        self._stop_bar()
        if self.verbose:
            line = format_logs_line(self._title, self._clock() - self._start, logs)
            print(line, file=sys.stdout, flush=True)

    def _start_bar(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn(title),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"),
            console=Console(file=sys.stdout),
            transient=True,  # the summary line replaces the bar
        )
        self._task = self._progress.add_task(title, total=self.steps, loss="")
        self._progress.start()

    def _advance(self, batch, logs) -> None:
        if self._progress is None:
            return
        now = self._clock()
        if now - self._last_read < self.READ_INTERVAL:
            return
        self._last_read = now
        # The one read that may sync the device (`"loss" in logs` would read it too).
        value = logs.get("loss") if logs is not None else None
        loss = "" if value is None else f"loss: {_format_value(value)}"
        self._progress.update(self._task, completed=batch + 1, loss=loss)

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _stdout_is_interactive() -> bool:
    try:
        if sys.stdout.isatty():
            return True
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False
    from rich.console import Console

    console = Console(file=sys.stdout)
    return console.is_terminal or console.is_jupyter
