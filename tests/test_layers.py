"""Layers forward and backward against reference computations (Keras ``test_dense_correctness`` style).

Every layer is checked against a numpy formula written out here, in float64 where gradients are
compared, plus the common checks each layer must pass (config round trip, weights, errors).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from trainwell import initializers, regularizers
from trainwell._errors import ConfigError, ConfigTypeError, DataError
from trainwell.layers import (
    LAYERS,
    Activation,
    BatchNormalization,
    Dense,
    Dropout,
    Input,
    InputLayer,
    Normalization,
    deserialize,
    serialize,
)
from trainwell.layers.regularization import dropout_mask, mask_thresholds


def built(layer, n_features):
    layer.build((n_features,))
    return layer


def as_t(array, dtype=torch.float32):
    return torch.tensor(np.array(array), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# common checks for every layer (Keras run_layer_test in miniature)

LAYER_FACTORIES = {
    "Dense": lambda: Dense(3, activation="relu"),
    "Activation": lambda: Activation("tanh"),
    "Dropout": lambda: Dropout(0.25),
    "BatchNormalization": lambda: BatchNormalization(momentum=0.9),
    "Normalization": lambda: Normalization(),
}


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_layer_config_round_trip_keeps_output(name):
    layer = built(LAYER_FACTORIES[name](), 4)
    config = serialize(layer)
    assert config["class_name"] == name
    clone = deserialize(config)
    assert clone.get_config() == layer.get_config()
    clone.build((4,))
    clone.set_weights(layer.get_weights())
    x = torch.randn(6, 4)
    layer.eval()
    clone.eval()
    np.testing.assert_allclose(clone(x).detach().numpy(), layer(x).detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_layer_output_shape_matches_compute_output_shape(name):
    layer = built(LAYER_FACTORIES[name](), 4)
    layer.eval()
    out = layer(torch.randn(5, 4))
    assert tuple(out.shape[1:]) == layer.compute_output_shape((4,))


def test_layer_names_are_unique_keras_style():
    a, b = Dense(2), Dense(2)
    assert a.name != b.name
    assert a.name.startswith("dense") and b.name.startswith("dense")
    assert Dense(2, name="out").name == "out"
    assert BatchNormalization().name.startswith("batch_normalization")


def test_deserialize_unknown_layer_suggests_closest():
    with pytest.raises(ConfigError, match="Did you mean 'Dense'"):
        deserialize({"class_name": "Dens", "config": {}})
    with pytest.raises(ConfigTypeError, match="class_name"):
        deserialize(["Dense"])
    assert set(LAYERS) >= {"Dense", "Activation", "Dropout", "BatchNormalization", "Normalization"}


# ---------------------------------------------------------------------------------------------
# Dense


def test_dense_correctness_hand_set_weights():
    # x @ kernel + bias, worked by hand:
    # row 0: [1, 2] @ [[1, -1, 0], [2, 0.5, 1]] + [0.5, 0, -1] = [5.5, 0, 1]
    # row 1: [-1, 3] @ ...                                        = [5.5, 2.5, 2]
    layer = built(Dense(3), 2)
    layer.set_weights([np.array([[1.0, -1.0, 0.0], [2.0, 0.5, 1.0]]), np.array([0.5, 0.0, -1.0])])
    out = layer(as_t([[1.0, 2.0], [-1.0, 3.0]])).detach().numpy()
    np.testing.assert_allclose(out, [[5.5, 0.0, 1.0], [5.5, 2.5, 2.0]])


def test_dense_relu_and_no_bias():
    layer = built(Dense(2, activation="relu", use_bias=False), 2)
    assert [tuple(w.shape) for w in layer.get_weights()] == [(2, 2)]
    layer.set_weights([np.array([[1.0, -1.0], [1.0, -1.0]])])
    out = layer(as_t([[1.0, 1.0], [-2.0, 1.0]])).detach().numpy()
    np.testing.assert_allclose(out, [[2.0, 0.0], [0.0, 1.0]])


def test_dense_keras_defaults_and_layout():
    layer = Dense(4, input_shape=(3,))
    assert isinstance(layer.kernel_initializer, initializers.GlorotUniform)
    assert isinstance(layer.bias_initializer, initializers.Zeros)
    assert layer.use_bias is True
    assert layer.activation_name == "linear"
    assert layer.input_shape_arg == (3,)
    layer.build((3,))
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 4) and bias.shape == (4,)  # Keras layout (in, out)
    assert layer.weight_names() == ["kernel", "bias"]
    np.testing.assert_array_equal(bias, 0.0)
    limit = np.sqrt(6.0 / (3 + 4))  # glorot_uniform bound
    assert np.all(np.abs(kernel) <= limit) and kernel.std() > 0
    assert layer.count_params() == 3 * 4 + 4
    assert Dense(2, input_dim=7).input_shape_arg == (7,)


def test_dense_glorot_uniform_statistics():
    torch.manual_seed(0)
    kernel = built(Dense(200), 300).get_weights()[0]
    # uniform(-l, l) has variance l^2 / 3 = 2 / (fan_in + fan_out)
    assert abs(kernel.var() - 2.0 / 500) < 0.1 * 2.0 / 500


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "sigmoid", "softmax", "elu", "softplus"])
def test_dense_backward_matches_numpy(activation):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3))
    kernel, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
    g = rng.normal(size=(5, 4))  # upstream gradient
    layer = built(Dense(4, activation=activation), 3).double()
    layer.set_weights([kernel, bias])
    xt = torch.tensor(x, requires_grad=True)
    out = layer(xt)
    (out * torch.tensor(g)).sum().backward()

    z = x @ kernel + bias
    act, dact = _numpy_activation(activation, z)
    np.testing.assert_allclose(out.detach().numpy(), act, rtol=1e-10)
    if activation == "softmax":  # Jacobian-vector product of softmax: s * (g - sum(g * s))
        dz = act * (g - (g * act).sum(axis=1, keepdims=True))
    else:
        dz = g * dact
    np.testing.assert_allclose(layer.kernel.grad.numpy(), x.T @ dz, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.numpy(), dz.sum(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), dz @ kernel.T, rtol=1e-9, atol=1e-12)


def _numpy_activation(name, z):
    """(activation(z), activation'(z)) in numpy."""
    if name == "linear":
        return z, np.ones_like(z)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(float)
    if name == "tanh":
        return np.tanh(z), 1 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s, s * (1 - s)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True), None
    if name == "elu":
        return np.where(z > 0, z, np.exp(z) - 1), np.where(z > 0, 1.0, np.exp(z))
    if name == "softplus":
        return np.log1p(np.exp(z)), 1 / (1 + np.exp(-z))
    raise AssertionError(name)


