"""Tests for trainwell.regularizers: penalties vs numpy, gradients, get/serialize, errors."""

import json

import numpy as np
import pytest
import torch

from trainwell import regularizers as R
from trainwell._errors import ConfigError, ConfigTypeError


def _weight(shape=(6, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize(
    "reg, formula",
    [
        (R.L1(0.03), lambda w: 0.03 * np.abs(w).sum()),
        (R.L2(0.02), lambda w: 0.02 * (w**2).sum()),
        (R.L1L2(l1=0.01, l2=0.05), lambda w: 0.01 * np.abs(w).sum() + 0.05 * (w**2).sum()),
        (R.L1L2(l2=0.05), lambda w: 0.05 * (w**2).sum()),
        (R.L1L2(l1=0.04), lambda w: 0.04 * np.abs(w).sum()),
        (R.L1L2(), lambda w: 0.0),
    ],
    ids=repr,
)
@pytest.mark.parametrize("shape", [(6, 5), (7,), (2, 3, 4)])
def test_penalty_matches_numpy(reg, formula, shape):
    w = _weight(shape)
    out = reg(torch.tensor(w))
    assert out.shape == () and out.dtype == torch.float64
    np.testing.assert_allclose(out.item(), formula(w), rtol=1e-12, atol=1e-15)


def test_hand_worked_values():
    w = torch.tensor([3.0, -4.0])
    # L2 has no 1/2 factor in Keras: 0.01 * (9 + 16) = 0.25.
    assert R.L2(0.01)(w).item() == pytest.approx(0.25)
    assert R.L1(0.1)(w).item() == pytest.approx(0.7)
    assert R.L1L2(l1=0.1, l2=0.01)(w).item() == pytest.approx(0.95)
    out = R.L2()(w)
    assert out.dtype == torch.float32 and out.item() == pytest.approx(0.25)


def test_gradients_follow_formulas():
    w = torch.tensor(_weight(), requires_grad=True)
    (R.L1L2(l1=0.1, l2=0.3)(w)).backward()
    expected = 0.1 * np.sign(w.detach().numpy()) + 2 * 0.3 * w.detach().numpy()
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-12)


def test_zero_factors_give_zero_with_weight_dtype():
    out = R.L1L2()(torch.ones(3, dtype=torch.float64))
    assert out.item() == 0.0 and out.dtype == torch.float64 and out.shape == ()
    assert R.Regularizer()(torch.ones(2)).item() == 0.0


def test_keras_defaults_and_lowercase_aliases():
    assert R.L1().l1 == 0.01
    assert R.L2().l2 == 0.01
    assert (R.L1L2().l1, R.L1L2().l2) == (0.0, 0.0)
    assert isinstance(R.l2(0.001), R.L2) and R.l2(0.001).l2 == 0.001
    assert isinstance(R.l1(0.5), R.L1)
    reg = R.l1_l2(l1=1e-5, l2=1e-4)
    assert isinstance(reg, R.L1L2) and reg.get_config() == {"l1": 1e-5, "l2": 1e-4}


def test_none_factor_means_default():
    assert R.L2(None).l2 == 0.01
    assert R.L1L2(l1=None, l2=0.2).get_config() == {"l1": 0.0, "l2": 0.2}


@pytest.mark.parametrize("reg", [R.L1(0.2), R.L2(0.003), R.L1L2(0.1, 0.2), R.L1L2()], ids=repr)
def test_config_round_trip(reg):
    config = reg.get_config()
    rebuilt = type(reg).from_config(config)
    assert type(rebuilt) is type(reg) and rebuilt.get_config() == config
    saved = json.loads(json.dumps(R.serialize(reg)))
    assert saved == {"class_name": type(reg).__name__, "config": config}
    again = R.get(saved)
    w = torch.tensor(_weight())
    assert type(again) is type(reg) and torch.equal(again(w), reg(w))


@pytest.mark.parametrize(
    "name, cls",
    [
        ("l1", R.L1), ("l2", R.L2), ("l1_l2", R.L1L2),
        ("L1", R.L1), ("L2", R.L2), ("L1L2", R.L1L2), ("l1l2", R.L1L2),
    ],
)
def test_get_by_name(name, cls):
    reg = R.get(name)
    assert type(reg) is cls and reg.get_config() == cls().get_config()


def test_get_other_identifiers():
    assert R.get(None) is None
    reg = R.L2(0.5)
    assert R.get(reg) is reg
    assert type(R.get(R.L1)) is R.L1
    assert R.get({"class_name": "l2", "config": {"l2": 0.2}}).l2 == 0.2

    def custom(w):
        return w.pow(4).sum()

    assert R.get(custom) is custom


def test_get_unknown_name_lists_and_suggests():
    with pytest.raises(ConfigError, match=r"Did you mean 'l2'\?") as info:
        R.get("l22", argument="kernel_regularizer")
    message = str(info.value)
    assert "`kernel_regularizer`" in message and "l1, l1_l2, l2" in message


@pytest.mark.parametrize("bad", [0.01, 2, ["l2"]])
def test_get_wrong_type(bad):
    with pytest.raises(ConfigTypeError, match="expects a regularizer") as info:
        R.get(bad)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"config": {"l2": 0.1}}, "class_name"),
        ({"class_name": "L2", "config": {"l1": 0.1}}, "L2.from_config"),
        ({"class_name": "L3", "config": {}}, "unknown regularizer 'L3'"),
    ],
)
def test_get_bad_dict(bad, fragment):
    with pytest.raises(ConfigError, match=fragment):
        R.get(bad)


def test_serialize_none_and_names():
    assert R.serialize(None) is None
    assert R.serialize("l2") == {"class_name": "L2", "config": {"l2": 0.01}}


def test_serialize_custom_is_refused():
    with pytest.raises(ConfigError, match="custom regularizers cannot be saved"):
        R.serialize(lambda w: w.sum())


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: R.L1(-0.1), "l1"),
        (lambda: R.L2(-1e-4), "l2"),
        (lambda: R.L2(float("nan")), "l2"),
        (lambda: R.L2(float("inf")), "l2"),
        (lambda: R.L2("0.01"), "l2"),
        (lambda: R.L1L2(l1=-0.5), "l1"),
        (lambda: R.L1L2(l2=True), "l2"),
        (lambda: R.l1_l2(l1=0.1, l2=-0.1), "l2"),
    ],
)
def test_invalid_factors_name_the_argument(build, argument):
    with pytest.raises(ConfigError, match=f"`{argument}` expects a number >= 0") as info:
        build()
    assert isinstance(info.value, ValueError)
