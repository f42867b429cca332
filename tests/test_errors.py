"""Tests for trainwell._errors: the one number check, the one verbose rule, one message style."""

from __future__ import annotations

import math

import pytest

from trainwell import ConfigError
from trainwell._errors import check_number, check_positive_int, check_verbose
from trainwell.callbacks import EarlyStopping, ModelCheckpoint, ProgbarLogger, ReduceLROnPlateau
from trainwell.initializers import RandomNormal
from trainwell.optimizers import SGD, Adam
from trainwell.regularizers import L2


@pytest.mark.parametrize("value", [0, 1, 2, "auto", False, True])
def test_verbose_accepts_keras_values(value):
    assert check_verbose(value) == (1 if value == "auto" else int(value))


@pytest.mark.parametrize("value", [3, -1, 1.0, "loud", None])
def test_verbose_refuses_anything_else_with_a_remedy(value):
    pattern = r"`verbose` expects 'auto', 0, 1 or 2, received .* Pass for example"
    with pytest.raises(ConfigError, match=pattern):
        check_verbose(value, "fit")


@pytest.mark.parametrize("build", [
    lambda v: EarlyStopping(verbose=v),
    lambda v: ReduceLROnPlateau(verbose=v),
    lambda v: ModelCheckpoint("m.tw", verbose=v),
    lambda v: ProgbarLogger(verbose=v),
])
def test_every_verbose_follows_the_one_rule(build):
    build(2)
    build("auto")
    with pytest.raises(ConfigError, match="`verbose` expects 'auto', 0, 1 or 2"):
        build(3)


@pytest.mark.parametrize(
    "bounds, good, bad, wording",
    [
        ({}, [-3, 0, 2.5], [math.nan, math.inf, True, "1", None], "a number"),
        ({"low": 0, "low_open": True}, [1e-9, 3], [0, -1, math.inf], "a positive number"),
        ({"low": 0}, [0, 2], [-1e-9, math.nan], "a number >= 0"),
        ({"low": 0, "high": 1, "high_open": True}, [0, 0.999], [1, -0.1, 1.5], r"a number in \[0, 1\)"),
        ({"high": 10}, [10, -5], [10.5], "a number <= 10"),
    ],
)
def test_check_number_bounds_and_message(bounds, good, bad, wording):
    for value in good:
        assert check_number(value, "rate", "Thing", **bounds) == float(value)
    for value in bad:
        pattern = rf"^Thing: `rate` expects {wording}, received .* Pass for example rate="
        with pytest.raises(ConfigError, match=pattern):
            check_number(value, "rate", "Thing", **bounds)


def test_check_number_none_and_infinity_when_allowed():
    assert check_number(None, "baseline", allow_none=True) is None
    assert check_number(math.inf, "baseline", allow_inf=True) == math.inf
    with pytest.raises(ConfigError, match="a number or None, received"):
        check_number("x", "baseline", allow_none=True)


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: Adam(beta_1=1.0), "Adam: `beta_1` expects a number in [0, 1), received 1.0 (float). Pass"),
        (lambda: SGD(learning_rate=-1), "SGD: `learning_rate` expects a number >= 0 or a LearningRate"),
        (lambda: RandomNormal(stddev=-1), "RandomNormal: `stddev` expects a number >= 0, received -1 (int)"),
        (lambda: L2(-0.1), "L2: `l2` expects a number >= 0, received -0.1 (float). Pass for example l2=0.01"),
        (lambda: ReduceLROnPlateau(factor=-0.5), "ReduceLROnPlateau: `factor` expects a number >="),
        (lambda: EarlyStopping(min_delta="0.1"), "EarlyStopping: `min_delta` expects a number, received"),
    ],
)
def test_modules_share_the_wording(build, fragment):
    with pytest.raises(ConfigError) as info:
        build()
    assert fragment in str(info.value)
    assert "Pass" in str(info.value)  # every message ends with a remedy


def test_positive_int_message():
    pattern = r"fit\(\): `epochs` expects a positive integer, received 0 \(int\)\. Pass for example epochs="
    with pytest.raises(ConfigError, match=pattern):
        check_positive_int(0, "epochs", "fit()")