def test_dense_regularization_loss_is_keras_formula():
    layer = Dense(2, kernel_regularizer=regularizers.l2(0.1), bias_regularizer=regularizers.l1(0.5))
    built(layer, 2).set_weights([np.array([[1.0, -2.0], [3.0, 0.0]]), np.array([1.0, -3.0])])
    # 0.1 * (1 + 4 + 9 + 0) + 0.5 * (1 + 3) = 1.4 + 2.0
    assert float(layer.regularization_loss().detach()) == pytest.approx(3.4)
    assert built(Dense(2), 2).regularization_loss() is None


@pytest.mark.parametrize("units", [0, -3, 2.5, None, "64", True])
def test_dense_rejects_bad_units(units):
    with pytest.raises(ConfigError, match="`units` expects a positive integer"):
        Dense(units)


@pytest.mark.parametrize("bad", [(0,), (-1,), "nine", (2.5, "x")])
def test_dense_rejects_bad_input_shape(bad):
    with pytest.raises(ConfigError, match="input_shape"):
        Dense(2, input_shape=bad)


def test_dense_unknown_activation_suggests_closest():
    with pytest.raises(ConfigError, match="Did you mean 'relu'"):
        Dense(3, activation="rellu")


def test_dense_unsupported_arguments_say_so():
    with pytest.raises(ConfigError, match="not supported"):
        Dense(3, kernel_constraint="max_norm")


def test_set_weights_checks_count_and_shape():
    layer = built(Dense(2), 3)
    with pytest.raises(ConfigError, match="expects 2 weight arrays"):
        layer.set_weights([np.zeros((3, 2))])
    with pytest.raises(ConfigError, match=r"weight 'kernel': expected shape \(3, 2\)"):
        layer.set_weights([np.zeros((2, 3)), np.zeros(2)])


