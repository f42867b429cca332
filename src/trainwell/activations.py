"""Activation functions by their Keras names, computed with torch builtins.

Every activation is a plain function ``fn(x) -> tensor`` on torch tensors, with Keras's name,
arguments and defaults. ``get`` turns a name (or None, or a callable) into the function, and
``serialize`` turns a function back into the name stored in a model file.

Example:
    >>> import torch
    >>> from trainwell import activations
    >>> activations.get("relu")(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainwell._errors import ConfigError, ConfigTypeError, describe, unknown_name

Activation = Callable[[torch.Tensor], torch.Tensor]


def linear(x: torch.Tensor) -> torch.Tensor:
    """Identity: returns ``x`` unchanged (Keras's default when ``activation=None``)."""
    return x


def relu(
    x: torch.Tensor, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0
) -> torch.Tensor:
    """Rectified linear unit, with Keras's optional leak, cap and threshold.

    ``f(x) = x`` for ``threshold < x < max_value``, ``max_value`` above the cap and
    ``negative_slope * (x - threshold)`` at or below the threshold.

    Args:
        x: Input tensor.
        negative_slope: Slope below the threshold. Defaults to 0.0.
        max_value: Upper cap, or None for no cap. Defaults to None.
        threshold: Values at or below it are zeroed (or leaked). Defaults to 0.0.

    Returns:
        A tensor of the same shape and dtype as ``x``.

    Example:
        >>> relu(torch.tensor([-2.0, 1.0, 8.0]), max_value=6.0)
        tensor([0., 1., 6.])
    """
    # The plain call is by far the most common: keep it on the single fused builtin.
    if negative_slope == 0.0 and threshold == 0.0:
        out = F.relu(x)
    elif negative_slope == 0.0:
        out = torch.where(x > threshold, x, torch.zeros((), dtype=x.dtype, device=x.device))
    else:
        out = torch.where(x > threshold, x, negative_slope * (x - threshold))
    if max_value is not None:
        out = torch.clamp(out, max=max_value)
    return out


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    """Leaky ReLU: ``x`` if ``x > 0`` else ``negative_slope * x``.

    Keras 3 uses ``negative_slope=0.2``; torch's ``F.leaky_relu`` defaults to 0.01, so the
    Keras default is passed explicitly.
    """
    return F.leaky_relu(x, negative_slope=negative_slope)


def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Exponential linear unit: ``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""
    return F.elu(x, alpha=alpha)


def selu(x: torch.Tensor) -> torch.Tensor:
    """Scaled ELU with the self-normalising constants (scale ~1.0507, alpha ~1.6733)."""
    return F.selu(x)


def gelu(x: torch.Tensor, approximate: bool = False) -> torch.Tensor:
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate=True`` uses the tanh formula."""
    return F.gelu(x, approximate="tanh" if approximate else "none")


def tanh(x: torch.Tensor) -> torch.Tensor:
    """Hyperbolic tangent."""
    return torch.tanh(x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Logistic sigmoid ``1 / (1 + exp(-x))``."""
    return torch.sigmoid(x)


def softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Softmax over ``axis`` (Keras name for torch's ``dim``); the slices along it sum to 1."""
    return F.softmax(x, dim=axis)


def log_softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Logarithm of the softmax over ``axis``, computed stably in one pass."""
    return F.log_softmax(x, dim=axis)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """Softplus ``log(1 + exp(x))``."""
    return F.softplus(x)


def softsign(x: torch.Tensor) -> torch.Tensor:
    """Softsign ``x / (1 + |x|)``."""
    return F.softsign(x)


def silu(x: torch.Tensor) -> torch.Tensor:
    """Swish / SiLU ``x * sigmoid(x)``. ``swish`` is the same function."""
    return F.silu(x)


def exponential(x: torch.Tensor) -> torch.Tensor:
    """Exponential ``exp(x)``."""
    return torch.exp(x)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear sigmoid ``relu6(x + 3) / 6`` (Keras 3's formula; Keras 2 used 0.2x + 0.5)."""
    return F.hardsigmoid(x)


def hard_silu(x: torch.Tensor) -> torch.Tensor:
    """Hard swish ``x * hard_sigmoid(x)``. ``hard_swish`` is the same function."""
    return F.hardswish(x)


def relu6(x: torch.Tensor) -> torch.Tensor:
    """ReLU capped at 6: ``min(max(x, 0), 6)``."""
    return F.relu6(x)


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Logarithm of the sigmoid, ``-softplus(-x)``, computed stably."""
    return F.logsigmoid(x)


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish ``x * tanh(softplus(x))``."""
    return F.mish(x)


swish = silu
hard_swish = hard_silu

# Canonical names, in the order Keras documents them. Serialising gives these names.
_BY_NAME: dict[str, Activation] = {
    fn.__name__: fn
    for fn in (
        linear, relu, leaky_relu, relu6, elu, selu, gelu, silu, hard_silu, mish, tanh, sigmoid,
        hard_sigmoid, softmax, log_softmax, softplus, softsign, exponential, log_sigmoid,
    )
}
# Aliases Keras also accepts; they resolve to the same function, so they serialise to the
# canonical name (Keras 3 stores 'silu' for 'swish' too).
_ALIASES: dict[str, Activation] = {"swish": silu, "hard_swish": hard_silu}

ALL: tuple[str, ...] = tuple(_BY_NAME) + tuple(_ALIASES)
"""Every name ``get`` accepts."""

RELU_FAMILY: frozenset[str] = frozenset({"relu", "relu6"})
"""Activations whose units can 'die': zero output and zero gradient for all inputs below 0."""

SATURATING: frozenset[str] = frozenset({"tanh", "sigmoid", "hard_sigmoid", "softsign"})
"""Activations whose gradient vanishes for large |x| (units can saturate)."""

_NAME_OF: dict[Activation, str] = {fn: name for name, fn in _BY_NAME.items()}
# torch builtins a user may pass directly, with the same defaults as the Keras functions:
# they can be saved under the Keras name and reload to identical numbers.
_NAME_OF.update({
    torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", torch.sigmoid: "sigmoid",
    torch.exp: "exponential",
    F.elu: "elu", F.selu: "selu", F.gelu: "gelu", F.silu: "silu", F.softplus: "softplus",
    F.softsign: "softsign", F.relu6: "relu6", F.mish: "mish", F.hardsigmoid: "hard_sigmoid",
    F.hardswish: "hard_silu", F.logsigmoid: "log_sigmoid",
})

_CUSTOM_CALLABLE_MSG = (
    "`activation`: custom callables cannot be saved in a model file, received {received}. "
    "Use a named activation instead, for example activation='relu' (valid names: {names})."
)


def names() -> list[str]:
    """Every activation name ``get`` accepts, sorted (``ALL`` in order).

    Example:
        >>> "relu" in names()
        True
    """
    return sorted(ALL)


def get(identifier: str | Activation | None, argument: str = "activation") -> Activation:
    """Resolve an activation identifier to a function.

    Args:
        identifier: None (linear), a name such as ``'relu'`` (case-insensitive), or a callable,
            which is returned unchanged.
        argument: Argument name used in error messages. Defaults to ``'activation'``.

    Returns:
        A function mapping a tensor to a tensor.

    Raises:
        ConfigError: ``identifier`` is an unknown name; the message lists the valid names and
            the closest one.
        ConfigTypeError: ``identifier`` is neither None, a string nor a callable.

    Example:
        >>> get("ReLU") is relu
        True
        >>> get(None) is linear
        True
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        key = identifier.strip().lower()
        fn = _BY_NAME.get(key) or _ALIASES.get(key)
        if fn is None:
            raise unknown_name("activation", identifier, ALL, argument, "trainwell.activations.names()")
        return fn
    if callable(identifier):
        return identifier
    raise ConfigTypeError(
        f"`{argument}` expects an activation name (str), a callable or None, "
        f"received {describe(identifier)}. "
        f"Pass a name such as {argument}='relu'."
    )


def serialize(activation: str | Activation | None) -> str:
    """The name under which an activation is stored in a model file.

    Args:
        activation: A function from this module (or its torch builtin equivalent), a name, or None.

    Returns:
        The canonical Keras name, e.g. ``'relu'``; None gives ``'linear'``.

    Raises:
        ConfigError: ``activation`` is a custom callable, which has no name to save.

    Example:
        >>> serialize(swish)
        'silu'
    """
    fn = get(activation)
    try:
        name = _NAME_OF.get(fn)
    except TypeError:  # an unhashable callable object cannot be one of ours
        name = None
    if name is None:
        received = getattr(fn, "__name__", None) or describe(fn)
        raise ConfigError(_CUSTOM_CALLABLE_MSG.format(received=received, names=", ".join(_BY_NAME)))
    return name


def deserialize(name: str | None) -> Activation:
    """Inverse of ``serialize``: same as ``get`` (kept for Keras parity)."""
    return get(name)
