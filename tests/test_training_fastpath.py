"""The fused Dense step (trainwell.fastpath) against the plain autograd step (training.train_step).

Every layer option, activation, loss and optimizer the fused step covers is trained twice from
the same seed, once on each path, and must give the same per-epoch losses and final weights to
float32 tolerance. Models it does not cover must fall back, with the reason in the debug log.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from trainwell import activations, callbacks, fastpath, fused_layers, losses, optimizers, training
from trainwell._errors import DataError
from trainwell.layers import Activation, BatchNormalization, Dense, Dropout, Input, Layer, Normalization
from trainwell.models import Sequential, load_model
from trainwell.regularizers import l1, l1_l2, l2
from trainwell.utils import set_random_seed, to_categorical

N, FEATURES = 40, 5


def _data(kind: str, units: int):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    if kind == "regression":
        return x, (x[:, :units] * 0.5 + 0.1).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int)
    if units > 1:
        labels = labels + (x[:, 1] > 0.5).astype(int)
    if kind == "binary":
        return x, labels.reshape(-1, 1).astype(np.float32)
    if kind == "sparse":
        return x, labels
    return x, to_categorical(labels, units)


def _train(fused: bool, monkeypatch, hidden_act="relu", out_units=1, out_act="linear", loss="mse",
           optimizer=lambda: optimizers.Adam(learning_rate=0.01), kind="regression", use_bias=True,
           metrics=None, epochs=3, layers=None, loss_weights=None, **fit_kwargs):
    """Train the test model on one path. ``layers(out_units, out_act)`` replaces the default stack."""
    monkeypatch.setattr(training, "FUSED_STEP", fused)
    set_random_seed(7)
    if layers is None:
        stack = [Dense(6, activation=hidden_act), Dense(4, activation=hidden_act, use_bias=use_bias),
                 Dense(out_units, activation=out_act)]
    else:
        stack = layers(out_units, out_act)
    model = Sequential([Input(shape=(FEATURES,))] + stack)
    model.compile(optimizer=optimizer(), loss=loss, metrics=metrics, loss_weights=loss_weights)
    x, y = _data(kind, out_units)
    history = model.fit(x, y, batch_size=8, epochs=epochs, validation_split=0.25, verbose=0,
                        diagnostics="off", **fit_kwargs)
    return model, history


def _assert_same(a, b, rtol=2e-5, atol=2e-6):
    (model_a, hist_a), (model_b, hist_b) = a, b
    assert hist_a.history.keys() == hist_b.history.keys()
    for key in hist_a.history:
        np.testing.assert_allclose(hist_a.history[key], hist_b.history[key], rtol=rtol, atol=atol,
                                   err_msg=key)
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=rtol, atol=atol)


def _both(monkeypatch, **kwargs):
    return _train(True, monkeypatch, **kwargs), _train(False, monkeypatch, **kwargs)


@pytest.mark.parametrize("hidden_act", ["relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("out_act", ["linear", "sigmoid", "tanh"])
def test_activations_match(monkeypatch, hidden_act, out_act):
    _assert_same(*_both(monkeypatch, hidden_act=hidden_act, out_act=out_act))


@pytest.mark.parametrize("loss, kind, units, out_act", [
    ("mse", "regression", 2, "linear"),
    ("mae", "regression", 2, "linear"),
    ("categorical_crossentropy", "categorical", 3, "softmax"),
    ("sparse_categorical_crossentropy", "sparse", 3, "softmax"),
    ("binary_crossentropy", "binary", 1, "sigmoid"),
])
def test_losses_and_metrics_match(monkeypatch, loss, kind, units, out_act):
    metrics = ["accuracy"] if kind != "regression" else ["mae"]
    _assert_same(*_both(monkeypatch, loss=loss, kind=kind, out_units=units, out_act=out_act, metrics=metrics))


@pytest.mark.parametrize("make", [
    lambda: optimizers.Adam(learning_rate=0.01),
    lambda: optimizers.Adam(learning_rate=0.05, beta_1=0.5, epsilon=1e-3, amsgrad=True),
    lambda: optimizers.SGD(learning_rate=0.05),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=True),
    lambda: optimizers.RMSprop(learning_rate=0.01),
    lambda: optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
    lambda: optimizers.Adam(learning_rate=optimizers.schedules.ExponentialDecay(0.05, 3, 0.5)),
], ids=["adam", "adam-amsgrad", "sgd", "sgd-momentum", "sgd-nesterov", "rmsprop", "rmsprop-centered",
        "adam-schedule"])
def test_optimizers_match(monkeypatch, make):
    _assert_same(*_both(monkeypatch, optimizer=make))


def test_layer_without_bias_matches(monkeypatch):
    _assert_same(*_both(monkeypatch, use_bias=False))


def test_unshuffled_and_validation_data_match(monkeypatch):
    x, y = _data("regression", 1)
    _assert_same(*_both(monkeypatch, shuffle=False, validation_data=(x[:10], y[:10])))


def test_fused_then_plain_equals_plain_throughout(monkeypatch):
    """Slots written by the fused step are the torch optimizer's state when the plain step takes over."""
    model, _ = _train(True, monkeypatch, epochs=2)
    monkeypatch.setattr(training, "FUSED_STEP", False)
    x, y = _data("regression", 1)
    model.fit(x, y, batch_size=8, epochs=4, initial_epoch=2, validation_split=0.25, verbose=0,
              diagnostics="off")
    reference, _ = _train(False, monkeypatch, epochs=4)
    for wa, wb in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=2e-5, atol=2e-6)


