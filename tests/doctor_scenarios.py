"""The training doctor's labelled scenario suite (issue 4, points 5 and 6; grown for issue 18).

Each scenario is a small, seeded training run. Sick ones carry the finding codes the doctor must
report (``expected``) and those it may also report because they follow from the induced problem
(``allowed``: a learning rate of 10 also makes gradients overflow); any other warning or error is
a false alarm. Healthy runs must get no warning or error at all. Every sick scenario also names
its fix, built from the doctor's own advice, and the fixed run must score measurably better on
held-out data (mean squared error or classification error, computed here the same way for both).

The runs use the course's three datasets (wages, Titanic, MNIST), the Palmer penguins CSV
(``tests/data``) and small seeded synthetic sets. ``repair_rows()`` also runs ``model.repair`` on
every sick run. ``python tests/doctor_scenarios.py`` prints the confusion table, per-code recall,
false alarms, the fixes' scores and the share of sick runs that ``repair`` turns healthy.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainwell.callbacks import EarlyStopping, ReduceLROnPlateau
from trainwell.datasets import load_mnist, load_titanic, load_wages
from trainwell.diagnostics import CODES
from trainwell.initializers import Constant, RandomNormal
from trainwell.layers import (
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    MaxPooling2D,
    Normalization,
    Reshape,
)
from trainwell.models import Sequential
from trainwell.optimizers import SGD, Adam
from trainwell.regularizers import l1, l2
from trainwell.utils import set_random_seed, to_categorical

torch.set_num_threads(1)

# ----------------------------------------------------------------------------------------------
# seeded data


@dataclass
class Data:
    """Train and held-out arrays, and how to score predictions ('mse' or 'error')."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    score: str = "mse"
    y_scale: float = 1.0  # the std a standardised target was divided by: MSE is reported in units

    def scaled(self, column: int, factor: float) -> Data:
        x, x_val = self.x.copy(), self.x_val.copy()
        x[:, column] *= factor
        x_val[:, column] *= factor
        return Data(x, self.y, x_val, self.y_val, self.score, self.y_scale)

    def standardised_target(self) -> Data:
        """The target as (y - mean) / std of the training rows; scores stay in the target's units."""
        mean, std = float(self.y.mean()), float(self.y.std())
        return Data(
            self.x,
            (self.y - mean) / std,
            self.x_val,
            (self.y_val - mean) / std,
            self.score,
            self.y_scale * std,
        )


def _split(x, y, n_val, score="mse") -> Data:
    return Data(
        x[:-n_val].astype(np.float32),
        y[:-n_val].astype(np.float32),
        x[-n_val:].astype(np.float32),
        y[-n_val:].astype(np.float32),
        score,
    )


def _teacher(x: np.ndarray, outputs: int, rng) -> np.ndarray:
    """A fixed random tanh network: a smooth, learnable, non-linear target."""
    w1 = rng.normal(size=(x.shape[1], 32)) / np.sqrt(x.shape[1])
    w2 = rng.normal(size=(32, outputs)) / np.sqrt(32)
    return np.tanh(x @ w1 * 1.5) @ w2