def test_get_weights_returns_copies():
    layer = built(Dense(2), 2)
    weights = layer.get_weights()
    weights[0][:] = 123.0
    assert not np.any(layer.get_weights()[0] == 123.0)


def test_trainable_false_moves_weights_to_non_trainable():
    layer = built(Dense(2), 3)
    layer.trainable = False
    assert layer.trainable_weights == []
    assert len(layer.non_trainable_weights) == 2
    assert not any(p.requires_grad for p in layer.parameters())
    layer.trainable = True
    assert len(layer.trainable_weights) == 2


# ---------------------------------------------------------------------------------------------
# Activation layer


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "softmax", "elu", "softplus", "linear"])
def test_activation_layer_matches_numpy(name):
    z = np.random.default_rng(2).normal(size=(4, 5)) * 3
    out = Activation(name)(as_t(z, torch.float64)).numpy()
    np.testing.assert_allclose(out, _numpy_activation(name, z)[0], rtol=1e-10)


def test_activation_layer_accepts_callables_and_rejects_unknown():
    np.testing.assert_allclose(Activation(torch.tanh)(torch.zeros(2)).numpy(), 0.0)
    with pytest.raises(ConfigError, match="unknown activation"):
        Activation("sigmod")
    assert Activation("relu").count_params() == 0


# ---------------------------------------------------------------------------------------------
# Dropout


def test_dropout_training_zeroes_rate_and_scales_the_rest():
    torch.manual_seed(0)
    layer = Dropout(0.3)
    layer.train()
    x = torch.full((200, 50), 2.0)
    out = layer(x).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], 2.0 / 0.7, rtol=1e-6)  # inverted dropout: 1 / (1 - rate)
    assert abs(1 - kept.mean() - 0.3) < 0.02
    # the expectation is preserved
    assert abs(out.mean() - 2.0) < 0.05


def test_dropout_follows_a_changed_rate_and_odd_sizes_and_the_seed():
    # The layer keeps its thresholds and scale per size and rate: a new rate or size gets its own.
    layer = Dropout(0.2)
    layer.train()
    x = torch.ones(301, 33)  # an odd count: a half of the last draw left over
    torch.manual_seed(2)
    first = layer(x)
    torch.manual_seed(2)
    np.testing.assert_array_equal(layer(x).numpy(), first.numpy())
    np.testing.assert_allclose(np.unique(first.numpy()), [0.0, 1.25])
    layer.rate = 0.6
    out = layer(x).numpy()
    np.testing.assert_allclose(np.unique(out), [0.0, 2.5])
    assert abs((out == 0).mean() - 0.6) < 0.03


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_masks_keep_one_minus_rate_in_both_halves_of_each_draw(rate):
    """Each 32-bit draw gives two masks (its int16 halves, one of 16 bits, one of 15): each half
    on its own keeps 1 - rate of the values, and neighbours are independent."""
    torch.manual_seed(1)
    mask = dropout_mask(torch.empty(2001, 999), rate).numpy().reshape(-1)  # an odd count: a half left over
    assert set(np.unique(mask)) <= {0.0, 1.0}
    sigma = np.sqrt(rate * (1 - rate) / (mask.size / 2))
    for half in (mask[0::2], mask[1::2]):
        assert abs(half.mean() - (1 - rate)) < 5 * sigma
    both = (mask[0:-1:2] * mask[1::2]).mean()  # the two halves of one draw
    assert abs(both - (1 - rate) ** 2) < 5 * sigma


def test_dropout_mask_thresholds_are_exact_at_their_resolution():
    low, high = (int(v) for v in mask_thresholds(0.25))
    if sys.byteorder != "little":
        low, high = high, low
    assert (32767 - low + 1) / 65536 == 0.75 and (32767 - high + 1) / 32768 == 0.75
    assert [int(v) for v in sorted(mask_thresholds(0.0))] == [-32768, 0]  # everything kept


def test_dropout_is_identity_in_eval_and_at_rate_zero():
    x = torch.randn(10, 4)
    layer = Dropout(0.5)
    layer.eval()
    assert torch.equal(layer(x), x)
    zero = Dropout(0.0)
    zero.train()
    assert torch.equal(zero(x), x)


@pytest.mark.parametrize("rate", [1, 1.0, -0.1, 1.5, "0.5", None])
def test_dropout_rejects_rates_outside_unit_interval(rate):
    with pytest.raises(ConfigError, match="`rate` expects a number in"):
        Dropout(rate)