def test_fused_fit_creates_no_torch_optimizer_and_saves_its_state(monkeypatch, tmp_path):
    # Creating a torch.optim optimizer imports torch's compiler stack (~1.5 s); the fused fit never does.
    model, _ = _train(True, monkeypatch, epochs=2)
    assert model.optimizer._torch_optimizer is None
    tensors, meta = model.optimizer.export_state()
    assert meta["iterations"] == 8
    assert set(tensors) >= {"param_0/exp_avg", "param_0/exp_avg_sq", "param_0/step"}
    path = tmp_path / "m.tw"
    model.save(path)
    x, y = _data("regression", 1)
    resumed = load_model(path)
    resumed.fit(x, y, batch_size=8, epochs=4, initial_epoch=2, validation_split=0.25, verbose=0,
                diagnostics="off")
    reference, _ = _train(True, monkeypatch, epochs=4)
    for wa, wb in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=2e-5, atol=2e-6)


def _rewinding_callback():
    """Saves the weights after epoch 0 and puts them back after epoch 1, mid-fit, as EarlyStopping does."""
    saved = {}

    def on_epoch_end(epoch, logs):
        if epoch == 0:
            saved["w"] = rewind.model.get_weights()
        elif epoch == 1:
            rewind.model.set_weights(saved["w"])

    rewind = callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
    return rewind


def test_set_weights_inside_fit_reaches_the_fused_step(monkeypatch):
    """set_weights copies into the parameters, which are views of the fused step's flat buffer."""
    fused = _train(True, monkeypatch, epochs=4, callbacks=[_rewinding_callback()])
    plain = _train(False, monkeypatch, epochs=4, callbacks=[_rewinding_callback()])
    _assert_same(fused, plain)


def _assert_fused(monkeypatch, caplog, **kwargs):
    """Both paths give the same numbers, and the first run really took the fused step."""
    with caplog.at_level(logging.DEBUG, logger="trainwell.training"):
        fused = _train(True, monkeypatch, **kwargs)
    messages = [r.getMessage() for r in caplog.records if r.name == "trainwell.training"]
    assert messages and all("fused step" in m for m in messages), messages
    _assert_same(fused, _train(False, monkeypatch, **kwargs))


@pytest.mark.parametrize("name", [a for a in activations.ALL if a != "linear"])
def test_every_activation_matches(monkeypatch, caplog, name):
    _assert_fused(monkeypatch, caplog, hidden_act=name)


@pytest.mark.parametrize("name", ["softmax", "elu", "gelu", "exponential"])
def test_output_activations_match(monkeypatch, caplog, name):
    _assert_fused(monkeypatch, caplog, out_act=name, out_units=2, kind="regression")


def _normalized(invert=False):
    rng = np.random.default_rng(5)
    norm = Normalization(invert=invert)
    norm.adapt(rng.standard_normal((30, FEATURES)).astype(np.float32) * 3.0 + 2.0)
    return norm


@pytest.mark.parametrize("layers", [
    lambda units, act: [_normalized(), Dense(6, activation="relu"), Dense(units, activation=act)],
    lambda units, act: [_normalized(invert=True), Dense(6, activation="tanh"), Dense(units, activation=act)],
    lambda units, act: [Dense(6, activation="relu"),
                        Normalization(mean=[0.5] * 6, variance=[4.0] * 6), Dense(units, activation=act)],
], ids=["first", "inverted", "between-dense-layers"])
def test_normalization_matches(monkeypatch, caplog, layers):
    _assert_fused(monkeypatch, caplog, layers=layers)


