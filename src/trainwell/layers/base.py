"""The base ``Layer``: a name, a ``trainable`` flag, lazy ``build``, Keras's weight accessors,
the input-rank check, and calls on symbolic tensors (the functional API).

Layers build lazily, as in Keras: parameters are created by ``build(input_shape)`` the first
time the input shape is known (from ``input_shape=`` on the first layer, an ``Input``, or the
data given to ``fit``/``predict``). Shapes exclude the batch axis throughout.
"""

from __future__ import annotations

import itertools
import numbers
import re
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from .._errors import ConfigError, DataError, check_positive_int, describe
from . import node as node_module

_name_counters: dict[str, itertools.count] = defaultdict(itertools.count)


def unique_name(base: str) -> str:
    """Keras-style auto names: 'dense', 'dense_1', 'dense_2', ..."""
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


def reset_names() -> None:
    """Restart auto naming (``trainwell.utils.clear_session`` calls this)."""
    _name_counters.clear()


def _snake(name: str) -> str:
    """Keras's auto-name spelling: 'Conv2D' -> 'conv2d', 'MaxPooling2D' -> 'max_pooling2d'."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


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


def as_tuple(value, n: int, argument: str, where: str) -> tuple[int, ...]:
    """``kernel_size=3`` → ``(3, 3)``; a sequence must hold ``n`` positive integers."""
    values = (value,) * n if isinstance(value, numbers.Integral) else value
    try:
        values = tuple(values)
    except TypeError:
        values = ()
    if len(values) != n or not all(isinstance(v, numbers.Integral) and v >= 1 for v in values):
        raise ConfigError(f"{where}: `{argument}` expects a positive integer or {n} of them, "
                          f"received {describe(value)}.")
    return tuple(int(v) for v in values)


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

    # Rank of one sample the layer accepts (batch axis excluded): an exact rank, or a minimum.
    input_ndim: int | None = None
    input_min_ndim: int = 1
    # What to tell a user whose data has the wrong rank for this layer.
    rank_fix = ""

    def __init__(self, name: str | None = None, trainable: bool = True, input_shape=None,
                 input_dim: int | None = None, dtype=None, batch_size=None, batch_input_shape=None):
        super().__init__()
        self.name = name or unique_name(_snake(type(self).__name__))
        self._trainable = bool(trainable)
        self.built = False
        self.input_shape_arg = None
        if batch_input_shape is not None and input_shape is None:
            input_shape = tuple(batch_input_shape)[1:]
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

    def __call__(self, *args, **kwargs):
        if args and node_module.is_symbolic(args[0]):  # functional API: record, compute no numbers
            return node_module.call_symbolic(self, args[0])
        return super().__call__(*args, **kwargs)

    # -- building -------------------------------------------------------------------------
    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create the layer's weights for inputs of ``input_shape`` (no batch axis)."""
        self.built_input_shape = tuple(input_shape) if not _is_shape_list(input_shape) else list(input_shape)
        self.built = True
        self._apply_trainable()

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def check_input_shape(self, input_shape) -> None:
        """Raise a DataError naming the layer, the shape received and the fix when the rank is wrong."""
        if self.input_ndim is None and self.input_min_ndim <= 1:
            return
        rank = len(input_shape)
        if (self.input_ndim is not None and rank != self.input_ndim) or rank < self.input_min_ndim:
            wanted = self.input_ndim if self.input_ndim is not None else f"at least {self.input_min_ndim}"
            raise DataError(
                f"Layer '{self.name}' ({type(self).__name__}) expects inputs of rank {_plus_one(wanted)} "
                f"(batch axis included), but received shape {(None, *input_shape)}. {self.rank_fix}".rstrip())

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


def _is_shape_list(shape) -> bool:
    return isinstance(shape, list) and bool(shape) and isinstance(shape[0], (tuple, list))


def _plus_one(rank):
    return rank + 1 if isinstance(rank, int) else f"at least {int(rank.split()[-1]) + 1}"
