"""``LambdaCallback``: a callback built from plain functions, one per hook."""

from __future__ import annotations

from trainwell._errors import unknown_name

from ._checks import _check_callable
from .base import HOOKS, Callback


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
