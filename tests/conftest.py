"""Shared test setup and builders: small seeded data sets and compiled models.

One torch thread, since the tests run on small shared machines. Test modules import the builders
(``from conftest import regression_data, regressor``) instead of writing their own copies.
"""

import numpy as np
import torch

from trainwell.layers import Dense
from trainwell.models import Sequential
from trainwell.utils import set_random_seed

torch.set_num_threads(1)


def regression_data(n=60, n_features=3, seed=0):
    """``(x, y)``: float32 inputs (n, n_features) and y = x @ [1, 2, ...] + noise, of shape (n,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    y = (x @ np.arange(1, n_features + 1) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


def classification_data(n=60, n_features=3, n_classes=3, seed=0):
    """``(x, labels)``: float32 inputs and random integer labels in [0, n_classes)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=n)
    return x, labels


def regressor(n_features=3, optimizer="sgd", metrics=None, seed=0):
    """Dense(8, relu) -> Dense(1), compiled with mean squared error, weights drawn after ``seed``."""
    set_random_seed(seed)
    model = Sequential([Dense(8, activation="relu", input_shape=(n_features,)), Dense(1)])
    model.compile(optimizer=optimizer, loss="mean_squared_error", metrics=metrics)
    return model


def classifier(n_features=3, n_classes=3, loss="categorical_crossentropy", metrics=("accuracy",), seed=0):
    """Dense(8, relu) -> Dense(n_classes, softmax), compiled with Adam, weights drawn after ``seed``."""
    set_random_seed(seed)
    model = Sequential([Dense(8, activation="relu", input_shape=(n_features,)),
                        Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss=loss, metrics=list(metrics))
    return model