@functools.cache
def regression(n=600, d=8, seed=0, noise=0.1) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    t = _teacher(x, 1, rng)
    y = (t - t.mean()) / t.std() + noise * rng.normal(size=t.shape)
    return _split(x, y, n // 4)


@functools.cache
def classes(n=800, d=16, k=10, seed=1) -> Data:
    """k-class labels (one-hot) from a teacher's argmax: a digits-like synthetic task."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    t = _teacher(x, k, rng)
    labels = (t - t.mean(0)).argmax(1)
    return _split(x, to_categorical(labels, k), n // 4, "error")


@functools.cache
def binary(n=600, d=8, seed=2) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    t = _teacher(x, 1, rng)
    return _split(x, (t > np.median(t)).astype(np.float32), n // 4, "error")


@functools.cache
def wages() -> Data:
    x, y = load_wages()
    return _split(x, y.reshape(-1, 1), 160)


@functools.cache
def titanic() -> Data:
    x, y = load_titanic()
    return _split(x, y.reshape(-1, 1), 267, "error")


@functools.cache
def wavy(n=400, d=4, seed=3) -> Data:
    """A target no straight line can follow: products and sines of the inputs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, d))
    y = np.sin(2 * x[:, 0]) * x[:, 1] + np.cos(3 * x[:, 2]) + 0.05 * rng.normal(size=n)
    return _split(x, y.reshape(-1, 1), n // 4)


@functools.cache
def mnist() -> Data:
    """The course's 2,001 MNIST digits, raw pixels 0-255, one-hot labels."""
    x, y = load_mnist()
    return _split(x, to_categorical(y, 10), 500, "error")


@functools.cache
def mnist_scaled() -> Data:
    d = mnist()
    return Data(d.x / 255.0, d.y, d.x_val / 255.0, d.y_val, "error")


@functools.cache
def penguins() -> Data:
    """Palmer penguins' raw CSV through trainwell's preprocessing; the target, body mass, in grams."""
    import pandas as pd

    from trainwell.tabular import Preprocessor

    frame = pd.read_csv(Path(__file__).parent / "data" / "penguins_raw.csv")
    frame = frame[frame["Body Mass (g)"].notna()].sample(frac=1.0, random_state=0)
    pre = Preprocessor(target="Body Mass (g)", scale_target=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen dates in the held-out rows
        x, y = pre.fit(frame[:270]).transform_xy(frame)
    return _split(x, y.reshape(-1, 1), len(frame) - 270)


@functools.cache
def titanic_scaled() -> Data:
    d = titanic()
    mean, std = d.x.mean(0), d.x.std(0) + 1e-7
    return Data((d.x - mean) / std, d.y, (d.x_val - mean) / std, d.y_val, "error")


@functools.cache
def wages_scaled() -> Data:
    d = wages()
    mean, std = d.x.mean(0), d.x.std(0) + 1e-7
    return Data((d.x - mean) / std, d.y, (d.x_val - mean) / std, d.y_val)


def normalized(data: Data):
    norm = Normalization()
    norm.adapt(data.x)
    return norm


# ----------------------------------------------------------------------------------------------
# runs


@dataclass
class Run:
    """A model recipe: layers, compile arguments, fit arguments and data."""

    data: Callable[[], Data]
    layers: Callable[[Data], list]
    optimizer: Callable[[], object] = lambda: "adam"
    loss: str = "mse"
    epochs: int = 20
    batch_size: int = 32
    callbacks: Callable[[], list] = list


@dataclass
class Scenario:
    name: str
    run: Run
    expected: set[str] = field(default_factory=set)  # empty: a healthy run
    allowed: set[str] = field(default_factory=set)
    fix: Run | None = None
    fix_words: str = ""  # which part of the doctor's advice the fix applies
    known_miss: str = ""  # why the doctor misses this run today (the suite reports it, the test xfails)


@dataclass
class Outcome:
    codes: set[str]
    findings: list
    score: float
    model: object = None
    data: Data | None = None

    def roots(self) -> set[str]:
        """The codes reported as root causes (problems with no ``caused_by``)."""
        return {f.code for f in self.findings if f.is_problem and not f.caused_by}


def score(model, data: Data) -> float:
    """Held-out mean squared error, or classification error; inf when predictions are not finite."""
    pred = model.predict(data.x_val, verbose=0)
    if not np.all(np.isfinite(pred)):
        return math.inf
    if data.score == "mse":
        return float(np.mean((pred - data.y_val) ** 2)) * data.y_scale**2
    if data.y_val.shape[1] > 1:
        return float(np.mean(pred.argmax(1) != data.y_val.argmax(1)))
    return float(np.mean((pred[:, 0] > 0.5) != (data.y_val[:, 0] > 0.5)))


def execute(run: Run, seed: int = 0, diagnostics: str = "auto") -> Outcome:
    """Train one recipe from a fixed seed and return the doctor's codes and the held-out score."""
    set_random_seed(seed)
    data = run.data()
    model = Sequential([Input(shape=(data.x.shape[1],)), *run.layers(data)])
    model.compile(optimizer=run.optimizer(), loss=run.loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the diverging runs warn about NaN losses, by design
        history = model.fit(
            data.x,
            data.y,
            validation_data=(data.x_val, data.y_val),
            epochs=run.epochs,
            batch_size=run.batch_size,
            callbacks=run.callbacks(),
            verbose=0,
            diagnostics=diagnostics,
        )
    problems = [f for f in history.diagnosis if f.is_problem]
    return Outcome({f.code for f in problems}, history.diagnosis, score(model, data), model, data)


def relu_net(units=(32, 32), out=1, out_activation=None, **kwargs):
    return lambda data: (
        [Dense(u, activation="relu", **kwargs) for u in units] + [Dense(out, activation=out_activation)]
    )


def convnet(depth=2, activation="relu", **kwargs):
    """Image models on the flat MNIST rows: Reshape, 8-channel 3x3 convolutions (pooled after the
    first two), a softmax Dense."""
    def layers(data):
        out = [Reshape((28, 28, 1))]
        for i in range(depth):
            out.append(Conv2D(8, 3, padding="same", activation=activation, **kwargs))
            if i < 2:
                out.append(MaxPooling2D(2))
        return out + [Flatten(), Dense(10, activation="softmax")]
    return layers


def leaky_net(data):
    return [Dense(64, activation="leaky_relu"), Dense(64, activation="leaky_relu"), Dense(1)]


SICK = [
    Scenario(
        "tanh_10_layers_tiny_init",
        Run(
            regression,
            lambda d: (
                [
                    Dense(32, activation="tanh", kernel_initializer=RandomNormal(stddev=0.01))
                    for _ in range(10)
                ]
                + [Dense(1)]
            ),
            optimizer=lambda: SGD(0.01),
        ),
        {"vanishing_gradients"},
        fix=Run(
            regression,
            lambda d: [Dense(32, activation="tanh") for _ in range(10)] + [Dense(1)],
            optimizer=lambda: SGD(0.01),
        ),
        fix_words="keep the default glorot_uniform rather than tiny initial weights",
    ),
    Scenario(
        "sigmoid_8_layers",
        Run(
            regression,
            lambda d: [Dense(32, activation="sigmoid") for _ in range(8)] + [Dense(1)],
            optimizer=lambda: SGD(0.01),
        ),
        {"vanishing_gradients"},
        fix=Run(
            regression,
            lambda d: (
                [Dense(32, activation="relu", kernel_initializer="he_uniform") for _ in range(8)] + [Dense(1)]
            ),
            optimizer=lambda: SGD(0.01),
        ),
        fix_words="activation='relu' with kernel_initializer='he_uniform'",
    ),
    Scenario(
        "relu_sgd_lr1_bias_shift",
        Run(regression, relu_net((50, 50), bias_initializer=Constant(-1.0)), optimizer=lambda: SGD(1.0)),
        {"dead_units"},
        {"lr_too_high"},
        fix=Run(regression, relu_net((50, 50), kernel_initializer="he_uniform"), optimizer=lambda: SGD(0.01)),
        fix_words="learning_rate=0.01, he_uniform, zero biases",
    ),
    Scenario(
        "adam_lr_1e-7",
        Run(regression, relu_net(), optimizer=lambda: Adam(1e-7)),
        {"lr_too_low"},
        fix=Run(regression, relu_net(), optimizer=lambda: Adam(1e-3)),
        fix_words="learning_rate=0.001",
    ),
    Scenario(
        "sgd_lr_10_diverges",
        Run(regression, relu_net(), optimizer=lambda: SGD(10.0)),
        {"lr_too_high"},
        {"exploding_gradients", "dead_units"},
        fix=Run(regression, relu_net(), optimizer=lambda: SGD(0.01)),
        fix_words="learning_rate=0.01",
    ),
    Scenario(
        "adam_lr_0.3_oscillates",
        Run(regression, relu_net((64, 64)), optimizer=lambda: Adam(0.3), epochs=30),
        {"lr_too_high"},
        {"dead_units"},
        fix=Run(regression, relu_net((64, 64)), optimizer=lambda: Adam(0.001), epochs=30),
        fix_words="learning_rate=0.001",
    ),
    Scenario(
        "one_feature_times_1000",
        Run(lambda: regression().scaled(0, 1000.0), relu_net()),
        {"unscaled_inputs"},
        {"dead_units", "lr_too_high"},
        fix=Run(lambda: regression().scaled(0, 1000.0), lambda d: [normalized(d), *relu_net()(d)]),
        fix_words="Normalization first",
    ),
    Scenario(
        "softmax_binary_crossentropy",
        Run(
            classes,
            relu_net((32,), out=10, out_activation="softmax"),
            optimizer=lambda: SGD(0.1),
            loss="binary_crossentropy",
            epochs=10,
        ),
        {"loss_output_mismatch"},
        fix=Run(
            classes,
            relu_net((32,), out=10, out_activation="softmax"),
            optimizer=lambda: SGD(0.1),
            loss="categorical_crossentropy",
            epochs=10,
        ),
        fix_words="loss='categorical_crossentropy'",
    ),
    Scenario(
        "one_sigmoid_categorical_crossentropy",
        Run(binary, relu_net((16,), out_activation="sigmoid"), loss="categorical_crossentropy", epochs=10),
        {"loss_output_mismatch"},
        fix=Run(binary, relu_net((16,), out_activation="sigmoid"), loss="binary_crossentropy", epochs=10),
        fix_words="loss='binary_crossentropy'",
    ),
    Scenario(
        "linear_output_binary_crossentropy",
        Run(binary, relu_net((16,)), loss="binary_crossentropy", epochs=10),
        {"loss_output_mismatch"},
        fix=Run(binary, relu_net((16,), out_activation="sigmoid"), loss="binary_crossentropy", epochs=10),
        fix_words="activation='sigmoid'",
    ),
    Scenario(
        "sigmoid_output_for_wages",
        Run(wages, lambda d: [normalized(d), *relu_net(out_activation="sigmoid")(d)]),
        {"loss_output_mismatch"},
        fix=Run(wages, lambda d: [normalized(d), *relu_net()(d)]),
        fix_words="a linear Dense(1) output",
    ),
    Scenario(
        "big_net_50_samples_500_epochs",
        Run(lambda: regression(n=50, seed=5, noise=1.0), relu_net((256, 256)), epochs=500),
        {"overfitting"},
        fix=Run(
            lambda: regression(n=50, seed=5, noise=1.0),
            relu_net((256, 256)),
            epochs=500,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)],
        ),
        fix_words="EarlyStopping(patience=5, restore_best_weights=True)",
    ),
    Scenario(
        "deep_relu_large_init",
        Run(regression, relu_net((64,) * 6, kernel_initializer=RandomNormal(stddev=1.0)), epochs=10),
        {"exploding_gradients"},
        {"lr_too_high", "dead_units"},
        fix=Run(regression, relu_net((64,) * 6), optimizer=lambda: Adam(clipnorm=1.0), epochs=10),
        fix_words="default initialisation and clipnorm=1.0",
    ),
    Scenario(
        "linear_model_on_wavy_target",
        Run(wavy, lambda d: [Dense(1)], optimizer=lambda: Adam(0.01), epochs=40),
        {"underfitting"},
        fix=Run(wavy, relu_net((64, 64)), optimizer=lambda: Adam(0.01), epochs=40),
        fix_words="hidden layers of 64 units",
    ),
    Scenario(
        "plateau_at_high_rate",
        Run(regression, leaky_net, optimizer=lambda: Adam(0.02), epochs=60),
        {"stalled"},
        fix=Run(
            regression,
            leaky_net,
            optimizer=lambda: Adam(0.02),
            epochs=60,
            callbacks=lambda: [ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5)],
        ),
        fix_words="ReduceLROnPlateau(factor=0.5, patience=5)",
    ),
]

