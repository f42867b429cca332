"""Keras weight regularizers: penalties added to the loss during training.

A regularizer is called on a weight tensor and returns a 0-d tensor, which the training loop
adds to the loss. Keras's formulas are used as they are: ``L2`` is ``l2 * sum(w ** 2)`` with no
1/2 factor, so it equals torch's ``weight_decay`` only with ``weight_decay = 2 * l2`` for SGD.

Example:
    >>> import torch
    >>> from trainwell import regularizers
    >>> regularizers.l2(0.01)(torch.tensor([1.0, -2.0]))
    tensor(0.0500)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainwell._errors import ConfigError, ConfigTypeError, check_number, describe, unknown_name
from trainwell._registry import Configurable, split_config


def _check_factor(value, argument: str, where: str, default: float) -> float:
    """A regularization factor as float; None means ``default`` (as in Keras)."""
    if value is None:
        return default
    return check_number(value, argument, where, low=0, example=0.01)


class Regularizer(Configurable):
    """Base class: ``regularizer(weight) -> 0-d tensor`` added to the loss.

    Subclasses implement ``__call__`` and ``get_config``; ``from_config`` rebuilds them.
    """

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=weight.dtype, device=weight.device)


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)``.

    Args:
        l1: Non-negative L1 factor. Defaults to 0.0.
        l2: Non-negative L2 factor. Defaults to 0.0.

    Raises:
        ConfigError: a factor is negative or not a finite number.

    Example:
        >>> L1L2(l1=0.1, l2=0.01)(torch.tensor([3.0, -4.0]))
        tensor(0.9500)
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _check_factor(l1, "l1", "L1L2", 0.0)
        self.l2 = _check_factor(l2, "l2", "L1L2", 0.0)

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        penalty = torch.zeros((), dtype=weight.dtype, device=weight.device)
        # Skipping a zero factor saves a full pass over the weight on every step.
        if self.l1:
            penalty = penalty + self.l1 * weight.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * weight.square().sum()
        return penalty

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|w|)``.

    Args:
        l1: Non-negative factor. Defaults to 0.01.

    Raises:
        ConfigError: ``l1`` is negative or not a finite number.

    Example:
        >>> L1(0.1)(torch.tensor([3.0, -4.0]))
        tensor(0.7000)
    """

    def __init__(self, l1: float = 0.01):
        self.l1 = _check_factor(l1, "l1", "L1", 0.01)

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        return self.l1 * weight.abs().sum()

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w ** 2)`` (no 1/2 factor, as in Keras).

    Args:
        l2: Non-negative factor. Defaults to 0.01.

    Raises:
        ConfigError: ``l2`` is negative or not a finite number.

    Example:
        >>> L2(0.01)(torch.tensor([3.0, -4.0]))
        tensor(0.2500)
    """

    def __init__(self, l2: float = 0.01):
        self.l2 = _check_factor(l2, "l2", "L2", 0.01)

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        return self.l2 * weight.square().sum()

    def get_config(self) -> dict:
        return {"l2": self.l2}


# Keras 3 exports the classes under these lower-case names too: regularizers.l2(0.01) is an L2.
l1 = L1
l2 = L2
l1_l2 = L1L2

_CLASSES: tuple[type[Regularizer], ...] = (L1, L2, L1L2)
ALL: tuple[str, ...] = ("l1", "l2", "l1_l2")
"""The names ``get`` accepts (class names ``L1``, ``L2``, ``L1L2`` are accepted too)."""


def _class_for(name: str, argument: str) -> type[Regularizer]:
    key = name.strip().lower().replace("_", "")
    cls = {"l1": L1, "l2": L2, "l1l2": L1L2}.get(key)
    if cls is None:
        raise unknown_name("regularizer", name, ALL, argument)
    return cls


def get(identifier, argument: str = "regularizer") -> Regularizer | Callable | None:
    """Resolve a regularizer identifier.

    Args:
        identifier: None, a name (``'l1'``, ``'l2'``, ``'l1_l2'``; class names too) giving the
            Keras defaults, a config dict ``{"class_name": ..., "config": {...}}``, a
            ``Regularizer``, or a callable ``fn(weight) -> scalar`` (returned unchanged).
        argument: Argument name used in error messages, e.g. ``'kernel_regularizer'``.

    Returns:
        A regularizer, or None for None.

    Raises:
        ConfigError: unknown name (listing valid names and the closest) or malformed dict.
        ConfigTypeError: ``identifier`` has an unsupported type.

    Note:
        As in Keras 3, ``'l1_l2'`` gives ``L1L2()`` whose factors both default to 0, i.e. no
        penalty; pass ``l1_l2(l1=..., l2=...)`` to set them.

    Example:
        >>> get("l2")
        L2(l2=0.01)
        >>> get({"class_name": "L1L2", "config": {"l1": 0.001, "l2": 0.01}})
        L1L2(l1=0.001, l2=0.01)
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        return _class_for(identifier, argument)()
    if isinstance(identifier, dict):
        name, config = split_config(identifier, argument, "{'class_name': 'L2', 'config': {'l2': 0.01}}")
        return _class_for(name, argument).from_config(config)
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ConfigTypeError(
        f"`{argument}` expects a regularizer name, config dict, Regularizer, callable or None, "
        f"received {describe(identifier)}. Pass e.g. {argument}=regularizers.l2(0.01)."
    )


def serialize(regularizer) -> dict | None:
    """The config dict under which a regularizer is stored in a model file.

    Args:
        regularizer: A regularizer from this module, a name ``get`` accepts, or None.

    Returns:
        ``{"class_name": ..., "config": {...}}``, or None for None.

    Raises:
        ConfigError: ``regularizer`` is a custom callable, which cannot be rebuilt from a file.

    Example:
        >>> serialize(l2(0.001))
        {'class_name': 'L2', 'config': {'l2': 0.001}}
    """
    reg = get(regularizer)
    if reg is None:
        return None
    if type(reg) not in _CLASSES:
        received = getattr(reg, "__name__", None) or type(reg).__name__
        raise ConfigError(
            f"`regularizer`: custom regularizers cannot be saved in a model file, received {received}. "
            "Use L1, L2 or L1L2 instead, for example kernel_regularizer=regularizers.l2(0.01)."
        )
    return {"class_name": type(reg).__name__, "config": reg.get_config()}


def deserialize(config: dict | None) -> Regularizer | None:
    """Inverse of ``serialize``: same as ``get`` (kept for Keras parity)."""
    return get(config)
