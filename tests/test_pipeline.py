"""Tests for trainwell.pipeline: the CSV workflow of the command line, called from Python."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainwell._errors import ConfigError
from trainwell.models import load_model
from trainwell.pipeline import Settings, evaluate_csv, predict_csv, prepare_table, train_csv
from trainwell.tabular import Preprocessor


def write_regression_csv(path, n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    city = rng.choice(["north", "south"], n)
    y = 3.0 * x + np.where(city == "north", 1.0, 0.0) + rng.normal(0, 0.1, n)
    frame = pd.DataFrame({"x": x, "city": city, "y": y.round(4)})
    frame.loc[[5, 6], "y"] = np.nan  # rows without a target: dropped with a note
    frame.to_csv(path, index=False)
    return frame


def test_train_csv_returns_model_with_preprocessing_and_its_metrics(tmp_path):
    data = tmp_path / "houses.csv"
    write_regression_csv(data)
    run = train_csv(data, "y", layers=[4], epochs=3, batch_size=8, seed=1)
    assert run.settings == Settings(layers=(4,), epochs=3, batch_size=8, seed=1)
    assert run.preprocessor.task == "regression" and run.model.preprocessing == run.preprocessor.get_config()
    assert "dropped 2 of 40 row(s) whose target 'y' is missing" in run.notes
    # 38 labelled rows: the first int(38 * 0.8) = 30 after the seeded shuffle train, 8 validate (Keras).
    assert run.metrics_on == "validation rows (8)" and len(run.history.history["loss"]) <= 3
    error = run.y_pred.astype(np.float64) - run.y_true.astype(np.float64)
    assert run.metrics["mse"] == pytest.approx(np.mean(error**2))
    assert run.metrics["mae"] == pytest.approx(np.mean(np.abs(error)))
    with pytest.raises(ConfigError, match=r"unknown setting 'epoch'.*Did you mean 'epochs'"):
        train_csv(data, "y", epoch=3)


def test_prepare_table_is_the_preprocessing_of_train(tmp_path):
    data = tmp_path / "houses.csv"
    write_regression_csv(data)
    settings = Settings(layers=(), epochs=1, seed=3)
    table = prepare_table(data, "y", settings)
    assert table.X.shape == (30, 3) and table.validation[0].shape == (8, 3)  # x, city=north, city=south
    run = train_csv(data, "y", layers=(), epochs=1, seed=3)
    assert run.preprocessor.get_config() == table.preprocessor.get_config()
    # The table holds the standardised target the network trains on; the run reports it in units.
    in_units = table.preprocessor.inverse_transform_target(table.validation[1])
    np.testing.assert_allclose(run.y_true, in_units, rtol=1e-6)


def test_predict_and_evaluate_csv_match_model_predict(tmp_path):
    data, model_file, out = tmp_path / "houses.csv", tmp_path / "houses.tw", tmp_path / "pred.csv"
    frame = write_regression_csv(data)
    train_csv(data, "y", layers=(3,), epochs=2, seed=0).model.save(model_file)
    model = load_model(model_file)
    preprocessor = Preprocessor.from_config(model.preprocessing)
    assert preprocessor.target_scale is not None  # the model file keeps the target's scaling
    # The network outputs the standardised target; predict_csv turns it back into the target's units.
    expected = preprocessor.inverse_transform_target(model.predict(preprocessor.transform(frame), verbose=0))
    predictions = predict_csv(model_file, data, chunk_size=7)
    assert list(predictions.columns) == ["predicted_y"] and len(predictions) == 40
    np.testing.assert_allclose(predictions["predicted_y"], expected.reshape(-1), rtol=1e-6)
    assert predict_csv(model_file, data, out, chunk_size=7) == 40
    np.testing.assert_allclose(pd.read_csv(out)["predicted_y"], expected.reshape(-1), rtol=1e-6)
    evaluation = evaluate_csv(model_file, data, chunk_size=9)
    labelled = frame["y"].notna().to_numpy()
    error = expected.reshape(-1)[labelled].astype(np.float64) - frame["y"].to_numpy()[labelled]
    assert evaluation.n_rows == 38 and evaluation.notes == ["left out 2 row(s) whose target 'y' is missing"]
    assert evaluation.metrics["mse"] == pytest.approx(np.mean(error**2), rel=1e-5)


PENGUINS = Path(__file__).parent / "data" / "penguins_raw.csv"


def _penguins(**settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen egg dates in the validation rows, by design
        return train_csv(PENGUINS, "Body Mass (g)", **settings)


@pytest.mark.slow
def test_penguins_raw_target_in_grams_is_found_as_the_root_cause():
    # Issue 18: without target scaling the run is sick, and the doctor names the unscaled target
    # first, with the other findings marked as its consequences.
    run = _penguins(scale_target=False)
    problems = [f for f in run.findings if f.is_problem]
    assert problems[0].code == "unscaled_target" and problems[0].caused_by is None
    assert problems[0].evidence["y_mean"] == pytest.approx(4200, rel=0.05)
    assert all(f.caused_by == "unscaled_target" for f in problems[1:])


@pytest.mark.slow
def test_penguins_raw_trains_without_findings_with_the_default_target_scaling(tmp_path):
    run = _penguins()
    assert not [f for f in run.findings if f.is_problem], [str(f) for f in run.findings]
    assert run.metrics["r2"] > 0.8  # in grams: about 250 g of error on a 4,200 g mean
    assert 150 < run.metrics["mae"] < 400
    run.model.save(tmp_path / "penguins.tw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen dates, gaps absent from the training rows
        predicted = predict_csv(tmp_path / "penguins.tw", PENGUINS)["predicted_Body Mass (g)"]
    assert 3000 < predicted.mean() < 5500
