"""Normalization layers: ``BatchNormalization``, ``LayerNormalization``, ``Normalization``."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import nn

from .. import initializers
from .._errors import ConfigError, check_fraction, describe
from .base import Layer


def biased_variance(invstd: torch.Tensor, epsilon, out: torch.Tensor | None = None) -> torch.Tensor:
    """The biased batch variance (Keras's, for the moving average) from 1 / sqrt(var + epsilon).

    1 / invstd² - epsilon is var to float32 rounding of var + epsilon, for a few µs where
    ``torch.var_mean`` costs tens on a small batch; clamped at 0, which rounding may cross
    for a constant feature.
    """
    return torch.pow(invstd, -2, out=out).sub_(epsilon).clamp_min_(0.0)


def inference_batch_norm(layer, x: torch.Tensor) -> torch.Tensor:
    """``layer`` (a built ``BatchNormalization``) in inference mode on float32 ``x``: torch's kernel,
    which folds the moving averages, gamma and beta into one scale and shift per feature and
    applies them in one pass, ``x * scale + (beta - moving_mean * scale)``, as Keras's does."""
    # torch.batch_norm itself: F.batch_norm's Python checks cost more than the kernel on a small batch.
    rows = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    y = torch.batch_norm(rows, layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance, False, 0.0,
                         layer.epsilon, torch.backends.cudnn.enabled)
    return y if rows is x else y.reshape(x.shape)


class BatchNormalization(Layer):
    """Normalises each feature with the batch statistics while training, moving averages otherwise.

    Keras semantics, mapped here rather than through ``torch.nn.BatchNorm1d``: Keras's
    ``momentum=0.99`` is the weight of the *old* moving average (torch's momentum is 1 - that),
    and Keras updates the moving variance with the biased batch variance (torch: unbiased).
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1,):
            raise ConfigError(f"BatchNormalization '{self.name}': only axis=-1 is supported, "
                              f"received {axis!r}.")
        self.axis = axis
        self.momentum = check_fraction(momentum, "momentum")
        if not (isinstance(epsilon, numbers.Real) and epsilon > 0):
            raise ConfigError(f"BatchNormalization '{self.name}': `epsilon` expects a positive number, "
                              f"received {describe(epsilon)}.")
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.inits = {k: initializers.get(v) for k, v in dict(
            beta=beta_initializer, gamma=gamma_initializer,
            moving_mean=moving_mean_initializer, moving_variance=moving_variance_initializer).items()}
        self.gamma = self.beta = None
        self._kept = (None,)  # see _constants

    def build(self, input_shape) -> None:
        n = (int(input_shape[-1]),)
        if self.scale:
            self.gamma = nn.Parameter(self.inits["gamma"](n, dtype=torch.float32))
        if self.center:
            self.beta = nn.Parameter(self.inits["beta"](n, dtype=torch.float32))
        self.register_buffer("moving_mean", self.inits["moving_mean"](n, dtype=torch.float32))
        self.register_buffer("moving_variance", self.inits["moving_variance"](n, dtype=torch.float32))
        super().build(input_shape)

    def forward(self, x):
        # Statistics in the moving averages' precision (float32), as autocast does for torch's
        # own batch norm: bfloat16 means and variances are too coarse.
        x = x.to(self.moving_mean.dtype)
        if self.training and self._trainable:
            return self._train_forward(x)
        return inference_batch_norm(self, x)

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch statistics over every axis but the last, with torch's batch-norm kernel (one autograd
        op forward and one backward), and the moving averages updated."""
        rows = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
        y, mean, invstd = torch.native_batch_norm(rows, self.gamma, self.beta, None, None, True, 0.0,
                                                  self.epsilon)
        # The statistics carry no gradient, so the averages move outside the graph as they are.
        weight, epsilon = self._constants()
        self.moving_mean.lerp_(mean, weight)
        self.moving_variance.lerp_(biased_variance(invstd, epsilon), weight)
        return y if rows is x else y.reshape(x.shape)

    def _constants(self) -> tuple:
        """1 - momentum and epsilon as 0-d tensors beside the averages: a Python number costs a
        conversion in every operation, more than the operation itself on a small batch."""
        like = self.moving_mean
        key = (self.momentum, self.epsilon, like.device, like.dtype)
        if self._kept[0] != key:
            as_tensor = lambda v: torch.tensor(v, dtype=like.dtype, device=like.device)  # noqa: E731
            self._kept = (key, as_tensor(1.0 - self.momentum), as_tensor(self.epsilon))
        return self._kept[1:]

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **{f"{k}_initializer": initializers.serialize(v) for k, v in self.inits.items()}}


