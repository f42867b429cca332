"""Keras 2's `layers.noise` module name: the layers live in `layers.regularization`."""

from .regularization import GaussianNoise  # noqa: F401
