"""Core layers: ``Input``/``InputLayer``, ``Dense``, ``Activation``, ``Embedding``.

Keras 2's ``keras.layers.core`` also held ``Dropout``, ``Flatten``, ``Reshape``, ``Permute`` and
``RepeatVector``; they are re-exported at the end so ``layers.core.Flatten`` still imports.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import activations, initializers, regularizers
from .._errors import ConfigError, check_positive_int, describe
from . import node as node_module
from .base import Layer


class InputLayer(Layer):
    """Declares the shape of one sample; holds no weights. Created by ``Input(shape=...)``."""

    def __init__(self, shape=None, batch_size=None, name=None, dtype=None, input_shape=None, **kwargs):
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ConfigError("Input: `shape` is required, e.g. Input(shape=(9,)) for 9 features.")
        super().__init__(name=name, input_shape=shape, **kwargs)
        self.shape = self.input_shape_arg
        self.__dict__["_output"] = None  # not an nn.Module attribute

    def forward(self, x):
        return x

    def get_config(self) -> dict:
        return {"name": self.name, "shape": list(self.shape)}

    def output_tensor(self) -> node_module.KerasTensor:
        """The symbolic tensor this input feeds into a functional model (made once)."""
        if self._output is None:
            node = node_module.Node(self, [], single=True)
            node.output = node_module.KerasTensor(self.shape, node, self.name)
            self.__dict__["_output"] = node.output
        return self._output


def Input(shape=None, batch_size=None, name=None, dtype=None, sparse=None, batch_shape=None,
          tensor=None, **kwargs) -> node_module.KerasTensor:
    """Keras's ``Input``: a symbolic tensor to start a functional model, or first in a ``Sequential``.

    Args:
        shape: Shape of one sample, without the batch axis, e.g. ``(9,)`` or ``(28, 28, 1)``.
        batch_shape: Keras's alternative, with the batch axis first (``(None, 9)``).
        name: Name of the input (the key of a dict of input arrays).

    Returns:
        A ``KerasTensor`` of shape ``(None, *shape)``.

    Example:
        >>> inputs = Input(shape=(9,))
        >>> outputs = Dense(1)(Dense(50, activation='relu')(inputs))
        >>> model = Model(inputs, outputs)
    """
    if shape is None and batch_shape is not None:
        shape = tuple(batch_shape)[1:]
    return InputLayer(shape=shape, name=name, **kwargs).output_tensor()


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
        # On samples of rank > 1, as in Keras, the kernel applies to the last axis.
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


class Embedding(Layer):
    """Turns integer indices into dense vectors: ``(batch, length)`` → ``(batch, length, output_dim)``.

    Args:
        input_dim: Size of the vocabulary (largest index + 1).
        output_dim: Dimension of the embedding vectors.
        embeddings_initializer: Initializer of the ``(input_dim, output_dim)`` table. Defaults to
            'uniform' (Keras's ``RandomUniform(-0.05, 0.05)``).
        mask_zero: Whether index 0 is padding. The layers here do not consume masks; with
            ``mask_zero=True`` the vocabulary must hold ``input_dim`` indices, as in Keras.
    """

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
                 embeddings_regularizer=None, mask_zero: bool = False, input_length=None, **kwargs):
        super().__init__(**kwargs)
        where = f"Embedding '{self.name}'"
        self.input_dim = check_positive_int(input_dim, "input_dim", where)
        self.output_dim = check_positive_int(output_dim, "output_dim", where)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = bool(mask_zero)
        self.embeddings: nn.Parameter | None = None

    def build(self, input_shape) -> None:
        self.embeddings = nn.Parameter(self.embeddings_initializer((self.input_dim, self.output_dim),
                                                                   dtype=torch.float32))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def forward(self, x):
        # Data arrives as float32 tensors: indices are cast here, once per call.
        return nn.functional.embedding(x.long(), self.embeddings)

    def regularization_loss(self):
        if self.embeddings_regularizer is None or self.embeddings is None:
            return None
        return self.embeddings_regularizer(self.embeddings)

    def get_config(self) -> dict:
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer)
                if self.embeddings_regularizer is not None else None,
                "mask_zero": self.mask_zero}


# Keras 2's `keras.layers.core` held these too (course solutions still import them from there).
from .regularization import Dropout, SpatialDropout1D, SpatialDropout2D  # noqa: E402, F401
from .reshaping import Flatten, Permute, RepeatVector, Reshape  # noqa: E402, F401