# Issue 18: more sick runs over the course's datasets, the penguins CSV and the defects' cases.
SICK += [
    Scenario(
        "penguins_target_in_grams",
        Run(penguins, relu_net((50, 32)), epochs=40),
        {"unscaled_target"},
        {"exploding_gradients", "dead_units", "lr_too_high", "underfitting", "stalled"},
        fix=Run(lambda: penguins().standardised_target(), relu_net((50, 32)), epochs=40),
        fix_words="the target standardised",
    ),
    Scenario(
        "teacher_target_times_1000",
        Run(
            lambda: Data(
                regression().x,
                regression().y * 1000 + 5000,
                regression().x_val,
                regression().y_val * 1000 + 5000,
            ),
            relu_net(),
            epochs=20,
        ),
        {"unscaled_target"},
        {"exploding_gradients", "dead_units", "lr_too_high", "underfitting", "stalled"},
        fix=Run(
            lambda: Data(
                regression().x, regression().y, regression().x_val, regression().y_val, y_scale=1000.0
            ),
            relu_net(),
            epochs=20,
        ),
        fix_words="the target standardised",
    ),
    Scenario(
        "titanic_raw_sgd_0.5",
        Run(
            titanic,
            relu_net(out_activation="sigmoid"),
            optimizer=lambda: SGD(0.5),
            loss="binary_crossentropy",
        ),
        {"unscaled_inputs"},
        {"dead_units", "lr_too_high"},
        fix=Run(
            titanic,
            lambda d: [normalized(d), *relu_net(out_activation="sigmoid")(d)],
            optimizer=lambda: SGD(0.5),
            loss="binary_crossentropy",
        ),
        fix_words="Normalization first",
    ),
    Scenario(
        "mnist_raw_pixels",
        Run(
            mnist,
            relu_net((64,), out=10, out_activation="softmax"),
            optimizer=lambda: SGD(0.01),
            loss="categorical_crossentropy",
            epochs=10,
        ),
        {"unscaled_inputs"},
        {"dead_units", "lr_too_high", "exploding_gradients"},
        fix=Run(
            mnist,
            lambda d: [
                Normalization(mean=0.0, variance=255.0**2),
                *relu_net((64,), out=10, out_activation="softmax")(d),
            ],
            optimizer=lambda: SGD(0.01),
            loss="categorical_crossentropy",
            epochs=10,
        ),
        fix_words="Normalization(mean=0, variance=255**2) first",
    ),
    Scenario(
        "deep_relu_random_normal_sgd",
        Run(
            regression,
            relu_net((64,) * 4, kernel_initializer=RandomNormal(stddev=1.0)),
            optimizer=lambda: SGD(0.01),
            epochs=10,
        ),
        {"exploding_gradients"},
        {"lr_too_high", "dead_units"},
        fix=Run(regression, relu_net((64,) * 4), optimizer=lambda: SGD(0.01, clipnorm=1.0), epochs=10),
        fix_words="default initializers, clipnorm=1.0",
    ),
    Scenario(
        "titanic_deep_relu_random_normal",
        Run(
            titanic_scaled,
            relu_net((64,) * 4, out_activation="sigmoid", kernel_initializer=RandomNormal(stddev=1.0)),
            loss="binary_crossentropy",
            epochs=10,
        ),
        {"exploding_gradients"},
        {"lr_too_high", "dead_units"},
        fix=Run(
            titanic_scaled,
            relu_net((64,) * 4, out_activation="sigmoid"),
            optimizer=lambda: Adam(clipnorm=1.0),
            loss="binary_crossentropy",
            epochs=10,
        ),
        fix_words="default initializers, clipnorm=1.0",
    ),
    Scenario(
        "relu_bias_minus_3",
        Run(regression, relu_net((32, 32), bias_initializer=Constant(-3.0))),
        {"dead_units"},
        fix=Run(regression, relu_net((32, 32), kernel_initializer="he_uniform")),
        fix_words="he_uniform with zero biases",
    ),
    Scenario(
        "wages_relu_bias_minus_3",
        Run(wages_scaled, relu_net((32, 32), bias_initializer=Constant(-3.0)), epochs=30),
        {"dead_units"},
        fix=Run(wages_scaled, relu_net((32, 32), kernel_initializer="he_uniform"), epochs=30),
        fix_words="he_uniform with zero biases",
    ),
    Scenario(
        "wages_sgd_lr_1",
        Run(wages_scaled, relu_net(), optimizer=lambda: SGD(1.0)),
        {"lr_too_high"},
        {"exploding_gradients", "dead_units"},
        fix=Run(wages_scaled, relu_net(), optimizer=lambda: SGD(0.01)),
        fix_words="learning_rate=0.01",
    ),
    Scenario(
        "penguins_adam_0.3",
        Run(
            lambda: penguins().standardised_target(),
            relu_net((50, 32)),
            optimizer=lambda: Adam(0.3),
            epochs=30,
        ),
        {"lr_too_high"},
        {"dead_units", "exploding_gradients", "overfitting"},  # 270 rows overfit at any rate (see below)
        fix=Run(lambda: penguins().standardised_target(), relu_net((50, 32)), epochs=30),
        fix_words="learning_rate=0.001",
    ),
    Scenario(
        "titanic_sgd_lr_10",
        Run(
            titanic_scaled,
            relu_net(out_activation="sigmoid"),
            optimizer=lambda: SGD(10.0),
            loss="binary_crossentropy",
        ),
        {"lr_too_high"},
        {"dead_units", "exploding_gradients"},
        fix=Run(
            titanic_scaled,
            relu_net(out_activation="sigmoid"),
            optimizer=lambda: SGD(0.01),
            loss="binary_crossentropy",
        ),
        fix_words="learning_rate=0.01",
    ),
    Scenario(
        "mnist_adam_1e-7",
        Run(
            mnist_scaled,
            relu_net((64,), out=10, out_activation="softmax"),
            optimizer=lambda: Adam(1e-7),
            loss="categorical_crossentropy",
            epochs=10,
        ),
        {"lr_too_low"},
        fix=Run(
            mnist_scaled,
            relu_net((64,), out=10, out_activation="softmax"),
            optimizer=lambda: Adam(1e-3),
            loss="categorical_crossentropy",
            epochs=10,
        ),
        fix_words="learning_rate=0.001",
    ),
    Scenario(
        "titanic_sgd_1e-6",
        Run(
            titanic_scaled,
            relu_net(out_activation="sigmoid"),
            optimizer=lambda: SGD(1e-6),
            loss="binary_crossentropy",
        ),
        {"lr_too_low"},
        fix=Run(
            titanic_scaled,
            relu_net(out_activation="sigmoid"),
            optimizer=lambda: SGD(0.01),
            loss="binary_crossentropy",
        ),
        fix_words="learning_rate=0.01",
    ),
    Scenario(
        "mnist_softmax_binary_crossentropy",
        Run(
            mnist_scaled,
            relu_net((64,), out=10, out_activation="softmax"),
            optimizer=lambda: SGD(0.1),
            loss="binary_crossentropy",
            epochs=10,
        ),
        {"loss_output_mismatch"},
        fix=Run(
            mnist_scaled,
            relu_net((64,), out=10, out_activation="softmax"),
            optimizer=lambda: SGD(0.1),
            loss="categorical_crossentropy",
            epochs=10,
        ),
        fix_words="loss='categorical_crossentropy'",
    ),
    Scenario(
        "titanic_one_softmax_unit_bce",  # a softmax over one unit is always 1
        Run(titanic_scaled, relu_net(out_activation="softmax"), loss="binary_crossentropy"),
        {"loss_output_mismatch"},
        fix=Run(titanic_scaled, relu_net(out_activation="sigmoid"), loss="binary_crossentropy"),
        fix_words="activation='sigmoid'",
    ),
    Scenario(
        "titanic_one_sigmoid_categorical",
        Run(titanic_scaled, relu_net(out_activation="sigmoid"), loss="categorical_crossentropy"),
        {"loss_output_mismatch"},
        fix=Run(titanic_scaled, relu_net(out_activation="sigmoid"), loss="binary_crossentropy"),
        fix_words="loss='binary_crossentropy'",
    ),
    Scenario(
        "penguins_sigmoid_output",
        Run(
            lambda: penguins().standardised_target(), relu_net((50, 32), out_activation="sigmoid"), epochs=30
        ),
        {"loss_output_mismatch"},
        fix=Run(lambda: penguins().standardised_target(), relu_net((50, 32)), epochs=30),
        fix_words="a linear Dense(1) output",
    ),
    Scenario(
        "titanic_big_net_120_rows",
        Run(
            lambda: Data(
                titanic_scaled().x[:120],
                titanic_scaled().y[:120],
                titanic_scaled().x_val,
                titanic_scaled().y_val,
                "error",
            ),
            relu_net((256, 256), out_activation="sigmoid"),
            loss="binary_crossentropy",
            epochs=300,
        ),
        {"overfitting"},
        fix=Run(
            lambda: Data(
                titanic_scaled().x[:120],
                titanic_scaled().y[:120],
                titanic_scaled().x_val,
                titanic_scaled().y_val,
                "error",
            ),
            relu_net((256, 256), out_activation="sigmoid"),
            loss="binary_crossentropy",
            epochs=300,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)],
        ),
        fix_words="EarlyStopping(patience=5, restore_best_weights=True)",
    ),
    Scenario(
        "wages_big_net_80_rows",
        Run(
            lambda: Data(
                wages_scaled().x[:80], wages_scaled().y[:80], wages_scaled().x_val, wages_scaled().y_val
            ),
            relu_net((256, 256)),
            epochs=400,
        ),
        {"overfitting"},
        {"dead_units"},  # 400 epochs on 80 rows: 42% of the first layer's units die on the way
        fix=Run(
            lambda: Data(
                wages_scaled().x[:80], wages_scaled().y[:80], wages_scaled().x_val, wages_scaled().y_val
            ),
            relu_net((256, 256)),
            epochs=400,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)],
        ),
        fix_words="EarlyStopping(patience=5, restore_best_weights=True)",
    ),
    Scenario(
        "mnist_one_unit_bottleneck",
        Run(
            mnist_scaled,
            lambda d: [Dense(1, activation="relu"), Dense(10, activation="softmax")],
            loss="categorical_crossentropy",
            epochs=20,
        ),
        {"underfitting"},
        fix=Run(
            mnist_scaled,
            relu_net((64, 64), out=10, out_activation="softmax"),
            loss="categorical_crossentropy",
            epochs=20,
        ),
        fix_words="hidden layers of 64 units",
    ),
    Scenario(
        "linear_model_on_wavy_target_2",
        Run(lambda: wavy(seed=7), lambda d: [Dense(1)], optimizer=lambda: Adam(0.01), epochs=40),
        {"underfitting"},
        fix=Run(lambda: wavy(seed=7), relu_net((64, 64)), optimizer=lambda: Adam(0.01), epochs=40),
        fix_words="hidden layers of 64 units",
    ),
    Scenario(
        "tanh_first_layer_stddev_2",
        Run(
            regression,
            lambda d: [
                Dense(32, activation="tanh", kernel_initializer=RandomNormal(stddev=2.0)),
                Dense(32, activation="tanh"),
                Dense(1),
            ],
        ),
        {"vanishing_gradients"},
        fix=Run(regression, lambda d: [Dense(32, activation="tanh"), Dense(32, activation="tanh"), Dense(1)]),
        fix_words="the default glorot_uniform",
    ),
    Scenario(
        "titanic_sigmoid_8_layers",
        Run(
            titanic_scaled,
            lambda d: [Dense(32, activation="sigmoid") for _ in range(8)] + [Dense(1, activation="sigmoid")],
            optimizer=lambda: SGD(0.01),
            loss="binary_crossentropy",
        ),
        {"vanishing_gradients"},
        fix=Run(
            titanic_scaled,
            lambda d: (
                [Dense(32, activation="relu", kernel_initializer="he_uniform") for _ in range(8)]
                + [Dense(1, activation="sigmoid")]
            ),
            optimizer=lambda: SGD(0.01),
            loss="binary_crossentropy",
        ),
        fix_words="activation='relu' with kernel_initializer='he_uniform'",
    ),
    Scenario(
        "wages_tanh_10_layers_tiny_init",
        Run(
            wages_scaled,
            lambda d: (
                [
                    Dense(32, activation="tanh", kernel_initializer=RandomNormal(stddev=0.01))
                    for _ in range(10)
                ]
                + [Dense(1)]
            ),
            optimizer=lambda: SGD(0.01),
        ),
        {"vanishing_gradients"},
        {"underfitting", "lr_too_low", "stalled"},
        fix=Run(
            wages_scaled,
            lambda d: [Dense(32, activation="tanh") for _ in range(10)] + [Dense(1)],
            optimizer=lambda: SGD(0.01),
        ),
        fix_words="the default glorot_uniform",
    ),
    Scenario(
        "penguins_40_epochs_no_early_stopping",
        Run(lambda: penguins().standardised_target(), relu_net((50, 32)), epochs=40),
        {"overfitting"},
        fix=Run(
            lambda: penguins().standardised_target(),
            relu_net((50, 32)),
            epochs=40,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)],
        ),
        fix_words="EarlyStopping(patience=5, restore_best_weights=True)",
    ),
]


