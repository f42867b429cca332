"""Keras's callbacks: hooks the training loop calls at the start and end of each stage.

A callback sees a narrow interface, so it can be tested with a stand-in model:

- ``self.model``: ``stop_training`` (read/write), ``get_weights()``, ``set_weights(list)``,
  ``optimizer.learning_rate`` (settable float), ``save(path)``, ``save_weights(path)``;
- ``self.params``: ``{"epochs": ..., "steps": ..., "verbose": ...}``;
- ``logs``: at epoch end a dict of Python floats (``loss``, metrics, ``val_`` keys,
  ``learning_rate``); per batch a lazy Mapping whose reads may sync the device.

Because per-batch reads cost a device sync, the loop calls per-batch hooks only on callbacks that
override them (``overrides``); ``CallbackList`` works this out once, not per batch.

One module per callback (as in Keras): ``base`` (``Callback``, hook names, ``overrides``),
``callback_list``, ``history``, ``progbar``, ``monitor`` (``MonitorCallback``, the base of
``early_stopping``, ``learning_rate`` and ``model_checkpoint``), ``terminate_on_nan``,
``csv_logger``, ``lambda_callback`` and ``backup_and_restore``. The hook tables (``HOOKS``,
``BATCH_HOOKS``, ``STAGE_HOOKS``) and ``MODES`` are re-exported for the loop and the diagnostics.

Example:
    >>> from trainwell.callbacks import CallbackList, EarlyStopping
    >>> stopper = EarlyStopping(monitor="loss", patience=1)
    >>> callbacks = CallbackList([stopper], add_history=True, epochs=5, steps=10)
    >>> callbacks.needs_batch_hooks
    False
"""

from .backup_and_restore import BackupAndRestore
from .base import BATCH_HOOKS as BATCH_HOOKS
from .base import HOOKS as HOOKS
from .base import STAGE_HOOKS as STAGE_HOOKS
from .base import Callback, overrides
from .callback_list import CallbackList
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping, StopReason
from .history import History
from .lambda_callback import LambdaCallback
from .learning_rate import LearningRateScheduler, ReduceLROnPlateau
from .model_checkpoint import ModelCheckpoint
from .monitor import MODES as MODES
from .monitor import MonitorCallback, direction_from_name
from .progbar import ProgbarLogger, format_logs_line
from .terminate_on_nan import TerminateOnNaN

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
    "BackupAndRestore",
    "overrides",
    "direction_from_name",
    "format_logs_line",
]
