"""Tests for trainwell.diagnostics.repair: the doctor's fixes tried on fresh copies and compared."""

from __future__ import annotations

import numpy as np
import pytest

from trainwell._errors import ConfigError
from trainwell.datasets import load_titanic
from trainwell.diagnostics import REPAIRS, Finding
from trainwell.diagnostics.fixes import Recipe
from trainwell.diagnostics.repair import recipe_of
from trainwell.layers import Dense, Input
from trainwell.models import Sequential
from trainwell.optimizers import SGD
from trainwell.utils import set_random_seed


def titanic_sgd_05():
    """The README's sick example: Titanic's raw features, SGD at a learning rate of 0.5."""
    set_random_seed(0)
    x, y = load_titanic()
    model = Sequential([Input(shape=(x.shape[1],)), Dense(32, activation="relu"),
                        Dense(32, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer=SGD(learning_rate=0.5), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, validation_split=0.3, epochs=20, verbose=0)
    return model, x, y


@pytest.mark.slow
def test_repair_of_the_titanic_example_proves_the_root_fix():
    model, x, y = titanic_sgd_05()
    before = [w.copy() for w in model.get_weights()]
    result = model.repair(x, y, validation_split=0.3, verbose=0)
    rows = {r["finding"]: r for r in result.rows}
    root = rows["unscaled_inputs"]
    assert root["gone"] and root["still_found"] == [] and root["fix"] == "Normalization() adapted on x first"
    assert root["score_after"] < 0.8 * root["score_before"]  # validation error 0.36 -> 0.19
    assert root["val_loss_after"] < root["val_loss_before"]
    dead = [r for r in result.rows if r["finding"].startswith("dead_units")]
    assert dead and all(r["caused_by"] == "unscaled_inputs" for r in dead)
    assert dead[0]["fix"].startswith("learning_rate=0.01")
    assert result.rows[-1]["finding"] == "all fixes together" and result.rows[-1]["gone"]
    assert "Normalization" in result.best_fix
    # The best copy is ready to use: it scores as the table says, and the sick model is untouched.
    x_val, y_val = x[-268:], y[-268:]
    error = np.mean((result.best_model.predict(x_val, verbose=0)[:, 0] > 0.5) != y_val)
    assert error == pytest.approx(min(r["score_after"] for r in result.rows))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert "gone?" in result.table and "best: " in result.table


@pytest.mark.slow
def test_repair_of_an_unscaled_target_predicts_in_the_target_units():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (4200 + 800 * np.tanh(x @ rng.normal(size=(4, 1)))).astype(np.float32)
    set_random_seed(0)
    model = Sequential([Input(shape=(4,)), Dense(32, activation="relu"), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, validation_split=0.2, epochs=30, verbose=0)
    assert model.history.diagnosis[0].code == "unscaled_target"
    result = model.repair(x, y, verbose=0)
    [row] = [r for r in result.rows if r["finding"] == "unscaled_target"]
    assert row["gone"] and row["score_after"] < 0.1 * row["score_before"]
    pred = result.best_model.predict(x[-80:], verbose=0)
    assert abs(pred.mean() - y[-80:].mean()) < 200  # grams, not standard deviations


def test_match_output_follows_the_targets():
    recipe = Recipe({"layers": [{"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}}]},
                    {"class_name": "SGD", "config": {}}, "binary_crossentropy", ["accuracy"])
    REPAIRS["match_output"][1](recipe, None, np.eye(10)[[1, 2, 3]])
    assert recipe.loss == "categorical_crossentropy" and recipe.dense[-1]["activation"] == "softmax"
    REPAIRS["match_output"][1](recipe, None, np.array([0.0, 1.0, 1.0]))
    assert recipe.loss == "binary_crossentropy" and recipe.dense[-1] == {"units": 1, "activation": "sigmoid"}
    REPAIRS["match_output"][1](recipe, None, np.array([2.5, 7.25, 1.0]))
    assert recipe.loss == "mean_squared_error" and recipe.metrics == []


def test_pixels_are_divided_by_255_and_other_inputs_adapted():
    recipe = Recipe({"layers": []}, {}, "mse", [])
    REPAIRS["normalize_inputs"][1](recipe, np.tile(np.arange(0, 256, 4.0), (3, 2)), None)
    assert recipe.normalize == "pixels"
    REPAIRS["normalize_inputs"][1](recipe, np.array([[0.5, 300.0], [1.5, 900.0]]), None)
    assert recipe.normalize == "adapt"


def test_learning_rate_changes_follow_keras_defaults():
    model = Sequential([Input(shape=(2,)), Dense(1)])
    model.compile(optimizer=SGD(learning_rate=0.5), loss="mse")
    recipe = recipe_of(model)
    REPAIRS["lower_learning_rate"][1](recipe, None, None)
    assert recipe.optimizer["config"]["learning_rate"] == 0.01
    REPAIRS["raise_learning_rate"][1](recipe, None, None)
    assert recipe.optimizer["config"]["learning_rate"] == pytest.approx(0.1)


def test_repair_needs_a_compiled_model_and_known_repairs():
    model = Sequential([Input(shape=(2,)), Dense(1)])
    with pytest.raises(ConfigError, match="compiled model"):
        model.repair(np.zeros((10, 2)), np.zeros(10), verbose=0)
    model.compile(optimizer="adam", loss="mse")
    bad = Finding("lr_too_high", "warning", None, {}, "m", "f", ("sing_to_it",))
    with pytest.raises(ConfigError, match="sing_to_it"):
        model.repair(np.zeros((10, 2)), np.zeros(10), findings=[bad], epochs=1, verbose=0)
