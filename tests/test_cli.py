"""Tests for trainwell.cli: the real console script, run in a subprocess on CSV files written here.

Each training run is tiny (a few epochs of a small network), and the runs that several tests
read (one regression model, one classification model) are made once per module.
"""

import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainwell import cli
from trainwell.models import load_model
from trainwell.tabular import Preprocessor

SEED = 3
VALIDATION = 0.25
# One thread per process: these models are tiny, and the machine running the tests is shared.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop("TRAINWELL_DEBUG", None)


def run_cli(*args, cwd=None):
    """``python -m trainwell.cli ARGS``: the same entry point as the ``trainwell`` script."""
    command = [sys.executable, "-m", "trainwell.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=240)


def assert_one_line_error(result, *fragments):
    """Exit status 1, one ``trainwell: error:`` line on stderr holding every fragment, no traceback."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trainwell: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def api_outputs(model_path, frame):
    """Predictions the Python API gives for a frame: the stored preprocessing, then model.predict
    (a regression target turned back from its training scale into its units, shape (n, 1))."""
    model = load_model(model_path)
    preprocessor = Preprocessor.from_config(model.preprocessing)
    out = model.predict(preprocessor.transform(frame), verbose=0)
    if preprocessor.task == "regression":
        out = preprocessor.inverse_transform_target(out).reshape(-1, 1)
    return out, preprocessor


# ----------------------------------------------------------------------------- data


def regression_frame(n=80, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(10.0, 3.0, n)
    x2 = rng.integers(0, 50, n)
    city = rng.choice(["north", "south", "east"], n)
    y = 2.0 * x1 - 0.1 * x2 + np.where(city == "north", 5.0, 0.0) + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "city": city, "constant": 7, "y": y.round(3)})
    frame.loc[[4, 9], "x1"] = np.nan  # imputed with an indicator column
    frame.loc[[2, 30, 31], "y"] = np.nan  # dropped with a note
    return frame


def classification_frame(n=90, seed=1):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    label = np.where(a > 0.5, "cat", np.where(b > 0, "dog", "bird"))
    return pd.DataFrame({"a": a, "b": b, "colour": rng.choice(["red", "blue"], n), "animal": label})


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def regression(work):
    """A regression model trained by the CLI: (result, model path, csv path, frame)."""
    frame = regression_frame()
    data = work / "houses.csv"
    frame.to_csv(data, index=False)
    model = work / "houses.tw"
    result = run_cli("train", data, "--target", "y", "-o", model, "--epochs", 4, "--layers", "8,4",
                     "--seed", SEED, "--validation-split", VALIDATION)
    return result, model, data, frame


@pytest.fixture(scope="module")
def classification(work):
    frame = classification_frame()
    data = work / "animals.csv"
    frame.to_csv(data, index=False)
    model = work / "animals.tw"
    result = run_cli("train", data, "--target", "animal", "-o", model, "--epochs", 5, "--layers", "8",
                     "--learning-rate", 0.01, "--report", work / "animals.html")
    return result, model, data, frame


# ----------------------------------------------------------------------------- regression end to end


def test_train_regression_prints_metrics_notes_and_writes_files(regression, work):
    result, model, _, _ = regression
    assert result.returncode == 0, result.stderr
    assert "Metrics on the validation rows (20)" in result.stdout  # 77 labelled rows: 57 + 20
    for name in ("mse", "mae", "r2"):
        assert f" {name} " in result.stdout
    assert "dropped 3 of 80 row(s) whose target 'y' is missing" in result.stderr
    assert "column 'constant' has the same value (7) in every training row: dropped" in result.stderr
    assert model.is_file()
    report = work / "houses-report.html"  # the default: next to the model
    assert report.is_file() and 'alt="predicted vs actual"' in report.read_text(encoding="utf-8")


def test_stored_preprocessing_is_learned_on_the_shuffled_training_rows_only(regression):
    _, model, _, frame = regression
    labelled = frame[frame["y"].notna()]
    order = np.random.default_rng(SEED).permutation(len(labelled))
    split_at = math.floor(len(labelled) * (1 - VALIDATION))
    train_rows = labelled.iloc[order[:split_at]]
    config = load_model(model).preprocessing
    specs = {spec["name"]: spec for spec in config["columns"]}
    x1 = train_rows["x1"].to_numpy()
    median = np.nanmedian(x1)
    filled = np.where(np.isnan(x1), median, x1)
    assert specs["x1"]["median"] == pytest.approx(median, rel=1e-12)
    assert specs["x1"]["mean"] == pytest.approx(filled.mean(), rel=1e-12)
    assert specs["x1"]["std"] == pytest.approx(filled.std(), rel=1e-12)
    assert specs["x2"]["mean"] == pytest.approx(train_rows["x2"].mean(), rel=1e-12)
    assert specs["city"]["categories"] == ["east", "north", "south"]
    assert specs["constant"]["kind"] == "dropped"
    assert config["task"] == "regression" and config["target"] == "y"


def test_predict_regression_equals_python_api_in_chunks(regression, work):
    _, model, _, frame = regression
    new = frame.drop(columns=["y"]).iloc[::-1].reset_index(drop=True)
    new = new[["city", "x2", "x1"]].assign(comment="ignored")  # reordered, one extra column
    data, out = work / "new_houses.csv", work / "house_predictions.csv"
    new.to_csv(data, index=False)
    result = run_cli("predict", model, data, "-o", out, "--chunk-size", 7)
    assert result.returncode == 0, result.stderr
    assert f"Wrote {len(new)} prediction(s)" in result.stdout
    assert "ignored 1 column(s) not seen in training: 'comment'" in result.stderr
    written = pd.read_csv(out)
    assert list(written.columns) == ["predicted_y"]
    expected, _ = api_outputs(model, pd.read_csv(data).drop(columns=["comment"]))
    np.testing.assert_allclose(written["predicted_y"].to_numpy(), expected[:, 0], rtol=1e-6, atol=1e-6)


def test_evaluate_regression_matches_numpy_formulas(regression):
    _, model, data, frame = regression
    result = run_cli("evaluate", model, data, "--json")
    assert result.returncode == 0, result.stderr
    assert "left out 3 row(s) whose target 'y' is missing" in result.stderr
    metrics = json.loads(result.stdout)
    labelled = frame[frame["y"].notna()]
    pred = api_outputs(model, labelled)[0][:, 0].astype(np.float64)
    true = labelled["y"].to_numpy()
    assert metrics["mse"] == pytest.approx(np.mean((pred - true) ** 2), rel=1e-5)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(pred - true)), rel=1e-5)
    r2 = 1 - np.sum((true - pred) ** 2) / np.sum((true - true.mean()) ** 2)
    assert metrics["r2"] == pytest.approx(r2, rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------- classification end to end


def test_classification_train_predict_evaluate(classification, work):
    result, model, data, frame = classification
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "log_loss" in result.stdout
    assert (work / "animals.html").is_file()

    predicted = run_cli("predict", model, data, "-o", "-")  # to stdout: CSV only, nothing else
    assert predicted.returncode == 0, predicted.stderr
    written = pd.read_csv(io.StringIO(predicted.stdout))
    probability_columns = ["probability_bird", "probability_cat", "probability_dog"]
    assert list(written.columns) == ["predicted_animal", *probability_columns]
    proba = written.iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    expected, preprocessor = api_outputs(model, frame)
    np.testing.assert_allclose(proba, expected, rtol=1e-6, atol=1e-7)
    labels = np.array(preprocessor.classes)[expected.argmax(axis=1)]
    assert (written["predicted_animal"].to_numpy() == labels).all()

    evaluated = run_cli("evaluate", model, data, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    true = preprocessor.transform_target(frame["animal"])
    assert metrics["accuracy"] == pytest.approx(np.mean(expected.argmax(axis=1) == true))
    p_true = np.clip(expected[np.arange(len(true)), true].astype(np.float64), 1e-7, 1 - 1e-7)
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-5)
    confusion = np.array(metrics["confusion"])
    assert confusion.sum() == len(frame)
    assert (confusion.sum(axis=1) == np.bincount(true, minlength=3)).all()
    for i, row in enumerate(metrics["per_class"]):
        assert row["recall"] == pytest.approx(confusion[i, i] / confusion[i].sum())


def run_in_process(capsys, *args):
    """``main(args)`` in this process (torch is loaded already): ``(exit status, stdout, stderr)``."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_evaluate_prints_confusion_matrix_and_summary_runs(classification, capsys):
    _, model, data, frame = classification
    status, out, err = run_in_process(capsys, "evaluate", model, data)
    assert status == 0, err
    assert f"{len(frame)} row(s) of" in out
    lines = out.splitlines()
    header = lines[lines.index("confusion matrix (rows: true class, columns: predicted class)") + 1]
    assert header.split() == ["bird", "cat", "dog"]
    status, out, err = run_in_process(capsys, "summary", model)
    assert status == 0, err
    assert "dense" in out.lower()


def test_unseen_categories_are_counted_and_missing_columns_listed(classification, work):
    _, model, _, frame = classification
    colours = ["green", "green", "red", "pink", "blue", "red"]
    unseen = frame.drop(columns=["animal"]).head(6).assign(colour=colours)
    data, out = work / "unseen.csv", work / "unseen_predictions.csv"
    unseen.to_csv(data, index=False)
    result = run_cli("predict", model, data, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "column 'colour' has 3 value(s) not seen in training" in result.stderr
    assert len(pd.read_csv(out)) == 6

    frame.drop(columns=["a", "colour"]).to_csv(data, index=False)
    result = run_cli("predict", model, data, "-o", work / "never.csv")
    assert_one_line_error(result, "2 column(s) used in training are absent: 'a', 'colour'")
    assert not (work / "never.csv").exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".never.csv")]  # no temporary file left


