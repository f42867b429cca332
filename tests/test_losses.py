"""Tests for trainwell.losses: every loss against a numpy formula, clipping, logits, weights,
reductions, gradients, names and serialisation."""

import json

import numpy as np
import pytest
import torch

from trainwell import losses
from trainwell._errors import ConfigError, ConfigTypeError, DataError

EPS = 1e-7
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------
# numpy reference formulas (Keras's, written out)
# ---------------------------------------------------------------------------------------------


def np_bce(y, p, label_smoothing=0.0):
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=-1)


def np_cce(y, p, label_smoothing=0.0):
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    p = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
    return -(y * np.log(p)).sum(axis=-1)


def np_huber(y, p, delta=1.0):
    e = np.abs(p - y)
    return np.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2).mean(axis=-1)


def np_hinge(y, p):
    if np.all((y == 0) | (y == 1)):
        y = 2 * y - 1
    return np.maximum(1 - y * p, 0).mean(axis=-1)


def np_kld(y, p):
    y, p = np.clip(y, EPS, 1), np.clip(p, EPS, 1)
    return (y * np.log(y / p)).sum(axis=-1)


NP_REFERENCE = {
    "mean_squared_error": lambda y, p: ((p - y) ** 2).mean(axis=-1),
    "mean_absolute_error": lambda y, p: np.abs(p - y).mean(axis=-1),
    "mean_absolute_percentage_error": lambda y, p: 100 * np.abs((y - p) / np.maximum(np.abs(y), EPS)).mean(
        axis=-1
    ),
    "mean_squared_logarithmic_error": lambda y, p: (
        (np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(y, EPS) + 1)) ** 2
    ).mean(axis=-1),
    "huber": np_huber,
    "log_cosh": lambda y, p: np.log(np.cosh(p - y)).mean(axis=-1),
    "binary_crossentropy": np_bce,
    "categorical_crossentropy": np_cce,
    "hinge": np_hinge,
    "kl_divergence": np_kld,
    "poisson": lambda y, p: (p - y * np.log(p + EPS)).mean(axis=-1),
}


def sample_pair(name, shape=(6, 4)):
    """Targets and predictions in each loss's natural domain, float64."""
    if name in ("binary_crossentropy", "hinge"):
        y = RNG.integers(0, 2, size=shape).astype(np.float64)
        p = RNG.uniform(0.05, 0.95, size=shape)
    elif name in ("categorical_crossentropy", "kl_divergence"):
        y = np.eye(shape[-1])[RNG.integers(0, shape[-1], size=shape[0])]
        p = RNG.dirichlet(np.ones(shape[-1]), size=shape[0])
        if name == "kl_divergence":
            y = RNG.dirichlet(np.ones(shape[-1]), size=shape[0])
    elif name == "poisson":
        y = RNG.poisson(3.0, size=shape).astype(np.float64)
        p = RNG.uniform(0.5, 5.0, size=shape)
    else:
        y = RNG.uniform(0.5, 3.0, size=shape)
        p = y + RNG.normal(0.0, 1.5, size=shape)
        if name == "mean_squared_logarithmic_error":
            p = np.abs(p)
    return y, p


def loss_fn(name):
    return getattr(losses, name)


# ---------------------------------------------------------------------------------------------
# Per-sample values against numpy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NP_REFERENCE))
def test_per_sample_matches_numpy(name):
    y, p = sample_pair(name)
    got = loss_fn(name)(torch.tensor(y), torch.tensor(p))
    assert got.shape == (6,)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), NP_REFERENCE[name](y, p), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(NP_REFERENCE))