class Normalization(Layer):
    """Standardises features with a stored mean and variance: ``(x - mean) / sqrt(variance)``.

    Call ``adapt(x)`` on the training data (or pass ``mean``/``variance``) before ``fit``, so the
    scaling the course advises lives inside the model and travels with the model file.

    Args:
        axis: The axis (or tuple of axes) that keeps its own mean and variance; -1 (the default)
            is per feature, None one mean and variance for everything.
        mean, variance: Known statistics instead of ``adapt``.
        invert: Undo the normalization instead (``x * std + mean``).

    Example:
        >>> norm = Normalization()
        >>> norm.adapt(X_train)
        >>> model = Sequential([Input(shape=(9,)), norm, Dense(50, activation='relu'), Dense(1)])
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        if axis is not None and not isinstance(axis, (int, tuple, list)) or isinstance(axis, bool):
            raise ConfigError(f"Normalization '{self.name}': `axis` expects an int, a tuple of ints or "
                              f"None, received {describe(axis)}.")
        if (mean is None) != (variance is None):
            raise ConfigError(f"Normalization '{self.name}': pass both `mean` and `variance`, or neither "
                              "(and call adapt(x)).")
        self.axis = tuple(axis) if isinstance(axis, (tuple, list)) else axis
        self.invert = bool(invert)
        self._init_mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self._init_variance = None if variance is None else np.asarray(variance, dtype=np.float32)
        self.adapted = mean is not None

    def _kept_axes(self, rank: int) -> tuple[int, ...]:
        """The kept axes of a sample of ``rank`` axes, counted without the batch axis."""
        if self.axis is None:
            return ()
        axes = (self.axis,) if isinstance(self.axis, int) else self.axis
        kept = []
        for a in axes:
            full = a if a >= 0 else rank + 1 + a  # Keras counts the batch axis as 0
            if not 1 <= full <= rank:
                raise ConfigError(f"Normalization '{self.name}': axis {a} is out of range for inputs of "
                                  f"rank {rank + 1}; the batch axis 0 cannot be kept.")
            kept.append(full - 1)
        return tuple(sorted(set(kept)))

    def _stat_shape(self, input_shape) -> tuple[int, ...]:
        kept = self._kept_axes(len(input_shape))
        if kept == (len(input_shape) - 1,):
            return (int(input_shape[-1]),)  # per feature: a plain vector, broadcast on the last axis
        return tuple(int(n) if i in kept else 1 for i, n in enumerate(input_shape))

    def build(self, input_shape) -> None:
        shape = self._stat_shape(input_shape)
        mean = torch.zeros(shape) if self._init_mean is None else _stat(self._init_mean, shape)
        var = torch.ones(shape) if self._init_variance is None else _stat(self._init_variance, shape)
        self.register_buffer("mean", mean)
        self.register_buffer("variance", var)
        super().build(input_shape)

    def adapt(self, data) -> None:
        """Compute the mean and variance of ``data`` (array-like of shape (samples, ...)) per kept axis."""
        from ..data import as_tensor  # data.py sits above layers in the import order only for conversion

        x = as_tensor(data, "adapt(data)")
        if x.dim() == 1:
            x = x.unsqueeze(1)
        if not self.built:
            self.build(tuple(x.shape[1:]))
        elif tuple(x.shape[1:]) != tuple(self.built_input_shape):
            got, built = tuple(x.shape[1:]), tuple(self.built_input_shape)
            if len(got) == len(built) == 1:
                got, built = f"{got[0]} features", built[0]
            else:
                got = f"samples of shape {got}"
            raise ConfigError(f"Normalization '{self.name}': adapt() received {got}, the layer was built "
                              f"for {built}.")
        kept = self._kept_axes(x.dim() - 1)
        reduce = tuple(d for d in range(x.dim()) if d - 1 not in kept)
        with torch.no_grad():
            self.mean.copy_(x.mean(reduce).reshape(self.mean.shape))
            self.variance.copy_(x.var(reduce, unbiased=False).reshape(self.variance.shape))
        self.adapted = True

    def forward(self, x):
        # Keras guards the division with max(sqrt(var), epsilon) so constant features stay finite.
        std = torch.clamp(torch.sqrt(self.variance), min=1e-7)
        return x * std + self.mean if self.invert else (x - self.mean) / std

    def get_config(self) -> dict:
        axis = list(self.axis) if isinstance(self.axis, tuple) else self.axis
        return {**super().get_config(), "axis": axis, "invert": self.invert}


def _stat(values: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """A given mean or variance: one number for all, or one per kept position."""
    t = torch.as_tensor(values, dtype=torch.float32)
    return t.reshape(()).expand(shape).clone() if t.numel() == 1 else t.reshape(shape).clone()


class LayerNormalization(Layer):
    """Normalises each sample over its last axis (or ``axis``), then scales by ``gamma`` and shifts by
    ``beta``: ``(x - mean) / sqrt(var + epsilon) * gamma + beta``.

    Args:
        axis: Axis or axes to normalise over (Keras's default -1).
        epsilon: Added to the variance. Defaults to 1e-3, as in Keras.
        center, scale: Whether to learn ``beta`` and ``gamma``.
    """

    def __init__(self, axis=-1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis = tuple(axis) if isinstance(axis, (tuple, list)) else int(axis)
        if not (isinstance(epsilon, numbers.Real) and epsilon > 0):
            raise ConfigError(f"LayerNormalization '{self.name}': `epsilon` expects a positive number, "
                              f"received {describe(epsilon)}.")
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.gamma = self.beta = None

    def build(self, input_shape) -> None:
        rank = len(input_shape) + 1
        axes = (self.axis,) if isinstance(self.axis, int) else self.axis
        self._dims = tuple(sorted((a if a >= 0 else rank + a) for a in axes))
        if any(not 1 <= d < rank for d in self._dims):
            raise ConfigError(f"LayerNormalization '{self.name}': axis {self.axis} is out of range for "
                              f"inputs of shape {(None, *input_shape)}.")
        shape = tuple(int(input_shape[d - 1]) if d in self._dims else 1 for d in range(1, rank))
        if self._dims == (rank - 1,):
            shape = (int(input_shape[-1]),)
        if self.scale:
            self.gamma = nn.Parameter(self.gamma_initializer(shape, dtype=torch.float32))
        if self.center:
            self.beta = nn.Parameter(self.beta_initializer(shape, dtype=torch.float32))
        super().build(input_shape)

    def forward(self, x):
        if self._dims == (x.dim() - 1,):  # the common case: torch's fused kernel
            return nn.functional.layer_norm(x, x.shape[-1:], self.gamma, self.beta, self.epsilon)
        mean = x.mean(self._dims, keepdim=True)
        var = x.var(self._dims, keepdim=True, unbiased=False)
        y = (x - mean) * torch.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma
        return y + self.beta if self.beta is not None else y

    def get_config(self) -> dict:
        axis = list(self.axis) if isinstance(self.axis, tuple) else self.axis
        return {**super().get_config(), "axis": axis,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer)}