# Issue 18, point 5: convolutions, probed like Dense layers.
SICK += [
    Scenario(
        "mnist_sigmoid_convnet_8_layers",
        Run(mnist_scaled, convnet(depth=8, activation="sigmoid"), optimizer=lambda: SGD(0.05),
            loss="categorical_crossentropy", epochs=5),
        {"vanishing_gradients"},
        {"underfitting", "stalled"},
        fix=Run(mnist_scaled, convnet(depth=8), optimizer=lambda: SGD(0.05),
                loss="categorical_crossentropy", epochs=5),
        fix_words="relu convolutions",
    ),
    Scenario(
        "mnist_convnet_bias_minus_3",
        Run(mnist_scaled, convnet(depth=3, bias_initializer=Constant(-3.0)),
            loss="categorical_crossentropy", epochs=5),
        {"dead_units"},
        {"underfitting", "stalled", "vanishing_gradients"},
        fix=Run(mnist_scaled, convnet(depth=3), loss="categorical_crossentropy", epochs=5),
        fix_words="zero biases",
    ),
]

HEALTHY = [
    Scenario("wages_normalized", Run(wages, lambda d: [normalized(d), *relu_net((50, 32))(d)], epochs=30)),
    Scenario(
        "titanic_normalized",
        Run(
            titanic,
            lambda d: [normalized(d), *relu_net(out_activation="sigmoid")(d)],
            loss="binary_crossentropy",
            epochs=30,
        ),
    ),
    Scenario(
        "digits_like_sgd",
        Run(
            classes,
            relu_net((50, 50), out=10, out_activation="softmax"),
            optimizer=lambda: SGD(0.05),
            loss="categorical_crossentropy",
        ),
    ),
    Scenario("teacher_regression_adam", Run(regression, relu_net((50, 32)), epochs=30)),
    Scenario(
        "binary_rmsprop",
        Run(
            binary,
            relu_net((16, 16), out_activation="sigmoid"),
            optimizer=lambda: "rmsprop",
            loss="binary_crossentropy",
        ),
    ),
    Scenario(
        "tanh_three_layers",
        Run(regression, lambda d: [Dense(32, activation="tanh") for _ in range(3)] + [Dense(1)]),
    ),
    Scenario(
        "dropout_batchnorm",
        Run(
            classes,
            lambda d: [
                Dense(64, activation="relu"),
                BatchNormalization(),
                Dropout(0.2),
                Dense(10, activation="softmax"),
            ],
            loss="categorical_crossentropy",
        ),
    ),
    Scenario(
        "early_stopping_long_run",
        Run(
            regression,
            relu_net((32, 32)),
            epochs=200,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)],
        ),
    ),
]


