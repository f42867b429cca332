"""Tests for trainwell.initializers: shapes, Keras's statistics, seeding, config round trips, errors."""

import json
import math

import numpy as np
import pytest
import torch

from trainwell import initializers as I
from trainwell._errors import ConfigError, ConfigTypeError

TRUNC = 0.87962566103423978  # std of a unit normal truncated at +-2
FAN_IN, FAN_OUT = 400, 500  # a (400, 500) Dense kernel: 200k draws, statistics to well under 1%

# One instance of every class, with non-default arguments where it has any.
INSTANCES = [
    I.Zeros(),
    I.Ones(),
    I.Constant(value=2.5),
    I.RandomNormal(mean=0.3, stddev=0.2, seed=1),
    I.RandomUniform(minval=-2.0, maxval=1.0, seed=2),
    I.TruncatedNormal(mean=-0.1, stddev=0.3, seed=3),
    I.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal", seed=4),
    I.GlorotUniform(seed=5),
    I.GlorotNormal(seed=6),
    I.HeUniform(seed=7),
    I.HeNormal(seed=8),
    I.LecunUniform(seed=9),
    I.LecunNormal(seed=10),
    I.Orthogonal(gain=1.5, seed=11),
    I.Identity(gain=0.5),
]
IDS = [type(i).__name__ for i in INSTANCES]


def test_every_class_is_covered():
    assert {type(i) for i in INSTANCES} == set(I._CLASSES)


@pytest.mark.parametrize("init", INSTANCES, ids=IDS)
@pytest.mark.parametrize("shape", [(3, 4), (7, 2)])
def test_shape_and_default_dtype(init, shape):
    out = init(shape)
    assert out.shape == shape and out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("init", INSTANCES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, "float64", torch.bfloat16])
def test_dtype(init, dtype):
    out = init((4, 4), dtype=dtype)
    assert out.dtype == I._check_dtype(dtype, "test")


ANY_RANK = [i for i in INSTANCES if not isinstance(i, (I.Orthogonal, I.Identity))]


@pytest.mark.parametrize("init", ANY_RANK, ids=str)
def test_one_dimensional_and_conv_shapes(init):
    assert init((5,)).shape == (5,)
    assert init(5).shape == (5,)
    assert init((3, 3, 2, 4)).shape == (3, 3, 2, 4)


def test_compute_fans_follows_keras():
    assert I.compute_fans(()) == (1, 1)
    assert I.compute_fans((7,)) == (7, 7)
    assert I.compute_fans((3, 5)) == (3, 5)
    # Conv kernel (kh, kw, in, out): receptive field 9.
    assert I.compute_fans((3, 3, 16, 32)) == (144, 288)


def _draw(init):
    return init((FAN_IN, FAN_OUT), dtype=torch.float64).numpy().ravel()


def _check_uniform(x, low, high):
    assert x.min() >= low and x.max() <= high
    # Reaching close to both ends shows the range is not narrower than intended.
    span = high - low
    assert x.min() < low + 0.01 * span and x.max() > high - 0.01 * span
    np.testing.assert_allclose(x.mean(), (low + high) / 2, atol=0.01 * span)
    np.testing.assert_allclose(x.std(), span / math.sqrt(12.0), rtol=0.02)


def _check_truncated(x, mean, stddev):
    # Keras redraws values beyond 2 std, so draws stay within mean +- 2 stddev and their
    # standard deviation shrinks by the factor TRUNC.
    assert x.min() >= mean - 2 * stddev - 1e-12 and x.max() <= mean + 2 * stddev + 1e-12
    np.testing.assert_allclose(x.mean(), mean, atol=0.01 * stddev)
    np.testing.assert_allclose(x.std(), stddev * TRUNC, rtol=0.02)


@pytest.mark.parametrize(
    "name, limit",
    [
        ("glorot_uniform", math.sqrt(6.0 / (FAN_IN + FAN_OUT))),
        ("he_uniform", math.sqrt(6.0 / FAN_IN)),
        ("lecun_uniform", math.sqrt(3.0 / FAN_IN)),
    ],
)
def test_uniform_presets_limits(name, limit):
    _check_uniform(_draw(I.get(name)), -limit, limit)


@pytest.mark.parametrize(
    "name, target_std",
    [
        ("glorot_normal", math.sqrt(2.0 / (FAN_IN + FAN_OUT))),
        ("he_normal", math.sqrt(2.0 / FAN_IN)),
        ("lecun_normal", math.sqrt(1.0 / FAN_IN)),
    ],
)
def test_normal_presets_truncated_with_target_variance(name, target_std):
    # The pre-truncation stddev is target/TRUNC, so the draws end with the target std.
    x = _draw(I.get(name))
    _check_truncated(x, 0.0, target_std / TRUNC)
    np.testing.assert_allclose(x.std(), target_std, rtol=0.02)