@pytest.mark.parametrize("layers", [
    lambda units, act: [Dense(6, activation="relu"), Dropout(0.3), Dense(units, activation=act)],
    lambda units, act: [Dropout(0.2), Dense(6, activation="tanh"), Dropout(0.5), Dense(4, activation="relu"),
                        Dropout(0.1), Dense(units, activation=act)],
    lambda units, act: [Dense(6, activation="tanh"), Dropout(0.0), Dense(units, activation=act)],
], ids=["hidden", "input-and-two-hidden", "rate-0"])
def test_dropout_matches(monkeypatch, caplog, layers):
    """The same seed gives the same masks on both paths (Keras's inverted scaling on both)."""
    _assert_fused(monkeypatch, caplog, layers=layers, epochs=4)


def test_dropout_masks_change_from_batch_to_batch_and_follow_the_seed(monkeypatch):
    layers = lambda units, act: [Dense(6, activation="relu"), Dropout(0.5), Dense(units, activation=act)]  # noqa: E731
    first, _ = _train(True, monkeypatch, layers=layers)
    again, _ = _train(True, monkeypatch, layers=layers)
    without, _ = _train(True, monkeypatch, layers=lambda u, a: [Dense(6, activation="relu"),
                                                                 Dense(u, activation=a)])
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first.get_weights()[0], without.get_weights()[0])


@pytest.mark.parametrize("layers", [
    # No bias before the normalisation (as Keras advises): its gradient is 0 up to rounding, which
    # Adam would amplify into steps of noise that differ between any two implementations.
    lambda units, act: [Dense(6, use_bias=False), BatchNormalization(), Activation("relu"),
                        Dense(units, activation=act)],
    lambda units, act: [BatchNormalization(momentum=0.9), Dense(6, activation="relu"),
                        BatchNormalization(center=False), Dense(units, activation=act)],
    lambda units, act: [Dense(6, activation="tanh", use_bias=False),
                        BatchNormalization(scale=False, epsilon=0.01), Dropout(0.2),
                        Dense(units, activation=act)],
    # The gradient reaches the normalisation through a backward that is not in place (mish), or
    # straight from the loss: the stage copies it in rather than receiving it in its own buffer.
    lambda units, act: [Dense(6, use_bias=False), BatchNormalization(), Activation("mish"),
                        Dense(units, activation=act, use_bias=False), BatchNormalization(momentum=0.5)],
], ids=["dense-bn-relu", "first-and-no-center", "no-scale-then-dropout", "mish-and-last"])
@pytest.mark.parametrize("kernels", ["numba", "torch"])
def test_batch_normalization_matches(monkeypatch, caplog, layers, kernels):
    """Batch statistics in training, moving averages (compared as weights) in validation, with
    numba's compiled loops and with torch's kernels (numba not installed)."""
    if kernels == "numba":
        pytest.importorskip("numba")
        monkeypatch.setattr(fused_layers, "_compiled", None)  # looked up again
    else:
        monkeypatch.setattr(fused_layers, "_compiled", False)
    used = []
    allocate = fused_layers.BatchNormStage.allocate
    monkeypatch.setattr(fused_layers.BatchNormStage, "allocate",
                        lambda self, *a: (allocate(self, *a), used.append(self.kernels is not None)))
    _assert_fused(monkeypatch, caplog, layers=layers, epochs=4, metrics=["mae"])
    assert used and all(used) == (kernels == "numba")


