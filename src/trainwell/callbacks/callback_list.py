"""``CallbackList``: the callbacks of one ``fit``/``evaluate``/``predict``, called as one."""

from __future__ import annotations

from collections.abc import Iterable

from trainwell._errors import ConfigTypeError, describe

from .base import BATCH_HOOKS, Callback, _try_setattr, overrides
from .history import History
from .progbar import ProgbarLogger


class CallbackList(Callback):
    """An ordered list of callbacks called as one; per-batch hooks go only to those overriding them.

    Args:
        callbacks: ``Callback`` instances (None for none), called in this order.
        model: the model to attach to each callback.
        add_history: put a ``History`` first unless one is in ``callbacks``: first, so callbacks that
            save the model at an epoch's end (``ModelCheckpoint``) store that epoch in its history.
        add_progbar: append a ``ProgbarLogger`` unless one is in ``callbacks``.
        verbose, epochs, steps: the ``params`` every callback receives.

    Attributes:
        needs_batch_hooks: some callback overrides a training per-batch hook.
        needs_test_batch_hooks: some callback overrides a test per-batch hook.
        needs_predict_batch_hooks: some callback overrides a predict per-batch hook.

    Raises:
        ConfigTypeError: an entry is not a ``Callback``.

    Example:
        >>> from trainwell.callbacks import TerminateOnNaN
        >>> callbacks = CallbackList([TerminateOnNaN()], add_history=True, epochs=2, steps=3)
        >>> [type(c).__name__ for c in callbacks], callbacks.needs_batch_hooks
        (['History', 'TerminateOnNaN'], True)
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
            self.callbacks.insert(0, self.history)
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self.set_params({"verbose": verbose, "epochs": epochs, "steps": steps})
        self.set_model(model)
        self._introduce()

    def _introduce(self) -> None:
        # At an epoch's end, callbacks that add to the logs (the learning-rate ones add
        # 'learning_rate', as Keras's do) run first, so History and the others record it;
        # BackupAndRestore saves and restores the state of the callbacks beside it, so it runs
        # after them. A stable sort keeps everyone else's order.
        for callback in self.callbacks:
            if hasattr(callback, "set_siblings"):
                callback.set_siblings(self.callbacks)
        self._epoch_end_order = sorted(
            self.callbacks, key=lambda c: (not getattr(c, "adds_to_logs", False), hasattr(c, "set_siblings")))

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
        self._introduce()
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

    def _call_all(self, hook: str, *args, logs, order=None) -> None:
        logs = logs if logs is not None else {}
        for callback in order or self.callbacks:
            getattr(callback, hook)(*args, logs)

    def _call_batch(self, hook: str, batch, logs) -> None:
        # `logs if not None`, never `logs or {}`: truth-testing a lazy Mapping could read it.
        logs = logs if logs is not None else {}
        for callback in self._batch[hook]:
            getattr(callback, hook)(batch, logs)

    def on_train_begin(self, logs=None):
        self._call_all("on_train_begin", logs=logs)

    def on_train_end(self, logs=None):
        self._call_all("on_train_end", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call_all("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call_all("on_epoch_end", epoch, logs=logs, order=self._epoch_end_order)

    def on_test_begin(self, logs=None):
        self._call_all("on_test_begin", logs=logs)

    def on_test_end(self, logs=None):
        self._call_all("on_test_end", logs=logs)

    def on_predict_begin(self, logs=None):
        self._call_all("on_predict_begin", logs=logs)

    def on_predict_end(self, logs=None):
        self._call_all("on_predict_end", logs=logs)

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
