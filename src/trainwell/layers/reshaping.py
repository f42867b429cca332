"""Reshaping layers: ``Flatten``, ``Reshape``, ``Permute``, ``RepeatVector``, ``UpSampling2D``,
``ZeroPadding2D``, ``Cropping2D``, and the ``Rescaling`` preprocessing layer.

Image layers take channels-last inputs ``(batch, height, width, channels)``, as Keras does.
"""

from __future__ import annotations

import math
import numbers

from torch import nn

from .._errors import ConfigError, DataError, check_positive_int, describe
from .base import Layer, as_tuple
from .regularization import _check_channels_last


class Flatten(Layer):
    """Flattens each sample: ``(batch, 28, 28)`` → ``(batch, 784)``, in row-major (C) order as Keras."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _check_channels_last(data_format, self.name)
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x):
        return x.flatten(1)

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (no batch axis; one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            shape = tuple(int(v) for v in target_shape)
            ok = shape and all(v >= 1 or v == -1 for v in shape) and shape.count(-1) <= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"Reshape '{self.name}': `target_shape` expects a tuple of positive integers "
                              f"(one may be -1), without the batch axis, received {describe(target_shape)}.")
        self.target_shape = shape

    def compute_output_shape(self, input_shape):
        size, known = math.prod(input_shape), math.prod(v for v in self.target_shape if v != -1)
        shape = tuple(size // known if v == -1 else v for v in self.target_shape)
        if math.prod(shape) != size:
            raise DataError(f"Reshape '{self.name}': samples of shape {tuple(input_shape)} ({size} values) "
                            f"cannot be reshaped to {self.target_shape}.")
        return shape

    def build(self, input_shape) -> None:
        self._out = self.compute_output_shape(input_shape)
        super().build(input_shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self._out)

    def get_config(self) -> dict:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Permute(Layer):
    """Permutes the sample axes: ``Permute((2, 1))`` swaps the two axes of ``(batch, a, b)`` (1-based)."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            dims = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            dims = ()
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ConfigError(f"Permute '{self.name}': `dims` expects a permutation of 1..n (the batch "
                              f"axis 0 excluded), received {describe(dims)}.")
        self.dims = dims

    def check_input_shape(self, input_shape) -> None:
        if len(input_shape) != len(self.dims):
            raise DataError(f"Layer '{self.name}' (Permute) has dims {self.dims} for samples of rank "
                            f"{len(self.dims)}, but received shape {(None, *input_shape)}.")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[d - 1] for d in self.dims)

    def forward(self, x):
        return x.permute(0, *self.dims)

    def get_config(self) -> dict:
        return {**super().get_config(), "dims": list(self.dims)}


class RepeatVector(Layer):
    """Repeats a ``(batch, features)`` input ``n`` times: ``(batch, n, features)``."""

    input_ndim = 1
    rank_fix = "RepeatVector takes (batch, features) inputs; add Flatten() before it."

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = check_positive_int(n, "n", f"RepeatVector '{self.name}'")

    def compute_output_shape(self, input_shape):
        return (self.n, input_shape[0])

    def forward(self, x):
        return x.unsqueeze(1).expand(-1, self.n, -1)

    def get_config(self) -> dict:
        return {**super().get_config(), "n": self.n}


class Rescaling(Layer):
    """``x * scale + offset``, e.g. ``Rescaling(1/255)`` for pixel values."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("scale", scale), ("offset", offset)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise ConfigError(f"Rescaling '{self.name}': `{arg}` expects a number, received "
                                  f"{describe(value)}.")
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x):
        return x * self.scale + self.offset

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class _Image2D(Layer):
    """A layer on channels-last images ``(batch, height, width, channels)``."""

    input_ndim = 3
    rank_fix = ("Image layers take (batch, height, width, channels); for grayscale images of shape "
                "(n, 28, 28) use x.reshape(-1, 28, 28, 1) or put Reshape((28, 28, 1)) first.")


def _pairs(value, name: str, where: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's padding/cropping spec: int, (rows, cols) or ((top, bottom), (left, right))."""
    if isinstance(value, numbers.Integral):
        value = ((value, value), (value, value))
    try:
        value = tuple(value)
        if all(isinstance(v, numbers.Integral) for v in value):
            value = tuple((v, v) for v in value)
        pairs = tuple((int(a), int(b)) for a, b in value)
        ok = len(pairs) == 2 and all(v >= 0 for p in pairs for v in p)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{where}: `{name}` expects an int, (rows, cols) or ((top, bottom), "
                          f"(left, right)) of integers >= 0, received {describe(value)}.")
    return pairs


class UpSampling2D(_Image2D):
    """Repeats rows and columns ``size`` times (``interpolation='nearest'``, or 'bilinear')."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        _check_channels_last(data_format, self.name)
        self.size = as_tuple(size, 2, "size", f"UpSampling2D '{self.name}'")
        if interpolation not in ("nearest", "bilinear"):
            raise ConfigError(f"UpSampling2D '{self.name}': `interpolation` expects 'nearest' or "
                              f"'bilinear', received {describe(interpolation)}.")
        self.data_format, self.interpolation = "channels_last", interpolation

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        return (h * self.size[0], w * self.size[1], c)

    def forward(self, x):
        if self.interpolation == "nearest":
            return x.repeat_interleave(self.size[0], 1).repeat_interleave(self.size[1], 2)
        y = nn.functional.interpolate(x.permute(0, 3, 1, 2), scale_factor=self.size, mode="bilinear",
                                      align_corners=False)
        return y.permute(0, 2, 3, 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": list(self.size), "data_format": self.data_format,
                "interpolation": self.interpolation}


class ZeroPadding2D(_Image2D):
    """Adds rows and columns of zeros around each image."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        _check_channels_last(data_format, self.name)
        self.padding = _pairs(padding, "padding", f"ZeroPadding2D '{self.name}'")
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        (t, b), (left, r) = self.padding
        h, w, c = input_shape
        return (h + t + b, w + left + r, c)

    def forward(self, x):
        (t, b), (left, r) = self.padding
        return nn.functional.pad(x, (0, 0, left, r, t, b))  # torch pads from the last axis backwards

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": [list(p) for p in self.padding],
                "data_format": self.data_format}


class Cropping2D(_Image2D):
    """Removes rows and columns at the image borders."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        _check_channels_last(data_format, self.name)
        self.cropping = _pairs(cropping, "cropping", f"Cropping2D '{self.name}'")
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        (t, b), (left, r) = self.cropping
        h, w, c = input_shape
        if h - t - b < 1 or w - left - r < 1:
            raise DataError(f"Cropping2D '{self.name}': cropping {self.cropping} leaves nothing of "
                            f"images of shape {tuple(input_shape)}.")
        return (h - t - b, w - left - r, c)

    def forward(self, x):
        (t, b), (left, r) = self.cropping
        return x[:, t:x.shape[1] - b, left:x.shape[2] - r, :]

    def get_config(self) -> dict:
        return {**super().get_config(), "cropping": [list(p) for p in self.cropping],
                "data_format": self.data_format}
