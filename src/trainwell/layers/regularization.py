"""Regularization layers: ``Dropout``, ``SpatialDropout1D``/``2D``, ``GaussianNoise``.

They act only while training (``fit``); ``predict`` and ``evaluate`` pass inputs through.
"""

from __future__ import annotations

import numbers
import sys

import torch

from .._errors import ConfigError, check_fraction, describe
from .base import Layer


def mask_thresholds(rate: float, device=None) -> torch.Tensor:
    """The two int16 thresholds ``dropout_mask`` compares its draws with, in memory order.

    Each 32-bit draw of ``random_()`` on int32 holds 31 uniform bits: its low 16 bits, read as an
    int16, are uniform on [-2**15, 2**15), its high 16 bits on [0, 2**15). A value is kept when
    its half is at least ``rate`` of the way up its range, so the keep probability is 1 - rate to
    within 2**-16 (low halves) and 2**-15 (high halves).
    """
    low = min(round(rate * 65536) - 32768, 32767)
    high = min(round(rate * 32768), 32767)
    pair = (low, high) if sys.byteorder == "little" else (high, low)
    return torch.tensor(pair, dtype=torch.int16, device=device)


def draw_halves(count: int, device=None) -> torch.Tensor:
    """``count`` uniform int16 values (int32 draws of torch's generator, two halves each), flat."""
    return torch.empty((count + 1) // 2, dtype=torch.int32, device=device).random_().view(torch.int16)


def repeated_thresholds(rate: float, count: int, device=None) -> torch.Tensor:
    """``mask_thresholds`` laid along ``count`` halves (even): a comparison with a tensor of the
    same shape costs a third of one that broadcasts the pair."""
    return mask_thresholds(rate, device).repeat(count // 2)


def dropout_mask(x: torch.Tensor, rate: float, scale=None, thresholds=None) -> torch.Tensor:
    """A mask of x's shape and dtype: 1.0 (or ``scale``) where a value is kept (probability
    1 - rate), 0.0 where dropped.

    Two masks from each 32-bit draw of torch's generator (``mask_thresholds``): on the CPU that
    costs about a quarter of a float ``uniform_`` per value and a tenth of a Bernoulli one. The
    fused step (``fused_layers.DropoutMasks``) draws the same numbers in one call for every
    Dropout layer of a batch, so both paths give the same masks from the same seed.

    Args:
        scale: None, or a number or 0-d tensor the kept values get (a 0-d tensor spares the
            conversion of a Python number on every call).
        thresholds: ``repeated_thresholds(rate, ...)`` for x's halves, when the caller keeps them.
    """
    n = x.numel()
    halves = draw_halves(n, x.device)
    if thresholds is None:
        thresholds = repeated_thresholds(rate, len(halves), x.device)
    mask = torch.ge(halves, thresholds, out=torch.empty(halves.shape, dtype=x.dtype, device=x.device))
    if scale is not None:
        mask.mul_(scale)
    return (mask if n == len(mask) else mask.narrow(0, 0, n)).view(x.shape)


class Dropout(Layer):
    """Sets a fraction ``rate`` of inputs to 0 during training, scaling the rest by 1/(1-rate)."""

    def __init__(self, rate: float, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_fraction(rate, "rate")
        if noise_shape is not None:
            raise ConfigError(f"Dropout '{self.name}': `noise_shape` is not supported yet; remove it.")
        self.seed = seed
        self._kept = {}  # see _constants

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            return x
        # Keras's inverted dropout: the kept values are scaled by 1 / (1 - rate), in the mask (one
        # product: x * (mask * scale) is (x * mask) * scale to the bit, mask being 0 or 1).
        scale, thresholds = self._constants(x)
        return x * dropout_mask(x, self.rate, scale, thresholds)

    def _constants(self, x: torch.Tensor) -> tuple:
        """The scale and repeated thresholds for x's size at the current rate, kept for the last
        few sizes (a fit uses two: full batches and the short last one): making them costs more
        than the comparison."""
        key = (self.rate, x.numel(), x.device)
        kept = self._kept.get(key)
        if kept is None:
            if len(self._kept) >= 4:
                self._kept.clear()
            count = x.numel() + x.numel() % 2
            kept = self._kept[key] = (torch.tensor(1.0 / (1.0 - self.rate)),
                                      repeated_thresholds(self.rate, count, x.device))
        return kept

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