def test_float32_inputs_give_float32_close_to_numpy(name):
    y, p = sample_pair(name)
    got = loss_fn(name)(torch.tensor(y, dtype=torch.float32), torch.tensor(p, dtype=torch.float32))
    assert got.dtype == torch.float32
    y32, p32 = (a.astype(np.float32).astype(np.float64) for a in (y, p))
    expected = NP_REFERENCE[name](y32, p32)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_sparse_categorical_matches_numpy_and_accepts_float_labels():
    p = RNG.dirichlet(np.ones(5), size=7)
    labels = RNG.integers(0, 5, size=7)
    expected = -np.log(np.clip(p[np.arange(7), labels], EPS, 1 - EPS))
    for y in (torch.tensor(labels), torch.tensor(labels, dtype=torch.float64),
              torch.tensor(labels, dtype=torch.float32).reshape(-1, 1)):
        got = losses.sparse_categorical_crossentropy(y, torch.tensor(p))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_sparse_equals_categorical_on_one_hot():
    p = torch.tensor(RNG.uniform(0.1, 2.0, size=(5, 3)))  # unnormalised on purpose
    labels = torch.tensor([0, 2, 1, 1, 0])
    one_hot = torch.nn.functional.one_hot(labels, 3).double()
    torch.testing.assert_close(losses.sparse_categorical_crossentropy(labels, p),
                               losses.categorical_crossentropy(one_hot, p))


def test_huber_delta_and_hand_worked_values():
    # errors 0.5 (quadratic: 0.125) and 3 (linear with delta=2: 2 * 3 - 0.5 * 4 = 4)
    got = losses.huber(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 3.0]]), delta=2.0)
    assert got.tolist() == [pytest.approx((0.125 + 4.0) / 2)]


def test_log_cosh_large_errors_stay_finite():
    got = losses.log_cosh(torch.tensor([[0.0]]), torch.tensor([[1000.0]]))
    assert got.item() == pytest.approx(1000.0 - np.log(2.0))


def test_hinge_maps_zero_one_labels_but_keeps_minus_one_one():
    p = torch.tensor([[0.3], [-0.4]])
    zero_one = losses.hinge(torch.tensor([[1.0], [0.0]]), p)
    plus_minus = losses.hinge(torch.tensor([[1.0], [-1.0]]), p)
    torch.testing.assert_close(zero_one, plus_minus)
    torch.testing.assert_close(plus_minus, torch.tensor([0.7, 0.6]))


def test_mape_uses_epsilon_for_zero_targets():
    one = torch.tensor([[1.0]], dtype=torch.float64)
    got = losses.mean_absolute_percentage_error(torch.tensor([[0.0]]), one)
    assert got.item() == pytest.approx(100.0 / EPS)


# ---------------------------------------------------------------------------------------------
# Clipping, renormalisation, label smoothing, logits
# ---------------------------------------------------------------------------------------------


def test_binary_crossentropy_clips_at_zero_and_one():
    y = torch.tensor([[1.0], [0.0], [0.0], [1.0]], dtype=torch.float64)
    p = torch.tensor([[0.0], [1.0], [0.0], [1.0]], dtype=torch.float64)
    got = losses.binary_crossentropy(y, p)
    big = -np.log(EPS)  # float64: log(1 - (1 - 1e-7)) == log(1e-7) up to rounding
    np.testing.assert_allclose(got.numpy(), [big, big, -np.log(1 - EPS), -np.log(1 - EPS)], rtol=1e-8)
    assert torch.isfinite(got).all()


