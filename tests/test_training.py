"""The training loop: Keras semantics of fit/evaluate/predict, clear errors, parity and gradients.

- defaults, History keys, the validation-split slice, EarlyStopping inside a real fit;
- every bad input of issue 2 point 6 gives its trainwell error (a stable message fragment);
- a vanilla torch loop of the same model gives the same per-epoch losses (Lightning parity style);
- the whole-model loss gradient (fused softmax/sigmoid + cross-entropy included) against central
  finite differences in float64;
- convergence on the bundled data, seeded.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import classification_data, classifier, regression_data, regressor
from trainwell import datasets, training
from trainwell._errors import ConfigError, DataError, NotCompiledError, TrainwellError
from trainwell.callbacks import Callback, EarlyStopping, LambdaCallback
from trainwell.layers import BatchNormalization, Dense, Dropout, Normalization
from trainwell.models import Sequential
from trainwell.optimizers import SGD, Adam
from trainwell.utils import set_random_seed, to_categorical


class BatchCounter(Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.sizes = getattr(self, "sizes", [])
        self.sizes.append(logs["size"])


# ---------------------------------------------------------------------------------------------
# Keras defaults and return values


def test_fit_default_batch_size_is_32():
    x, y = regression_data(n=70)
    counter = BatchCounter()
    regressor().fit(x, y, epochs=1, verbose=0, callbacks=[counter])
    assert counter.sizes == [32, 32, 6]


def test_sgd_string_default_learning_rate_hand_worked_step():
    # Dense(1) with kernel [1, 2], bias 0 on x = [1, 1], y = 0: output 3, mse loss 9,
    # d loss / d output = 2 * 3 = 6, so every gradient is 6 and SGD(0.01) moves each weight by -0.06.
    model = Sequential([Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse")
    model.set_weights([np.array([[1.0], [2.0]]), np.array([0.0])])
    loss = model.train_on_batch(np.array([[1.0, 1.0]]), np.array([0.0]))
    assert loss == pytest.approx(9.0)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel[:, 0], [0.94, 1.94], rtol=1e-6)
    np.testing.assert_allclose(bias, [-0.06], rtol=1e-6)


@pytest.mark.parametrize("metrics, keys", [
    (None, ["loss"]),
    (["mae"], ["loss", "mae"]),
    (["mean_absolute_error", "mse"], ["loss", "mean_absolute_error", "mse"]),
])
def test_history_keys_follow_metric_names_as_given(metrics, keys):
    x, y = regression_data()
    model = regressor(metrics=metrics)
    history = model.fit(x, y, epochs=3, validation_split=0.2, verbose=0)
    # Keras 3 order: training keys by name, then the val_ keys by name.
    assert list(history.history) == sorted(keys) + sorted(f"val_{k}" for k in keys)
    assert history.epoch == [0, 1, 2]
    assert all(len(v) == 3 for v in history.history.values())
    assert all(isinstance(v, float) for values in history.history.values() for v in values)
    assert model.history is history


@pytest.mark.parametrize("name", ["accuracy", "acc"])
def test_history_accuracy_key_is_the_name_given(name):
    x, labels = classification_data()
    history = classifier(metrics=[name]).fit(x, to_categorical(labels), epochs=2, verbose=0,
                                             validation_split=0.25)
    assert list(history.history) == [name, "loss", f"val_{name}", "val_loss"]


def test_evaluate_returns_scalar_list_or_dict():
    x, y = regression_data()
    plain = regressor()
    assert isinstance(plain.evaluate(x, y, verbose=0), float)
    with_metrics = regressor(metrics=["mae", "mse"])
    values = with_metrics.evaluate(x, y, verbose=0)
    assert isinstance(values, list) and len(values) == 3
    assert values[0] == pytest.approx(values[2], rel=1e-5)  # mse loss == mse metric
    logs = with_metrics.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "mae", "mse"]
    pred = with_metrics.predict(x, verbose=0)[:, 0]
    assert logs["mae"] == pytest.approx(float(np.mean(np.abs(pred - y))), rel=1e-5)
    assert logs["loss"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)


def test_evaluate_is_batch_size_independent_and_weighted():
    x, y = regression_data(n=50)
    model = regressor()
    full = model.evaluate(x, y, batch_size=50, verbose=0)
    assert model.evaluate(x, y, batch_size=7, verbose=0) == pytest.approx(full, rel=1e-5)
    w = np.linspace(0, 2, 50)
    pred = model.predict(x, verbose=0)[:, 0]
    # Keras's sum_over_batch_size: sum(w * loss) / n
    expected = float(np.sum(w * (pred - y) ** 2) / 50)
    weighted = model.evaluate(x, y, sample_weight=w, batch_size=50, verbose=0)
    assert weighted == pytest.approx(expected, rel=1e-5)


def test_initial_epoch_continues_counting():
    x, y = regression_data()
    model = regressor()
    history = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert history.epoch == [3, 4] and len(history.history["loss"]) == 2
    assert model.fit(x, y, epochs=0, verbose=0).history == {}


# ---------------------------------------------------------------------------------------------
# the validation split: the last fraction, before shuffling, floor(n * (1 - split)) training rows


def test_validation_split_takes_the_last_rows():
    x, y = regression_data(n=10)
    model = regressor()
    start = model.get_weights()
    history = model.fit(x, y, epochs=1, batch_size=10, validation_split=0.35, shuffle=False, verbose=0)
    # floor(10 * 0.65) = 6 training rows; validation is rows 6..9 with the weights after the epoch
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[6:], y[6:], verbose=0), rel=1e-6)

    same = regressor()
    same.set_weights(start)
    same.fit(x[:6], y[:6], epochs=1, batch_size=10, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), same.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_validation_split_is_taken_before_shuffling():
    x, y = regression_data(n=20)
    model = regressor()
    history = model.fit(x, y, epochs=2, validation_split=0.5, shuffle=True, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x[10:], y[10:], verbose=0),
                                                            rel=1e-6)


def test_validation_data_is_used_instead_of_split():
    x, y = regression_data(n=40)
    model = regressor()
    history = model.fit(x[:30], y[:30], epochs=1, validation_data=(x[30:], y[30:]), validation_split=0.5,
                        verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[30:], y[30:], verbose=0),
                                                           rel=1e-6)


def test_sorted_targets_warn_with_validation_split():
    x = np.linspace(0, 1, 40, dtype=np.float32).reshape(-1, 1)
    model = regressor(n_features=1)
    with pytest.warns(UserWarning, match="targets look sorted"):
        model.fit(x, x[:, 0] * 2, epochs=1, validation_split=0.3, verbose=0)


# ---------------------------------------------------------------------------------------------
# EarlyStopping inside a real fit


def conflicting_fit(callbacks, epochs=10):
    """A model whose validation loss rises every epoch: training targets 0, validation targets 1.

    The output starts at 1 (kernel 0, bias 1), so the first epoch is the best for val_loss.
    """
    x = np.ones((8, 1), dtype=np.float32)
    model = Sequential([Dense(1, input_shape=(1,))])
    model.compile(optimizer=SGD(learning_rate=0.05), loss="mse")
    model.set_weights([np.zeros((1, 1)), np.ones(1)])
    seen = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(model.get_weights()))
    history = model.fit(x, np.zeros(8), validation_data=(x, np.ones(8)), epochs=epochs, batch_size=8,
                        verbose=0, callbacks=[record, *callbacks])
    return model, history, seen


@pytest.mark.parametrize("patience", [0, 1, 2, 4])
def test_early_stopping_patience_in_fit(patience):
    stopper = EarlyStopping(monitor="val_loss", patience=patience)
    model, history, _ = conflicting_fit([stopper])
    losses = history.history["val_loss"]
    assert all(b > a for a, b in zip(losses, losses[1:]))  # the scenario really gets worse
    # best epoch 0; Keras never stops after the first epoch, so patience 0 stops at epoch 1
    expected_epochs = max(patience, 1) + 1
    assert len(losses) == expected_epochs
    assert stopper.stopped_epoch == expected_epochs - 1
    assert model.stop_training


def test_early_stopping_restore_best_weights_in_fit():
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    model, history, seen = conflicting_fit([stopper])
    assert len(history.epoch) == 3 and stopper.best_epoch == 0
    for got, best in zip(model.get_weights(), seen[0]):
        np.testing.assert_array_equal(got, best)
    assert not np.allclose(model.get_weights()[1], seen[-1][1])


def test_early_stopping_without_restore_keeps_last_weights():
    stopper = EarlyStopping(patience=2)
    model, _, seen = conflicting_fit([stopper])
    for got, last in zip(model.get_weights(), seen[-1]):
        np.testing.assert_array_equal(got, last)


def test_early_stopping_monitor_accuracy_mode_auto_is_max():
    x, labels = classification_data(n=90)
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    history = classifier().fit(x, to_categorical(labels), epochs=30, validation_split=0.3, verbose=0,
                               callbacks=[stopper])
    acc = history.history["val_accuracy"]
    assert stopper.best == max(acc[: stopper.best_epoch + 1])
    assert len(acc) < 30 or stopper.stopped_epoch == 0


# ---------------------------------------------------------------------------------------------
# bad input gives a trainwell error with a stable message fragment (issue 2, point 6)


def test_fit_evaluate_and_train_on_batch_before_compile():
    x, y = regression_data()
    model = Sequential([Dense(1, input_shape=(3,))])
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0),
                 lambda: model.train_on_batch(x, y)):
        with pytest.raises(NotCompiledError, match=r"must call compile\(\) before"):
            call()


@pytest.mark.parametrize("n_y", [0, 10, 59, 61])
def test_x_and_y_of_different_lengths(n_y):
    x, y = regression_data(n=60)
    y = np.resize(y, n_y)
    with pytest.raises(DataError, match=f"`x` has 60 samples but `y` has {n_y}|`y` is empty"):
        regressor().fit(x, y, verbose=0)


@pytest.mark.parametrize("n_features", [1, 2, 4, 9])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_feature_count_different_from_input_shape(n_features, method):
    x = np.zeros((10, n_features), dtype=np.float32)
    model = regressor()
    call = getattr(model, method)
    fragment = rf"expects samples of shape \(3,\) \(3 features\).*\({n_features},\)"
    with pytest.raises(DataError, match=fragment):
        call(x, verbose=0) if method == "predict" else call(x, np.zeros(10), verbose=0)


@pytest.mark.parametrize("bad_value, kind", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
@pytest.mark.parametrize("where", ["x", "y"])
def test_nan_or_inf_names_columns_and_rows(bad_value, kind, where):
    x, y = regression_data()
    frame = pd.DataFrame(x, columns=["age", "fare", "pclass"])
    if where == "x":
        frame.loc[[3, 7], "fare"] = bad_value
        fragment = rf"`x` contains {kind} values in 2 row\(s\), column\(s\) fare"
    else:
        y = y.copy()
        y[5] = bad_value
        fragment = rf"`y` contains {kind} values in 1 row\(s\)"
    with pytest.raises(DataError, match=fragment):
        regressor().fit(frame, y, verbose=0)


@pytest.mark.parametrize("x", [
    np.array([["a", "b", "c"]] * 10),
    [[1.0, "two", 3.0]] * 10,
    pd.DataFrame({"a": ["x"] * 10, "b": 1.0, "c": 2.0}),
], ids=["str-array", "list", "frame"])
def test_non_numeric_data(x):
    with pytest.raises(DataError, match="non-numeric|not numeric"):
        regressor().fit(x, np.zeros(10), verbose=0)


@pytest.mark.parametrize("labels", [np.array([0, 1, 2] * 10), pd.Series([0, 1, 2] * 10),
                                    np.array([[0], [1], [2]] * 10)])
def test_categorical_crossentropy_with_integer_labels_points_to_fixes(labels):
    x = np.zeros((30, 3), dtype=np.float32)
    with pytest.raises(DataError, match="one-hot targets.*to_categorical.*sparse_categorical_crossentropy"):
        classifier().fit(x, labels, verbose=0)


@pytest.mark.parametrize("n_classes", [2, 4, 10])
def test_softmax_units_different_from_number_of_classes(n_classes):
    x = np.zeros((30, 3), dtype=np.float32)
    labels = np.arange(30) % n_classes
    with pytest.raises(DataError, match=rf"has 3 units but `y` has {n_classes} classes"):
        classifier(n_classes=3).fit(x, to_categorical(labels), verbose=0)


def test_sparse_labels_beyond_the_output_units():
    x = np.zeros((30, 3), dtype=np.float32)
    model = classifier(loss="sparse_categorical_crossentropy")
    with pytest.raises(DataError, match=r"class labels 0..4, but the output layer has 3 units"):
        model.fit(x, np.arange(30) % 5, verbose=0)
    with pytest.raises(DataError, match="integer class labels"):
        model.fit(x, np.full(30, 0.5), verbose=0)


def test_binary_crossentropy_targets_outside_0_1():
    model = Sequential([Dense(1, activation="sigmoid", input_shape=(3,))])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    with pytest.raises(DataError, match=r"binary_crossentropy expects targets in \[0, 1\]"):
        model.fit(np.zeros((6, 3)), np.array([0, 1, 2, 0, 1, 2]), verbose=0)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"optimizer": "adamm"}, r"unknown optimizer 'adamm'. Did you mean 'adam'\? trainwell.optimizers.names"),
    ({"loss": "mean_squared_eror"}, "unknown loss.*Did you mean 'mean_squared_error'"),
    ({"metrics": ["acuracy"]}, "unknown metric.*Did you mean 'accuracy'"),
])
def test_unknown_names_in_compile(kwargs, fragment):
    model = Sequential([Dense(1, input_shape=(3,))])
    with pytest.raises(ConfigError, match=fragment):
        model.compile(**{"optimizer": "adam", "loss": "mse", **kwargs})


@pytest.mark.parametrize("activation, guess", [("rellu", "relu"), ("softmx", "softmax"),
                                               ("sigmod", "sigmoid")])
def test_unknown_activation(activation, guess):
    with pytest.raises(ConfigError, match=f"unknown activation '{activation}'.*Did you mean '{guess}'"):
        Dense(2, activation=activation)


@pytest.mark.parametrize("split", [-0.1, 1, 1.0, 1.5, "0.2", True])
def test_validation_split_outside_0_1(split):
    x, y = regression_data()
    with pytest.raises(ConfigError, match=r"`validation_split` expects a number in \[0, 1\)"):
        regressor().fit(x, y, validation_split=split, verbose=0)


@pytest.mark.parametrize("x, y", [(np.zeros((0, 3)), np.zeros(0)), ([], []),
                                  (pd.DataFrame(columns=list("abc")), pd.Series([], dtype=float))])
def test_empty_data(x, y):
    with pytest.raises(DataError, match="is empty"):
        regressor().fit(x, y, verbose=0)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, "64", True])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_batch_size_below_1_or_not_an_integer(batch_size, method):
    x, y = regression_data()
    model = regressor()
    call = getattr(model, method)
    with pytest.raises(ConfigError, match="`batch_size` expects a positive integer"):
        call(x, batch_size=batch_size, verbose=0) if method == "predict" else \
            call(x, y, batch_size=batch_size, verbose=0)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"epochs": -1}, "`epochs` expects a positive integer"),
    ({"verbose": 3}, "`verbose` expects 'auto', 0, 1 or 2"),
    ({"shuffle": "yes"}, "`shuffle` expects True or False"),
    ({"validation_data": np.zeros(3)}, "`validation_data` expects a tuple"),
    ({"callbacks": [print]}, "`callbacks` expects Callback instances"),
    ({"sample_weight": np.ones(5)}, "`sample_weight` has 5 values for 60 samples"),
])
def test_other_bad_fit_arguments(kwargs, fragment):
    x, y = regression_data()
    with pytest.raises(TrainwellError, match=fragment):
        regressor().fit(x, y, **{"verbose": 0, **kwargs})


def test_missing_targets():
    x, _ = regression_data()
    with pytest.raises(DataError, match="needs targets"):
        regressor().fit(x, verbose=0)
    with pytest.raises(DataError, match="needs targets"):
        regressor().evaluate(x, verbose=0)


def test_errors_are_also_builtin_exceptions():
    x, y = regression_data()
    with pytest.raises(ValueError):
        regressor().fit(x, y[:5], verbose=0)
    with pytest.raises(RuntimeError):
        Sequential([Dense(1, input_shape=(3,))]).fit(x, y, verbose=0)


# ---------------------------------------------------------------------------------------------
# input types, determinism, batch methods


def test_numpy_frames_series_tensors_and_lists_train_identically():
    x, y = regression_data(n=40)
    inputs = {
        "numpy": (x, y),
        "pandas": (pd.DataFrame(x, columns=["a", "b", "c"]), pd.Series(y, name="target")),
        "torch": (torch.from_numpy(x), torch.from_numpy(y)),
        "lists": (x.tolist(), y.tolist()),
        "float64": (x.astype(np.float64), y.astype(np.float64)),
    }
    results = {}
    for name, (xs, ys) in inputs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            history = regressor().fit(xs, ys, epochs=3, verbose=0, validation_split=0.25)
        results[name] = history.history
    for name, result in results.items():
        for key in result:
            np.testing.assert_allclose(result[key], results["numpy"][key], rtol=1e-5, err_msg=name)


def test_same_seed_gives_identical_results():
    x, labels = classification_data(n=80)
    y = to_categorical(labels)

    def run(seed):
        set_random_seed(seed)
        model = Sequential([Dense(16, activation="relu", input_shape=(3,)), Dropout(0.3),
                            BatchNormalization(), Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
        return history.history, model.get_weights()

    (h1, w1), (h2, w2), (h3, _) = run(5), run(5), run(6)
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert h1["loss"] != h3["loss"]


def test_train_test_and_predict_on_batch():
    x, labels = classification_data(n=20)
    y = to_categorical(labels)
    model = classifier()
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    assert model.test_on_batch(x, y, return_dict=True) == pytest.approx(before, rel=1e-6)
    loss, acc = model.test_on_batch(x, y)
    assert loss == pytest.approx(before["loss"], rel=1e-6) and acc == pytest.approx(before["accuracy"])
    # train_on_batch reports the loss of the batch before the update, then updates the weights
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(before["loss"], rel=1e-5)
    assert model.evaluate(x, y, verbose=0) != pytest.approx(before["loss"], rel=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), model.predict(x, verbose=0), rtol=1e-6)
    assert model.predict_on_batch(x).shape == (20, 3)


def test_train_on_batch_repeated_equals_full_batch_fit():
    x, y = regression_data(n=16)
    a, b = regressor(optimizer="adam"), regressor(optimizer="adam")
    b.set_weights(a.get_weights())
    losses = [a.train_on_batch(x, y) for _ in range(4)]
    history = b.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_allclose(losses, history.history["loss"], rtol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)


def test_class_weight_scales_the_loss():
    # Regression: train_on_batch chose the fused Dense step, which has no weights, and silently
    # trained unweighted.
    x, labels = classification_data(n=30)
    y = to_categorical(labels)
    plain, weighted = classifier(metrics=()), classifier(metrics=())
    weighted.set_weights(plain.get_weights())
    weights = {0: 2.0, 1: 0.5, 2: 1.0}
    per_sample = np.array([weights[int(c)] for c in labels])
    pred = plain.predict(x, verbose=0)
    cross_entropy = -np.log(pred[np.arange(30), labels])
    # Keras: sum(class weight * per-sample loss) / batch size
    expected = float(np.sum(per_sample * cross_entropy) / 30)
    assert weighted.train_on_batch(x, y, class_weight=weights) == pytest.approx(expected, rel=1e-5)
    assert plain.train_on_batch(x, y) == pytest.approx(float(cross_entropy.mean()), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# progress output


def test_verbose_0_is_silent(capsys):
    x, y = regression_data()
    model = regressor()
    model.fit(x, y, epochs=3, validation_split=0.2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("verbose", [2, 1, "auto"])
def test_verbose_one_line_per_epoch_when_not_a_terminal(capsys, verbose):
    x, y = regression_data()
    regressor(metrics=["mae"]).fit(x, y, epochs=4, validation_split=0.2, verbose=verbose)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    for i, line in enumerate(lines, start=1):
        assert line.startswith(f"Epoch {i}/4")
        for key in ("loss: ", "mae: ", "val_loss: ", "val_mae: "):
            assert key in line


def test_evaluate_verbose_prints_one_line(capsys):
    x, y = regression_data()
    regressor(metrics=["mae"]).evaluate(x, y, verbose=1)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "loss: " in out[0] and "mae: " in out[0]


# ---------------------------------------------------------------------------------------------
# parity with a vanilla torch loop of the same model (Lightning test_basic_parity style)


def torch_twin(model):
    """A plain torch.nn.Sequential with the same weights (Keras kernel (in, out) → torch (out, in))."""
    modules = []
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias))
        modules.append(linear)
        if layer.activation_name == "tanh":
            modules.append(torch.nn.Tanh())
    return torch.nn.Sequential(*modules)


def vanilla_losses(net, x, y, loss_fn, lr, epochs, batch_size):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            opt.zero_grad()
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        losses.append(total / len(x))
    return losses


def test_parity_with_vanilla_torch_loop_regression():
    x, y = regression_data(n=50)
    set_random_seed(1)
    model = Sequential([Dense(8, activation="tanh", input_shape=(3,)), Dense(1)])
    model.compile(optimizer=SGD(learning_rate=0.05), loss="mse")
    net = torch_twin(model)
    history = model.fit(x, y, epochs=6, batch_size=16, shuffle=False, verbose=0)
    expected = vanilla_losses(net, torch.from_numpy(x), torch.from_numpy(y)[:, None], F.mse_loss,
                              lr=0.05, epochs=6, batch_size=16)
    np.testing.assert_almost_equal(history.history["loss"], expected, decimal=5)
    final = [p.detach().numpy() for p in net.parameters()]
    np.testing.assert_allclose(model.get_weights()[0], final[0].T, rtol=1e-5, atol=1e-6)


def test_parity_with_vanilla_torch_loop_softmax_crossentropy():
    x, labels = classification_data(n=48)
    set_random_seed(2)
    model = Sequential([Dense(8, activation="tanh", input_shape=(3,)), Dense(3, activation="softmax")])
    model.compile(optimizer=SGD(learning_rate=0.1), loss="categorical_crossentropy")
    net = torch_twin(model)  # no softmax: torch's cross_entropy takes logits
    history = model.fit(x, to_categorical(labels), epochs=5, batch_size=16, shuffle=False, verbose=0)
    expected = vanilla_losses(net, torch.from_numpy(x), torch.from_numpy(labels), F.cross_entropy,
                              lr=0.1, epochs=5, batch_size=16)
    np.testing.assert_almost_equal(history.history["loss"], expected, decimal=5)


# ---------------------------------------------------------------------------------------------
# whole-model loss gradient vs central finite differences, float64


GRAD_ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "softplus", "swish", "leaky_relu"]
GRAD_LOSSES = {
    # loss: (output units, output activation, target maker)
    "mse": (2, None, lambda rng, n: rng.normal(size=(n, 2))),
    "mae": (2, None, lambda rng, n: rng.normal(size=(n, 2))),
    "huber": (1, None, lambda rng, n: rng.normal(size=(n, 1)) * 2),
    "binary_crossentropy": (1, "sigmoid", lambda rng, n: rng.integers(0, 2, size=(n, 1)).astype(float)),
    "categorical_crossentropy": (3, "softmax", lambda rng, n: np.eye(3)[rng.integers(0, 3, size=n)]),
    "sparse_categorical_crossentropy": (3, "softmax", lambda rng, n: rng.integers(0, 3, size=n)),
}


@pytest.mark.parametrize("loss", sorted(GRAD_LOSSES))
@pytest.mark.parametrize("activation", GRAD_ACTIVATIONS)
def test_model_loss_gradient_matches_finite_differences(activation, loss):
    units, out_activation, make_y = GRAD_LOSSES[loss]
    # A stable seed per case: hash() of strings changes from one process to the next.
    rng = np.random.default_rng(zlib.crc32(f"{activation}/{loss}".encode()))
    set_random_seed(0)
    model = Sequential([Dense(4, activation=activation, input_shape=(3,), kernel_regularizer="l2"),
                        Dense(units, activation=out_activation)])
    model.compile(optimizer="sgd", loss=loss)
    model.double()
    x = torch.tensor(rng.normal(size=(6, 3)))
    y_raw = make_y(rng, 6)
    y = torch.tensor(y_raw) if loss.startswith("sparse") else torch.tensor(y_raw, dtype=torch.float64)

    # autograd through the training step's loss (fused softmax/sigmoid + cross-entropy when it applies)
    ctx = training.StepContext(model)
    params = list(model.trainable_parameters())
    for p in params:
        p.grad = None
    ctx.total_loss(y, ctx.forward(x), None).backward()
    analytic = [p.grad.clone() for p in params]

    # central differences of the Keras-formula loss on the model's probabilities
    def keras_loss():
        reg = sum(float(layer.regularization_loss()) for layer in model.layers
                  if layer.regularization_loss() is not None)
        return float(model.compiled_loss(y, model.call(x))) + reg

    eps = 1e-6
    with torch.no_grad():
        for p, grad in zip(params, analytic):
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                up = keras_loss()
                flat[i] = old - eps
                down = keras_loss()
                flat[i] = old
                assert grad.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-7)


# ---------------------------------------------------------------------------------------------
# convergence on the bundled data, seeded


def test_wages_regression_converges():
    x, y = datasets.load_wages()
    set_random_seed(0)
    norm = Normalization()
    norm.adapt(x)
    model = Sequential([norm, Dense(50, activation="relu"), Dense(32, activation="relu"), Dense(1)])
    model.compile(optimizer="adam", loss="mean_squared_error")
    history = model.fit(x, y, epochs=30, validation_split=0.3, verbose=0)
    # Predicting the training mean gives a validation MSE of about 33.5 on this split; the
    # 9 predictors explain part of it (a linear model reaches about 25).
    baseline = float(np.mean((y[373:] - y[:373].mean()) ** 2))
    assert baseline == pytest.approx(33.5, abs=0.1)
    assert history.history["val_loss"][-1] < 0.85 * baseline
    assert history.history["loss"][-1] < 20.0


def test_titanic_classification_converges_with_scaling():
    x, y = datasets.load_titanic()
    set_random_seed(0)
    norm = Normalization()
    norm.adapt(x)
    model = Sequential([norm, Dense(32, activation="relu"), Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, to_categorical(y), epochs=20, validation_split=0.3, verbose=0)
    assert history.history["accuracy"][-1] > 0.75
    assert history.history["val_accuracy"][-1] > 0.7


def test_mnist_subset_converges_with_scaling():
    x, y = datasets.load_mnist()
    x = x / 255.0
    set_random_seed(0)
    model = Sequential([Dense(50, activation="relu", input_shape=(784,)), Dense(50, activation="relu"),
                        Dense(10, activation="softmax")])
    model.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x[:1500], to_categorical(y[:1500], 10), epochs=10, validation_split=0.3, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.85
    _, accuracy = model.evaluate(x[1500:], to_categorical(y[1500:], 10), verbose=0)
    assert accuracy > 0.85


def test_train_on_batch_mixed_with_fit_and_weights_matches_one_fit():
    """train_on_batch keeps its step between calls; a fit, a weighted call or set_weights in
    between must still see and move the same weights and optimizer state."""
    x, y = regression_data(n=16)
    a, b = regressor(optimizer="adam"), regressor(optimizer="adam")
    b.set_weights(a.get_weights())
    a.train_on_batch(x, y)
    a.train_on_batch(x, y)
    a.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)  # rebinds the weights
    a.train_on_batch(x, y, sample_weight=np.ones(16))  # the plain autograd step
    a.train_on_batch(x, y)
    history = b.fit(x, y, epochs=6, batch_size=16, shuffle=False, verbose=0)
    assert a.optimizer.iterations == b.optimizer.iterations == 6
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)
    # set_weights between calls is seen by the kept step
    a.set_weights(b.get_weights())
    loss = a.train_on_batch(x, y)
    assert loss == pytest.approx(b.evaluate(x, y, verbose=0), rel=1e-5)
    assert history.history["loss"][-1] > loss


def test_step_counts_take_batches_as_keras():
    # Regression: steps_per_epoch and validation_steps were ignored with a warning. Keras takes
    # steps_per_epoch batches per epoch, carrying on through the data across epochs, and
    # validation_steps batches per validation.
    x, y = regression_data(n=16)
    model = regressor()
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False, steps_per_epoch=2,
                        validation_data=(x, y), validation_steps=1)
    assert model.optimizer.iterations == 4 and len(history.history["loss"]) == 2
    reference = regressor()
    reference.set_weights(model.get_weights())
    assert history.history["val_loss"][-1] == pytest.approx(reference.evaluate(x[:4], y[:4], verbose=0))


def test_loss_reduction_none_is_refused_by_fit_and_evaluate():
    """One loss per sample cannot be minimised as it is: a clear error, not torch's backward error."""
    from trainwell.losses import MeanSquaredError

    x, y = regression_data()
    model = regressor()
    model.compile(optimizer="adam", loss=MeanSquaredError(reduction=None))
    for call in (lambda: model.fit(x, y, epochs=1, verbose=0), lambda: model.evaluate(x, y, verbose=0)):
        with pytest.raises(ConfigError, match="reduction='none'.*sum_over_batch_size"):
            call()
