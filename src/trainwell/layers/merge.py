"""Keras 2's `layers.merge` module name: the layers live in `layers.merging`."""

from .merging import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract  # noqa: F401
