"""Keras 3 on the JAX backend (the Keras user code lives in `_keras_code.py`).

Reported as an error where JAX is not installed.
"""

import os

# Must be set before keras is first imported in this process.
os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402,F401  (fail early, with a clear message, where JAX is missing)

from bench.peers._keras_code import build, build_and_fit, fit, predict, prepare_targets  # noqa: E402

__all__ = ["build", "build_and_fit", "fit", "predict", "prepare_targets"]
