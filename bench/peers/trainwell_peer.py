"""trainwell, used exactly as a Keras user would: `_keras_code.py` with `keras` replaced by `trainwell`."""

from __future__ import annotations

import numpy as np

from bench.workloads import MODEL_SEED, Workload, one_hot
from trainwell.layers import Dense, Input
from trainwell.models import Sequential
from trainwell.optimizers import SGD, Adam
from trainwell.utils import set_random_seed


def prepare_targets(spec: Workload, y: np.ndarray) -> np.ndarray:
    """One-hot labels for `categorical_crossentropy`; regression targets as a column."""
    return one_hot(y, spec.n_classes) if spec.is_classification else y.reshape(-1, 1)


def build(spec: Workload, n_features: int) -> Sequential:
    """A compiled Sequential model with the default (glorot uniform / zeros) initialisation."""
    set_random_seed(MODEL_SEED)
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


def fit(model: Sequential, spec: Workload, X: np.ndarray, y: np.ndarray) -> Sequential:
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


def predict(model: Sequential, X: np.ndarray) -> np.ndarray:
    """`model.predict(X, verbose=0)`, with its default batch size."""
    return model.predict(X, verbose=0)


def build_and_fit(spec: Workload, X: np.ndarray, y: np.ndarray) -> Sequential:
    """Build, compile and fit on already prepared targets."""
    return fit(build(spec, X.shape[1]), spec, X, y)