def test_binary_crossentropy_float32_clip_bound_is_float32_one_minus_eps():
    got = losses.binary_crossentropy(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    upper = np.float32(1 - EPS)  # float32 rounds 1 - 1e-7 to 1 - 2**-23
    assert got.item() == pytest.approx(-np.log(1 - np.float64(upper)), rel=1e-5)


def test_categorical_crossentropy_clips_zero_probability():
    got = losses.categorical_crossentropy(torch.tensor([[0.0, 1.0]], dtype=torch.float64),
                                          torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert got.item() == pytest.approx(-np.log(EPS))
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    sparse = losses.sparse_categorical_crossentropy(torch.tensor([1]), p)
    assert sparse.item() == pytest.approx(-np.log(EPS))


def test_categorical_crossentropy_renormalises_predictions():
    y = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    scaled = losses.categorical_crossentropy(y, torch.tensor([[2.0, 6.0, 2.0]], dtype=torch.float64))
    assert scaled.item() == pytest.approx(-np.log(0.6))


def test_label_smoothing_hand_worked():
    # BCE: y=1, s=0.2 -> target 0.9; p=0.8 -> -(0.9 log 0.8 + 0.1 log 0.2)
    bce = losses.binary_crossentropy(torch.tensor([[1.0]]), torch.tensor([[0.8]], dtype=torch.float64),
                                     label_smoothing=0.2)
    assert bce.item() == pytest.approx(-(0.9 * np.log(0.8) + 0.1 * np.log(0.2)))
    # CCE over 4 classes, s=0.4 -> targets [0.1, 0.7, 0.1, 0.1]
    p = np.array([[0.1, 0.6, 0.2, 0.1]])
    y = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    cce = losses.categorical_crossentropy(y, torch.tensor(p), label_smoothing=0.4)
    assert cce.item() == pytest.approx(-(np.array([0.1, 0.7, 0.1, 0.1]) * np.log(p)).sum())
    y, q = sample_pair("binary_crossentropy")
    smoothed = losses.BinaryCrossentropy(label_smoothing=0.3)(torch.tensor(y), torch.tensor(q))
    assert smoothed.item() == pytest.approx(np_bce(y, q, 0.3).mean())


def test_from_logits_matches_probability_path_away_from_clip():
    logits = torch.tensor(RNG.normal(0.0, 2.0, size=(8, 5)))
    one_hot = torch.nn.functional.one_hot(torch.tensor(RNG.integers(0, 5, 8)), 5).double()
    torch.testing.assert_close(losses.categorical_crossentropy(one_hot, logits, from_logits=True),
                               losses.categorical_crossentropy(one_hot, torch.softmax(logits, -1)))
    torch.testing.assert_close(
        losses.categorical_crossentropy(one_hot, logits, from_logits=True, label_smoothing=0.1),
        losses.categorical_crossentropy(one_hot, torch.softmax(logits, -1), label_smoothing=0.1))
    labels = one_hot.argmax(-1)
    torch.testing.assert_close(losses.sparse_categorical_crossentropy(labels, logits, from_logits=True),
                               losses.sparse_categorical_crossentropy(labels, torch.softmax(logits, -1)))
    binary = (logits > 0).double()
    torch.testing.assert_close(
        losses.binary_crossentropy(binary, logits, from_logits=True, label_smoothing=0.1),
        losses.binary_crossentropy(binary, torch.sigmoid(logits), label_smoothing=0.1))


def test_from_logits_is_not_clipped():
    # A logit of -40 for the true class: the exact loss is ~40, the clipped probability path caps at ~16.1.
    got = losses.binary_crossentropy(torch.tensor([[1.0]]), torch.tensor([[-40.0]]), from_logits=True)
    assert got.item() == pytest.approx(40.0, rel=1e-6)


def test_half_precision_predictions_are_computed_in_float32():
    got = losses.binary_crossentropy(torch.tensor([[0.0]]), torch.tensor([[1.0]], dtype=torch.float16))
    assert got.dtype == torch.float32 and torch.isfinite(got).all()


# ---------------------------------------------------------------------------------------------
# Loss objects: weights and reductions
# ---------------------------------------------------------------------------------------------


def test_sample_weight_and_reductions():
    y, p = sample_pair("mean_squared_error", shape=(5, 3))
    w = np.array([1.0, 0.0, 2.0, 0.5, 1.5])
    per_sample = NP_REFERENCE["mean_squared_error"](y, p)
    yt, pt, wt = torch.tensor(y), torch.tensor(p), torch.tensor(w)
    weighted_sum = (per_sample * w).sum()
    mse = losses.MeanSquaredError
    assert mse()(yt, pt).item() == pytest.approx(per_sample.mean())
    # Keras's default divides the weighted sum by the batch size, not by the sum of weights.
    assert mse()(yt, pt, wt).item() == pytest.approx(weighted_sum / 5)
    assert mse(reduction="mean")(yt, pt, wt).item() == pytest.approx(weighted_sum / 5)
    assert mse(reduction="sum")(yt, pt, wt).item() == pytest.approx(weighted_sum)
    by_weight = mse(reduction="mean_with_sample_weight")(yt, pt, wt)
    assert by_weight.item() == pytest.approx(weighted_sum / w.sum())
    np.testing.assert_allclose(mse(reduction="none")(yt, pt, wt).numpy(), per_sample * w)
    np.testing.assert_allclose(mse(reduction=None)(yt, pt).numpy(), per_sample)
    # A (batch, 1) weight column is lined up with the (batch,) losses.
    assert mse()(yt, pt, wt.reshape(-1, 1)).item() == pytest.approx(weighted_sum / 5)


def test_loss_call_returns_zero_dim_tensor_with_gradient():
    p = torch.tensor([[0.3], [0.6]], requires_grad=True)
    value = losses.get("binary_crossentropy")(torch.tensor([1.0, 0.0]), p)
    assert value.ndim == 0
    value.backward()
    assert p.grad is not None and p.grad.shape == (2, 1)


def test_mean_with_sample_weight_all_zero_weights_gives_zero():
    loss = losses.MeanSquaredError(reduction="mean_with_sample_weight")
    assert loss(torch.ones(3, 1), torch.zeros(3, 1), torch.zeros(3)).item() == 0.0


def test_bad_sample_weight_shape_raises():
    with pytest.raises(DataError, match="sample_weight"):
        losses.MeanSquaredError()(torch.ones(4, 1), torch.zeros(4, 1), torch.ones(3))


def test_bad_reduction_suggests_closest():
    with pytest.raises(ConfigError, match="sum_over_batch_size"):
        losses.MeanSquaredError(reduction="sum_over_batch")


def test_shape_alignment_and_mismatch():
    p = torch.tensor([[0.2], [0.7]])
    flat = losses.binary_crossentropy(torch.tensor([0.0, 1.0]), p)
    column = losses.binary_crossentropy(torch.tensor([[0.0], [1.0]]), p)
    both_flat = losses.binary_crossentropy(torch.tensor([0.0, 1.0]), p.reshape(-1))
    torch.testing.assert_close(flat, column)
    torch.testing.assert_close(both_flat, column)
    assert flat.shape == (2,)
    with pytest.raises(DataError, match="does not match"):
        losses.mean_squared_error(torch.ones(4, 3), torch.ones(4, 2))
    with pytest.raises(DataError, match="categorical_crossentropy"):
        losses.sparse_categorical_crossentropy(torch.ones(4, 3), torch.ones(4, 3) / 3)


@pytest.mark.parametrize("value", [1.5, -0.1, "0.1", None])
def test_bad_label_smoothing(value):
    with pytest.raises(ConfigError, match="label_smoothing"):
        losses.BinaryCrossentropy(label_smoothing=value)


@pytest.mark.parametrize("delta", [0, -1.0, None, "1"])
def test_bad_huber_delta(delta):
    with pytest.raises(ConfigError, match="positive number"):
        losses.Huber(delta=delta)


# ---------------------------------------------------------------------------------------------
# Gradients in float64
# ---------------------------------------------------------------------------------------------

SMOOTH = [
    ("mean_squared_error", {}),
    ("mean_absolute_error", {}),
    ("mean_absolute_percentage_error", {}),
    ("mean_squared_logarithmic_error", {}),
    ("huber", {"delta": 0.7}),
    ("log_cosh", {}),
    ("binary_crossentropy", {}),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    ("categorical_crossentropy", {"label_smoothing": 0.1}),
    ("categorical_crossentropy", {"from_logits": True}),
    ("kl_divergence", {}),
    ("poisson", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), SMOOTH, ids=[f"{n}-{sorted(k)}" for n, k in SMOOTH])
def test_gradcheck(name, kwargs):
    y, p = sample_pair(name, shape=(3, 4))
    if kwargs.get("from_logits"):
        p = RNG.normal(0.0, 1.5, size=p.shape)
    if name == "huber":  # keep errors off the kink at |error| == delta
        p = y + np.where(RNG.uniform(size=y.shape) > 0.5, 1.0, -1.0) * RNG.choice([0.2, 1.5], size=y.shape)
    pred = torch.tensor(p, requires_grad=True)
    target = torch.tensor(y)
    fn = loss_fn(name)
    assert torch.autograd.gradcheck(lambda q: fn(target, q, **kwargs), (pred,), eps=1e-6, atol=1e-5)


def test_gradcheck_sparse_categorical():
    labels = torch.tensor([2, 0, 1])
    probs = torch.tensor(RNG.dirichlet(np.ones(3), size=3), requires_grad=True)
    logits = torch.tensor(RNG.normal(size=(3, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: losses.sparse_categorical_crossentropy(labels, q), (probs,))
    assert torch.autograd.gradcheck(
        lambda q: losses.sparse_categorical_crossentropy(labels, q, from_logits=True), (logits,))


def test_fused_logits_gradient_equals_softmax_then_probability_gradient():
    logits = torch.tensor(RNG.normal(size=(4, 3)), requires_grad=True)
    one_hot = torch.eye(3, dtype=torch.float64)[[0, 2, 1, 1]]
    cce = losses.CategoricalCrossentropy
    (fused,) = torch.autograd.grad(cce(from_logits=True)(one_hot, logits), logits)
    (plain,) = torch.autograd.grad(cce()(one_hot, torch.softmax(logits, -1)), logits)
    torch.testing.assert_close(fused, plain)
    # The closed form: (softmax - y) / batch
    torch.testing.assert_close(fused, (torch.softmax(logits, -1) - one_hot).detach() / 4)


# ---------------------------------------------------------------------------------------------
# Names, get, serialize, kind, with_logits
# ---------------------------------------------------------------------------------------------

ALIASES = {
    "mean_squared_error": "MeanSquaredError", "mse": "MeanSquaredError", "MSE": "MeanSquaredError",
    "mean_absolute_error": "MeanAbsoluteError", "mae": "MeanAbsoluteError",
    "mape": "MeanAbsolutePercentageError", "msle": "MeanSquaredLogarithmicError",
    "huber": "Huber", "huber_loss": "Huber", "log_cosh": "LogCosh", "logcosh": "LogCosh",
    "binary_crossentropy": "BinaryCrossentropy", "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy", "hinge": "Hinge",
    "kl_divergence": "KLDivergence", "kld": "KLDivergence", "poisson": "Poisson",
    "BinaryCrossentropy": "BinaryCrossentropy",
}


@pytest.mark.parametrize(("identifier", "class_name"), sorted(ALIASES.items()))
def test_get_names_and_aliases(identifier, class_name):
    loss = losses.get(identifier)
    assert type(loss).__name__ == class_name
    assert isinstance(loss, losses.Loss)


def test_default_names_match_keras():
    names = {cls.__name__: cls().name for cls in losses._CLASSES.values()}
    assert names["Huber"] == "huber_loss"
    assert names["LogCosh"] == "log_cosh"
    assert names["KLDivergence"] == "kl_divergence"
    assert names["SparseCategoricalCrossentropy"] == "sparse_categorical_crossentropy"


def test_get_other_identifiers():
    instance = losses.Huber(delta=2.0)
    assert losses.get(instance) is instance
    assert losses.get(None) is None
    assert isinstance(losses.get(losses.Poisson), losses.Poisson)
    assert isinstance(losses.get(losses.binary_crossentropy), losses.BinaryCrossentropy)
    from_dict = losses.get({"class_name": "Huber", "config": {"delta": 2.0}})
    assert isinstance(from_dict, losses.Huber) and from_dict.get_config()["delta"] == 2.0

    def my_loss(y_true, y_pred):
        return (y_true - y_pred).abs().sum(dim=-1)

    wrapped = losses.get(my_loss)
    assert wrapped.name == "my_loss" and wrapped.fn is my_loss
    assert wrapped(torch.ones(2, 3), torch.zeros(2, 3)).item() == 3.0
    assert losses.kind(my_loss) == "regression"


@pytest.mark.parametrize(("typo", "suggestion"), [
    ("mean_squared_eror", "mean_squared_error"),
    ("binary_crossentropi", "binary_crossentropy"),
    ("sparse_categorical_crosentropy", "sparse_categorical_crossentropy"),
])
def test_unknown_name_suggests_closest(typo, suggestion):
    with pytest.raises(ConfigError, match=f"Did you mean '{suggestion}'"):
        losses.get(typo)


def test_bad_identifiers():
    with pytest.raises(ConfigTypeError, match="loss name"):
        losses.get(3)
    with pytest.raises(ConfigError, match="class_name"):
        losses.get({"config": {}})
    with pytest.raises(ConfigError, match="unknown loss"):
        losses.get({"class_name": "Nope", "config": {}})


@pytest.mark.parametrize("cls", list(losses._CLASSES.values()), ids=list(losses._CLASSES))
def test_config_round_trip(cls):
    loss = cls(reduction="sum", name="custom_name")
    restored = losses.get(losses.serialize(loss))
    assert type(restored) is cls
    assert restored.get_config() == loss.get_config()
    assert restored.name == "custom_name" and restored.reduction == "sum"
    json.dumps(losses.serialize(loss))


def test_config_keeps_arguments():
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    assert losses.serialize(loss) == {
        "class_name": "CategoricalCrossentropy",
        "config": {"name": "categorical_crossentropy", "reduction": "sum_over_batch_size",
                   "from_logits": True, "label_smoothing": 0.2},
    }
    assert losses.serialize("mse")["class_name"] == "MeanSquaredError"


def test_custom_losses_cannot_be_serialized():
    with pytest.raises(ConfigError, match="cannot be stored in a model file"):
        losses.serialize(lambda y_true, y_pred: (y_true - y_pred).mean(-1))

    class Quartic(losses.Loss):
        def call(self, y_true, y_pred):
            return ((y_pred - y_true) ** 4).mean(dim=-1)

    assert Quartic().name == "quartic"
    assert Quartic()(torch.zeros(2, 1), torch.full((2, 1), 2.0)).item() == 16.0
    with pytest.raises(ConfigError, match="cannot be stored in a model file"):
        losses.serialize(Quartic())


@pytest.mark.parametrize(("identifier", "expected"), [
    ("binary_crossentropy", "binary"), (losses.BinaryCrossentropy(from_logits=True), "binary"),
    ("categorical_crossentropy", "categorical"), ("sparse_categorical_crossentropy", "sparse"),
    ("mse", "regression"), ("hinge", "regression"), ("kld", "regression"), ("poisson", "regression"),
])
def test_kind_and_is_classification(identifier, expected):
    assert losses.kind(identifier) == expected
    assert losses.is_classification(identifier) == (expected != "regression")


@pytest.mark.parametrize("cls", [losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                                 losses.SparseCategoricalCrossentropy])
def test_with_logits(cls):
    loss = cls(reduction="sum", name="xent")
    fused = loss.with_logits()
    assert type(fused) is cls and fused.from_logits and not loss.from_logits
    assert fused.reduction == "sum" and fused.name == "xent"
    assert fused.with_logits() is fused
    assert losses.get("bce").with_logits().fn is losses.binary_crossentropy


def test_with_logits_keeps_label_smoothing():
    fused = losses.CategoricalCrossentropy(label_smoothing=0.1).with_logits()
    assert fused.get_config()["label_smoothing"] == 0.1


def test_with_logits_refused_for_regression_losses():
    assert losses.get("mse").from_logits is False
    with pytest.raises(ConfigError, match="no from_logits form"):
        losses.get("mse").with_logits()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_losses_do_not_sync_the_device():
    device = torch.device("cuda")
    y = torch.tensor([[1.0], [0.0]], device=device)
    p = torch.tensor([[0.4], [0.2]], device=device)
    labels = torch.tensor([1, 0], device=device)
    probs = torch.tensor([[0.3, 0.7], [0.6, 0.4]], device=device)
    w = torch.tensor([1.0, 2.0], device=device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for name in ("mse", "mae", "huber", "log_cosh", "hinge", "poisson", "binary_crossentropy"):
            losses.get(name)(y, p, w)
        losses.get("sparse_categorical_crossentropy")(labels, probs, w)
        losses.get("categorical_crossentropy")(probs, probs, w)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# --------------------------------------------------------------------------------------------------
# The losses of issue 20 (their values against Keras are in test_keras_parity.py).


@pytest.mark.parametrize("name, cls", [
    ("squared_hinge", losses.SquaredHinge), ("categorical_hinge", losses.CategoricalHinge),
    ("cosine_similarity", losses.CosineSimilarity),
    ("binary_focal_crossentropy", losses.BinaryFocalCrossentropy),
    ("categorical_focal_crossentropy", losses.CategoricalFocalCrossentropy),
    ("crossentropy", losses.Crossentropy),
    ("CE", losses.Crossentropy),
])
def test_new_losses_by_name_and_config_round_trip(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls and name in losses.names() or name == "CE"
    assert type(losses.get(losses.serialize(loss))) is cls
    assert losses.get(losses.serialize(loss)).get_config() == loss.get_config()


def test_focal_with_gamma_zero_is_binary_crossentropy():
    y, p = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.8, 0.3], [0.6, 0.999]])
    focal = losses.BinaryFocalCrossentropy(gamma=0.0)(y, p)
    torch.testing.assert_close(focal, losses.BinaryCrossentropy()(y, p))
    assert float(losses.BinaryFocalCrossentropy()(y, p)) < float(focal)  # easy examples count less


@pytest.mark.parametrize("y_shape, out_shape, expected", [
    ((8, 1), (8, 1), losses.BinaryCrossentropy),
    ((8,), (8, 1), losses.BinaryCrossentropy),
    ((8,), (8, 3), losses.SparseCategoricalCrossentropy),
    ((8, 1), (8, 3), losses.SparseCategoricalCrossentropy),
    ((8, 3), (8, 3), losses.CategoricalCrossentropy),
])
def test_crossentropy_resolves_as_keras_from_shapes(y_shape, out_shape, expected):
    # Keras's compile_utils rule: one output unit -> binary; labels of lower rank, or one column
    # against several units -> sparse; otherwise categorical.
    assert type(losses.Crossentropy().resolve(y_shape, out_shape)) is expected


def test_crossentropy_called_directly_picks_by_shapes():
    labels, probs = torch.tensor([0, 2]), torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    torch.testing.assert_close(losses.get("crossentropy")(labels, probs),
                               losses.SparseCategoricalCrossentropy()(labels, probs))


@pytest.mark.parametrize("make, fragment", [
    (lambda: losses.BinaryFocalCrossentropy(gamma=-1), "`gamma` expects a number >= 0, received -1"),
    (lambda: losses.CategoricalFocalCrossentropy(alpha="0.25"), "`alpha` expects a number >= 0"),
])
def test_focal_arguments_are_checked(make, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make()


def test_unknown_loss_message_is_short():
    with pytest.raises(ConfigError) as info:
        losses.get("mean_squared_eror")
    message = str(info.value)
    assert message.startswith("`loss`: unknown loss 'mean_squared_eror'. Did you mean 'mean_squared_error'?")
    assert "lists all" in message and len(message) < 160
