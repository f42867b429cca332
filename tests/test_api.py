"""Public-API smoke test: every Keras namespace name issue 2 lists exists, and a tiny model trains."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import trainwell as tw

KERAS_NAMES = {
    "models": ["Sequential", "load_model"],
    "layers": ["Input", "Dense", "Activation", "Dropout", "BatchNormalization", "Normalization"],
    "activations": ["linear", "relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid", "softmax",
                    "softplus", "swish", "get", "serialize"],
    "initializers": ["GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunNormal", "Zeros", "Ones",
                     "Constant", "RandomNormal", "RandomUniform", "get"],
    "regularizers": ["l1", "l2", "l1_l2", "L1", "L2", "L1L2", "get"],
    "losses": ["mean_squared_error", "mean_absolute_error", "huber", "binary_crossentropy",
               "categorical_crossentropy", "sparse_categorical_crossentropy", "MeanSquaredError",
               "MeanAbsoluteError", "Huber", "BinaryCrossentropy", "CategoricalCrossentropy",
               "SparseCategoricalCrossentropy", "get"],
    "metrics": ["BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy", "MeanAbsoluteError",
                "MeanSquaredError", "RootMeanSquaredError", "AUC", "get"],
    "optimizers": ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "get"],
    "callbacks": ["Callback", "History", "EarlyStopping", "ReduceLROnPlateau", "LearningRateScheduler",
                  "TerminateOnNaN", "CSVLogger", "LambdaCallback"],
    "utils": ["to_categorical", "set_random_seed"],
    "datasets": ["load_wages", "load_titanic", "load_mnist"],
}


@pytest.mark.parametrize("module", sorted(KERAS_NAMES))
def test_keras_namespaces_have_their_names(module):
    namespace = importlib.import_module(f"trainwell.{module}")
    assert getattr(tw, module) is namespace
    missing = [name for name in KERAS_NAMES[module] if not hasattr(namespace, name)]
    assert missing == []


@pytest.mark.parametrize("name, module", [("Sequential", "models"), ("load_model", "models"),
                                          ("Dense", "layers"), ("Input", "layers"), ("Dropout", "layers"),
                                          ("to_categorical", "utils"), ("set_random_seed", "utils")])
def test_common_names_at_the_top_level(name, module):
    assert getattr(tw, name) is getattr(importlib.import_module(f"trainwell.{module}"), name)


def test_top_level_lists_and_refuses_names():
    assert {"Sequential", "layers", "models", "__version__"} <= set(dir(tw))
    assert isinstance(tw.__version__, str)
    with pytest.raises(AttributeError, match="no attribute 'Sequentail'"):
        tw.Sequentail  # noqa: B018


def test_error_classes_are_exported_and_catchable_as_builtins():
    assert issubclass(tw.ConfigError, ValueError) and issubclass(tw.DataError, ValueError)
    assert issubclass(tw.NotCompiledError, tw.TrainwellError)


def test_tiny_end_to_end():
    tw.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    y = tw.to_categorical((x[:, 0] > 0).astype(int))
    model = tw.Sequential([tw.layers.Dense(8, activation="relu", input_shape=(2,)),
                           tw.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=tw.optimizers.Adam(learning_rate=0.05), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert model.predict(x[:3], verbose=0).shape == (3, 2)