@pytest.mark.parametrize("loss, kind, units, out_act", [
    ("huber", "regression", 2, "linear"),
    (lambda: losses.Huber(delta=0.3), "regression", 2, "linear"),
    (lambda: losses.Huber(delta=0.3, reduction="sum"), "regression", 2, "linear"),
    ("log_cosh", "regression", 2, "linear"),
    ("mean_squared_logarithmic_error", "regression", 2, "softplus"),
    ("mean_absolute_percentage_error", "regression", 2, "linear"),
    ("poisson", "regression", 2, "exponential"),
    ("cosine_similarity", "regression", 2, "linear"),
    ("hinge", "binary", 1, "tanh"),
    ("squared_hinge", "binary", 1, "tanh"),
    ("kl_divergence", "categorical", 3, "softmax"),
    ("categorical_hinge", "categorical", 3, "linear"),
    ("binary_focal_crossentropy", "binary", 1, "sigmoid"),
    ("categorical_focal_crossentropy", "categorical", 3, "softmax"),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=0.1), "categorical", 3, "softmax"),
    (lambda: losses.BinaryCrossentropy(label_smoothing=0.2), "binary", 1, "sigmoid"),
    (lambda: losses.SparseCategoricalCrossentropy(from_logits=True), "sparse", 3, "linear"),
    (lambda: losses.MeanSquaredError(reduction="sum"), "regression", 2, "linear"),
    (lambda: losses.MeanAbsoluteError(reduction="mean_with_sample_weight"), "regression", 2, "linear"),
], ids=["huber", "huber-delta", "huber-sum", "log_cosh", "msle", "mape", "poisson", "cosine", "hinge",
        "squared_hinge", "kld", "categorical_hinge", "binary_focal", "categorical_focal",
        "categorical-smoothing", "binary-smoothing", "sparse-from-logits", "mse-sum",
        "mae-mean-with-sample-weight"])
def test_other_builtin_losses_match(monkeypatch, caplog, loss, kind, units, out_act):
    """Every built-in loss and option takes the fused step (Huber and log-cosh written out, the
    others the loss's own function differentiated by autograd on the outputs alone): the numbers of
    the plain path, weighted samples included."""
    _assert_fused(monkeypatch, caplog, loss=loss() if callable(loss) else loss, kind=kind, out_units=units,
                  out_act=out_act, metrics=["mae" if kind == "regression" else "accuracy"],
                  sample_weight=np.linspace(0.5, 1.5, N).astype(np.float32))


@pytest.mark.parametrize("regularizer", [l2(0.01), l1(0.01), l1_l2(l1=0.005, l2=0.02)],
                         ids=["l2", "l1", "l1_l2"])
def test_regularizers_match(monkeypatch, caplog, regularizer):
    """The penalty is in the reported loss and in the gradient, exactly as on the plain path."""
    layers = lambda units, act: [Dense(6, activation="relu", kernel_regularizer=regularizer,  # noqa: E731
                                       bias_regularizer=regularizer),
                                 Dense(units, activation=act, kernel_regularizer=regularizer)]
    _assert_fused(monkeypatch, caplog, layers=layers)


@pytest.mark.parametrize("loss, kind, units, out_act", [
    ("mse", "regression", 2, "linear"),
    ("mae", "regression", 2, "linear"),
    ("categorical_crossentropy", "categorical", 3, "softmax"),
    ("sparse_categorical_crossentropy", "sparse", 3, "softmax"),
    ("binary_crossentropy", "binary", 1, "sigmoid"),
])
@pytest.mark.parametrize("weights", ["sample", "class"])
def test_sample_and_class_weights_match(monkeypatch, caplog, loss, kind, units, out_act, weights):
    metrics = ["accuracy"] if kind != "regression" else ["mae"]
    if weights == "sample":
        extra = dict(sample_weight=np.linspace(0.2, 2.0, N).astype(np.float32))
    elif kind == "regression":
        pytest.skip("class_weight needs class labels")
    else:
        extra = dict(class_weight={0: 0.5, 1: 2.0, 2: 1.5})
    _assert_fused(monkeypatch, caplog, loss=loss, kind=kind, out_units=units, out_act=out_act,
                  metrics=metrics, **extra)


@pytest.mark.parametrize("make", [
    lambda: optimizers.AdamW(learning_rate=0.01),
    lambda: optimizers.Adam(learning_rate=0.05, clipnorm=0.1),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, clipvalue=0.05),
    lambda: optimizers.RMSprop(learning_rate=0.01, global_clipnorm=0.2, weight_decay=0.01),
    lambda: optimizers.Adagrad(learning_rate=0.05),
    lambda: optimizers.Adagrad(learning_rate=0.05, initial_accumulator_value=0.0, epsilon=1e-3, clipnorm=0.5),
    lambda: optimizers.Adadelta(learning_rate=1.0, rho=0.9),
    lambda: optimizers.Adamax(learning_rate=0.02, weight_decay=0.01),
    lambda: optimizers.Lion(learning_rate=0.005),
    lambda: optimizers.Ftrl(learning_rate=0.1, l1_regularization_strength=0.001,
                            l2_shrinkage_regularization_strength=0.01, beta=0.5),
    lambda: optimizers.Nadam(learning_rate=0.01),
    lambda: optimizers.Nadam(learning_rate=0.05, beta_1=0.5, epsilon=1e-3, clipvalue=0.1),
    lambda: optimizers.legacy.Adam(learning_rate=0.02, decay=0.01),
    lambda: optimizers.Adamax(learning_rate=optimizers.schedules.ExponentialDecay(0.05, 3, 0.5)),
], ids=["adamw", "adam-clipnorm", "sgd-clipvalue", "rmsprop-global-clipnorm-decay", "adagrad",
        "adagrad-no-initial-clipnorm", "adadelta", "adamax-decay", "lion", "ftrl", "nadam",
        "nadam-beta-clipvalue", "legacy-adam-decay", "adamax-schedule"])