# Issue 18: more healthy runs, among them the cases the doctor used to raise false alarms on.
HEALTHY += [
    Scenario("mnist_convnet", Run(mnist_scaled, convnet(), loss="categorical_crossentropy", epochs=5)),
    Scenario("teacher_l2_regularized", Run(regression, relu_net((128, 128), kernel_regularizer=l2(0.05)))),
    Scenario(
        "big_net_restored_best_weights",
        Run(
            lambda: regression(n=50, seed=5, noise=1.0),
            relu_net((256, 256)),
            epochs=500,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=100, restore_best_weights=True)],
        ),
    ),
    Scenario(
        "titanic_logistic_regression",
        Run(
            titanic_scaled,
            lambda d: [Dense(1, activation="sigmoid")],
            optimizer=lambda: SGD(0.1),
            loss="binary_crossentropy",
            epochs=100,
        ),
    ),
    Scenario(
        "wages_converged_small_net",
        Run(wages_scaled, relu_net((8,)), optimizer=lambda: Adam(0.01), epochs=200),
    ),
    Scenario(
        "penguins_target_standardised_early_stopping",  # what `trainwell train` does
        Run(
            lambda: penguins().standardised_target(),
            relu_net((50, 32)),
            epochs=200,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)],
        ),
    ),
    Scenario(
        "mnist_scaled_adam",
        Run(
            mnist_scaled,
            relu_net((64, 64), out=10, out_activation="softmax"),
            loss="categorical_crossentropy",
            epochs=10,
        ),
    ),
    Scenario(
        "mnist_scaled_sgd",
        Run(
            mnist_scaled,
            relu_net((64,), out=10, out_activation="softmax"),
            optimizer=lambda: SGD(0.05),
            loss="categorical_crossentropy",
            epochs=10,
        ),
    ),
    Scenario(
        "titanic_scaled_sgd_0.01",
        Run(
            titanic_scaled,
            relu_net(out_activation="sigmoid"),
            optimizer=lambda: SGD(0.01),
            loss="binary_crossentropy",
        ),
    ),
    Scenario("wages_scaled_sgd_0.01", Run(wages_scaled, relu_net(), optimizer=lambda: SGD(0.01), epochs=30)),
    Scenario(
        "titanic_dropout",
        Run(
            titanic_scaled,
            lambda d: [
                Dense(64, activation="relu"),
                Dropout(0.3),
                Dense(64, activation="relu"),
                Dropout(0.3),
                Dense(1, activation="sigmoid"),
            ],
            loss="binary_crossentropy",
            epochs=30,
        ),
    ),
    Scenario(
        "wages_batchnorm",
        Run(wages, lambda d: [BatchNormalization(), Dense(32, activation="relu"), Dense(1)], epochs=30),
    ),
    Scenario("teacher_l1_regularized", Run(regression, relu_net((64, 64), kernel_regularizer=l1(0.001)))),
    Scenario(
        "wages_tanh_two_layers",
        Run(wages_scaled, lambda d: [Dense(32, activation="tanh"), Dense(1)], epochs=30),
    ),
    Scenario(
        "mnist_early_stopping",
        Run(
            mnist_scaled,
            relu_net((64,), out=10, out_activation="softmax"),
            loss="categorical_crossentropy",
            epochs=100,
            callbacks=lambda: [EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)],
        ),
    ),
    Scenario(
        "titanic_small_hidden_layer",
        Run(titanic_scaled, relu_net((4,), out_activation="sigmoid"), loss="binary_crossentropy", epochs=60),
    ),
    Scenario("penguins_leaky_relu", Run(lambda: penguins().standardised_target(), leaky_net, epochs=30)),
    Scenario(
        "titanic_sparse_softmax",
        Run(
            lambda: Data(
                titanic_scaled().x,
                titanic_scaled().y[:, 0].astype(np.int64),
                titanic_scaled().x_val,
                titanic_scaled().y_val,
                "error",
            ),
            relu_net(out=2, out_activation="softmax"),
            loss="sparse_categorical_crossentropy",
            epochs=30,
        ),
    ),
]


