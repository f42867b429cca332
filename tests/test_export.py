"""trainwell.export: ONNX files that onnxruntime runs to trainwell's numbers (1e-5), raw CSV columns in."""

import numpy as np
import pandas as pd
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from trainwell import activations  # noqa: E402
from trainwell._errors import ConfigError, DataError  # noqa: E402
from trainwell.datasets import load_titanic, load_wages  # noqa: E402
from trainwell.export import OPSET, export_onnx  # noqa: E402
from trainwell.layers import Activation, BatchNormalization, Dense, Dropout, Input, Normalization  # noqa: E402
from trainwell.models import Sequential, load_model  # noqa: E402
from trainwell.pipeline import onnx_inputs, predict_csv, train_csv  # noqa: E402
from trainwell.tabular import Preprocessor  # noqa: E402
from trainwell.utils import set_random_seed, to_categorical  # noqa: E402

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def run_onnx(path, feed):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed)))


def course_model(n_features, units_out, activation=None):
    """The course's network: Dense(50, relu), Dense(32, relu), then the output layer."""
    return Sequential([Input(shape=(n_features,)), Dense(50, activation="relu"), Dense(32, activation="relu"),
                       Dense(units_out, activation=activation)])


def test_course_regression_model_equals_onnxruntime(tmp_path):
    set_random_seed(0)
    X, y = load_wages()
    model = course_model(X.shape[1], 1)
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.fit(X, y, validation_split=0.3, epochs=5, verbose=0)
    path = model.export(tmp_path / "wages.onnx")
    proto = onnx.load(path)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    assert proto.opset_import[0].version == OPSET == 20
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for rows in (X[:1], X[:7], X):  # the batch axis is dynamic
        onnx_out = run_onnx(path, {"input": rows})["output"]
        np.testing.assert_allclose(onnx_out, model.predict(rows), **TOLERANCE)


def test_course_classifier_probabilities_equal_onnxruntime(tmp_path):
    set_random_seed(0)
    X, y = load_titanic()
    model = course_model(X.shape[1], 2, activation="softmax")
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(X, to_categorical(y), validation_split=0.3, epochs=5, verbose=0)
    path = export_onnx(model, tmp_path / "titanic.onnx")
    probabilities = run_onnx(path, {"input": X})["output"]
    np.testing.assert_allclose(probabilities, model.predict(X), **TOLERANCE)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_every_layer_and_activation_exports(tmp_path):
    set_random_seed(1)
    X, y = load_wages()
    norm = Normalization()
    norm.adapt(X)
    model = Sequential([Input(shape=(X.shape[1],)), norm, Dense(16, activation="relu"), BatchNormalization(),
                        Dropout(0.3)])
    for name in activations._BY_NAME:  # every activation trainwell has, one Dense layer each
        model.add(Dense(8, activation=name))
    model.add(Activation("tanh"))
    model.add(Dense(1))
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.fit(X, y, epochs=2, verbose=0)  # moves BatchNormalization's averages off their start
    assert not np.allclose(model.layers[2].moving_mean.numpy(), 0.0)
    model.train()
    path = model.export(tmp_path / "all.onnx")
    assert model.training  # export traced in inference mode and put the mode back
    np.testing.assert_allclose(run_onnx(path, {"input": X})["output"], model.predict(X), **TOLERANCE)


# ------------------------------------------------------------------------------ models trained from a CSV


def wages_csv(path):
    """The course's wages with a text column, yes/no text, and missing numbers (for imputation)."""
    frame = load_wages(as_frame=True)
    frame["sector"] = np.where(frame["manufacturing"] == 1, "manufacturing",
                               np.where(frame["construction"] == 1, "construction", "other"))
    frame["union"] = np.where(frame["union"] == 1, "yes", "no")
    frame = frame.drop(columns=["manufacturing", "construction"])
    frame.loc[frame.index % 17 == 0, "experience_yrs"] = np.nan
    frame.loc[frame.index % 29 == 0, "sector"] = np.nan
    frame.to_csv(path, index=False)
    return frame


