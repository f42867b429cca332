"""Keras 2's `layers.embeddings` module name: the layers live in `layers.core`."""

from .core import Embedding  # noqa: F401
