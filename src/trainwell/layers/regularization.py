"""Regularization layers: ``Dropout``, ``SpatialDropout1D``/``2D``, ``GaussianNoise``.

They act only while training (``fit``); ``predict`` and ``evaluate`` pass inputs through.
"""

from __future__ import annotations

import numbers

import torch

from .._errors import ConfigError, check_fraction, describe
from .base import Layer


def dropout_mask(x: torch.Tensor, rate: float) -> torch.Tensor:
    """A mask of x's shape: 1.0 where a value is kept (probability 1 - rate), 0.0 where dropped.

    Drawn as ``uniform >= rate`` from torch's generator: on the CPU a uniform draw costs about
    a third of a Bernoulli one, and the fused step (``fused_layers.DropoutMasks``) draws the same
    numbers, so both paths give the same masks from the same seed.
    """
    # Drawn in float32 whatever x's dtype: bfloat16's coarse steps near the rate would bias it.
    return torch.empty(x.shape, device=x.device).uniform_().ge_(rate).to(x.dtype)


class Dropout(Layer):
    """Sets a fraction ``rate`` of inputs to 0 during training, scaling the rest by 1/(1-rate)."""

    def __init__(self, rate: float, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_fraction(rate, "rate")
        if noise_shape is not None:
            raise ConfigError(f"Dropout '{self.name}': `noise_shape` is not supported yet; remove it.")
        self.seed = seed

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            return x
        # Keras's inverted dropout: the kept values are scaled by 1 / (1 - rate).
        return x * dropout_mask(x, self.rate) * (1.0 / (1.0 - self.rate))

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class SpatialDropout1D(Dropout):
    """Drops whole channels of ``(batch, steps, channels)`` inputs (one draw per sample and channel)."""

    input_ndim = 2
    rank_fix = "SpatialDropout1D takes (batch, steps, channels) inputs."

    def __init__(self, rate: float, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],), device=x.device,
                           dtype=x.dtype).bernoulli_(1.0 - self.rate)
        return x * keep / (1.0 - self.rate)

    def get_config(self) -> dict:
        return {k: v for k, v in super().get_config().items()}


class SpatialDropout2D(SpatialDropout1D):
    """Drops whole channels of ``(batch, height, width, channels)`` inputs."""

    input_ndim = 3
    rank_fix = "SpatialDropout2D takes (batch, height, width, channels) inputs."

    def __init__(self, rate: float, data_format=None, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        _check_channels_last(data_format, self.name)
        self.data_format = "channels_last"

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format}


class GaussianNoise(Layer):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` while training."""

    def __init__(self, stddev: float, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(stddev, numbers.Real) or isinstance(stddev, bool) or stddev < 0:
            raise ConfigError(f"GaussianNoise '{self.name}': `stddev` expects a number >= 0, "
                              f"received {describe(stddev)}.")
        self.stddev = float(stddev)
        self.seed = seed

    def forward(self, x):
        if not self.training or self.stddev == 0.0:
            return x
        return x + torch.randn_like(x) * self.stddev

    def get_config(self) -> dict:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


def _check_channels_last(data_format, name: str) -> None:
    if data_format not in (None, "channels_last"):
        raise ConfigError(f"Layer '{name}': only data_format='channels_last' (Keras's default, inputs "
                          f"(batch, ..., channels)) is supported, received {describe(data_format)}. "
                          "Move the channels last with Permute or numpy.moveaxis.")