def titanic_csv(path):
    """The course's Titanic rows with text labels, an 'embarked' text column and missing ages."""
    frame = load_titanic(as_frame=True)
    frame["embarked"] = np.select([frame["embarked_from_cherbourg"] == 1,
                                   frame["embarked_from_queenstown"] == 1], ["C", "Q"], "S")
    frame["survived"] = np.where(frame["survived"] == 1, "survived", "died")
    frame.loc[frame["age_was_missing"].astype(bool), "age"] = np.nan
    frame = frame.drop(columns=["embarked_from_cherbourg", "embarked_from_queenstown",
                                "embarked_from_southampton", "age_was_missing"])
    frame.to_csv(path, index=False)
    return frame


def test_csv_regression_model_takes_raw_columns(tmp_path):
    wages_csv(tmp_path / "wages.csv")
    run = train_csv(tmp_path / "wages.csv", "wage_per_hour", epochs=5, diagnostics="off")
    run.model.save(tmp_path / "wages.tw")
    path = load_model(tmp_path / "wages.tw").export(tmp_path / "wages.onnx")
    frame = pd.read_csv(tmp_path / "wages.csv")
    session = ort.InferenceSession(str(path))
    kinds = {i.name: i.type for i in session.get_inputs()}
    assert kinds["sector"] == kinds["union"] == "tensor(string)" and kinds["age"] == "tensor(double)"
    assert "wage_per_hour" not in kinds
    out = run_onnx(path, onnx_inputs(session, frame))
    assert set(out) == {"predictions"} and out["predictions"].shape == (len(frame), 1)
    expected = predict_csv(tmp_path / "wages.tw", tmp_path / "wages.csv")["predicted_wage_per_hour"]
    np.testing.assert_allclose(out["predictions"][:, 0], expected, **TOLERANCE)


def test_a_standardised_target_is_turned_back_into_its_units(tmp_path):
    wages_csv(tmp_path / "wages.csv")
    model = train_csv(tmp_path / "wages.csv", "wage_per_hour", epochs=2, diagnostics="off").model
    model.preprocessing = {**model.preprocessing, "target_scale": {"mean": 9.0, "std": 5.0}}
    path = model.export(tmp_path / "scaled.onnx")
    frame = pd.read_csv(tmp_path / "wages.csv")
    features = Preprocessor.from_config({**model.preprocessing, "target_scale": None}).transform(frame)
    out = run_onnx(path, onnx_inputs(path, frame))["predictions"]
    np.testing.assert_allclose(out, model.predict(features) * 5.0 + 9.0, **TOLERANCE)


def test_csv_classifier_gives_probabilities_and_labels(tmp_path):
    titanic_csv(tmp_path / "titanic.csv")
    run = train_csv(tmp_path / "titanic.csv", "survived", epochs=5, diagnostics="off")
    run.model.save(tmp_path / "titanic.tw")
    model = load_model(tmp_path / "titanic.tw")
    path = model.export(tmp_path / "titanic.onnx")
    frame = pd.read_csv(tmp_path / "titanic.csv")
    out = run_onnx(path, onnx_inputs(path, frame))
    expected = predict_csv(tmp_path / "titanic.tw", tmp_path / "titanic.csv")
    np.testing.assert_allclose(out["probabilities"],
                               expected[["probability_died", "probability_survived"]].to_numpy(), **TOLERANCE)
    assert out["label"].tolist() == expected["predicted_survived"].tolist()
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["trainwell.task"] == "classification" and meta["trainwell.classes"] == '["died", "survived"]'
    # Unseen categories and missing values take the training's path: all-zero one-hot, median fill.
    odd = frame.head(3).assign(embarked=["X", None, "C"], age=[np.nan, 30.0, np.nan])
    with pytest.warns(UserWarning, match="not seen in training"):
        expected = predict_csv_frame(tmp_path, odd)
    np.testing.assert_allclose(run_onnx(path, onnx_inputs(path, odd))["probabilities"], expected, **TOLERANCE)


