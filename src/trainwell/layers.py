"""Keras layers as ``torch.nn.Module``s: ``Input``, ``Dense``, ``Activation``, ``Dropout``,
``BatchNormalization``, ``Normalization``.

Layers build lazily, as in Keras: parameters are created by ``build(input_shape)`` the first
time the input shape is known (from ``input_shape=`` on the first layer, an ``Input``, or the
data given to ``fit``/``predict``). Shapes exclude the batch axis.
"""

from __future__ import annotations

import itertools
import numbers
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from . import activations, initializers, regularizers
from ._errors import ConfigError, ConfigTypeError, check_fraction, check_positive_int, describe

_name_counters: dict[str, itertools.count] = defaultdict(itertools.count)


def unique_name(base: str) -> str:
    """Keras-style auto names: 'dense', 'dense_1', 'dense_2', ..."""
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


def reset_names() -> None:
    """Restart auto naming (``trainwell.utils.clear_session`` calls this)."""
    _name_counters.clear()


def _snake(name: str) -> str:
    out = [("_" + c.lower() if c.isupper() and i else c.lower()) for i, c in enumerate(name)]
    return "".join(out)


def _as_shape(value, argument: str) -> tuple[int, ...]:
    """A batch-less shape tuple from an int or a sequence of positive ints."""
    if isinstance(value, numbers.Integral):
        value = (value,)
    try:
        shape = tuple(int(v) for v in value)
        ok = all(v >= 1 for v in shape) and len(shape) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"`{argument}` expects a tuple of positive integers without the batch axis, "
            f"received {describe(value)}. For 9 features use {argument}=(9,)."
        )
    return shape


class Variable(nn.Parameter):
    """A layer weight: a torch ``Parameter`` that also answers Keras's ``Variable`` calls.

    torch's ``Tensor.numpy()`` refuses tensors that require grad or live on a GPU; Keras code
    reads weights with ``model.weights[0].numpy()``, so here it returns a CPU copy (a snapshot:
    later training does not change it). ``assign(value)`` copies a value in place, as Keras's.

    Example:
        >>> w = Variable(torch.zeros(2))
        >>> w.assign([1.0, 2.0]).numpy()
        array([1., 2.], dtype=float32)
    """

    def numpy(self, *, force: bool = False) -> np.ndarray:
        return self.detach().cpu().numpy().copy()

    def assign(self, value) -> Variable:
        with torch.no_grad():
            self.copy_(torch.as_tensor(np.asarray(value), dtype=self.dtype))
        return self