# ---------------------------------------------------------------------------------------------
# BatchNormalization (Keras momentum semantics, biased batch variance)


def _numpy_bn(x, gamma, beta, mean, var, eps):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_batch_normalization_training_forward_and_moving_averages():
    rng = np.random.default_rng(3)
    x = rng.normal(loc=2.0, scale=3.0, size=(16, 4))
    layer = built(BatchNormalization(momentum=0.9, epsilon=1e-3), 4).double()
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    layer.set_weights([gamma, beta, np.zeros(4), np.ones(4)])
    assert layer.weight_names() == ["gamma", "beta", "moving_mean", "moving_variance"]
    layer.train()
    out = layer(as_t(x, torch.float64)).detach().numpy()
    mean, var = x.mean(0), x.var(0)  # biased variance, as Keras
    np.testing.assert_allclose(out, _numpy_bn(x, gamma, beta, mean, var, 1e-3), rtol=1e-10)
    # Keras: moving = moving * momentum + batch * (1 - momentum)
    _, _, moving_mean, moving_var = layer.get_weights()
    np.testing.assert_allclose(moving_mean, 0.9 * 0.0 + 0.1 * mean, rtol=1e-10)
    np.testing.assert_allclose(moving_var, 0.9 * 1.0 + 0.1 * var, rtol=1e-10)


def test_batch_normalization_constant_feature_keeps_a_non_negative_moving_variance():
    # The variance comes back from the kernel's 1 / sqrt(var + eps); rounding must not push a
    # constant feature's moving variance below 0.
    layer = built(BatchNormalization(momentum=0.0), 3)
    layer.train()
    x = torch.tensor([[5.0, 1.0, -2.0], [5.0, 2.0, -2.0], [5.0, 3.0, -2.0]])
    out = layer(x).detach().numpy()
    np.testing.assert_allclose(out[:, [0, 2]], 0.0, atol=1e-4)  # float32 mean, divided by sqrt(eps)
    moving_var = layer.get_weights()[3]
    assert (moving_var >= 0).all()
    np.testing.assert_allclose(moving_var, [0.0, 2 / 3, 0.0], atol=1e-6)


def test_batch_normalization_eval_uses_moving_statistics():
    rng = np.random.default_rng(4)
    layer = built(BatchNormalization(), 3).double()
    moving_mean, moving_var = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
    layer.set_weights([np.full(3, 2.0), np.full(3, 0.5), moving_mean, moving_var])
    layer.eval()
    x = rng.normal(size=(5, 3))
    out = layer(as_t(x, torch.float64)).detach().numpy()
    np.testing.assert_allclose(out, _numpy_bn(x, 2.0, 0.5, moving_mean, moving_var, 1e-3), rtol=1e-10)
    np.testing.assert_allclose(layer.get_weights()[2], moving_mean)  # eval does not update


def test_batch_normalization_eval_on_images_normalises_the_last_axis_and_passes_gradients():
    # Inference mode folds the statistics into one scale and shift per channel (torch's kernel);
    # a frozen layer inside a model being fine-tuned still passes the gradient to its input.
    rng = np.random.default_rng(6)
    layer = built(BatchNormalization(epsilon=0.01), 4).double()
    stats = [rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)]
    layer.set_weights(stats)
    layer.eval()
    x = as_t(rng.normal(size=(2, 3, 5, 4)), torch.float64).requires_grad_()
    out = layer(x)
    np.testing.assert_allclose(out.detach().numpy(), _numpy_bn(x.detach().numpy(), *stats, 0.01), rtol=1e-10)
    out.sum().backward()
    scale = stats[0] / np.sqrt(stats[3] + 0.01)
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(scale, x.shape), rtol=1e-10)


