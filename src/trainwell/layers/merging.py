"""Merge layers, called on a list of tensors: ``Concatenate``, ``Add``, ``Subtract``, ``Multiply``,
``Average``, ``Maximum``, ``Minimum``, ``Dot``.

Example:
    >>> merged = Concatenate()([Dense(8)(a), Dense(8)(b)])
"""

from __future__ import annotations

import functools

import torch

from .._errors import ConfigError, DataError, describe
from .base import Layer


class _Merge(Layer):
    """Element-wise merge of two or more inputs of one shape."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def check_input_shape(self, input_shape) -> None:
        shapes = input_shape if isinstance(input_shape, list) else None
        if not shapes or len(shapes) < 2 or not isinstance(shapes[0], (tuple, list)):
            raise DataError(f"Layer '{self.name}' ({type(self).__name__}) merges a list of at least 2 "
                            f"tensors, e.g. {type(self).__name__}()([a, b]); received one input.")
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise DataError(f"Layer '{self.name}' ({type(self).__name__}) needs inputs of one shape, "
                            "received "
                            f"{[(None, *s) for s in shapes]}.")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def forward(self, inputs):
        return functools.reduce(self.merge, inputs[1:], inputs[0])

    merge = staticmethod(torch.add)


class Add(_Merge):
    """Sum of the inputs."""

    merge = staticmethod(torch.add)


class Multiply(_Merge):
    """Element-wise product of the inputs."""

    merge = staticmethod(torch.mul)


class Maximum(_Merge):
    """Element-wise maximum of the inputs."""

    merge = staticmethod(torch.maximum)


class Minimum(_Merge):
    """Element-wise minimum of the inputs."""

    merge = staticmethod(torch.minimum)


class Average(_Merge):
    """Element-wise mean of the inputs."""

    def forward(self, inputs):
        return functools.reduce(torch.add, inputs[1:], inputs[0]) / len(inputs)


class Subtract(_Merge):
    """``inputs[0] - inputs[1]``: exactly two inputs."""

    def check_input_shape(self, input_shape) -> None:
        super().check_input_shape(input_shape)
        if len(input_shape) != 2:
            raise DataError(f"Layer '{self.name}' (Subtract) takes exactly 2 inputs, received "
                            f"{len(input_shape)}.")

    def forward(self, inputs):
        return inputs[0] - inputs[1]


class Concatenate(Layer):
    """Joins the inputs along ``axis`` (default -1, the features); other axes must agree."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
            raise ConfigError(f"Concatenate '{self.name}': `axis` expects a non-zero integer (0 is the "
                              f"batch axis), received {describe(axis)}.")
        self.axis = axis

    def _sample_axis(self, rank: int) -> int:
        return self.axis - 1 if self.axis > 0 else rank + self.axis

    def check_input_shape(self, input_shape) -> None:
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise DataError(f"Layer '{self.name}' (Concatenate) joins a list of at least 2 tensors, "
                            "e.g. Concatenate()([a, b]); received one input.")
        ranks = {len(s) for s in input_shape}
        axis = self._sample_axis(len(input_shape[0]))
        rest = {tuple(v for i, v in enumerate(s) if i != axis) for s in input_shape}
        if len(ranks) != 1 or len(rest) != 1 or not 0 <= axis < len(input_shape[0]):
            raise DataError(f"Layer '{self.name}' (Concatenate, axis={self.axis}) needs inputs that agree "
                            f"on every other axis, received {[(None, *s) for s in input_shape]}.")

    def compute_output_shape(self, input_shape):
        axis = self._sample_axis(len(input_shape[0]))
        out = list(input_shape[0])
        out[axis] = sum(s[axis] for s in input_shape)
        return tuple(out)

    def forward(self, inputs):
        return torch.cat(list(inputs), dim=self.axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


class Dot(Layer):
    """Dot product of two inputs along ``axes`` (Keras's counting: axis 0 is the batch axis).

    ``Dot(axes=1)`` on two ``(batch, n)`` inputs gives ``(batch, 1)``; with ``normalize=True``
    the inputs are L2-normalised first (cosine similarity).
    """

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        pair = (axes, axes) if isinstance(axes, int) else tuple(axes)
        if len(pair) != 2 or not all(isinstance(a, int) and a != 0 for a in pair):
            raise ConfigError(f"Dot '{self.name}': `axes` expects a non-zero integer or a pair of them "
                              f"(0 is the batch axis), received {describe(axes)}.")
        self.axes = axes if isinstance(axes, int) else list(pair)
        self._pair = pair
        self.normalize = bool(normalize)

    def _dims(self, input_shape):
        return [a - 1 if a > 0 else len(s) + a for a, s in zip(self._pair, input_shape)]

    def check_input_shape(self, input_shape) -> None:
        if not isinstance(input_shape, list) or len(input_shape) != 2:
            raise DataError(f"Layer '{self.name}' (Dot) takes a list of exactly 2 tensors.")
        if any(len(s) > 2 for s in input_shape):
            raise DataError(f"Layer '{self.name}' (Dot) supports inputs of rank 2 or 3 (batch included), "
                            f"received {[(None, *s) for s in input_shape]}.")
        da, db = self._dims(input_shape)
        if not (0 <= da < len(input_shape[0]) and 0 <= db < len(input_shape[1])) \
                or input_shape[0][da] != input_shape[1][db]:
            raise DataError(f"Layer '{self.name}' (Dot, axes={self.axes}): the dotted axes of "
                            f"{[(None, *s) for s in input_shape]} differ in length.")

    def compute_output_shape(self, input_shape):
        da, db = self._dims(input_shape)
        rest = [v for i, v in enumerate(input_shape[0]) if i != da] + \
               [v for i, v in enumerate(input_shape[1]) if i != db]
        return tuple(rest) or (1,)

    def forward(self, inputs):
        a, b = inputs
        da, db = (d + 1 for d in self._dims([a.shape[1:], b.shape[1:]]))
        if self.normalize:
            a = torch.nn.functional.normalize(a, dim=da, eps=1e-12)
            b = torch.nn.functional.normalize(b, dim=db, eps=1e-12)
        n = a.shape[0]
        left = a.movedim(da, -1).reshape(n, -1, a.shape[da])  # (batch, rest of a, k)
        right = b.movedim(db, 1).reshape(n, b.shape[db], -1)  # (batch, k, rest of b)
        shape = self.compute_output_shape([tuple(a.shape[1:]), tuple(b.shape[1:])])
        return torch.bmm(left, right).reshape(n, *shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


# Keras's functional spellings: `concatenate([a, b])` is `Concatenate()([a, b])`.
def concatenate(inputs, axis: int = -1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def dot(inputs, axes, normalize: bool = False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
