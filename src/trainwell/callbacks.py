"""Keras's callbacks: hooks the training loop calls at the start and end of each stage.

A callback sees a narrow interface, so it can be tested with a stand-in model:

- ``self.model``: ``stop_training`` (read/write), ``get_weights()``, ``set_weights(list)``,
  ``optimizer.learning_rate`` (settable float), ``save(path)``, ``save_weights(path)``;
- ``self.params``: ``{"epochs": ..., "steps": ..., "verbose": ...}``;
- ``logs``: at epoch end a dict of Python floats (``loss``, metrics, ``val_`` keys,
  ``learning_rate``); per batch a lazy Mapping whose reads may sync the device.

Because per-batch reads cost a device sync, the loop calls per-batch hooks only on callbacks that
override them (``overrides``); ``CallbackList`` works this out once, not per batch.

Example:
    >>> from trainwell.callbacks import CallbackList, EarlyStopping
    >>> stopper = EarlyStopping(monitor="loss", patience=1)
    >>> callbacks = CallbackList([stopper], add_history=True, epochs=5, steps=10)
    >>> callbacks.needs_batch_hooks
    False
"""

from __future__ import annotations

import csv
import enum
import inspect
import math
import numbers
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from trainwell._errors import ConfigError, ConfigTypeError, describe, unknown_name

# Keras's 16 hooks. `on_batch_begin/end` are Keras's aliases of `on_train_batch_begin/end`.
BATCH_HOOKS = (
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)
STAGE_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
)
HOOKS = STAGE_HOOKS + BATCH_HOOKS + ("on_batch_begin", "on_batch_end")
_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}
MODES = ("auto", "min", "max")


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the constructors below.


