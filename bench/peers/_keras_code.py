"""Keras 3 user code for the workloads, shared by the torch and JAX backends.

This is exactly what a course notebook does: `Sequential` of `Input` and `Dense`, `compile`
with names, `fit(..., validation_split=..., verbose=0)`, `predict(..., verbose=0)`.
`trainwell_peer.py` is the same code with `keras` replaced by `trainwell`.
The importing module sets KERAS_BACKEND before this module is imported.
"""

from __future__ import annotations

import keras
import numpy as np
from keras.layers import Dense, Input
from keras.models import Sequential
from keras.optimizers import SGD, Adam

from bench.workloads import MODEL_SEED, Workload, one_hot


def prepare_targets(spec: Workload, y: np.ndarray) -> np.ndarray:
    """One-hot labels for `categorical_crossentropy`; regression targets as a column."""
    return one_hot(y, spec.n_classes) if spec.is_classification else y.reshape(-1, 1)


def build(spec: Workload, n_features: int) -> keras.Model:
    """A compiled Sequential model with Keras's default (glorot uniform / zeros) initialisation."""
    keras.utils.set_random_seed(MODEL_SEED)
    model = Sequential(
        [Input(shape=(n_features,))]
        + [Dense(units, activation="relu") for units in spec.hidden]
        + [Dense(spec.n_outputs, activation=spec.output_activation)]
    )
    if spec.optimizer == "adam":
        optimizer = Adam(learning_rate=spec.learning_rate)
    else:
        optimizer = SGD(learning_rate=spec.learning_rate)
    extra = {"metrics": ["accuracy"]} if spec.is_classification else {}
    model.compile(optimizer=optimizer, loss=spec.loss, **extra)
    return model


def fit(model: keras.Model, spec: Workload, X: np.ndarray, y: np.ndarray) -> keras.Model:
    """`model.fit` with the workload's batch size, epochs and validation split."""
    model.fit(
        X,
        y,
        batch_size=spec.batch_size,
        epochs=spec.epochs,
        validation_split=spec.validation_split,
        verbose=0,
    )
    return model


def predict(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """`model.predict(X, verbose=0)`, Keras's default batch size (32) included."""
    return model.predict(X, verbose=0)


def build_and_fit(spec: Workload, X: np.ndarray, y: np.ndarray) -> keras.Model:
    """Build, compile and fit on already prepared targets."""
    return fit(build(spec, X.shape[1]), spec, X, y)