def test_random_normal_statistics():
    x = _draw(I.RandomNormal(mean=1.0, stddev=0.5))
    np.testing.assert_allclose(x.mean(), 1.0, atol=0.005)
    np.testing.assert_allclose(x.std(), 0.5, rtol=0.02)
    assert x.max() > 1.0 + 2.5 * 0.5  # not truncated


def test_random_uniform_statistics():
    _check_uniform(_draw(I.RandomUniform(minval=-1.0, maxval=3.0)), -1.0, 3.0)


def test_truncated_normal_statistics():
    _check_truncated(_draw(I.TruncatedNormal(mean=0.5, stddev=0.1)), 0.5, 0.1)


def test_keras_defaults():
    assert I.RandomNormal().get_config() == {"mean": 0.0, "stddev": 0.05, "seed": None}
    assert I.RandomUniform().get_config() == {"minval": -0.05, "maxval": 0.05, "seed": None}
    assert I.TruncatedNormal().get_config() == {"mean": 0.0, "stddev": 0.05, "seed": None}
    assert I.VarianceScaling().get_config() == {
        "scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None
    }
    assert I.Constant().get_config() == {"value": 0.0}


@pytest.mark.parametrize(
    "mode, fan", [("fan_in", FAN_IN), ("fan_out", FAN_OUT), ("fan_avg", (FAN_IN + FAN_OUT) / 2)]
)
def test_variance_scaling_modes_and_distributions(mode, fan):
    scale = 3.0
    x = _draw(I.VarianceScaling(scale=scale, mode=mode, distribution="untruncated_normal"))
    np.testing.assert_allclose(x.std(), math.sqrt(scale / fan), rtol=0.02)
    limit = math.sqrt(3.0 * scale / fan)
    _check_uniform(_draw(I.VarianceScaling(scale=scale, mode=mode, distribution="uniform")), -limit, limit)
    _check_truncated(_draw(I.VarianceScaling(scale=scale, mode=mode)), 0.0, math.sqrt(scale / fan) / TRUNC)


def test_variance_scaling_normal_means_truncated():
    # Keras maps distribution='normal' to 'truncated_normal' (and stores the latter).
    init = I.VarianceScaling(distribution="Normal")
    assert init.distribution == "truncated_normal"


def test_variance_scaling_uses_receptive_field():
    init = I.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")
    x = init((3, 3, 16, 32)).numpy()
    assert np.abs(x).max() <= math.sqrt(3.0 / 144)


def test_constant_like():
    assert torch.equal(I.Zeros()((2, 3)), torch.zeros(2, 3))
    assert torch.equal(I.Ones()((2, 3)), torch.ones(2, 3))
    assert torch.equal(I.Constant(2.5)((2, 3)), torch.full((2, 3), 2.5))
    assert torch.equal(I.Constant(np.float32(4.0))((2,)), torch.tensor([4.0, 4.0]))
    assert I.Zeros()((2,), dtype=torch.int64).dtype == torch.int64


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
def test_orthogonal_is_orthogonal(shape):
    q = I.Orthogonal(gain=2.0)(shape, dtype=torch.float64)
    small = min(shape)
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    np.testing.assert_allclose(gram.numpy(), 4.0 * np.eye(small), atol=1e-10)


def test_orthogonal_flattens_leading_dims():
    q = I.Orthogonal()((2, 3, 4), dtype=torch.float64).reshape(6, 4)
    np.testing.assert_allclose((q.T @ q).numpy(), np.eye(4), atol=1e-10)


def test_identity():
    assert torch.equal(I.Identity()((3, 3)), torch.eye(3))
    assert torch.equal(I.Identity(gain=2.0)((2, 3)), torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))


RANDOM = [i for i in INSTANCES if isinstance(i, I._Seeded)]
RANDOM_IDS = [type(i).__name__ for i in RANDOM]


@pytest.mark.parametrize("init", RANDOM, ids=RANDOM_IDS)
def test_seeded_calls_repeat_and_leave_global_generator_alone(init):
    state = torch.get_rng_state()
    first, second = init((8, 6)), init((8, 6))
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), state)
    other = type(init).from_config({**init.get_config(), "seed": init.seed + 100})
    assert not torch.equal(first, other((8, 6)))


@pytest.mark.parametrize("init", RANDOM, ids=RANDOM_IDS)
def test_unseeded_follows_global_seed(init):
    unseeded = type(init).from_config({**init.get_config(), "seed": None})
    torch.manual_seed(123)
    a1, a2 = unseeded((8, 6)), unseeded((8, 6))
    torch.manual_seed(123)
    b1 = unseeded((8, 6))
    assert torch.equal(a1, b1)
    assert not torch.equal(a1, a2)


@pytest.mark.parametrize("init", INSTANCES, ids=IDS)
def test_config_round_trip(init):
    config = init.get_config()
    rebuilt = type(init).from_config(config)
    assert type(rebuilt) is type(init) and rebuilt.get_config() == config
    saved = json.loads(json.dumps(I.serialize(init)))
    assert saved == {"class_name": type(init).__name__, "config": config}
    again = I.get(saved)
    assert type(again) is type(init) and again.get_config() == config
    # Seeded (or deterministic) initializers rebuilt from the file give the same numbers.
    assert torch.equal(again((5, 5)), init((5, 5)))