def _check_non_negative_int(value, argument: str, where: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise ConfigError(
        f"{where}: `{argument}` expects a non-negative integer, received {describe(value)}. "
        f"Pass a whole number such as {argument}=3."
    )


def _check_real(value, argument: str, where: str, *, allow_none: bool = False, minimum=None) -> float | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok and (minimum is None or value >= minimum):
        return float(value)
    bound = f" >= {minimum}" if minimum is not None else ""
    none = " or None" if allow_none else ""
    raise ConfigError(
        f"{where}: `{argument}` expects a number{bound}{none}, received {describe(value)}. "
        f"Pass a plain float such as {argument}=0.01."
    )


def _check_verbose(value, where: str):
    if value == "auto" or (isinstance(value, numbers.Integral) and value >= 0):
        return 1 if value == "auto" else int(value)
    raise ConfigError(
        f"{where}: `verbose` expects 0, 1, 2 or 'auto', received {describe(value)}. "
        "Use verbose=0 for silence."
    )


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


def _check_callable(value, argument: str, where: str):
    if not callable(value):
        raise ConfigTypeError(
            f"{where}: `{argument}` expects a function, received {describe(value)}. "
            f"Pass e.g. {argument}=lambda *args: print(args)."
        )
    return value


# ---------------------------------------------------------------------------------------------
# Base class and dispatch.


def _default(hook):
    """Mark a hook as the base class's no-op, so ``overrides`` can tell it from a real one."""
    hook._default = True
    return hook


def _is_default(method) -> bool:
    return getattr(getattr(method, "__func__", method), "_default", False)


def overrides(callback, hook_name: str) -> bool:
    """Whether ``callback`` does something in ``hook_name`` (i.e. it is not the default no-op).

    ``on_train_batch_begin/end`` also count as overridden when Keras's aliases
    ``on_batch_begin/end`` are, since the defaults forward to them.

    Args:
        callback: a ``Callback``.
        hook_name: one of the 16 hook names, e.g. ``"on_train_batch_end"``.

    Returns:
        True when the loop must call the hook.

    Raises:
        ConfigError: ``hook_name`` is not a hook.

    Example:
        >>> class Counter(Callback):
        ...     def on_train_batch_end(self, batch, logs=None):
        ...         pass
        >>> overrides(Counter(), "on_train_batch_end"), overrides(Counter(), "on_test_batch_end")
        (True, False)
    """
    if hook_name not in HOOKS:
        raise unknown_name("callback hook", hook_name, HOOKS, argument="hook_name")
    names = (hook_name, _ALIASES[hook_name]) if hook_name in _ALIASES else (hook_name,)
    return any(not _is_default(getattr(callback, name)) for name in names)


class Callback:
    """Base class of callbacks: every hook is a no-op; subclasses override the ones they need.

    Attributes:
        model: the model being trained (set by ``set_model``).
        params: ``{"epochs", "steps", "verbose"}`` (set by ``set_params``).

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         print(f"epoch {epoch + 1}: loss {logs['loss']:.2f}")
        >>> PrintLoss().on_epoch_end(0, {"loss": 0.5})
        epoch 1: loss 0.50
    """

    # Class-level defaults so subclasses that forget `super().__init__()` still work.
    model = None
    params = None

    def __init__(self):
        self.model = None
        self.params = None

    def set_model(self, model) -> None:
        """Attach the model the hooks act on."""
        self.model = model

    def set_params(self, params: dict) -> None:
        """Receive the loop's parameters (``epochs``, ``steps``, ``verbose``)."""
        self.params = params

    def _skip_hook(self, name: str) -> None:
        # Rebind the default no-op on this instance, so `overrides` reports False and the loop
        # skips the per-batch dispatch (and its device syncs) for this callback.
        setattr(self, name, getattr(Callback, name).__get__(self))

    def _unskip_hook(self, name: str) -> None:
        self.__dict__.pop(name, None)

    @_default
    def on_train_begin(self, logs=None):
        """Called once at the start of ``fit``."""

    @_default
    def on_train_end(self, logs=None):
        """Called once at the end of ``fit``; ``logs`` are the last epoch's."""

    @_default
    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of epoch ``epoch`` (0-based)."""

    @_default
    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of epoch ``epoch`` with a dict of floats (``val_`` keys included)."""

    @_default
    def on_test_begin(self, logs=None):
        """Called at the start of ``evaluate`` and of each validation pass."""

    @_default
    def on_test_end(self, logs=None):
        """Called at the end of ``evaluate`` and of each validation pass."""

    @_default
    def on_predict_begin(self, logs=None):
        """Called at the start of ``predict``."""

    @_default
    def on_predict_end(self, logs=None):
        """Called at the end of ``predict``."""

    @_default
    def on_batch_begin(self, batch, logs=None):
        """Keras's alias of ``on_train_batch_begin``."""

    @_default
    def on_batch_end(self, batch, logs=None):
        """Keras's alias of ``on_train_batch_end``."""

    @_default
    def on_train_batch_begin(self, batch, logs=None):
        """Called before training batch ``batch``; forwards to ``on_batch_begin``."""
        self.on_batch_begin(batch, logs)

    @_default
    def on_train_batch_end(self, batch, logs=None):
        """Called after training batch ``batch``; ``logs`` is lazy (reads may sync the device)."""
        self.on_batch_end(batch, logs)

    @_default
    def on_test_batch_begin(self, batch, logs=None):
        """Called before an ``evaluate``/validation batch."""

    @_default
    def on_test_batch_end(self, batch, logs=None):
        """Called after an ``evaluate``/validation batch; ``logs`` is lazy."""

    @_default
    def on_predict_batch_begin(self, batch, logs=None):
        """Called before a ``predict`` batch."""

    @_default
    def on_predict_batch_end(self, batch, logs=None):
        """Called after a ``predict`` batch."""


class CallbackList(Callback):
    """An ordered list of callbacks called as one; per-batch hooks go only to those overriding them.

    Args:
        callbacks: ``Callback`` instances (None for none), called in this order.
        model: the model to attach to each callback.
        add_history: append a ``History`` unless one is in ``callbacks``.
        add_progbar: append a ``ProgbarLogger`` unless one is in ``callbacks``.
        verbose, epochs, steps: the ``params`` every callback receives.

    Attributes:
        needs_batch_hooks: some callback overrides a training per-batch hook.
        needs_test_batch_hooks: some callback overrides a test per-batch hook.
        needs_predict_batch_hooks: some callback overrides a predict per-batch hook.

    Raises:
        ConfigTypeError: an entry is not a ``Callback``.

    Example:
        >>> callbacks = CallbackList([TerminateOnNaN()], add_history=True, epochs=2, steps=3)
        >>> [type(c).__name__ for c in callbacks], callbacks.needs_batch_hooks
        (['TerminateOnNaN', 'History'], True)
    """

    def __init__(
        self,
        callbacks: Iterable[Callback] | None = None,
        model=None,
        add_history: bool = False,
        add_progbar: bool = False,
        verbose: int | str = 1,
        epochs: int | None = None,
        steps: int | None = None,
    ):
        super().__init__()
        self.callbacks = []
        for i, callback in enumerate(callbacks or []):
            if not isinstance(callback, Callback):
                raise ConfigTypeError(
                    f"callbacks[{i}] expects a trainwell.callbacks.Callback, received {describe(callback)}. "
                    "Subclass Callback, or wrap functions in LambdaCallback(on_epoch_end=...)."
                )
            self.callbacks.append(callback)
        self.history = next((c for c in self.callbacks if isinstance(c, History)), None)
        if self.history is None and add_history:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self.set_params({"verbose": verbose, "epochs": epochs, "steps": steps})
        self.set_model(model)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def append(self, callback: Callback) -> None:
        """Add ``callback`` at the end, giving it the list's model and params."""
        if not isinstance(callback, Callback):
            raise ConfigTypeError(
                f"CallbackList.append expects a Callback, received {describe(callback)}. "
                "Subclass trainwell.callbacks.Callback."
            )
        callback.set_params(self.params)
        if self.model is not None:
            callback.set_model(self.model)
        self.callbacks.append(callback)
        self._plan_batch_hooks()

    def set_model(self, model) -> None:
        """Attach ``model`` to every callback and set ``model.history`` (as Keras does)."""
        if model is None:
            return
        self.model = model
        for callback in self.callbacks:
            callback.set_model(model)
        if self.history is not None:
            _try_setattr(model, "history", self.history)

    def set_params(self, params: dict) -> None:
        """Pass ``params`` to every callback, then recompute which per-batch hooks are needed."""
        self.params = params
        for callback in self.callbacks:
            callback.set_params(params)
        self._plan_batch_hooks()

    def _plan_batch_hooks(self) -> None:
        # Done once per fit, not per batch: the per-batch loops below touch only these lists.
        self._batch = {hook: [c for c in self.callbacks if overrides(c, hook)] for hook in BATCH_HOOKS}
        needs = {
            stage: any(self._batch[f"on_{stage}_batch_{at}"] for at in ("begin", "end"))
            for stage in ("train", "test", "predict")
        }
        self.needs_batch_hooks = needs["train"]
        self.needs_test_batch_hooks = needs["test"]
        self.needs_predict_batch_hooks = needs["predict"]

    def _call_all(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def _call_batch(self, hook: str, batch, logs) -> None:
        # `logs if not None`, never `logs or {}`: truth-testing a lazy Mapping could read it.
        logs = logs if logs is not None else {}
        for callback in self._batch[hook]:
            getattr(callback, hook)(batch, logs)

    def on_train_begin(self, logs=None):
        self._call_all("on_train_begin", logs if logs is not None else {})

    def on_train_end(self, logs=None):
        self._call_all("on_train_end", logs if logs is not None else {})

    def on_epoch_begin(self, epoch, logs=None):
        self._call_all("on_epoch_begin", epoch, logs if logs is not None else {})

    def on_epoch_end(self, epoch, logs=None):
        self._call_all("on_epoch_end", epoch, logs if logs is not None else {})

    def on_test_begin(self, logs=None):
        self._call_all("on_test_begin", logs if logs is not None else {})

    def on_test_end(self, logs=None):
        self._call_all("on_test_end", logs if logs is not None else {})

    def on_predict_begin(self, logs=None):
        self._call_all("on_predict_begin", logs if logs is not None else {})

    def on_predict_end(self, logs=None):
        self._call_all("on_predict_end", logs if logs is not None else {})

    def on_batch_begin(self, batch, logs=None):
        self._call_batch("on_train_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call_batch("on_train_batch_end", batch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call_batch("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call_batch("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call_batch("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call_batch("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call_batch("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call_batch("on_predict_batch_end", batch, logs)


def _try_setattr(obj, name: str, value) -> None:
    try:
        setattr(obj, name, value)
    except (AttributeError, TypeError):  # a model with __slots__ or a read-only property
        pass


# ---------------------------------------------------------------------------------------------
# History and the progress display.


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

    def on_train_begin(self, logs=None):
        self.epoch = []
        if self.model is not None:
            _try_setattr(self.model, "history", self)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


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

    READ_INTERVAL = 0.1  # seconds between two reads of the (device-syncing) batch loss

    def __init__(self, verbose: int | str | None = None):
        super().__init__()
        self._verbose_arg = None if verbose is None else _check_verbose(verbose, "ProgbarLogger")
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
            self.verbose = 1 if verbose is None else _check_verbose(verbose, "fit")
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


# ---------------------------------------------------------------------------------------------
# Callbacks that watch a logged quantity.

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
        self.min_delta = abs(_check_real(min_delta, "min_delta", where))
        self.best = _check_real(baseline, "baseline", where, allow_none=True)
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
        self.verbose = _check_verbose(verbose, "EarlyStopping")
        self.baseline = _check_real(baseline, "baseline", "EarlyStopping", allow_none=True)
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

    def in_cooldown(self) -> bool:
        """Whether a recent reduction is still cooling down."""
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
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
        if save_freq != "epoch" and not (
            isinstance(save_freq, numbers.Integral) and not isinstance(save_freq, bool) and save_freq >= 1
        ):
            raise ConfigError(
                f"{where}: `save_freq` expects 'epoch' or a positive number of batches, received "
                f"{describe(save_freq)}. Use save_freq='epoch' to save once per epoch."
            )
        self.filepath = os.fspath(filepath)
        self.verbose = _check_verbose(verbose, where)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq
        self._batches_since_save = 0
        self._last_batch = 0
        self._epoch = 0
        if save_freq == "epoch":
            self._skip_hook("on_train_batch_end")  # no per-batch dispatch needed

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

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


# ---------------------------------------------------------------------------------------------
# Small single-purpose callbacks.


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


class LambdaCallback(Callback):
    """A callback built from plain functions, one per hook.

    ``on_epoch_begin/end(epoch, logs)``, ``on_train_begin/end(logs)``,
    ``on_train_batch_begin/end(batch, logs)``; any other hook name can be passed as a keyword.

    Raises:
        ConfigError: a keyword that is not a hook name.
        ConfigTypeError: a value that is not callable.

    Example:
        >>> cb = LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
        >>> cb.on_epoch_end(0, {"loss": 0.5})
        0 0.5
    """

    def __init__(
        self,
        on_epoch_begin=None,
        on_epoch_end=None,
        on_train_begin=None,
        on_train_end=None,
        on_train_batch_begin=None,
        on_train_batch_end=None,
        **kwargs,
    ):
        super().__init__()
        hooks = dict(
            on_epoch_begin=on_epoch_begin,
            on_epoch_end=on_epoch_end,
            on_train_begin=on_train_begin,
            on_train_end=on_train_end,
            on_train_batch_begin=on_train_batch_begin,
            on_train_batch_end=on_train_batch_end,
        )
        for name in kwargs:
            if name not in HOOKS:
                raise unknown_name("callback hook", name, HOOKS, argument="LambdaCallback")
        hooks.update(kwargs)
        for name, fn in hooks.items():
            if fn is not None:
                # An instance attribute shadows the default method, so `overrides` sees it.
                setattr(self, name, _check_callable(fn, name, "LambdaCallback"))


__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "ProgbarLogger",
    "MonitorCallback",
    "StopReason",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "LearningRateScheduler",
    "TerminateOnNaN",
    "CSVLogger",
    "LambdaCallback",
    "ModelCheckpoint",
    "overrides",
    "direction_from_name",
    "format_logs_line",
]
