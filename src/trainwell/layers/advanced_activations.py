"""Activation layers: ``ReLU``, ``LeakyReLU``, ``PReLU``, ``ELU``, ``Softmax``.

The module keeps Keras 2's name, so ``layers.advanced_activations.LeakyReLU`` imports too.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .. import initializers, regularizers
from .._errors import ConfigError, describe
from .base import Layer


def _number(value, argument: str, where: str, minimum=None) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ConfigError(f"{where}: `{argument}` expects a number{bound}, received {describe(value)}.")
    return float(value)


class ReLU(Layer):
    """``max(x, 0)``, with Keras's options: ``max_value`` caps it, ``negative_slope`` below
    ``threshold``."""

    def __init__(self, max_value=None, negative_slope: float = 0.0, threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        where = f"ReLU '{self.name}'"
        self.max_value = None if max_value is None else _number(max_value, "max_value", where, 0)
        self.negative_slope = _number(negative_slope, "negative_slope", where, 0)
        self.threshold = _number(threshold, "threshold", where)

    def forward(self, x):
        if self.negative_slope == 0.0 and self.threshold == 0.0:
            y = torch.relu(x)
        else:
            y = torch.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
        return y if self.max_value is None else torch.clamp(y, max=self.max_value)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class LeakyReLU(Layer):
    """``x`` for ``x >= 0``, ``negative_slope * x`` otherwise (Keras 3 default 0.3; Keras 2 ``alpha``)."""

    def __init__(self, negative_slope: float = 0.3, alpha=None, **kwargs):
        super().__init__(**kwargs)
        value = alpha if alpha is not None else negative_slope
        self.negative_slope = _number(value, "negative_slope", f"LeakyReLU '{self.name}'", 0)

    def forward(self, x):
        return nn.functional.leaky_relu(x, self.negative_slope)

    def get_config(self) -> dict:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class PReLU(Layer):
    """Leaky ReLU with a learned slope per input value: weight ``alpha`` of the sample's shape, with
    size 1 on the ``shared_axes`` (Keras counts them from 1, after the batch axis)."""

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if alpha_constraint is not None:
            raise ConfigError(f"PReLU '{self.name}': `alpha_constraint` is not supported yet; remove it.")
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        shared = [] if shared_axes is None else \
            [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)
        if not all(isinstance(a, int) and a >= 1 for a in shared):
            raise ConfigError(f"PReLU '{self.name}': `shared_axes` expects axes >= 1 (0 is the batch "
                              f"axis), received {describe(shared_axes)}.")
        self.shared_axes = shared or None
        self.alpha: nn.Parameter | None = None

    def build(self, input_shape) -> None:
        shared = set(self.shared_axes or [])
        shape = tuple(1 if i + 1 in shared else int(n) for i, n in enumerate(input_shape))
        self.alpha = nn.Parameter(self.alpha_initializer(shape, dtype=torch.float32))
        super().build(input_shape)

    def forward(self, x):
        return torch.where(x >= 0, x, self.alpha * x)

    def regularization_loss(self):
        if self.alpha_regularizer is None or self.alpha is None:
            return None
        return self.alpha_regularizer(self.alpha)

    def get_config(self) -> dict:
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer)
                if self.alpha_regularizer is not None else None,
                "shared_axes": self.shared_axes}


class ELU(Layer):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _number(alpha, "alpha", f"ELU '{self.name}'")

    def forward(self, x):
        return nn.functional.elu(x, self.alpha)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(Layer):
    """Softmax over ``axis`` (default -1)."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
            raise ConfigError(f"Softmax '{self.name}': `axis` expects a non-zero integer, received "
                              f"{describe(axis)}.")
        self.axis = axis

    def forward(self, x):
        return torch.softmax(x, dim=self.axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}
