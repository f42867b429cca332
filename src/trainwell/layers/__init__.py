"""Keras layers as ``torch.nn.Module``s, one module per family (as ``keras.layers``):

- ``core``: ``Input``, ``InputLayer``, ``Dense``, ``Activation``, ``Embedding``
- ``reshaping``: ``Flatten``, ``Reshape``, ``Permute``, ``RepeatVector``, ``UpSampling2D``,
  ``ZeroPadding2D``, ``Cropping2D``, ``Rescaling``
- ``convolutional``: ``Conv1D``, ``Conv2D``, ``SeparableConv2D``, ``Conv2DTranspose``
- ``pooling``: ``MaxPooling1D/2D``, ``AveragePooling1D/2D``, ``GlobalMax/AveragePooling1D/2D``
- ``normalization``: ``BatchNormalization``, ``LayerNormalization``, ``Normalization``
- ``regularization``: ``Dropout``, ``SpatialDropout1D/2D``, ``GaussianNoise``
- ``merging``: ``Concatenate``, ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
  ``Minimum``, ``Dot``
- ``advanced_activations``: ``ReLU``, ``LeakyReLU``, ``PReLU``, ``ELU``, ``Softmax``

Keras 2's module names (``layers.core.Dense``, ``layers.merge.Concatenate``, ``layers.noise``,
``layers.embeddings``) import too. Image layers are channels-last, as in Keras.
"""

from __future__ import annotations

from .._errors import ConfigTypeError, describe, unknown_name
from .advanced_activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .base import Layer, _as_shape, reset_names, unique_name  # noqa: F401
from .convolutional import Conv1D, Conv2D, Conv2DTranspose, SeparableConv2D
from .core import Activation, Dense, Embedding, Input, InputLayer  # noqa: F401
from .merging import (  # noqa: F401
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from .node import KerasTensor  # noqa: F401
from .normalization import BatchNormalization, LayerNormalization, Normalization
from .pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from .regularization import Dropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D
from .reshaping import (
    Cropping2D,
    Flatten,
    Permute,
    RepeatVector,
    Rescaling,
    Reshape,
    UpSampling2D,
    ZeroPadding2D,
)

# Keras's aliases of pooling names.
MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D = MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
Convolution1D, Convolution2D = Conv1D, Conv2D

LAYERS = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Embedding, Dropout, SpatialDropout1D, SpatialDropout2D, GaussianNoise,
    BatchNormalization, LayerNormalization, Normalization, Flatten, Reshape, Permute, RepeatVector,
    Rescaling, UpSampling2D, ZeroPadding2D, Cropping2D, Conv1D, Conv2D, SeparableConv2D, Conv2DTranspose,
    MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    GlobalAveragePooling1D, GlobalAveragePooling2D, Concatenate, Add, Subtract, Multiply, Average,
    Maximum, Minimum, Dot, ReLU, LeakyReLU, PReLU, ELU, Softmax)}


def deserialize(config: dict) -> Layer:
    """A layer from ``{"class_name": ..., "config": {...}}``."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConfigTypeError("A layer config must be a dict with 'class_name', "
                              f"received {describe(config)}.")
    cls = LAYERS.get(config["class_name"])
    if cls is None:
        raise unknown_name("layer type", config["class_name"], LAYERS)
    return cls.from_config(dict(config.get("config", {})))


def serialize(layer: Layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


__all__ = sorted([*LAYERS, "Input", "Layer", "KerasTensor", "deserialize", "serialize", "reset_names",
                  "unique_name", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalMaxPool1D",
                  "GlobalMaxPool2D", "GlobalAvgPool1D", "GlobalAvgPool2D", "Convolution1D", "Convolution2D",
                  "add", "average", "concatenate", "dot", "maximum", "minimum", "multiply", "subtract"])
