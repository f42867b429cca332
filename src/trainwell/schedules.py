"""Keras learning-rate schedules, evaluated on the host from the integer step.

Reached as ``trainwell.optimizers.schedules`` (Keras's path). A schedule maps the optimizer's
step count (``iterations``: 0 before the first update) to a Python float; the optimizer writes
that float into the torch param groups before each step. No tensors are involved, so a schedule
never causes a device sync.

Keras evaluates schedules in float32; here the arithmetic is Python float64, which differs from
Keras only in the last float32 digit.
"""

from __future__ import annotations

import math
import numbers

from trainwell._errors import ConfigError, ConfigTypeError, describe, unknown_name


def _check_decay_steps(value, argument: str, where: str) -> None:
    """Raise a ConfigError unless ``value`` is a positive number (Keras requires > 0)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0
    if not ok:
        raise ConfigError(
            f"{where}: `{argument}` expects a positive number of steps, received {describe(value)}. "
            f"Pass for example {argument}=1000."
        )


class LearningRateSchedule:
    """Base class: a callable from the step count to a learning rate.

    Subclasses implement ``__call__(step) -> float`` and ``get_config() -> dict``.

    Example:
        >>> class Halving(LearningRateSchedule):
        ...     def __init__(self, initial_learning_rate):
        ...         self.initial_learning_rate = initial_learning_rate
        ...     def __call__(self, step):
        ...         return self.initial_learning_rate / (step + 1)
        ...     def get_config(self):
        ...         return {"initial_learning_rate": self.initial_learning_rate}
        >>> Halving(0.1)(1)
        0.05
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError(
            f"Learning rate schedule {type(self).__name__} must override __call__(step)."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(f"Learning rate schedule {type(self).__name__} must override get_config().")

    @classmethod
    def from_config(cls, config: dict) -> LearningRateSchedule:
        """Rebuild a schedule from ``get_config()``'s output."""
        return cls(**config)


class _RateDecay(LearningRateSchedule):
    """Shared by ``ExponentialDecay`` and ``InverseTimeDecay``: same arguments, same config."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase, name):
        _check_decay_steps(decay_steps, "decay_steps", type(self).__name__)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def _progress(self, step: int) -> float:
        """``step / decay_steps``, floored when ``staircase``."""
        p = step / self.decay_steps
        return math.floor(p) if self.staircase else p

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: positive; the rate is multiplied by ``decay_rate`` every ``decay_steps``.
        decay_rate: the factor per ``decay_steps``.
        staircase: if True, ``step / decay_steps`` is floored (the rate drops in steps).
        name: kept for Keras compatibility. Defaults to ``"ExponentialDecay"``.

    Raises:
        ConfigError: if ``decay_steps`` is not positive.

    Example:
        >>> ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(10)
        0.05
    """

    def __init__(
        self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"
    ):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step: int) -> float:
        return float(self.initial_learning_rate * self.decay_rate ** self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[1]`` while ``step <= boundaries[1]``, ...

    Args:
        boundaries: strictly increasing step numbers, one fewer than ``values``.
        values: the learning rate in each interval; ``values[-1]`` after the last boundary.
        name: kept for Keras compatibility. Defaults to ``"PiecewiseConstant"``.

    Raises:
        ConfigError: if ``len(boundaries) != len(values) - 1`` or boundaries do not increase.

    Example:
        >>> schedule = PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
        >>> schedule(100), schedule(101), schedule(201)
        (1.0, 0.5, 0.1)
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ConfigError(
                f"PiecewiseConstantDecay: `boundaries` must have one element fewer than `values`, received "
                f"{len(boundaries)} boundaries and {len(values)} values. "
                "For example boundaries=[100, 200], values=[1.0, 0.5, 0.1]."
            )
        if any(low >= high for low, high in zip(boundaries, boundaries[1:])):
            raise ConfigError(
                f"PiecewiseConstantDecay: `boundaries` must be strictly increasing, received {boundaries!r}."
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return float(value)
        return float(self.values[-1])

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: positive; how often the decay is applied.
        decay_rate: the decay rate.
        staircase: if True, ``step / decay_steps`` is floored.
        name: kept for Keras compatibility. Defaults to ``"InverseTimeDecay"``.

    Raises:
        ConfigError: if ``decay_steps`` is not positive.

    Example:
        >>> InverseTimeDecay(0.1, decay_steps=1, decay_rate=0.5)(2)
        0.05
    """

    def __init__(
        self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"
    ):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step: int) -> float:
        return float(self.initial_learning_rate / (1 + self.decay_rate * self._progress(step)))


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - step / decay_steps) ** power + end``, with step capped at decay_steps.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: positive; the step at which ``end_learning_rate`` is reached.
        end_learning_rate: the final rate. Defaults to 0.0001.
        power: the polynomial's power. Defaults to 1.0 (linear).
        cycle: if True, ``decay_steps`` grows to the first multiple of itself above ``step``
            instead of capping the step (the rate jumps back up and decays again).
        name: kept for Keras compatibility. Defaults to ``"PolynomialDecay"``.

    Raises:
        ConfigError: if ``decay_steps`` is not positive.

    Example:
        >>> round(PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.0)(5), 6)
        0.05
    """

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        end_learning_rate=0.0001,
        power=1.0,
        cycle=False,
        name="PolynomialDecay",
    ):
        _check_decay_steps(decay_steps, "decay_steps", "PolynomialDecay")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def __call__(self, step: int) -> float:
        decay_steps = self.decay_steps
        if self.cycle:
            # Keras: the first multiple of decay_steps at or above step; 1 at step 0.
            decay_steps = decay_steps * (math.ceil(step / decay_steps) if step > 0 else 1)
        else:
            step = min(step, decay_steps)
        fraction_left = 1 - step / decay_steps
        span = self.initial_learning_rate - self.end_learning_rate
        return float(span * fraction_left**self.power + self.end_learning_rate)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup, then cosine decay to ``alpha`` times the peak rate.

    Warmup (only if ``warmup_target`` is set), for ``step < warmup_steps``:
    ``initial_learning_rate + (warmup_target - initial_learning_rate) * step / warmup_steps``.
    Decay, with ``s = min(step - warmup_steps, decay_steps)`` and ``peak`` = ``warmup_target`` or
    ``initial_learning_rate``: ``peak * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)``.
    See Loshchilov & Hutter, SGDR (https://arxiv.org/abs/1608.03983).

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: positive; the number of steps to decay over.
        alpha: the final rate as a fraction of the peak. Defaults to 0.0.
        name: kept for Keras compatibility. Defaults to ``"CosineDecay"``.
        warmup_target: the rate reached at the end of warmup; None (default) skips warmup.
        warmup_steps: the number of warmup steps. Defaults to 0.

    Raises:
        ConfigError: if ``decay_steps`` is not positive.

    Example:
        >>> round(CosineDecay(0.1, decay_steps=10)(5), 6)
        0.05
    """

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        alpha=0.0,
        name="CosineDecay",
        warmup_target=None,
        warmup_steps=0,
    ):
        _check_decay_steps(decay_steps, "decay_steps", "CosineDecay")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_target = warmup_target
        self.warmup_steps = warmup_steps

    def _decayed(self, step: float, peak: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return peak * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            return float(self._decayed(min(step, self.decay_steps), self.initial_learning_rate))
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return float(self.initial_learning_rate + delta * step / self.warmup_steps)
        return float(self._decayed(step - self.warmup_steps, self.warmup_target))

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


_SCHEDULES = {
    cls.__name__: cls
    for cls in (ExponentialDecay, PiecewiseConstantDecay, InverseTimeDecay, PolynomialDecay, CosineDecay)
}


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{"class_name": ..., "config": ...}`` for a schedule (JSON-serialisable).

    Example:
        >>> serialize(ExponentialDecay(0.1, 10, 0.5))["class_name"]
        'ExponentialDecay'
    """
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict) -> LearningRateSchedule:
    """Rebuild a schedule from ``serialize``'s output.

    Raises:
        ConfigError: if the class name is not a known schedule.
        ConfigTypeError: if ``config`` is not a dict.

    Example:
        >>> deserialize(serialize(CosineDecay(0.1, 100)))(0)
        0.1
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConfigTypeError(
            f"`learning_rate`: expected a schedule config such as "
            f"{{'class_name': 'ExponentialDecay', 'config': {{...}}}}, received {describe(config)}."
        )
    name = config["class_name"]
    if name not in _SCHEDULES:
        raise unknown_name("learning rate schedule", name, _SCHEDULES, argument="learning_rate")
    return _SCHEDULES[name].from_config(dict(config.get("config", {})))