def test_batch_normalization_defaults_and_trainable_false_runs_in_inference_mode():
    layer = BatchNormalization()
    assert (layer.momentum, layer.epsilon, layer.center, layer.scale) == (0.99, 1e-3, True, True)
    built(layer, 2)
    assert len(layer.trainable_weights) == 2 and len(layer.non_trainable_weights) == 2
    assert layer.count_params() == 8
    layer.trainable = False  # Keras 3: a frozen BatchNormalization uses its moving statistics
    layer.train()
    x = torch.randn(8, 2) * 5 + 3
    np.testing.assert_allclose(layer(x).numpy(), (x / np.sqrt(1 + 1e-3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.get_weights()[2], 0.0)


def test_batch_normalization_backward_matches_analytic_formula():
    rng = np.random.default_rng(5)
    n, eps = 10, 1e-3
    x, g = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    layer = built(BatchNormalization(epsilon=eps), 3).double()
    layer.set_weights([gamma, beta, np.zeros(3), np.ones(3)])
    layer.train()
    xt = torch.tensor(x, requires_grad=True)
    (layer(xt) * torch.tensor(g)).sum().backward()

    inv_std = 1 / np.sqrt(x.var(0) + eps)
    x_hat = (x - x.mean(0)) * inv_std
    dx = gamma * inv_std / n * (n * g - g.sum(0) - x_hat * (g * x_hat).sum(0))
    np.testing.assert_allclose(xt.grad.numpy(), dx, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(layer.gamma.grad.numpy(), (g * x_hat).sum(0), rtol=1e-9)
    np.testing.assert_allclose(layer.beta.grad.numpy(), g.sum(0), rtol=1e-9)


def test_batch_normalization_without_center_and_scale_has_no_parameters():
    layer = built(BatchNormalization(center=False, scale=False), 3)
    assert layer.trainable_weights == []
    layer.train()
    x = torch.randn(20, 3) * 4 + 1
    out = layer(x)
    np.testing.assert_allclose(out.mean(0).numpy(), 0.0, atol=1e-5)


@pytest.mark.parametrize("kwargs, fragment", [({"axis": 1}, "axis=-1"), ({"momentum": 1.5}, "momentum"),
                                              ({"epsilon": 0}, "epsilon")])
def test_batch_normalization_rejects_bad_arguments(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        BatchNormalization(**kwargs)


# ---------------------------------------------------------------------------------------------
# Normalization


def test_normalization_adapt_matches_numpy_and_standardises():
    rng = np.random.default_rng(6)
    x = rng.normal(loc=[10.0, -5.0, 0.0], scale=[2.0, 0.1, 30.0], size=(100, 3))
    layer = Normalization()
    layer.adapt(x)
    assert layer.adapted and layer.built
    np.testing.assert_allclose(layer.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.variance.numpy(), x.var(0), rtol=1e-4)  # biased, as Keras
    out = layer(as_t(x)).numpy()
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-4)
    assert layer.trainable_weights == [] and layer.count_params() == 6


def test_normalization_adapt_accepts_frames_and_keeps_constant_columns_finite():
    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 4.0, 4.0]})
    layer = Normalization()
    layer.adapt(frame)
    out = layer(as_t(frame.to_numpy())).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, 1], 0.0)
    np.testing.assert_allclose(out[:, 0], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2 / 3), rtol=1e-6)


def test_normalization_with_given_mean_and_variance_and_invert():
    layer = built(Normalization(mean=[1.0, 2.0], variance=[4.0, 9.0]), 2)
    x = as_t([[3.0, 8.0]])
    np.testing.assert_allclose(layer(x).numpy(), [[1.0, 2.0]])
    inverse = built(Normalization(mean=[1.0, 2.0], variance=[4.0, 9.0], invert=True), 2)
    np.testing.assert_allclose(inverse(layer(x)).numpy(), x.numpy())


def test_normalization_errors():
    with pytest.raises(ConfigError, match="pass both `mean` and `variance`"):
        Normalization(mean=[0.0])
    layer = Normalization()
    layer.adapt(np.ones((4, 3)))
    with pytest.raises(ConfigError, match="adapt\\(\\) received 2 features"):
        layer.adapt(np.ones((4, 2)))
    with pytest.raises(DataError, match="NaN"):
        Normalization().adapt(np.array([[1.0], [np.nan]]))


# ---------------------------------------------------------------------------------------------
# Input


def test_input_declares_shape_and_requires_it():
    # As in Keras, Input returns a symbolic tensor with the batch axis first; its layer is an InputLayer.
    tensor = Input(shape=(9,))
    assert isinstance(tensor.node.layer, InputLayer) and tensor.shape == (None, 9)
    assert Input((4,)).shape == (None, 4)
    with pytest.raises(ConfigError, match="`shape` is required"):
        Input()
