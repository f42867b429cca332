"""The ``Callback`` base class, Keras's 16 hook names, and ``overrides``.

Each default hook is marked as a no-op, so ``overrides`` can tell the loop which per-batch hooks
it may skip (each per-batch read of the logs may sync the device).
"""

from __future__ import annotations

from trainwell._errors import unknown_name

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
    # True for callbacks that print or write files: in a distributed run only rank 0 keeps them,
    # or every process would repeat rank 0's output (distributed.DDPRun.for_this_rank).
    writes_output = False

    def __init__(self):
        self.model = None
        self.params = None

    def set_model(self, model) -> None:
        """Attach the model the hooks act on."""
        self.model = model

    def set_params(self, params: dict) -> None:
        """Receive the loop's parameters (``epochs``, ``steps``, ``verbose``)."""
        self.params = params

    def get_state(self) -> dict | None:
        """What a resumed ``fit`` needs to carry this callback on where it stopped, or None.

        ``BackupAndRestore`` saves it with each backup and gives it back to ``set_state`` when a
        restarted fit resumes: a dict of numbers, strings, None, and numpy arrays or lists of
        them. The default, None, is for callbacks that keep nothing between epochs.
        """
        return None

    def set_state(self, state: dict) -> None:
        """Take back what ``get_state`` returned; called once a resumed fit's callbacks have begun."""

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


def _try_setattr(obj, name: str, value) -> None:
    try:
        setattr(obj, name, value)
    except (AttributeError, TypeError):  # a model with __slots__ or a read-only property
        pass
