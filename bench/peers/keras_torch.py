"""Keras 3 on the PyTorch backend (the Keras user code lives in `_keras_code.py`)."""

import os

# Must be set before keras is first imported in this process.
os.environ["KERAS_BACKEND"] = "torch"

from bench.peers._keras_code import build, build_and_fit, fit, predict, prepare_targets  # noqa: E402

__all__ = ["build", "build_and_fit", "fit", "predict", "prepare_targets"]
