"""``Sequential``: structure (add/pop/get_layer), building, compile defaults, weights, summary, calling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from trainwell import optimizers
from trainwell._errors import ConfigError, ConfigTypeError
from trainwell.layers import Activation, BatchNormalization, Dense, Dropout, Input
from trainwell.models import Sequential


def small_model(n_features=3):
    return Sequential([Dense(4, activation="relu", input_shape=(n_features,), name="hidden"),
                       Dense(2, activation="softmax", name="out")])


# ---------------------------------------------------------------------------------------------
# structure


def test_add_pop_and_layers():
    model = Sequential(name="net")
    model.add(Input(shape=(5,)))
    model.add(Dense(3, name="a"))
    model.add(Dense(2, name="b"))
    assert [layer.name for layer in model.layers] == ["a", "b"]  # the Input is not a layer, as in Keras
    assert model.built and model.input_shape == (None, 5) and model.output_shape == (None, 2)
    popped = model.pop()
    assert popped.name == "b" and [layer.name for layer in model.layers] == ["a"]
    assert model.output_shape == (None, 3)
    model.add(Dense(7, name="c"))
    assert model.built and model.output_shape == (None, 7)
    assert model.count_params() == 5 * 3 + 3 + 3 * 7 + 7


def test_add_builds_every_layer_once_the_input_shape_is_known():
    # Regression: add() checked `self.built` after appending the new (unbuilt) layer, so only the
    # first layer got weights; summary() and count_params() showed part of the model.
    model = Sequential()
    model.add(Dense(50, activation="relu", input_shape=(9,)))
    model.add(Dense(32, activation="relu"))
    model.add(Dense(1))
    assert all(layer.built for layer in model.layers)
    assert model.count_params() == 2165
    assert len(model.get_weights()) == 6


def test_list_constructor_equals_add():
    a = Sequential([Dense(3, input_shape=(2,)), Dense(1)])
    b = Sequential()
    b.add(Dense(3, input_dim=2))
    b.add(Dense(1))
    assert a.output_shape == b.output_shape == (None, 1)
    assert a.count_params() == b.count_params() == 13


def test_get_layer_by_name_and_index():
    model = small_model()
    assert model.get_layer("out") is model.layers[1]
    assert model.get_layer(index=0).name == "hidden"
    assert model.get_layer(index=-1).name == "out"
    with pytest.raises(ConfigError, match="No layer named 'hiden'"):
        model.get_layer("hiden")
    with pytest.raises(ConfigError, match="index 5 is out of range"):
        model.get_layer(index=5)


def test_structure_errors():
    with pytest.raises(ConfigError, match="must come first"):
        Sequential([Dense(2, input_shape=(3,)), Input(shape=(3,))])
    with pytest.raises(ConfigTypeError, match="expects a trainwell layer"):
        Sequential([torch.nn.Linear(2, 2)])
    with pytest.raises(ConfigError, match="already has a layer named 'x'"):
        Sequential([Dense(2, name="x"), Dense(2, name="x")])
    with pytest.raises(ConfigError, match="no layers to pop"):
        Sequential().pop()


def test_lazy_build_from_data_and_explicit_build():
    model = Sequential([Dense(4), Dense(1)])
    assert not model.built and model.output_shape is None
    with pytest.raises(ConfigError, match="not built yet"):
        model.count_params()
    model.predict(np.zeros((2, 6), dtype=np.float32), verbose=0)
    assert model.built and model.input_shape == (None, 6)
    other = Sequential([Dense(4), Dense(1)])
    other.build((None, 6))
    assert other.count_params() == model.count_params() == 6 * 4 + 4 + 5
    with pytest.raises(ConfigError, match="input shape is unknown"):
        Sequential([Dense(1)]).build()
    with pytest.raises(ConfigError, match="has no layers"):
        Sequential().predict(np.zeros((2, 2)), verbose=0)


# ---------------------------------------------------------------------------------------------
# compile


def test_compile_defaults_are_keras():
    model = small_model()
    model.compile(loss="categorical_crossentropy")
    assert isinstance(model.optimizer, optimizers.RMSprop)  # Keras's default optimizer
    assert model.optimizer.learning_rate == pytest.approx(0.001)
    assert model.optimizer.rho == pytest.approx(0.9)
    assert model.metrics_names == ["loss"]
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    assert model.metrics_names == ["loss", "mae"]
    model.compile(optimizer="adam", loss="mse")
    assert model.optimizer.learning_rate == pytest.approx(0.001)


def test_loss_joins_a_string_as_the_course_prints_it():
    # Keras keeps model.loss as the string given; the course prints "Loss function: " + model.loss.
    model = small_model()
    model.compile(optimizer="adam", loss="mean_squared_error")
    assert "Loss function: " + model.loss == "Loss function: mean_squared_error"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"optimizer": "adamm", "loss": "mse"}, "unknown optimizer 'adamm'.*Did you mean 'adam'"),
    ({"optimizer": "sdg", "loss": "mse"}, "Did you mean 'sgd'"),
    ({"loss": "mean_squared_eror"}, "unknown loss.*Did you mean 'mean_squared_error'"),
    ({"loss": "categorical_crossentropi"}, "Did you mean 'categorical_crossentropy'"),
    ({"loss": "mse", "metrics": ["acuracy"]}, "unknown metric 'acuracy'.*Did you mean 'accuracy'"),
    ({"loss": None}, "compile\\(\\) needs a loss"),
    ({"loss": "mse", "loss_weights": [1, 2]}, "`loss_weights` expects a number"),
])
def test_compile_rejects_unknown_names_with_suggestions(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        small_model().compile(**kwargs)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        small_model().compile(optimizer="adamm", loss="mse")
    # Regression (issue 20): the message leads with the suggestion and points to the full list.
    assert str(err.value) == ("`optimizer`: unknown optimizer 'adamm'. Did you mean 'adam'? "
                              "trainwell.optimizers.names() lists all 10.")
    with pytest.raises(ValueError):  # still catchable as a ValueError
        small_model().compile(optimizer="nope", loss="mse")


def test_compile_accepts_instances_and_single_metric_string():
    model = small_model()
    opt = optimizers.SGD(learning_rate=0.5)
    model.compile(optimizer=opt, loss="categorical_crossentropy", metrics="accuracy")
    assert model.optimizer is opt and model.metrics_names == ["loss", "accuracy"]


# ---------------------------------------------------------------------------------------------
# weights


def test_get_and_set_weights_round_trip_in_keras_order():
    model = Sequential([Dense(3, input_shape=(2,)), BatchNormalization(), Dense(1)])
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(2, 3), (3,), (3,), (3,), (3,), (3,), (3, 1), (1,)]
    new = [np.full(s, float(i)) for i, s in enumerate(shapes)]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ConfigError, match="has 8 weight arrays, received 7"):
        model.set_weights(new[:-1])


def test_trainable_and_non_trainable_weights():
    model = Sequential([Dense(3, input_shape=(2,)), BatchNormalization(), Dense(1)])
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2
    model.layers[0].trainable = False
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 4
    frozen = Sequential([Dense(2, input_shape=(2,))], trainable=False)
    assert frozen.trainable_weights == []


# ---------------------------------------------------------------------------------------------
# summary


def test_summary_table_and_totals(capsys):
    model = Sequential([Dense(50, activation="relu", input_shape=(9,)), Dense(32, activation="relu"),
                        Dense(1)], name="wages")
    model.layers[1].trainable = False
    model.summary()
    out = capsys.readouterr().out
    assert 'Model: "wages"' in out
    for fragment in ["Layer (type)", "Output Shape", "Param #", "(Dense)", "(None, 50)", "(None, 32)",
                     "(None, 1)", "500", "1,632", "33"]:
        assert fragment in out
    assert "Total params: 2,165" in out
    assert "Trainable params: 533" in out
    assert "Non-trainable params: 1,632" in out


def test_summary_print_fn_and_unbuilt_model():
    lines = []
    Sequential([Dense(2), Dropout(0.5)]).summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "unbuilt" in text and "Total params: 0" in text


# ---------------------------------------------------------------------------------------------
# calling the model


def test_model_call_on_arrays_frames_lists_and_tensors():
    model = small_model()
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    assert isinstance(expected, np.ndarray) and expected.shape == (4, 2)
    np.testing.assert_allclose(expected.sum(1), 1.0, rtol=1e-6)
    for data in [x, pd.DataFrame(x, columns=list("abc")), x.tolist(), torch.from_numpy(x)]:
        out = model(data)
        assert isinstance(out, torch.Tensor)
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(model.predict(data, verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-6)


def test_model_call_on_a_tensor_keeps_the_graph():
    model = small_model()
    x = torch.randn(5, 3)
    model(x).sum().backward()
    assert model.layers[0].kernel.grad is not None


def test_predict_is_in_eval_mode_and_returns_float32():
    model = Sequential([Dense(8, input_shape=(3,)), Dropout(0.9), Dense(1)])
    x = np.ones((3, 3))
    a, b = model.predict(x, verbose=0), model.predict(x, verbose=0)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # dropout off at inference


def test_one_dimensional_input_is_a_column_for_one_feature_models():
    model = Sequential([Dense(1, input_shape=(1,))])
    assert model.predict(np.array([1.0, 2.0, 3.0]), verbose=0).shape == (3, 1)


def test_config_round_trip_rebuilds_same_architecture():
    model = Sequential([Input(shape=(4,)), Dense(3, activation="tanh"), Dropout(0.2), Activation("relu"),
                        Dense(2, activation="softmax")], name="roundtrip")
    clone = Sequential.from_config(model.get_config())
    assert clone.name == "roundtrip" and clone.input_shape == (None, 4)
    assert [type(layer).__name__ for layer in clone.layers] == ["Dense", "Dropout", "Activation", "Dense"]
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(1).normal(size=(3, 4))
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_fit_after_pop_and_add_asks_to_recompile_and_recompiling_works():
    # Regression: after pop()/add() fit raised the optimizer's internal "already built" error,
    # and compiling again with the same optimizer instance still failed.
    from trainwell.optimizers import Adam

    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    y = x.sum(1, keepdims=True)
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(1)])
    opt = Adam()
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, epochs=1, verbose=0, diagnostics="off")
    model.pop()
    model.add(Dense(1, name="new_output"))
    with pytest.raises(ConfigError, match="compile"):
        model.fit(x, y, epochs=1, verbose=0, diagnostics="off")
    model.compile(optimizer=opt, loss="mse")
    history = model.fit(x, y, epochs=2, verbose=0, diagnostics="off")
    assert len(history.history["loss"]) == 2


# ---------------------------------------------------------------------------------------------
# Keras behaviours course code relies on (issue 20, item 6)


def _rows(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


@pytest.mark.parametrize("loss", ["mean_squared_error", "mse", {"class_name": "Huber", "config": {}}])
def test_model_loss_is_what_compile_was_given(loss):
    # Regression: model.loss was the resolved Loss object, so `model.loss == 'mse'` was False.
    model = small_model()
    model.compile(optimizer="sgd", loss=loss)
    assert model.loss == loss
    assert type(model.compiled_loss).__name__ in ("MeanSquaredError", "Huber")


@pytest.mark.parametrize("name", ["nadam", "adamax", "adadelta", "lion", "ftrl", "Nadam"])
def test_compile_takes_every_optimizer_by_name(name):
    model = small_model()
    model.compile(name, loss="sparse_categorical_crossentropy")
    assert type(model.optimizer).__name__.lower() == name.lower()
    x, y = _rows()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.optimizer.iterations == 2


@pytest.mark.parametrize("labels, units, activation, expected", [
    ("sparse", 2, "softmax", "SparseCategoricalCrossentropy"),
    ("onehot", 2, "softmax", "CategoricalCrossentropy"),
    ("binary", 1, "sigmoid", "BinaryCrossentropy"),
])
def test_crossentropy_resolves_from_the_targets_as_keras(labels, units, activation, expected):
    x, y = _rows()
    y = {"sparse": y, "onehot": np.eye(2)[y], "binary": y.astype(np.float32)}[labels]
    runs = []
    for loss in ("crossentropy", expected):
        model = Sequential([Dense(units, activation=activation, input_shape=(3,), kernel_initializer="ones")])
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        runs.append((model, model.fit(x, y, epochs=2, verbose=0, shuffle=False).history))
    (model, history), (_, reference) = runs
    assert type(model.compiled_loss).__name__ == expected and model.loss == "crossentropy"
    assert history == reference  # the same loss and the same 'accuracy' as the explicit name


def test_learning_rate_zero_is_accepted_with_a_warning_and_freezes_the_weights():
    with pytest.warns(UserWarning, match="learning_rate=0 leaves the weights unchanged"):
        sgd = optimizers.SGD(learning_rate=0.0)
    model = small_model()
    model.compile(optimizer=sgd, loss="sparse_categorical_crossentropy")
    x, y = _rows()
    before = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(ConfigError, match="expects a number >= 0"):
        optimizers.SGD(learning_rate=-0.1)


@pytest.mark.parametrize("fused", [True, False], ids=["fused_step", "autograd_step"])
def test_learning_rate_assigned_during_training_takes_effect(monkeypatch, fused):
    from trainwell import training
    from trainwell.callbacks import LambdaCallback

    monkeypatch.setattr(training, "FUSED_STEP", fused)
    x, y = _rows()
    model = small_model()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")

    def freeze(epoch, logs):
        model.optimizer.learning_rate = 0.0  # Keras: model.optimizer.learning_rate = ...

    model.fit(x, y, epochs=1, verbose=0, shuffle=False, callbacks=[LambdaCallback(on_epoch_end=freeze)])
    after_one = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0, shuffle=False)
    assert all(np.array_equal(a, b) for a, b in zip(after_one, model.get_weights()))


def test_history_gets_learning_rate_from_a_schedule_callback():
    from trainwell.callbacks import LearningRateScheduler, ReduceLROnPlateau

    x, y = _rows()
    model = small_model()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    plain = model.fit(x, y, epochs=2, verbose=0)
    assert "learning_rate" not in plain.history  # as Keras: only when a schedule callback runs
    history = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[reduce])
    # The rate each epoch trained with; the reduction after an epoch shows in the next one
    # (the first epoch only sets the best value, as in Keras).
    assert history.history["learning_rate"] == pytest.approx([0.1 / 3, 0.1 / 3, 0.1 / 6])


def test_csv_logger_gets_the_learning_rate_column(tmp_path):
    from trainwell.callbacks import CSVLogger, LearningRateScheduler

    x, y = _rows()
    model = small_model()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[CSVLogger(str(path)), LearningRateScheduler(lambda epoch: 0.2)])
    assert "learning_rate" in path.read_text().splitlines()[0]


def test_model_metrics_and_weights_numpy():
    x, y = _rows()
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    assert [m.name for m in model.metrics] == ["accuracy", "sparse_top_k_categorical_accuracy"]
    assert 0 <= float(model.metrics[0].result()) <= 1
    kernel = model.weights[0].numpy()  # Keras's Variable.numpy(); torch's refuses tensors needing grad
    assert isinstance(kernel, np.ndarray) and kernel.shape == (3, 4)
    np.testing.assert_array_equal(kernel, model.get_weights()[0])
    model.weights[1].assign(np.ones(4))
    np.testing.assert_array_equal(model.get_weights()[1], np.ones(4))
    assert Sequential([Dense(2)]).metrics == []


def test_metrics_ignore_sample_weights_and_weighted_metrics_use_them_as_in_keras(tmp_path):
    from trainwell.models import load_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = rng.normal(size=(40, 1)).astype("float32")
    w = np.linspace(0.1, 3.0, 40).astype("float32")
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"], weighted_metrics=["mae", "mse"])
    assert model.metrics_names == ["loss", "mae", "weighted_mae", "mse"]
    history = model.fit(x, y, sample_weight=w, epochs=2, batch_size=8, verbose=0)
    assert set(history.history) == {"loss", "mae", "weighted_mae", "mse"}
    got = model.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    err = model.predict(x, verbose=0) - y
    np.testing.assert_allclose(got["mae"], np.abs(err).mean(), rtol=1e-5)  # unweighted
    np.testing.assert_allclose(got["weighted_mae"], (np.abs(err[:, 0]) * w).sum() / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(got["mse"], (err[:, 0] ** 2 * w).sum() / w.sum(), rtol=1e-5)
    # Keras's names for repeats: mae, mae_1; a weighted clash: weighted_<name>.
    twice = Sequential([Dense(1, input_shape=(3,))])
    twice.compile(optimizer="sgd", loss="mse", metrics=["mae", "mae"], weighted_metrics=["mae", "mae"])
    twice.build((None, 3))
    assert twice.metrics_names == ["loss", "mae", "mae_1", "weighted_mae", "weighted_mae_1"]
    # The split survives the model file.
    model.save(tmp_path / "m.tw")
    again = load_model(tmp_path / "m.tw")
    assert again.metrics_names == ["loss", "mae", "weighted_mae", "mse"]
    again_got = again.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    for key, value in got.items():
        np.testing.assert_allclose(again_got[key], value, rtol=1e-6)
