"""Pooling layers: ``MaxPooling1D/2D``, ``AveragePooling1D/2D`` and the global poolings.

Channels-last inputs as in Keras; the windows run on torch's channels-first views (no copy).
"""

from __future__ import annotations

from torch import nn

from .._errors import ConfigError, describe
from .base import Layer, as_tuple
from .convolutional import same_padding
from .regularization import _check_channels_last

_F = nn.functional


class _Pooling(Layer):
    """``pool_size`` windows moved by ``strides`` (default: ``pool_size``) over ``rank`` spatial axes."""

    rank = 2
    mode = "max"

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} '{self.name}'"
        self.pool_size = as_tuple(pool_size, self.rank, "pool_size", where)
        self.strides = self.pool_size if strides is None else as_tuple(strides, self.rank, "strides", where)
        if padding not in ("valid", "same"):
            raise ConfigError(f"{where}: `padding` expects 'valid' or 'same', received {describe(padding)}.")
        self.padding = padding
        _check_channels_last(data_format, self.name)
        self.data_format = "channels_last"

    @property
    def input_ndim(self) -> int:
        return self.rank + 1

    @property
    def rank_fix(self) -> str:
        if self.rank == 1:
            return f"{type(self).__name__} takes (batch, steps, channels)."
        return ("It takes channels-last images (batch, height, width, channels); for grayscale images of "
                "shape (n, 28, 28) use x.reshape(-1, 28, 28, 1) or put Reshape((28, 28, 1)) first.")

    def compute_output_shape(self, input_shape):
        out = []
        for size, k, s in zip(input_shape[:-1], self.pool_size, self.strides):
            out.append(-(-size // s) if self.padding == "same" else (size - k) // s + 1)
        if min(out) < 1:
            raise ConfigError(f"{type(self).__name__} '{self.name}': inputs of spatial size "
                              f"{tuple(input_shape[:-1])} are smaller than pool_size {self.pool_size}.")
        return (*out, input_shape[-1])

    def forward(self, x):
        x_first = x.movedim(-1, 1)
        pads = [(0, 0)] * self.rank
        if self.padding == "same":
            pads = [same_padding(x_first.shape[2 + i], k, s, 1)
                    for i, (k, s) in enumerate(zip(self.pool_size, self.strides))]
        if self.mode == "max":
            if any(pads[i] != (0, 0) for i in range(self.rank)):
                flat = [v for pair in reversed(pads) for v in pair]
                x_first = _F.pad(x_first, flat, value=float("-inf"))
            pool = _F.max_pool1d if self.rank == 1 else _F.max_pool2d
            y = pool(x_first, self.pool_size, self.strides)
        else:
            y = self._average(x_first, pads)
        return y.movedim(1, -1)

    def _average(self, x_first, pads):
        pool = _F.avg_pool1d if self.rank == 1 else _F.avg_pool2d
        if all(p == (0, 0) for p in pads):
            return pool(x_first, self.pool_size, self.strides)
        # Keras's 'same' averages over the real values only: divide the zero-padded sums by the
        # number of real values in each window.
        flat = [v for pair in reversed(pads) for v in pair]
        sums = pool(_F.pad(x_first, flat), self.pool_size, self.strides)
        ones = _F.pad(x_first.new_ones((1, 1, *x_first.shape[2:])), flat)
        return sums / pool(ones, self.pool_size, self.strides)

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format}


class MaxPooling1D(_Pooling):
    """Maximum over windows of ``pool_size`` steps of ``(batch, steps, channels)`` inputs."""

    rank, mode = 1, "max"


class MaxPooling2D(_Pooling):
    """Maximum over ``pool_size`` windows of channels-last images.

    Example:
        >>> MaxPooling2D(pool_size=(2, 2))
    """

    rank, mode = 2, "max"


class _AveragePooling(_Pooling):
    mode = "average"

    def __init__(self, pool_size, strides=None, padding: str = "valid", data_format=None, **kwargs):
        # Keras requires pool_size here (MaxPooling defaults it to 2).
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_AveragePooling):
    """Mean over windows of ``pool_size`` steps; Keras's 'same' averages the real values only."""

    rank = 1


class AveragePooling2D(_AveragePooling):
    """Mean over ``pool_size`` windows of channels-last images."""

    rank = 2


class _GlobalPooling(Layer):
    """Max or mean over all spatial axes: ``(batch, ..., channels)`` → ``(batch, channels)``."""

    rank = 2
    mode = "max"

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        _check_channels_last(data_format, self.name)
        self.data_format = "channels_last"
        self.keepdims = bool(keepdims)

    @property
    def input_ndim(self) -> int:
        return self.rank + 1

    rank_fix = "Global pooling takes (batch, ..., channels) inputs with the spatial axes in the middle."

    def compute_output_shape(self, input_shape):
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def forward(self, x):
        dims = tuple(range(1, 1 + self.rank))
        if self.mode == "max":
            return x.amax(dims, keepdim=self.keepdims)
        return x.mean(dims, keepdim=self.keepdims)

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalMaxPooling1D(_GlobalPooling):
    rank, mode = 1, "max"


class GlobalMaxPooling2D(_GlobalPooling):
    rank, mode = 2, "max"


class GlobalAveragePooling1D(_GlobalPooling):
    rank, mode = 1, "average"


class GlobalAveragePooling2D(_GlobalPooling):
    rank, mode = 2, "average"