@functools.cache
def outcome(name: str, fixed: bool = False) -> Outcome:
    """Run a scenario (or its fix) once per test session."""
    scenario = next(s for s in SICK + HEALTHY if s.name == name)
    return execute(scenario.fix if fixed else scenario.run)


# ----------------------------------------------------------------------------------------------
# the confusion table


def confusion_rows() -> list[dict]:
    """One row per scenario: expected codes, found codes, misses and false alarms."""
    rows = []
    for s in SICK + HEALTHY:
        found = outcome(s.name).codes
        rows.append(
            {
                "scenario": s.name,
                "expected": sorted(s.expected),
                "found": sorted(found),
                "missed": sorted(s.expected - found),
                "false_alarms": sorted(found - s.expected - s.allowed),
                # the induced problem is named as a root cause, not as another finding's consequence
                "root_cause_ok": s.expected <= outcome(s.name).roots(),
            }
        )
    return rows


@functools.cache
def repaired(name: str):
    """``model.repair`` on a sick scenario: same data, epochs and batch size, seed 0."""
    scenario = next(s for s in SICK if s.name == name)
    out = outcome(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return out.model.repair(
            out.data.x,
            out.data.y,
            findings=out.findings,
            epochs=scenario.run.epochs,
            batch_size=scenario.run.batch_size,
            validation_data=(out.data.x_val, out.data.y_val),
            verbose=0,
        )


def repair_rows() -> list[dict]:
    """Per sick scenario: was it repaired (a tried fix left no finding and lowered the validation score)?"""
    rows = []
    for s in SICK:
        result = repaired(s.name)
        healthy_better = [
            r for r in result.rows if r["still_found"] == [] and r["score_after"] < r["score_before"]
        ]
        best = min(healthy_better, key=lambda r: r["score_after"], default=None)
        rows.append(
            {
                "scenario": s.name,
                "repaired": best is not None,
                "fix": best["fix"] if best else "",
                "before": result.baseline.score,
                "after": best["score_after"] if best else math.nan,
                "score": result.score_name,
            }
        )
    return rows


def per_code_table() -> str:
    """Recall per induced code (found, and found as a root cause) and false alarms on healthy runs."""
    rows = {row["scenario"]: row for row in confusion_rows()}
    lines = [f"{'code':22s} {'sick runs':>9s} {'found':>6s} {'as root':>8s}"]
    for code in [c for c in CODES if c != "detector_failed"]:
        runs = [s for s in SICK if code in s.expected]
        found = sum(code in rows[s.name]["found"] for s in runs)
        as_root = sum(code in outcome(s.name).roots() for s in runs)
        lines.append(f"{code:22s} {len(runs):9d} {found:6d} {as_root:8d}")
    alarms = sum(bool(rows[s.name]["found"]) for s in HEALTHY)
    lines.append(f"false alarms: {alarms} of {len(HEALTHY)} healthy runs got a warning or an error")
    return "\n".join(lines)


def repair_table() -> str:
    rows = repair_rows()
    lines = [f"{'scenario':40s} {'repaired':>8s} {'before':>10s} {'after':>10s}  fix"]
    for r in rows:
        lines.append(
            f"{r['scenario']:40s} {'yes' if r['repaired'] else 'NO':>8s} {r['before']:10.4g} "
            f"{r['after']:10.4g}  {r['fix']}"
        )
    done = sum(r["repaired"] for r in rows)
    lines.append(
        f"repaired: {done} of {len(rows)} sick runs ({done / len(rows):.0%}) turned healthy with a "
        "lower validation score"
    )
    return "\n".join(lines)


def confusion_table() -> str:
    """The scenario × code table: E expected and found, M missed, a allowed extra, X false alarm."""
    codes = [c for c in CODES if c != "detector_failed"]
    short = {c: "".join(w[0] for w in c.split("_")).upper() for c in codes}
    lines = [
        "codes: " + ", ".join(f"{short[c]}={c}" for c in codes),
        f"{'scenario':46s} " + " ".join(f"{short[c]:>4s}" for c in codes) + "  result",
    ]
    tp = fn = fp = 0
    for s, row in zip(SICK + HEALTHY, confusion_rows()):
        found = set(row["found"])
        cells = []
        for c in codes:
            mark = "."
            if c in s.expected:
                mark = "E" if c in found else "M"
            elif c in found:
                mark = "a" if c in s.allowed else "X"
            cells.append(f"{mark:>4s}")
        tp += len(s.expected & found)
        fn += len(row["missed"])
        fp += len(row["false_alarms"])
        verdict = "ok" if not row["missed"] and not row["false_alarms"] else "FAIL"
        if verdict == "ok" and not row["root_cause_ok"]:
            verdict = "FAIL (root cause)"
        kind = "sick" if s.expected else "healthy"
        lines.append(f"{s.name + ' (' + kind + ')':46s} " + " ".join(cells) + f"  {verdict}")
    lines.append(
        f"found {tp} of {tp + fn} induced problems, {fn} missed, {fp} false alarms "
        f"({len(SICK)} sick runs, {len(HEALTHY)} healthy runs)"
    )
    return "\n".join(lines)


def fix_rows() -> list[dict]:
    """Sick score vs fixed score for every scenario (lower is better)."""
    return [
        {
            "scenario": s.name,
            "fix": s.fix_words,
            "sick": outcome(s.name).score,
            "fixed": outcome(s.name, fixed=True).score,
        }
        for s in SICK
    ]


if __name__ == "__main__":
    import time

    start = time.perf_counter()
    print(confusion_table(), end="\n\n")
    print(per_code_table(), end="\n\n")
    print("held-out score of each sick run and of its hand-written fix (lower is better):")
    for row in fix_rows():
        print(f"{row['scenario']:40s} {row['sick']:10.4g} -> {row['fixed']:10.4g}   ({row['fix']})")
    print()
    print(repair_table())
    print(f"\n{time.perf_counter() - start:.0f} s")