def test_more_optimizers_match(monkeypatch, caplog, make):
    _assert_fused(monkeypatch, caplog, optimizer=make)


@pytest.mark.parametrize("make", [
    lambda: optimizers.Adagrad(learning_rate=0.05),
    lambda: optimizers.Adadelta(learning_rate=1.0),
    lambda: optimizers.Adamax(learning_rate=0.02),
    lambda: optimizers.Lion(learning_rate=0.005),
    lambda: optimizers.Ftrl(learning_rate=0.1),
    lambda: optimizers.Nadam(learning_rate=0.01),
], ids=["adagrad", "adadelta", "adamax", "lion", "ftrl", "nadam"])
def test_flat_updates_leave_torch_optimizer_uncreated_and_resume_on_the_plain_step(monkeypatch, make):
    """The flat update writes the optimizer's own slots (torch's or Keras's names): the torch
    optimizer is never created during the fit, and a plain-step fit continuing from them gives the
    numbers of a plain-step fit throughout."""
    model, _ = _train(True, monkeypatch, epochs=2, optimizer=make)
    assert model.optimizer._torch_optimizer is None
    tensors, meta = model.optimizer.export_state()
    assert meta["iterations"] == 8 and tensors
    monkeypatch.setattr(training, "FUSED_STEP", False)
    x, y = _data("regression", 1)
    model.fit(x, y, batch_size=8, epochs=4, initial_epoch=2, validation_split=0.25, verbose=0,
              diagnostics="off")
    reference, _ = _train(False, monkeypatch, epochs=4, optimizer=make)
    for wa, wb in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=2e-5, atol=2e-6)


def test_loss_weights_match(monkeypatch, caplog):
    _assert_fused(monkeypatch, caplog, loss_weights=0.5)


def test_everything_at_once_matches(monkeypatch, caplog):
    # No bias before the normalisation: see test_batch_normalization_matches.
    layers = lambda units, act: [_normalized(), Dense(8, activation="leaky_relu", use_bias=False,  # noqa: E731
                                                      kernel_regularizer=l2(0.01)),
                                 BatchNormalization(), Dropout(0.25), Dense(5, activation="gelu"),
                                 Dense(units, activation=act)]
    _assert_fused(monkeypatch, caplog, layers=layers, loss="sparse_categorical_crossentropy", kind="sparse",
                  out_units=3, out_act="softmax", metrics=["accuracy"], epochs=4,
                  class_weight={0: 1.0, 1: 3.0, 2: 0.5},
                  optimizer=lambda: optimizers.AdamW(learning_rate=0.02))


class _Doubling(Layer):
    def forward(self, x):
        return 2 * x


def _quartic(y_true, y_pred):
    return ((y_pred - y_true) ** 4).mean(-1)


@pytest.mark.parametrize("change, reason", [
    (dict(extra_layer=_Doubling), "layer 'doubling' is a _Doubling"),
    (dict(hidden_act=lambda x: x * 2), "custom activation"),
    (dict(regularizer=lambda w: w.abs().sum()), "custom kernel_regularizer"),
    (dict(frozen=True), "is frozen"),
    (dict(loss=lambda: _quartic), "'_quartic' is a custom loss"),
    (dict(first_activation=True), "an activation as the first layer"),
])
def test_uncovered_models_fall_back_visibly(monkeypatch, caplog, change, reason):
    set_random_seed(0)
    layers = [Input(shape=(FEATURES,))]
    if change.get("first_activation"):
        layers.append(Activation("relu"))
    layers.append(Dense(4, activation=change.get("hidden_act", "relu"),
                        kernel_regularizer=change.get("regularizer"), trainable=not change.get("frozen")))
    if "extra_layer" in change:
        layers.append(change["extra_layer"](name="doubling"))
    model = Sequential(layers + [Dense(1)])
    loss = change.get("loss", "mse")
    model.compile(optimizer=optimizers.Adam(), loss=loss() if callable(loss) else loss)
    x, y = _data("regression", 1)
    with caplog.at_level(logging.DEBUG, logger="trainwell.training"):
        history = model.fit(x, y, epochs=1, verbose=0, diagnostics="off")
    assert np.isfinite(history.history["loss"][0])
    messages = [r.getMessage() for r in caplog.records if r.name == "trainwell.training"]
    assert any("plain autograd step" in m and reason in m for m in messages), messages


