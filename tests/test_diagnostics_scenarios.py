"""The training doctor's labelled scenario suite (issue 4, points 5 and 6).

Each scenario is a small, seeded training run. Sick ones carry the finding codes the doctor must
report (``expected``) and those it may also report because they follow from the induced problem
(``allowed``: a learning rate of 10 also makes gradients overflow); any other warning or error is
a false alarm. Healthy runs must get no warning or error at all. Every sick scenario also names
its fix, built from the doctor's own advice, and the fixed run must score measurably better on
held-out data (mean squared error or classification error, computed here the same way for both).

``confusion_table()`` runs everything and returns the table as text (``pytest -s`` prints it);
``python tests/test_diagnostics_scenarios.py`` prints it too.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from trainwell.callbacks import EarlyStopping, ReduceLROnPlateau
from trainwell.datasets import load_titanic, load_wages
from trainwell.diagnostics import CODES
from trainwell.initializers import Constant, RandomNormal
from trainwell.layers import BatchNormalization, Dense, Dropout, Input, Normalization
from trainwell.models import Sequential
from trainwell.optimizers import SGD, Adam
from trainwell.utils import set_random_seed, to_categorical

pytestmark = pytest.mark.slow  # the whole scenario suite; `-m "not slow"` leaves it out

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

    def scaled(self, column: int, factor: float) -> Data:
        x, x_val = self.x.copy(), self.x_val.copy()
        x[:, column] *= factor
        x_val[:, column] *= factor
        return Data(x, self.y, x_val, self.y_val, self.score)


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


@dataclass
class Outcome:
    codes: set[str]
    findings: list
    score: float


def score(model, data: Data) -> float:
    """Held-out mean squared error, or classification error; inf when predictions are not finite."""
    pred = model.predict(data.x_val, verbose=0)
    if not np.all(np.isfinite(pred)):
        return math.inf
    if data.score == "mse":
        return float(np.mean((pred - data.y_val) ** 2))
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
    return Outcome({f.code for f in problems}, history.diagnosis, score(model, data))


def relu_net(units=(32, 32), out=1, out_activation=None, **kwargs):
    return lambda data: (
        [Dense(u, activation="relu", **kwargs) for u in units] + [Dense(out, activation=out_activation)]
    )


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
            }
        )
    return rows


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


# ----------------------------------------------------------------------------------------------
# tests


def test_suite_size():
    assert len(SICK) >= 12 and len(HEALTHY) >= 6
    assert set().union(*(s.expected for s in SICK)) >= set(CODES) - {"detector_failed"}


@pytest.mark.parametrize("scenario", SICK, ids=lambda s: s.name)
def test_sick_run_is_diagnosed(scenario):
    found = outcome(scenario.name).codes
    assert scenario.expected <= found, f"missed {scenario.expected - found}; found {found}"
    assert not found - scenario.expected - scenario.allowed, f"false alarm: {found}"


@pytest.mark.parametrize("scenario", HEALTHY, ids=lambda s: s.name)
def test_healthy_run_gets_no_warning(scenario):
    findings = outcome(scenario.name).findings
    assert not [f for f in findings if f.is_problem], [str(f) for f in findings]


@pytest.mark.parametrize("scenario", SICK, ids=lambda s: s.name)
def test_suggested_fix_improves_the_run(scenario):
    sick, fixed = outcome(scenario.name).score, outcome(scenario.name, fixed=True).score
    # "measurably": at least 10% lower held-out error (or finite where the sick run was not).
    assert fixed < 0.9 * sick, f"{scenario.fix_words}: held-out score {sick:.4g} -> {fixed:.4g}"


def test_every_sick_finding_carries_numbers_and_a_fix():
    for s in SICK:
        for f in outcome(s.name).findings:
            if f.code in s.expected:
                assert f.evidence and f.message and f.fix


def test_print_confusion_table():
    table = confusion_table()
    print("\n" + table)  # shown with pytest -s
    assert "FAIL" not in table and "0 missed, 0 false alarms" in table


if __name__ == "__main__":
    print(confusion_table())
    for row in fix_rows():
        print(f"{row['scenario']:38s} {row['sick']:10.4g} -> {row['fixed']:10.4g}   ({row['fix']})")