def predict_csv_frame(tmp_path, frame):
    frame.to_csv(tmp_path / "odd.csv", index=False)
    result = predict_csv(tmp_path / "titanic.tw", tmp_path / "odd.csv")
    return result[["probability_died", "probability_survived"]].to_numpy()


def test_cli_export_and_network_only(tmp_path):
    from trainwell import cli

    wages_csv(tmp_path / "wages.csv")
    run = train_csv(tmp_path / "wages.csv", "wage_per_hour", epochs=2, diagnostics="off")
    run.model.save(tmp_path / "m.tw")
    cli.cli.main(args=["export", str(tmp_path / "m.tw"), "-o", str(tmp_path / "m.onnx")],
                 standalone_mode=False)
    assert [i.name for i in onnx.load(tmp_path / "m.onnx").graph.input][:2] == ["union", "education_yrs"]
    cli.cli.main(args=["export", str(tmp_path / "m.tw"), "-o", str(tmp_path / "net.onnx"),
                       "--no-preprocessing"], standalone_mode=False)
    assert [i.name for i in onnx.load(tmp_path / "net.onnx").graph.input] == ["input"]


# ------------------------------------------------------------------------------ errors


def test_export_errors(tmp_path):
    unbuilt = Sequential([Dense(3)])
    with pytest.raises(ConfigError, match="not built"):
        unbuilt.export(tmp_path / "x.onnx")
    built = Sequential([Input(shape=(2,)), Dense(1)])
    with pytest.raises(ConfigError, match="unknown export format 'tf_saved_model'"):
        built.export(tmp_path / "x.onnx", format="tf_saved_model")
    with pytest.raises(ConfigError, match="input_signature"):
        built.export(tmp_path / "x.onnx", input_signature=[(None, 2)])
    built.preprocessing = {"version": 1, "target": "y", "task": "regression", "max_categories": 50,
                           "classes": None, "columns": [], "target_scaling": {"mean": 3.0}}
    with pytest.raises(ConfigError, match="target_scaling.*preprocessing=False"):
        built.export(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(DataError, match=r"column\(s\) \['age'\]"):
        onnx_inputs(_FakeSession(), pd.DataFrame({"fare": [1.0]}))


class _FakeSession:
    class _Input:
        name, type = "age", "tensor(double)"

    def get_inputs(self):
        return [self._Input()]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_model_trained_on_the_gpu_exports_and_runs_on_the_cpu(tmp_path):
    set_random_seed(0)
    X, y = load_titanic()
    model = course_model(X.shape[1], 2, activation="softmax")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", device="cuda")
    model.fit(X, y, epochs=3, verbose=0)
    path = model.export(tmp_path / "gpu.onnx")
    assert model.device.type == "cuda"  # export leaves the model where it was
    np.testing.assert_allclose(run_onnx(path, {"input": X})["output"], model.predict(X), **TOLERANCE)


def test_a_keras_convnet_exports_and_equals_onnxruntime(tmp_path):
    from pathlib import Path

    from trainwell.datasets import load_mnist

    model = load_model(Path(__file__).parent / "fixtures" / "keras" / "convnet.keras", compile=False)
    images = load_mnist()[0][:64].reshape(-1, 28, 28, 1)
    path = export_onnx(model, tmp_path / "convnet.onnx")
    np.testing.assert_allclose(run_onnx(path, {"input": images})["output"], model.predict(images, verbose=0),
                               **TOLERANCE)


def test_a_single_input_functional_model_exports_and_equals_onnxruntime(tmp_path):
    from trainwell import layers
    from trainwell.models import Model

    set_random_seed(0)
    inputs = Input((8,))
    hidden = layers.LayerNormalization()(Dense(8, activation="relu")(inputs))
    joined = layers.Concatenate()([layers.Add()([inputs, hidden]), Dense(3, activation="tanh")(inputs)])
    model = Model(inputs, Dense(2, activation="softmax")(joined))
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    path = export_onnx(model, tmp_path / "functional.onnx")
    for rows in (x[:1], x):
        np.testing.assert_allclose(run_onnx(path, {"input": rows})["output"], model.predict(rows, verbose=0),
                                   **TOLERANCE)