@pytest.mark.parametrize("make", [
    lambda: optimizers.Adam(learning_rate=0.01),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, clipnorm=0.5),
    lambda: optimizers.RMSprop(learning_rate=0.01, weight_decay=0.01),
    lambda: optimizers.Adagrad(learning_rate=0.05),
], ids=["adam", "sgd-momentum-clipnorm", "rmsprop-decay", "adagrad"])
def test_plain_step_with_the_flat_update_matches_train_step(monkeypatch, caplog, make):
    """Models the fused step does not cover keep autograd but take the flat update (FlatUpdateStep):
    the same numbers as train_step with torch.optim, and the gradients stay views of the flat buffer."""
    layers = lambda units, act: [Dense(6, activation="relu"), _Doubling(), Dense(units, activation=act)]  # noqa: E731
    kwargs = dict(layers=layers, loss="huber", metrics=["mae"], optimizer=make)
    with caplog.at_level(logging.DEBUG, logger="trainwell.training"):
        flat = _train(True, monkeypatch, **kwargs)
    assert any("plain autograd step" in r.getMessage() for r in caplog.records)
    _assert_same(flat, _train(False, monkeypatch, **kwargs), rtol=1e-6, atol=1e-7)
    params = flat[0].trainable_parameters()
    assert params[0].grad.untyped_storage().data_ptr() == params[-1].grad.untyped_storage().data_ptr()


def test_a_model_that_is_not_a_chain_falls_back(monkeypatch, caplog):
    """Graph models say whether they are a chain (``is_chain``); the fused step and the inference
    plan take only chains."""
    monkeypatch.setattr(Sequential, "is_chain", False, raising=False)
    with caplog.at_level(logging.DEBUG, logger="trainwell.training"):
        model, _ = _train(True, monkeypatch, epochs=1)
    assert any("do not form a chain" in r.getMessage() for r in caplog.records)
    assert fastpath.inference_forward(model) is None


def test_covered_model_takes_the_fused_step(monkeypatch, caplog):
    with caplog.at_level(logging.DEBUG, logger="trainwell.training"):
        _train(True, monkeypatch, epochs=1)
    assert any("fused step" in r.getMessage() for r in caplog.records)
    assert fastpath.FALLBACKS  # the documented list


