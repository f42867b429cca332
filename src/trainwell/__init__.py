"""trainwell: build, train, diagnose, compare, save and serve neural networks the Keras way, on PyTorch.

Imports mirror Keras's, so course code runs after replacing ``keras`` with ``trainwell``::

    from trainwell.models import Sequential
    from trainwell.layers import Dense
    from trainwell.utils import to_categorical

``import trainwell as tw`` also reaches the common names (``tw.Sequential``, ``tw.layers.Dense``).
Submodules load on first use, so ``import trainwell`` (and ``trainwell --help``) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "activations", "callbacks", "csvio", "data", "datasets", "diagnostics", "distributed", "experiments",
    "initializers", "layers", "losses", "metrics", "models", "optimizers", "pipeline", "regularizers",
    "report", "saving", "schedules", "serve", "tabular", "training", "utils",
}
_NAMES = {
    "Sequential": "models", "load_model": "models",
    "Input": "layers", "Dense": "layers", "Dropout": "layers", "Activation": "layers",
    "BatchNormalization": "layers", "Normalization": "layers",
    "to_categorical": "utils", "set_random_seed": "utils",
    "TrainwellError": "_errors", "ConfigError": "_errors", "DataError": "_errors",
    "ModelFileError": "_errors", "NotCompiledError": "_errors", "DistributedError": "_errors",
}

__all__ = sorted(_SUBMODULES | set(_NAMES) | {"__version__"})


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'trainwell' has no attribute {name!r}")


def __dir__():
    return __all__