# ----------------------------------------------------------------------------- bad input


def test_semicolon_cp1252_file_with_gaps_trains_with_notes(work):
    """A spreadsheet export: semicolons, Windows accents, an empty column, rows without target."""
    lines = ["prix;surface;quartier;vide"]
    rng = np.random.default_rng(0)
    for i in range(40):
        price = "" if i in (3, 17) else f"{100 + 3 * i + rng.normal():.2f}"
        lines.append(f"{price};{20 + i};{'Cité' if i % 2 else 'Forêt'};")
    data = work / "export.csv"
    data.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    result = run_cli("train", data, "--target", "prix", "-o", work / "export.tw", "--epochs", 2,
                     "--layers", "4")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "is not valid UTF-8" in result.stderr and "cp1252" in result.stderr
    assert "detected the semicolon delimiter" in result.stderr
    assert "dropped 2 of 40 row(s) whose target 'prix' is missing" in result.stderr
    assert "column 'vide' has no values in training: dropped" in result.stderr
    config = load_model(work / "export.tw").preprocessing
    assert {spec["name"]: spec for spec in config["columns"]}["quartier"]["categories"] == ["Cité", "Forêt"]


BAD_FILES = {
    "empty": ("", ["is empty"]),
    "one_column": ("a b c\n1 2 3\n4 5 6\n", ["single column"]),
    "bad_target": ("price,size\n1,2\n3,4\n", ["no target column 'prise'", "Did you mean 'price'?"]),
    "single_class": ("prise,size\nyes,2\nyes,4\nyes,5\n", ["a single class ('yes')"]),
    "ragged": ("prise,size\n1,2\n3,4,5,6\n", ["cannot split"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_one_line_and_no_output(case, tmp_path):
    text, fragments = BAD_FILES[case]
    data = tmp_path / "data.csv"
    data.write_text(text, encoding="utf-8")
    result = run_cli("train", data, "--target", "prise", "-o", tmp_path / "m.tw")
    assert_one_line_error(result, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_text_in_a_regression_target_names_the_rows(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("y,x\n1.5,1\n2.5,2\noops,3\n4.5,4\n", encoding="utf-8")
    result = run_cli("train", data, "--target", "y", "--task", "regression", "-o", tmp_path / "m.tw")
    assert_one_line_error(result, "expected numbers, found text", "'oops'")


def test_missing_files_and_folders(tmp_path):
    result = run_cli("train", tmp_path / "nope.csv", "--target", "y", "-o", tmp_path / "m.tw")
    assert_one_line_error(result, "no file at", "nope.csv")
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n", encoding="utf-8")
    result = run_cli("train", data, "--target", "y", "-o", tmp_path / "missing" / "m.tw")
    assert_one_line_error(result, "`--output`", "does not exist")
    result = run_cli("predict", tmp_path / "absent.tw", data)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("trainwell: error:") and "absent.tw" in result.stderr


def test_bad_options_are_usage_errors(tmp_path):
    result = run_cli("train", "data.csv", "--target", "y", "--layers", "50,x")
    assert result.returncode == 2
    assert "expected positive whole numbers separated by commas" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("train", "data.csv")
    assert result.returncode == 2 and "--target" in result.stderr


# ----------------------------------------------------------------------------- the script itself


def test_help_does_not_import_torch_pandas_or_matplotlib():
    code = (
        "import sys; from trainwell import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "print(sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "trainwell train data.csv --target price -o model.tw" in result.stdout


def test_installed_console_script_and_demo(tmp_path):
    script = Path(sys.executable).parent / "trainwell"
    if not script.exists():
        pytest.skip("the trainwell console script is not installed next to this Python")
    result = subprocess.run([str(script), "demo", "--out", str(tmp_path / "demo"), "--epochs", "2"],
                            capture_output=True, text=True, env=ENV, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "[1/2] hourly wages" in result.stdout and "[2/2] Titanic passengers" in result.stdout
    assert "r2" in result.stdout and "accuracy" in result.stdout
    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    expected = ["report.html", "titanic-predictions.csv", "titanic.tw", "wages-predictions.csv", "wages.tw"]
    assert names == expected
    assert len(pd.read_csv(tmp_path / "demo" / "titanic-predictions.csv")) == 891


# ----------------------------------------------------------------------------- diagnose --repair


@pytest.mark.slow
def test_diagnose_repair_prints_the_table_of_proven_fixes():
    penguins = Path(__file__).parent / "data" / "penguins_raw.csv"
    result = run_cli("diagnose", penguins, "--target", "Body Mass (g)", "--learning-rate", "0.3",
                     "--epochs", "15", "--repair")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "lr_too_high" in out and "(caused by lr_too_high: fix that first)" in out
    table = out[out.index("Repairs (15 epochs per copy"):].splitlines()
    assert table[1].split()[:5] == ["finding", "fix", "applied", "val_loss", "val_mse"]
    [row] = [line for line in table if line.startswith("lr_too_high ")]
    assert "learning_rate=0.001" in row and " yes " in row
    (loss_before, loss_after), _ = re.findall(r"(\S+) -> (\S+)", row)
    assert float(loss_after) < float(loss_before)
    assert table[-1].startswith("best: ")