def test_fit_uses_one_thread_for_small_work_and_restores_the_setting(monkeypatch):
    seen = []
    probe = callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _train(True, monkeypatch, epochs=1, callbacks=[probe])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_predict_fast_path_matches_the_layers_and_the_general_path(monkeypatch):
    model, _ = _train(True, monkeypatch, out_units=3, out_act="softmax", loss="categorical_crossentropy",
                      kind="categorical")
    x, _ = _data("regression", 1)
    with torch.no_grad():
        expected = model.call(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict(x[:1], verbose=0), expected[:1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict(x.astype(np.float64), verbose=0), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict(x, batch_size=7, verbose=0), expected, rtol=1e-6, atol=1e-7)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict(bad, verbose=0)


def test_predict_follows_layer_changes():
    """The cached inference plan is rebuilt when the layers change (regression: stale plan after pop)."""
    set_random_seed(1)
    model = Sequential([Input(shape=(FEATURES,)), Dense(3, activation="relu"), Dense(2)])
    x = np.ones((2, FEATURES), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == (2, 2)
    model.pop()
    assert model.predict(x, verbose=0).shape == (2, 3)
    model.add(Dropout(0.5))
    np.testing.assert_array_equal(model.predict(x, verbose=0) >= 0, True)


def test_train_on_batch_with_sample_weight_keeps_the_weights(monkeypatch):
    """Regression: train_on_batch must tell select_step about sample weights (the fused step has none)."""
    results = []
    for fused in (True, False):
        model, _ = _train(fused, monkeypatch, epochs=1)
        x, y = _data("regression", 1)
        weights = np.linspace(0.0, 2.0, N).astype(np.float32)
        results.append((model.train_on_batch(x, y, sample_weight=weights), model.get_weights()))
    (loss_a, w_a), (loss_b, w_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    for a, b in zip(w_a, w_b):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_save_weights_after_a_fused_fit(monkeypatch, tmp_path):
    """The parameters share one flat storage after a fused fit; weight files must not mind."""
    model, _ = _train(True, monkeypatch, epochs=1)
    path = tmp_path / "w.weights.safetensors"
    model.save_weights(path)
    other, _ = _train(False, monkeypatch, epochs=2)
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


class _BatchAccuracies(callbacks.Callback):
    """Reads the running training accuracy after every batch (what a per-batch callback sees)."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(logs["accuracy"])


@pytest.mark.parametrize("loss, kind, units, out_act", [
    ("categorical_crossentropy", "categorical", 3, "softmax"),
    ("sparse_categorical_crossentropy", "sparse", 3, "softmax"),
    ("binary_crossentropy", "binary", 1, "sigmoid"),
])
def test_counted_accuracy_equals_update_state_batch_by_batch(monkeypatch, loss, kind, units, out_act):
    """The fused step counts accuracy hits (metrics._add_hits): the same numbers, exactly, as the
    metric's own update_state, in the epoch logs and in what per-batch callbacks read."""
    from trainwell import fastpath

    runs = []
    for counted in (True, False):
        if not counted:
            monkeypatch.setattr(fastpath, "_hit_kind", lambda metric, out: None)
        probe = _BatchAccuracies()
        model, history = _train(True, monkeypatch, loss=loss, kind=kind, out_units=units, out_act=out_act,
                                metrics=["accuracy", "acc"], epochs=2, callbacks=[probe])
        runs.append((history.history, probe.values, model.get_weights()))
    (hist_a, batches_a, w_a), (hist_b, batches_b, w_b) = runs
    assert hist_a == hist_b
    assert batches_a == batches_b and len(batches_a) == 2 * 4
    for a, b in zip(w_a, w_b):
        np.testing.assert_array_equal(a, b)


def test_add_hits_matches_update_state_on_ties_and_soft_targets():
    """Hand-made batch: tied predictions (argmax takes the first), a soft target row, two batches."""
    from trainwell import metrics

    y_true = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4], [0.0, 0.0, 1.0]])
    y_pred = torch.tensor([[0.2, 0.6, 0.2], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2]])
    counted, reference = metrics.CategoricalAccuracy(), metrics.CategoricalAccuracy()
    for _ in range(2):
        counted._add_hits(torch.eq(y_true.argmax(-1), y_pred.argmax(-1)))
        reference.update_state(y_true, y_pred)
    # Rows 0, 1 (tie resolved to class 0) and 2 are hits, row 3 is not: 3 of 4, twice.
    assert float(counted.result()) == float(reference.result()) == 0.75
    assert float(counted._state["count"]) == 8.0 and counted._state["total"].dtype == torch.float32