class Layer(nn.Module):
    """Base layer: a name, a ``trainable`` flag, lazy ``build`` and Keras's weight accessors.

    Args:
        name: Layer name; unique auto name when None.
        trainable: Whether the layer's weights are updated by ``fit``.
        input_shape: Shape of one sample (no batch axis); only meaningful on the first layer.
        input_dim: Keras's older spelling of ``input_shape=(input_dim,)``.
    """

    def __init__(self, name: str | None = None, trainable: bool = True, input_shape=None,
                 input_dim: int | None = None, dtype=None, batch_size=None):
        super().__init__()
        self.name = name or unique_name(_snake(type(self).__name__))
        self._trainable = bool(trainable)
        self.built = False
        self.input_shape_arg = None
        if input_shape is not None:
            self.input_shape_arg = _as_shape(input_shape, "input_shape")
        elif input_dim is not None:
            self.input_shape_arg = (check_positive_int(input_dim, "input_dim", self.name),)
        self.built_input_shape: tuple[int, ...] | None = None

    def __setattr__(self, name: str, value) -> None:
        # Every weight any layer creates becomes a Variable (``model.weights[i].numpy()`` works).
        if type(value) is nn.Parameter:
            value = Variable(value.data, value.requires_grad)
        super().__setattr__(name, value)

    # -- building -------------------------------------------------------------------------
    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create the layer's weights for inputs of ``input_shape`` (no batch axis)."""
        self.built_input_shape = tuple(input_shape)
        self.built = True
        self._apply_trainable()

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    # -- weights --------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        self._apply_trainable()

    def _apply_trainable(self) -> None:
        for p in self.parameters(recurse=False):
            p.requires_grad_(self._trainable)

    @property
    def weights(self) -> list[torch.Tensor]:
        """Trainable then non-trainable weights, in Keras's order."""
        return self.trainable_weights + self.non_trainable_weights

    @property
    def trainable_weights(self) -> list[torch.Tensor]:
        return list(self.parameters(recurse=False)) if self._trainable else []

    @property
    def non_trainable_weights(self) -> list[torch.Tensor]:
        frozen = [] if self._trainable else list(self.parameters(recurse=False))
        return frozen + list(self.buffers(recurse=False))

    def weight_names(self) -> list[str]:
        """Names of ``weights`` in the same order (``kernel``, ``bias``, ...)."""
        params = dict(self.named_parameters(recurse=False))
        ids = {id(t): n for n, t in list(params.items()) + list(self.named_buffers(recurse=False))}
        return [ids[id(w)] for w in self.weights]

    def get_weights(self) -> list[np.ndarray]:
        return [w.detach().cpu().numpy().copy() for w in self.weights]

    def set_weights(self, weights) -> None:
        """Copy numpy arrays into the layer's weights, checking count and shapes."""
        own = self.weights
        weights = list(weights)
        if len(weights) != len(own):
            raise ConfigError(
                f"Layer '{self.name}' expects {len(own)} weight arrays "
                f"({', '.join(self.weight_names()) or 'none'}), received {len(weights)}."
            )
        for name, w, new in zip(self.weight_names(), own, weights):
            new = torch.as_tensor(np.asarray(new), dtype=w.dtype)
            if tuple(new.shape) != tuple(w.shape):
                raise ConfigError(
                    f"Layer '{self.name}', weight '{name}': expected shape {tuple(w.shape)}, "
                    f"received {tuple(new.shape)}."
                )
            with torch.no_grad():
                w.copy_(new)

    def count_params(self) -> int:
        return sum(w.numel() for w in self.weights)

    def regularization_loss(self) -> torch.Tensor | None:
        """Sum of the layer's weight penalties, or None when it has none."""
        return None

    # -- config ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self._trainable}
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class InputLayer(Layer):
    """Declares the shape of one sample; holds no weights. Created by ``Input(shape=...)``."""

    def __init__(self, shape=None, batch_size=None, name=None, dtype=None, input_shape=None, **kwargs):
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ConfigError("Input: `shape` is required, e.g. Input(shape=(9,)) for 9 features.")
        super().__init__(name=name, input_shape=shape, **kwargs)
        self.shape = self.input_shape_arg

    def forward(self, x):
        return x

    def get_config(self) -> dict:
        return {"name": self.name, "shape": list(self.shape)}


def Input(shape=None, batch_size=None, name=None, dtype=None, **kwargs) -> InputLayer:
    """Keras's ``Input``: put first in a ``Sequential`` to declare the sample shape.

    Example:
        >>> model = Sequential([Input(shape=(9,)), Dense(50, activation='relu'), Dense(1)])
    """
    return InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype, **kwargs)


class Dense(Layer):
    """Densely connected layer: ``activation(x @ kernel + bias)``.

    Args:
        units: Positive integer, dimensionality of the output.
        activation: Name or callable; None means linear.
        use_bias: Whether to add a bias vector.
        kernel_initializer: Initializer of the ``(in, units)`` kernel. Defaults to 'glorot_uniform'.
        bias_initializer: Initializer of the bias. Defaults to 'zeros'.
        kernel_regularizer, bias_regularizer: Optional penalties added to the loss.
        input_shape / input_dim: Shape of one sample, on the first layer of a model.

    Example:
        >>> layer = Dense(50, activation='relu', input_shape=(9,))
    """

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units", f"Dense layer '{self.name}'")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        for arg, value in [("activity_regularizer", activity_regularizer),
                           ("kernel_constraint", kernel_constraint), ("bias_constraint", bias_constraint)]:
            if value is not None:
                raise ConfigError(f"Dense layer '{self.name}': `{arg}` is not supported by trainwell yet; "
                                  f"remove it (received {describe(value)}).")
        self.kernel: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def build(self, input_shape) -> None:
        fan_in = int(input_shape[-1])
        self.kernel = nn.Parameter(self.kernel_initializer((fan_in, self.units), dtype=torch.float32))
        if self.use_bias:
            self.bias = nn.Parameter(self.bias_initializer((self.units,), dtype=torch.float32))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """The affine part, before the activation (the loop fuses a final softmax with its loss)."""
        if x.dim() == 2 and self.bias is not None:
            return torch.addmm(self.bias, x, self.kernel)
        y = x @ self.kernel
        return y + self.bias if self.bias is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    @property
    def activation_name(self) -> str:
        return activations.serialize(self.activation)

    def regularization_loss(self):
        terms = []
        if self.kernel_regularizer is not None and self.kernel is not None:
            terms.append(self.kernel_regularizer(self.kernel))
        if self.bias_regularizer is not None and self.bias is not None:
            terms.append(self.bias_regularizer(self.bias))
        return sum(terms[1:], terms[0]) if terms else None

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
            "bias_regularizer": regularizers.serialize(self.bias_regularizer)
            if self.bias_regularizer is not None else None,
        }

    def extra_repr(self) -> str:
        return f"name={self.name!r}, units={self.units}, activation={self.activation_name!r}"