@pytest.mark.parametrize("name, cls", list(I._SNAKE_NAMES.items()))
def test_get_by_snake_and_class_name(name, cls):
    assert type(I.get(name)) is cls
    assert type(I.get(cls.__name__)) is cls
    assert type(I.get(name.upper())) is cls


def test_get_aliases_and_other_identifiers():
    assert type(I.get("zero")) is I.Zeros
    assert type(I.get("one")) is I.Ones
    assert type(I.get("uniform")) is I.RandomUniform
    assert type(I.get("normal")) is I.RandomNormal
    assert type(I.get("OrthogonalInitializer")) is I.Orthogonal
    assert type(I.get("IdentityInitializer")) is I.Identity
    assert I.get(None) is None
    init = I.HeNormal(seed=1)
    assert I.get(init) is init
    assert type(I.get(I.HeNormal)) is I.HeNormal
    assert type(I.get({"class_name": "glorot_uniform"})) is I.GlorotUniform

    def custom(shape, dtype=torch.float32):
        return torch.full(shape, 7.0, dtype=dtype)

    assert I.get(custom) is custom


def test_get_unknown_name_suggests():
    with pytest.raises(ConfigError, match=r"Did you mean 'glorot_uniform'\?") as info:
        I.get("glorot_unifrom", argument="kernel_initializer")
    message = str(info.value)
    assert "`kernel_initializer`" in message and "trainwell.initializers.names() lists all" in message
    assert "he_normal" in I.names() and "he_normal" not in message  # short: the list is behind names()


@pytest.mark.parametrize("bad", [3, 0.5, ["zeros"], (3, 4)])
def test_get_wrong_type(bad):
    with pytest.raises(ConfigTypeError, match="expects an initializer"):
        I.get(bad)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"config": {}}, "class_name"),
        ({"class_name": "Zeros", "config": [1]}, "class_name"),
        ({"class_name": "RandomNormal", "config": {"sigma": 1.0}}, "RandomNormal.from_config"),
        ({"class_name": "GlorotUniform", "config": {"scale": 2.0}}, "GlorotUniform.from_config"),
        ({"class_name": "Xavier", "config": {}}, "unknown initializer 'Xavier'"),
    ],
)
def test_get_bad_dict(bad, fragment):
    with pytest.raises(ConfigError, match=fragment):
        I.get(bad)


def test_serialize_custom_is_refused():
    with pytest.raises(ConfigError, match="custom initializers cannot be saved"):
        I.serialize(lambda shape, dtype=torch.float32: torch.zeros(shape))


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: I.RandomNormal(stddev=-0.1), "stddev"),
        (lambda: I.TruncatedNormal(stddev=-1), "stddev"),
        (lambda: I.RandomNormal(mean=float("nan")), "mean"),
        (lambda: I.RandomUniform(minval=1.0, maxval=1.0), "minval"),
        (lambda: I.RandomUniform(minval=2.0, maxval=-2.0), "minval"),
        (lambda: I.VarianceScaling(scale=0.0), "scale"),
        (lambda: I.VarianceScaling(scale=-2.0), "scale"),
        (lambda: I.VarianceScaling(mode="fan_mid"), "mode"),
        (lambda: I.VarianceScaling(distribution="gamma"), "distribution"),
        (lambda: I.GlorotUniform(seed=-1), "seed"),
        (lambda: I.HeNormal(seed="42"), "seed"),
        (lambda: I.Constant(value="1"), "value"),
        (lambda: I.Orthogonal(gain=None), "gain"),
    ],
)
def test_invalid_arguments_name_the_argument(build, argument):
    with pytest.raises(ConfigError, match=f"`{argument}`") as info:
        build()
    assert isinstance(info.value, ValueError)


def test_variance_scaling_unknown_mode_suggests():
    with pytest.raises(ConfigError, match=r"Did you mean 'fan_out'\?"):
        I.VarianceScaling(mode="fan_ot")


@pytest.mark.parametrize("shape", [(3, -1), (2.5, 3), "ab", None])
def test_bad_shape(shape):
    with pytest.raises(ConfigError, match="`shape`"):
        I.GlorotUniform()(shape)


def test_bad_dtype():
    with pytest.raises(ConfigError, match="`dtype`"):
        I.Zeros()((2,), dtype="float8")
    with pytest.raises(ConfigError, match="floating dtype"):
        I.RandomNormal()((2,), dtype=torch.int32)


def test_orthogonal_and_identity_reject_wrong_rank():
    with pytest.raises(ConfigError, match="at least 2 dimensions"):
        I.Orthogonal()((5,))
    with pytest.raises(ConfigError, match="2-D shape"):
        I.Identity()((2, 2, 2))


def test_repr_shows_config():
    assert repr(I.RandomUniform(minval=0.0, maxval=1.0)) == "RandomUniform(minval=0.0, maxval=1.0, seed=None)"
