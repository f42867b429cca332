"""Small helpers with Keras's names: ``to_categorical``, ``normalize``, ``set_random_seed``,
``clear_session``; ``np_utils`` is Keras 2's module of the first two."""

from __future__ import annotations

import random
import sys
import types

import numpy as np
import torch

from ._errors import ConfigError, DataError, describe


def to_categorical(y, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """One-hot encode integer class labels.

    Args:
        y: Array-like of integer labels 0..num_classes-1, of shape (n,) or (n, 1).
        num_classes: Number of classes; max(y) + 1 when None.
        dtype: numpy dtype of the result.

    Returns:
        Array of shape (n, num_classes).

    Example:
        >>> to_categorical([0, 2, 1])
        array([[1., 0., 0.],
               [0., 0., 1.],
               [0., 1., 0.]], dtype=float32)
    """
    labels = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if labels.size and (labels.dtype.kind not in "biuf" or not np.all(np.mod(labels, 1) == 0)):
        raise DataError("to_categorical expects integer class labels, received values of dtype "
                        f"{labels.dtype} "
                        "that are not whole numbers. Encode text labels first (e.g. pandas.factorize).")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"to_categorical expects labels >= 0, received {int(labels.min())}.")
    top = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        num_classes = top
    elif not isinstance(num_classes, (int, np.integer)) or num_classes < top:
        raise ConfigError(f"`num_classes` expects an integer >= {top} (the largest label + 1), received "
                          f"{describe(num_classes)}.")
    out = np.zeros(labels.shape + (int(num_classes),), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """Scale ``x`` to unit ``order``-norm along ``axis`` (rows of zeros stay zeros).

    Example:
        >>> normalize([[3.0, 4.0], [0.0, 0.0]])
        array([[0.6, 0.8],
               [0. , 0. ]])
    """
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)


# Course solutions written for Keras 2 import `keras.utils.np_utils.to_categorical`.
np_utils = types.ModuleType(__name__ + ".np_utils", "Keras 2 names: to_categorical, normalize.")
np_utils.to_categorical, np_utils.normalize = to_categorical, normalize
sys.modules[np_utils.__name__] = np_utils


def set_random_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators: the same seed gives the same numbers on the CPU."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"`seed` expects a non-negative integer, received {describe(seed)}.")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def clear_session() -> None:
    """Restart layer auto-naming ('dense', 'dense_1', ...), as Keras's clear_session does."""
    from .layers import reset_names

    reset_names()