class Activation(Layer):
    """Applies an activation function: ``Activation('relu')``."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def forward(self, x):
        return self.activation(x)

    @property
    def activation_name(self) -> str:
        return activations.serialize(self.activation)

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": self.activation_name}


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
        return nn.functional.dropout(x, self.rate, training=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


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
        dims = tuple(range(x.dim() - 1))
        # Statistics in the moving averages' precision (float32), as autocast does for torch's
        # own batch norm: bfloat16 means and variances are too coarse.
        x = x.to(self.moving_mean.dtype)
        if self.training and self._trainable:
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                self.moving_mean.lerp_(mean.detach(), 1.0 - self.momentum)
                self.moving_variance.lerp_(var.detach(), 1.0 - self.momentum)
        else:
            mean, var = self.moving_mean, self.moving_variance
        y = (x - mean) * torch.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return y

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **{f"{k}_initializer": initializers.serialize(v) for k, v in self.inits.items()}}


class Normalization(Layer):
    """Standardises features with a stored mean and variance: ``(x - mean) / sqrt(variance)``.

    Call ``adapt(x)`` on the training data (or pass ``mean``/``variance``) before ``fit``, so the
    scaling the course advises lives inside the model and travels with the model file.

    Example:
        >>> norm = Normalization()
        >>> norm.adapt(X_train)
        >>> model = Sequential([Input(shape=(9,)), norm, Dense(50, activation='relu'), Dense(1)])
    """

    def __init__(self, axis: int = -1, mean=None, variance=None, invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ConfigError(f"Normalization '{self.name}': only axis=-1 is supported, received {axis!r}.")
        if (mean is None) != (variance is None):
            raise ConfigError(f"Normalization '{self.name}': pass both `mean` and `variance`, or neither "
                              "(and call adapt(x)).")
        self.axis = axis
        self.invert = bool(invert)
        self._init_mean = None if mean is None else np.asarray(mean, dtype=np.float32).reshape(-1)
        self._init_variance = None if variance is None else np.asarray(variance, dtype=np.float32).reshape(-1)
        self.adapted = mean is not None

    def build(self, input_shape) -> None:
        n = int(input_shape[-1])
        mean = torch.zeros(n) if self._init_mean is None else \
            torch.as_tensor(self._init_mean).expand(n).clone()
        var = torch.ones(n) if self._init_variance is None else \
            torch.as_tensor(self._init_variance).expand(n).clone()
        self.register_buffer("mean", mean)
        self.register_buffer("variance", var)
        super().build(input_shape)

    def adapt(self, data) -> None:
        """Compute the per-feature mean and variance of ``data``, array-like of shape (samples, features)."""
        from .data import as_tensor  # data.py sits above layers in the import order only for conversion

        x = as_tensor(data, "adapt(data)").reshape(-1, np.shape(data)[-1])
        if not self.built:
            self.build((x.shape[-1],))
        elif x.shape[-1] != self.mean.shape[0]:
            raise ConfigError(f"Normalization '{self.name}': adapt() received {x.shape[-1]} features, "
                              f"the layer was built for {self.mean.shape[0]}.")
        with torch.no_grad():
            self.mean.copy_(x.mean(0))
            self.variance.copy_(x.var(0, unbiased=False))
        self.adapted = True

    def forward(self, x):
        # Keras guards the division with max(sqrt(var), epsilon) so constant features stay finite.
        std = torch.clamp(torch.sqrt(self.variance), min=1e-7)
        return x * std + self.mean if self.invert else (x - self.mean) / std

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "invert": self.invert}


LAYERS = {cls.__name__: cls for cls in (InputLayer, Dense, Activation, Dropout, BatchNormalization,
                                         Normalization)}


def deserialize(config: dict) -> Layer:
    """A layer from ``{"class_name": ..., "config": {...}}``."""
    from ._errors import unknown_name

    if not isinstance(config, dict) or "class_name" not in config:
        raise ConfigTypeError("A layer config must be a dict with 'class_name', "
                              f"received {describe(config)}.")
    cls = LAYERS.get(config["class_name"])
    if cls is None:
        raise unknown_name("layer type", config["class_name"], LAYERS)
    return cls.from_config(dict(config.get("config", {})))


def serialize(layer: Layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}