def test_predict_ready_inputs_match_the_general_path(monkeypatch):
    """float64, non-contiguous and read-only arrays take the cheap conversion; the numbers are those of
    prepare_x's path, and anything it refuses (NaN, inf, beyond float32's range) still gets its error
    or result from prepare_x."""
    model, _ = _train(True, monkeypatch, out_units=3, out_act="softmax", loss="categorical_crossentropy",
                      kind="categorical")
    x, _ = _data("regression", 1)
    x64 = x.astype(np.float64) * 1.1  # values that round when converted to float32
    with torch.no_grad():
        expected = model.call(torch.from_numpy(x64).float()).numpy()
    calls = []
    original = training.prepare_x
    monkeypatch.setattr(training, "prepare_x", lambda *a, **k: calls.append(1) or original(*a, **k))
    read_only = x64.astype(np.float32)
    read_only.flags.writeable = False
    wide = np.repeat(x64.astype(np.float32), 2, axis=1)
    for arr in (x64, x64[:1], x64.astype(np.float32), read_only, wide[:, ::2], np.asfortranarray(x64)):
        np.testing.assert_array_equal(model.predict(arr, verbose=0), expected[:arr.shape[0]])
    assert calls == []  # none of those needed prepare_x
    huge = x64[:2].copy()
    huge[1, 0] = 1e39  # finite in float64, inf in float32: prepare_x refuses it, naming the column
    with pytest.raises(DataError, match=r"beyond float32's range .* column\(s\) 0"):
        model.predict(huge, verbose=0)
    assert calls == [1]
    many = np.concatenate([x] * 2)
    for rows in (1, 2 * N):
        for bad_value, word in ((np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")):
            bad = many[:rows].copy()
            bad[rows - 1, 2] = bad_value
            with pytest.raises(ValueError, match=word):
                model.predict(bad, verbose=0)


def test_predict_leaves_the_thread_count_alone(monkeypatch):
    model, _ = _train(True, monkeypatch, epochs=1)
    x, _ = _data("regression", 1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail("predict changed the threads"))
    assert model.predict(x, verbose=0).shape == (N, 1)


def test_rescaling_stage_matches_autograd():
    """Keras's Rescaling (x * scale + offset) as a fused stage: forward and input gradient equal
    autograd's. The layer itself comes with the functional API's layer families."""
    from types import SimpleNamespace

    from trainwell.fused_layers import RescalingStage

    stage = RescalingStage(SimpleNamespace(scale=1 / 255, offset=-0.5), width=3)
    x = torch.linspace(0, 255, 12).reshape(4, 3).requires_grad_()
    out, d = torch.empty(4, 3), torch.linspace(-1, 1, 12).reshape(4, 3)
    stage.forward(x.detach(), x.detach(), out)
    expected = x * (1 / 255) + -0.5
    expected.backward(d)
    torch.testing.assert_close(out, expected.detach(), rtol=0, atol=0)
    torch.testing.assert_close(stage.backward(d.clone(), x.detach(), None, out, True), x.grad, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# the stacked fused step of batched training


STACKED_LOSSES = {
    "mean_squared_error": (2, None),
    "mean_absolute_error": (2, "linear"),
    "categorical_crossentropy": (3, "softmax"),
    "sparse_categorical_crossentropy": (3, "softmax"),
    "binary_crossentropy": (1, "sigmoid"),
}


@pytest.mark.parametrize("hidden", ["relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("loss", STACKED_LOSSES)
def test_stacked_fused_step_matches_autograd_per_candidate(loss, hidden):
    """``fastpath.StackedDenseStep`` gives each candidate the loss and gradients autograd gives it."""
    from trainwell import batched, fastpath

    units, out_activation = STACKED_LOSSES[loss]
    models = []
    for seed in (1, 2, 3):
        set_random_seed(seed)
        model = Sequential([Input(shape=(FEATURES,)), Dense(6, activation=hidden),
                            Dense(4, activation=hidden, use_bias=False),
                            Dense(units, activation=out_activation)])
        model.compile(optimizer="sgd", loss=loss)
        models.append(model)
    ctx = training.StepContext(models[0])
    assert fastpath.stacked_unsupported(ctx) is None
    rng = np.random.default_rng(0)
    xb = torch.tensor(rng.normal(size=(3, 7, FEATURES)), dtype=torch.float32)
    if loss.startswith("sparse"):
        yb = torch.tensor(rng.integers(0, units, size=(3, 7)))
    elif loss.startswith("categorical"):
        yb = torch.tensor(np.eye(units)[rng.integers(0, units, size=(3, 7))], dtype=torch.float32)
    elif loss.startswith("binary"):
        yb = torch.tensor(rng.integers(0, 2, size=(3, 7, 1)), dtype=torch.float32)
    else:
        yb = torch.tensor(rng.normal(size=(3, 7, units)), dtype=torch.float32)
    fused = fastpath.StackedDenseStep(models, ctx)
    stack = batched._Stack(models)
    want_loss, want_out = batched._AutogradStep(stack, ctx)(xb, yb)
    got_loss, got_out = fused(xb, yb)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_out, want_out, rtol=1e-5, atol=1e-6)
    for (kernel_grad, bias_grad), kernel, bias in zip(fused.grads, stack.kernels, stack.biases):
        torch.testing.assert_close(kernel_grad, kernel.grad, rtol=1e-5, atol=1e-6)
        if bias is not None:
            torch.testing.assert_close(bias_grad, bias.grad, rtol=1e-5, atol=1e-6)
    for c, model in enumerate(models):  # the flat buffer holds each candidate's own weights
        for got, want in zip(fused.candidate_weights(c), model.get_weights()):
            np.testing.assert_array_equal(got, want)
