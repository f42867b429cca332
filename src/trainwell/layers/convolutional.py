"""Convolution layers: ``Conv1D``, ``Conv2D``, ``SeparableConv2D``, ``Conv2DTranspose``.

Layouts at the boundary only: inputs are channels-last as in Keras, ``(batch, steps, channels)``
and ``(batch, height, width, channels)``, and kernels are stored in Keras's layout, e.g. a Conv2D
kernel ``(kh, kw, in, out)``, so ``get_weights``/``set_weights`` and model files are Keras's. Each
forward turns both into torch's layout with ``permute``, which makes views, not copies: the
channels-last input viewed as NCHW is what oneDNN's channels-last kernels read directly.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import activations, initializers, regularizers
from .._errors import ConfigError, check_positive_int, describe
from .base import Layer, as_tuple
from .regularization import _check_channels_last

_F = nn.functional


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding of Keras's 'same': output ``ceil(size / stride)``, extra at the end."""
    extent = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


class _Conv(Layer):
    """Arguments, checks, weights and config shared by the convolutions of ``rank`` spatial axes."""

    rank = 2
    kernel_name = "kernel"

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format=None,
                 dilation_rate=1, groups: int = 1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} '{self.name}'"
        self.filters = check_positive_int(filters, "filters", where)
        self.kernel_size = as_tuple(kernel_size, self.rank, "kernel_size", where)
        self.strides = as_tuple(strides, self.rank, "strides", where)
        self.dilation_rate = as_tuple(dilation_rate, self.rank, "dilation_rate", where)
        if padding not in ("valid", "same"):
            raise ConfigError(f"{where}: `padding` expects 'valid' or 'same', received {describe(padding)}.")
        if padding == "same" and max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ConfigError(f"{where}: strides > 1 together with dilation_rate > 1 is not supported "
                              "(Keras refuses it too); use one of them.")
        self.padding = padding
        _check_channels_last(data_format, self.name)
        self.data_format = "channels_last"
        self.groups = check_positive_int(groups, "groups", where)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        for arg, value in [("activity_regularizer", activity_regularizer),
                           ("kernel_constraint", kernel_constraint), ("bias_constraint", bias_constraint)]:
            if value is not None:
                raise ConfigError(f"{where}: `{arg}` is not supported by trainwell yet; remove it "
                                  f"(received {describe(value)}).")
        self.bias: nn.Parameter | None = None

    @property
    def input_ndim(self) -> int:
        return self.rank + 1

    @property
    def rank_fix(self) -> str:
        if self.rank == 1:
            return f"{type(self).__name__} takes (batch, steps, channels); add a channel axis with Reshape."
        return ("It takes channels-last images (batch, height, width, channels); for grayscale images of "
                "shape (n, 28, 28) use x.reshape(-1, 28, 28, 1) or put Reshape((28, 28, 1)) first.")

    def kernel_shape(self, channels: int) -> tuple[int, ...]:
        if channels % self.groups or self.filters % self.groups:
            raise ConfigError(f"{type(self).__name__} '{self.name}': `groups`={self.groups} must divide both "
                              f"the input channels ({channels}) and `filters` ({self.filters}).")
        return (*self.kernel_size, channels // self.groups, self.filters)

    def build(self, input_shape) -> None:
        shape = self.kernel_shape(int(input_shape[-1]))
        # setattr, not register_parameter: Layer.__setattr__ is where weights get their Keras type.
        setattr(self, self.kernel_name, nn.Parameter(self.kernel_initializer(shape, dtype=torch.float32)))
        if self.use_bias:
            self.bias = nn.Parameter(self.bias_initializer((self.filters,), dtype=torch.float32))
        super().build(input_shape)

    def spatial_output(self, sizes) -> tuple[int, ...]:
        out = []
        for size, k, s, d in zip(sizes, self.kernel_size, self.strides, self.dilation_rate):
            out.append(-(-size // s) if self.padding == "same" else (size - (k - 1) * d - 1) // s + 1)
        if min(out) < 1:
            raise ConfigError(f"{type(self).__name__} '{self.name}': inputs of spatial size {tuple(sizes)} "
                              "are "
                              f"smaller than the kernel {self.kernel_size}; use padding='same' or smaller "
                              "kernels.")
        return tuple(out)

    def compute_output_shape(self, input_shape):
        return (*self.spatial_output(input_shape[:-1]), self.filters)

    def _pad(self, x_first: torch.Tensor):
        """Channels-first input padded as Keras pads, and the symmetric padding left to torch."""
        if self.padding == "valid":
            return x_first, 0
        pads = [same_padding(x_first.shape[2 + i], k, s, d) for i, (k, s, d)
                in enumerate(zip(self.kernel_size, self.strides, self.dilation_rate))]
        if all(a == b for a, b in pads):
            return x_first, tuple(a for a, _ in pads)
        flat = [v for pair in reversed(pads) for v in pair]  # torch pads the last axis first
        return _F.pad(x_first, flat), 0

    def torch_kernel(self) -> torch.Tensor:
        """Keras ``(*k, in, out)`` viewed as torch's ``(out, in, *k)``."""
        return self.kernel.permute(self.rank + 1, self.rank, *range(self.rank))

    def linear(self, x):
        """The convolution and bias, before the activation (channels last, as the layer's output):
        what the doctor's probes take gradients at, and the logits of a fused output layer."""
        conv = _F.conv1d if self.rank == 1 else _F.conv2d
        x_first, padding = self._pad(x.movedim(-1, 1))
        y = conv(x_first, self.torch_kernel(), self.bias, self.strides, padding, self.dilation_rate,
                 self.groups)
        return y.movedim(1, -1)

    def forward(self, x):
        return self.activation(self.linear(x))

    @property
    def activation_name(self) -> str:
        return activations.serialize(self.activation)

    def regularization_loss(self):
        terms = []
        if self.kernel_regularizer is not None and self.built:
            terms.append(self.kernel_regularizer(getattr(self, self.kernel_name)))
        if self.bias_regularizer is not None and self.bias is not None:
            terms.append(self.bias_regularizer(self.bias))
        return sum(terms[1:], terms[0]) if terms else None

    def get_config(self) -> dict:
        def reg(r):
            return regularizers.serialize(r) if r is not None else None

        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate), "groups": self.groups,
                "activation": self.activation_name, "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": reg(self.kernel_regularizer),
                "bias_regularizer": reg(self.bias_regularizer)}


class Conv1D(_Conv):
    """1-D convolution over ``(batch, steps, channels)``; kernel ``(kernel_size, in, filters)``.

    Example:
        >>> Conv1D(16, 3, activation='relu')
    """

    rank = 1


class Conv2D(_Conv):
    """2-D convolution over channels-last images; kernel ``(kh, kw, in, filters)``.

    Args:
        filters: Number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw). Defaults to 1.
        padding: 'valid' (no padding) or 'same' (output size ``ceil(size / stride)``).
        dilation_rate: int or pair. Defaults to 1.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: as for ``Dense``.

    Example:
        >>> Conv2D(32, kernel_size=(3, 3), activation='relu')
    """

    rank = 2


class SeparableConv2D(_Conv):
    """Depthwise convolution (each channel alone, ``depth_multiplier`` filters each), then a 1x1
    convolution to ``filters`` channels. Kernels ``depthwise_kernel (kh, kw, in, depth_multiplier)``
    and ``pointwise_kernel (1, 1, in * depth_multiplier, filters)``, as in Keras.
    """

    rank = 2
    kernel_name = "depthwise_kernel"

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier: int = 1, activation=None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         kernel_initializer=depthwise_initializer, bias_initializer=bias_initializer,
                         **kwargs)
        self.depth_multiplier = check_positive_int(depth_multiplier, "depth_multiplier",
                                                   f"SeparableConv2D '{self.name}'")
        self.pointwise_initializer = initializers.get(pointwise_initializer)

    def kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, channels, self.depth_multiplier)

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.depthwise_kernel = nn.Parameter(self.kernel_initializer(self.kernel_shape(channels),
                                                                     dtype=torch.float32))
        self.pointwise_kernel = nn.Parameter(self.pointwise_initializer(
            (1, 1, channels * self.depth_multiplier, self.filters), dtype=torch.float32))
        if self.use_bias:
            self.bias = nn.Parameter(self.bias_initializer((self.filters,), dtype=torch.float32))
        Layer.build(self, input_shape)

    def linear(self, x):
        x_first, padding = self._pad(x.movedim(-1, 1))
        kh, kw, channels, mult = self.depthwise_kernel.shape
        # (kh, kw, in, mult) → (in * mult, 1, kh, kw): torch's grouped conv orders outputs channel-major,
        # as Keras does.
        depthwise = self.depthwise_kernel.permute(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw)
        y = _F.conv2d(x_first, depthwise, None, self.strides, padding, self.dilation_rate, channels)
        y = _F.conv2d(y, self.pointwise_kernel.permute(3, 2, 0, 1), self.bias)
        return y.movedim(1, -1)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("kernel_initializer", "kernel_regularizer", "groups"):
            config.pop(key)
        return {**config, "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": initializers.serialize(self.kernel_initializer),
                "pointwise_initializer": initializers.serialize(self.pointwise_initializer)}


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (learned up-sampling); kernel ``(kh, kw, filters, in)`` as in Keras.

    With ``padding='same'`` the output is ``size * stride``; with 'valid', ``(size - 1) * stride + k``.
    """

    rank = 2

    def kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, self.filters, channels)

    def spatial_output(self, sizes) -> tuple[int, ...]:
        out = []
        for size, k, s, d in zip(sizes, self.kernel_size, self.strides, self.dilation_rate):
            out.append(size * s if self.padding == "same" else (size - 1) * s + (k - 1) * d + 1)
        return tuple(out)

    def linear(self, x):
        x_first = x.movedim(-1, 1)
        full = _F.conv_transpose2d(x_first, self.kernel.permute(3, 2, 0, 1), self.bias, self.strides,
                                   0, 0, 1, self.dilation_rate)
        if self.padding == "same":  # crop the 'valid' result to size * stride, as Keras places it
            rows, cols = (size * s for size, s in zip(x_first.shape[2:], self.strides))
            top, left = ((full.shape[2] - rows) // 2, (full.shape[3] - cols) // 2)
            full = full[:, :, top:top + rows, left:left + cols]
        return full.movedim(1, -1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("groups")  # not an argument of Keras's Conv2DTranspose
        return config
