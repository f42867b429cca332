"""Tests for trainwell.activations: values vs numpy formulas, gradients, get/serialize."""

import math

import numpy as np
import pytest
import torch

from trainwell import activations
from trainwell._errors import ConfigError, ConfigTypeError

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
_erf = np.vectorize(math.erf)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# Reference formulas written from the definitions, independent of torch.
REFERENCE = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1.0),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1.0)),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "hard_silu": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_swish": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "softmax": _softmax,
    "log_softmax": lambda x: np.log(_softmax(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "exponential": np.exp,
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
}

# Differentiable everywhere we sample (points are kept away from 0 where a kink sits).
SMOOTH = [
    "linear", "elu", "selu", "gelu", "silu", "mish", "tanh", "sigmoid", "softmax", "log_softmax",
    "softplus", "softsign", "exponential", "log_sigmoid",
]


def _points():
    # Includes both sides of every kink (0, +-3 for hard_sigmoid, 6 for relu6) and the tails.
    return np.linspace(-8.0, 8.0, 65).reshape(5, 13)


def test_reference_table_covers_every_name():
    assert set(REFERENCE) == set(activations.ALL)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_numpy_formula_float64(name):
    x = _points()
    got = activations.get(name)(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, REFERENCE[name](x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_float32_in_float32_out(name):
    x = torch.tensor(_points(), dtype=torch.float32)
    out = activations.get(name)(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), REFERENCE[name](_points()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SMOOTH)
def test_gradient_matches_finite_differences(name):
    gen = torch.Generator().manual_seed(0)
    magnitude = 0.2 + 2.0 * torch.rand(3, 4, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(3, 4, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    x = (sign * magnitude).requires_grad_(True)
    assert torch.autograd.gradcheck(activations.get(name), (x,), eps=1e-6, atol=1e-7)


def test_gelu_approximate_uses_tanh_formula():
    x = _points()
    expected = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    got = activations.gelu(torch.tensor(x), approximate=True).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_softmax_and_log_softmax_axis():
    x = _points()
    t = torch.tensor(x)
    np.testing.assert_allclose(activations.softmax(t, axis=0).numpy(), _softmax(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(activations.softmax(t, axis=0).sum(0).numpy(), np.ones(13), rtol=1e-12)
    np.testing.assert_allclose(
        activations.log_softmax(t, axis=0).numpy(), np.log(_softmax(x, axis=0)), rtol=1e-12, atol=1e-12
    )


def test_leaky_relu_and_elu_arguments():
    x = torch.tensor([-2.0, -0.5, 0.0, 3.0], dtype=torch.float64)
    np.testing.assert_allclose(activations.leaky_relu(x, negative_slope=0.1).numpy(), [-0.2, -0.05, 0.0, 3.0])
    expected = [0.5 * (math.exp(-2.0) - 1), 0.5 * (math.exp(-0.5) - 1), 0.0, 3.0]
    np.testing.assert_allclose(activations.elu(x, alpha=0.5).numpy(), expected, rtol=1e-12)


def _keras_relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    # Keras's definition: x above the threshold (capped at max_value), a leak below it.
    out = np.where(x > threshold, x, negative_slope * (x - threshold))
    return out if max_value is None else np.minimum(out, max_value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"max_value": 6.0},
        {"max_value": 2.5},
        {"negative_slope": 0.1},
        {"threshold": 1.0},
        {"negative_slope": 0.3, "threshold": -1.0, "max_value": 4.0},
    ],
)
def test_relu_keras_arguments(kwargs):
    x = _points()
    got = activations.relu(torch.tensor(x), **kwargs).numpy()
    np.testing.assert_allclose(got, _keras_relu(x, **kwargs), rtol=1e-12, atol=1e-12)


def test_relu_hand_worked_example():
    x = torch.tensor([-3.0, 0.5, 1.5, 10.0])
    # threshold 1: -3 -> 0.1 * (-3 - 1) = -0.4; 0.5 -> 0.1 * (0.5 - 1) = -0.05; 1.5 stays; 10 -> cap 5.
    out = activations.relu(x, negative_slope=0.1, max_value=5.0, threshold=1.0)
    np.testing.assert_allclose(out.numpy(), [-0.4, -0.05, 1.5, 5.0], rtol=1e-6)


def test_relu_threshold_without_leak_maps_minus_infinity_to_zero():
    out = activations.relu(torch.tensor([-math.inf, 0.5, 2.0]), threshold=1.0)
    assert out.tolist() == [0.0, 0.0, 2.0]


def test_get_none_string_and_callable():
    assert activations.get(None) is activations.linear
    assert activations.get("relu") is activations.relu
    assert activations.get("  ReLU ") is activations.relu
    assert activations.get("SWISH") is activations.silu
    assert activations.get("hard_swish") is activations.hard_silu

    def custom(x):
        return 2 * x

    assert activations.get(custom) is custom
    assert activations.get(torch.relu) is torch.relu


def test_unknown_name_lists_choices_and_suggests():
    with pytest.raises(ConfigError, match=r"Did you mean 'relu'\?") as info:
        activations.get("rleu")
    message = str(info.value)
    assert "`activation`" in message and "'rleu'" in message
    assert "trainwell.activations.names() lists all" in message and "softmax" not in message
    for name in ("relu", "sigmoid", "softmax", "tanh"):
        assert name in activations.names()
    assert isinstance(info.value, ValueError)


def test_unknown_name_uses_given_argument_name():
    with pytest.raises(ConfigError, match="`output_activation`"):
        activations.get("sigmod", argument="output_activation")


@pytest.mark.parametrize("bad", [3, 2.5, ["relu"], {"name": "relu"}])
def test_get_wrong_type(bad):
    with pytest.raises(ConfigTypeError, match="expects an activation name") as info:
        activations.get(bad)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_serialize_round_trip(name):
    fn = activations.get(name)
    saved = activations.serialize(fn)
    assert saved in activations.ALL
    assert activations.get(saved) is fn


def test_serialize_canonical_names():
    assert activations.serialize(activations.swish) == "silu"
    assert activations.serialize("Swish") == "silu"
    assert activations.serialize(None) == "linear"
    assert activations.serialize(torch.relu) == "relu"
    assert activations.serialize(torch.tanh) == "tanh"
    assert activations.serialize(torch.nn.functional.gelu) == "gelu"


def test_serialize_custom_callable_explains():
    with pytest.raises(ConfigError, match="custom callables cannot be saved") as info:
        activations.serialize(lambda x: x * 2)
    assert "named activation" in str(info.value)


def test_serialize_unhashable_callable_object():
    class Scaled:
        __hash__ = None

        def __call__(self, x):
            return 3 * x

    with pytest.raises(ConfigError, match="custom callables"):
        activations.serialize(Scaled())


def test_family_sets_are_known_names():
    assert activations.RELU_FAMILY == {"relu", "relu6"}
    assert activations.SATURATING == {"tanh", "sigmoid", "hard_sigmoid", "softsign"}
    assert activations.RELU_FAMILY <= set(activations.ALL)
    assert activations.SATURATING <= set(activations.ALL)


def test_keras_default_slopes():
    # Keras 3 defaults, which differ from torch's (leaky_relu 0.2 vs 0.01).
    x = torch.tensor([-1.0])
    assert activations.leaky_relu(x).item() == pytest.approx(-0.2)
    assert activations.hard_sigmoid(torch.tensor([1.0])).item() == pytest.approx(1.0 / 6.0 + 0.5)
