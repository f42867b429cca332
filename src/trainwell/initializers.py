"""Keras initializers: objects that create a weight tensor of a given shape.

Shapes follow Keras: a Dense kernel is ``(fan_in, fan_out)``; a 1-D shape uses its length as
both fans; for higher ranks the leading dimensions form the receptive field. Each initializer is
called as ``init(shape, dtype=torch.float32)`` and returns a new CPU tensor.

Randomness: with ``seed=None`` the numbers come from torch's global generator, so
``set_random_seed`` makes whole models reproducible; with an integer ``seed`` the initializer uses
its own generator seeded afresh on every call, so it returns the same tensor each time (Keras 3
behaviour for seeded initializers).

Example:
    >>> from trainwell import initializers
    >>> init = initializers.get("glorot_uniform")
    >>> init((3, 2)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from trainwell._errors import ConfigError, ConfigTypeError, describe, unknown_name
from trainwell._registry import Configurable, split_config

# Standard deviation of a unit normal truncated at +/-2: dividing by it makes the truncated draw
# have the intended variance (the constant Keras uses in VarianceScaling).
_TRUNCATION_STD = 0.87962566103423978

_DTYPES = {
    "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64, "double": torch.float64,
}


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape, as Keras computes them.

    Args:
        shape: Weight shape. ``()`` gives (1, 1); ``(n,)`` gives (n, n); ``(a, b)`` gives (a, b);
            ``(..., a, b)`` multiplies both by the product of the leading (receptive field) dims.

    Returns:
        The pair ``(fan_in, fan_out)``.

    Example:
        >>> compute_fans((3, 3, 16, 32))
        (144, 288)
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _check_shape(shape, where: str) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    ok = dims is not None and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in dims
    )
    if not ok:
        raise ConfigError(
            f"{where}: `shape` expects a tuple of non-negative integers, received {describe(shape)}. "
            "For a Dense kernel pass (fan_in, fan_out), e.g. (784, 128)."
        )
    return tuple(int(d) for d in dims)


def _check_dtype(dtype, where: str) -> torch.dtype:
    resolved = _DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(
            f"{where}: `dtype` expects a torch dtype or one of {', '.join(_DTYPES)}, "
            f"received {describe(dtype)}. "
            "Leave it out to get float32."
        )
    return resolved


def _check_number(value, argument: str, where: str, *, minimum: float | None = None,
                  strict: bool = False) -> float:
    """``value`` as float if it is a finite real number above ``minimum``, else a ConfigError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else (f" > {minimum}" if strict else f" >= {minimum}")
        raise ConfigError(
            f"{where}: `{argument}` expects a finite number{bound}, received {describe(value)}. "
            f"Pass a value such as {argument}={max(minimum or 0.0, 0.0) + 1.0}."
        )
    return float(value)


def _check_seed(seed, where: str) -> int | None:
    if seed is None:
        return None
    if not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0):
        raise ConfigError(
            f"{where}: `seed` expects None or a non-negative integer, received {describe(seed)}. "
            "Pass seed=42 for reproducible draws, or leave it out to use the global seed."
        )
    return int(seed)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    # Sampling kernels (erfinv, qr) are not implemented for every dtype on every device, so draws
    # happen in float32 (float64 when asked) and are cast afterwards; the cast is free when equal.
    return torch.float64 if dtype == torch.float64 else torch.float32


class Initializer(Configurable):
    """Base class: ``init(shape, dtype=torch.float32) -> torch.Tensor``.

    Subclasses implement ``__call__`` and ``get_config``; ``from_config`` rebuilds them.
    """

    def __call__(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(shape, dtype).")


class _Seeded(Initializer):
    """An initializer that draws random numbers from a seed or the global generator."""

    def __init__(self, seed: int | None = None):
        self.seed = _check_seed(seed, type(self).__name__)

    def _generator(self) -> torch.Generator | None:
        # A fresh generator per call makes a seeded initializer return the same tensor every
        # time; None makes torch use (and advance) its global generator.
        if self.seed is None:
            return None
        return torch.Generator().manual_seed(self.seed)

    def _prepare(self, shape, dtype) -> tuple[tuple[int, ...], torch.dtype]:
        where = type(self).__name__
        dtype = _check_dtype(dtype, where)
        if not dtype.is_floating_point:
            raise ConfigError(f"{where}: random initializers need a floating dtype, received {dtype}.")
        return _check_shape(shape, where), dtype


def _truncated_normal(shape, mean: float, stddev: float, dtype, generator) -> torch.Tensor:
    """Normal draws restricted to ``mean +/- 2 * stddev`` (Keras's truncation)."""
    out = torch.empty(shape, dtype=_work_dtype(dtype))
    if stddev == 0.0:
        return out.fill_(mean).to(dtype)
    torch.nn.init.trunc_normal_(out, mean, stddev, mean - 2 * stddev, mean + 2 * stddev, generator=generator)
    return out.to(dtype)


class Zeros(Initializer):
    """All zeros (Keras's default bias initializer)."""

    def __call__(self, shape, dtype=torch.float32):
        return torch.zeros(_check_shape(shape, "Zeros"), dtype=_check_dtype(dtype, "Zeros"))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=torch.float32):
        return torch.ones(_check_shape(shape, "Ones"), dtype=_check_dtype(dtype, "Ones"))


class Constant(Initializer):
    """Every entry equal to ``value``.

    Args:
        value: A real number. Defaults to 0.0.
    """

    def __init__(self, value: float = 0.0):
        self.value = _check_number(value, "value", "Constant")

    def __call__(self, shape, dtype=torch.float32):
        return torch.full(_check_shape(shape, "Constant"), self.value, dtype=_check_dtype(dtype, "Constant"))

    def get_config(self):
        return {"value": self.value}


class RandomNormal(_Seeded):
    """Normal draws with ``mean`` and ``stddev``.

    Args:
        mean: Mean. Defaults to 0.0.
        stddev: Standard deviation, >= 0. Defaults to 0.05.
        seed: None (global generator) or an integer. Defaults to None.

    Raises:
        ConfigError: ``stddev`` is negative or a value is not a finite number.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean = _check_number(mean, "mean", "RandomNormal")
        self.stddev = _check_number(stddev, "stddev", "RandomNormal", minimum=0.0)

    def __call__(self, shape, dtype=torch.float32):
        shape, dtype = self._prepare(shape, dtype)
        out = torch.empty(shape, dtype=_work_dtype(dtype))
        return out.normal_(self.mean, self.stddev, generator=self._generator()).to(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(_Seeded):
    """Normal draws with values beyond two standard deviations re-drawn.

    The truncated draws have a standard deviation of about ``0.88 * stddev``.

    Args:
        mean: Mean. Defaults to 0.0.
        stddev: Standard deviation before truncation, >= 0. Defaults to 0.05.
        seed: None (global generator) or an integer. Defaults to None.

    Raises:
        ConfigError: ``stddev`` is negative or a value is not a finite number.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean = _check_number(mean, "mean", "TruncatedNormal")
        self.stddev = _check_number(stddev, "stddev", "TruncatedNormal", minimum=0.0)

    def __call__(self, shape, dtype=torch.float32):
        shape, dtype = self._prepare(shape, dtype)
        return _truncated_normal(shape, self.mean, self.stddev, dtype, self._generator())

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(_Seeded):
    """Uniform draws in ``[minval, maxval)``.

    Args:
        minval: Lower bound. Defaults to -0.05.
        maxval: Upper bound, > minval. Defaults to 0.05.
        seed: None (global generator) or an integer. Defaults to None.

    Raises:
        ConfigError: ``minval >= maxval`` or a value is not a finite number.
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.minval = _check_number(minval, "minval", "RandomUniform")
        self.maxval = _check_number(maxval, "maxval", "RandomUniform")
        if self.minval >= self.maxval:
            raise ConfigError(
                f"RandomUniform: `minval` must be smaller than `maxval`, received minval={minval!r}, "
                f"maxval={maxval!r}. Pass e.g. RandomUniform(minval=-0.05, maxval=0.05)."
            )

    def __call__(self, shape, dtype=torch.float32):
        shape, dtype = self._prepare(shape, dtype)
        out = torch.empty(shape, dtype=_work_dtype(dtype))
        return out.uniform_(self.minval, self.maxval, generator=self._generator()).to(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")


class VarianceScaling(_Seeded):
    """Draws whose variance is ``scale / n``, with ``n`` a fan of the shape.

    ``n`` is fan_in, fan_out or their mean (``mode``). ``distribution='truncated_normal'`` (or
    ``'normal'``, which Keras maps to it) draws a normal truncated at 2 std with stddev
    ``sqrt(scale / n) / 0.8796...``; ``'untruncated_normal'`` uses stddev ``sqrt(scale / n)``;
    ``'uniform'`` draws in ``[-limit, limit]`` with ``limit = sqrt(3 * scale / n)``.

    Args:
        scale: Positive scaling factor. Defaults to 1.0.
        mode: ``'fan_in'``, ``'fan_out'`` or ``'fan_avg'``. Defaults to ``'fan_in'``.
        distribution: ``'truncated_normal'``, ``'untruncated_normal'`` or ``'uniform'``.
            Defaults to ``'truncated_normal'``.
        seed: None (global generator) or an integer. Defaults to None.

    Raises:
        ConfigError: ``scale`` is not positive, or ``mode``/``distribution`` is unknown.

    Example:
        >>> init = VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform")  # limit sqrt(6/100)
        >>> bool(init((100, 10)).abs().max() <= 0.245)
        True
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None):
        super().__init__(seed)
        self.scale = _check_number(scale, "scale", "VarianceScaling", minimum=0.0, strict=True)
        if mode not in _MODES:
            raise unknown_name("mode", mode, _MODES, "mode")
        dist = distribution.lower() if isinstance(distribution, str) else distribution
        if dist not in _DISTRIBUTIONS:
            raise unknown_name("distribution", distribution, _DISTRIBUTIONS, "distribution")
        self.mode = mode
        self.distribution = "truncated_normal" if dist == "normal" else dist

    def __call__(self, shape, dtype=torch.float32):
        shape, dtype = self._prepare(shape, dtype)
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        generator = self._generator()
        if self.distribution == "truncated_normal":
            return _truncated_normal(shape, 0.0, math.sqrt(variance) / _TRUNCATION_STD, dtype, generator)
        out = torch.empty(shape, dtype=_work_dtype(dtype))
        if self.distribution == "untruncated_normal":
            out.normal_(0.0, math.sqrt(variance), generator=generator)
        else:
            limit = math.sqrt(3.0 * variance)
            out.uniform_(-limit, limit, generator=generator)
        return out.to(dtype)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class _FixedVarianceScaling(VarianceScaling):
    """A named VarianceScaling preset; only ``seed`` is configurable."""

    _preset: tuple[float, str, str] = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed: int | None = None):
        scale, mode, distribution = self._preset
        super().__init__(scale=scale, mode=mode, distribution=distribution, seed=seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_FixedVarianceScaling):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(6 / (fan_in + fan_out))``.

    Keras's default ``kernel_initializer``.
    """

    _preset = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(2 / (fan_in + fan_out)) / 0.8796...``."""

    _preset = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(6 / fan_in)``."""

    _preset = (2.0, "fan_in", "uniform")


class HeNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(2 / fan_in) / 0.8796...``."""

    _preset = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(3 / fan_in)``."""

    _preset = (1.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(1 / fan_in) / 0.8796...``."""

    _preset = (1.0, "fan_in", "truncated_normal")


class Orthogonal(_Seeded):
    """A (semi-)orthogonal matrix times ``gain``, from the QR decomposition of a normal draw.

    Shapes with more than two dimensions are flattened to ``(prod(shape[:-1]), shape[-1])``.

    Args:
        gain: Multiplicative factor. Defaults to 1.0.
        seed: None (global generator) or an integer. Defaults to None.

    Raises:
        ConfigError: called with a shape of fewer than two dimensions.
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        super().__init__(seed)
        self.gain = _check_number(gain, "gain", "Orthogonal")

    def __call__(self, shape, dtype=torch.float32):
        shape, dtype = self._prepare(shape, dtype)
        if len(shape) < 2:
            raise ConfigError(
                f"Orthogonal: expects a shape with at least 2 dimensions, received {shape}. "
                "Use it for kernels, and e.g. 'zeros' for biases."
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        draw = torch.empty(max(rows, cols), min(rows, cols), dtype=_work_dtype(dtype))
        draw.normal_(0.0, 1.0, generator=self._generator())
        q, r = torch.linalg.qr(draw)
        # Fixing the signs by diag(r) makes the result uniformly distributed over orthogonal matrices.
        q = q * torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).to(dtype)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only; non-square gives ones on the diagonal).

    Args:
        gain: Multiplicative factor. Defaults to 1.0.

    Raises:
        ConfigError: called with a shape that is not 2-D.
    """

    def __init__(self, gain: float = 1.0):
        self.gain = _check_number(gain, "gain", "Identity")

    def __call__(self, shape, dtype=torch.float32):
        shape = _check_shape(shape, "Identity")
        if len(shape) != 2:
            raise ConfigError(
                f"Identity: expects a 2-D shape (rows, cols), received {shape}. "
                "Use it for 2-D kernels only."
            )
        dtype = _check_dtype(dtype, "Identity")
        return (self.gain * torch.eye(*shape, dtype=_work_dtype(dtype))).to(dtype)

    def get_config(self):
        return {"gain": self.gain}


_CLASSES: tuple[type[Initializer], ...] = (
    Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling,
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal, Identity,
)
_SNAKE_NAMES: dict[str, type[Initializer]] = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_uniform": HeUniform,
    "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal, "identity": Identity,
}
# Other spellings Keras 3 accepts.
_ALIASES: dict[str, type[Initializer]] = {
    "zero": Zeros, "one": Ones, "uniform": RandomUniform, "normal": RandomNormal,
    "OrthogonalInitializer": Orthogonal, "IdentityInitializer": Identity,
}


def _key(name: str) -> str:
    # 'GlorotUniform', 'glorot_uniform' and 'Glorot_Uniform' all name one class.
    return name.strip().lower().replace("_", "")


_LOOKUP: dict[str, type[Initializer]] = {
    _key(name): cls
    for name, cls in [*_SNAKE_NAMES.items(), *_ALIASES.items(), *((c.__name__, c) for c in _CLASSES)]
}
ALL: tuple[str, ...] = tuple(_SNAKE_NAMES)
"""The snake_case names ``get`` accepts (CamelCase class names are accepted too)."""


def names() -> list[str]:
    """Every snake_case initializer name ``get`` accepts, sorted (class names work too).

    Example:
        >>> "glorot_uniform" in names()
        True
    """
    return sorted(ALL)


def _class_for(name: str, argument: str) -> type[Initializer]:
    cls = _LOOKUP.get(_key(name))
    if cls is None:
        raise unknown_name("initializer", name, ALL, argument, "trainwell.initializers.names()")
    return cls


def get(identifier, argument: str = "initializer") -> Initializer | Callable | None:
    """Resolve an initializer identifier.

    Args:
        identifier: None, a name (``'glorot_uniform'`` or ``'GlorotUniform'``), a config dict
            ``{"class_name": ..., "config": {...}}``, an ``Initializer`` instance or class, or a
            callable ``fn(shape, dtype)`` (returned unchanged).
        argument: Argument name used in error messages, e.g. ``'kernel_initializer'``.

    Returns:
        An initializer (None for None).

    Raises:
        ConfigError: unknown name (listing valid names and the closest), or a malformed dict.
        ConfigTypeError: ``identifier`` has an unsupported type.

    Example:
        >>> get("he_normal")
        HeNormal(seed=None)
        >>> get({"class_name": "RandomUniform", "config": {"minval": 0.0, "maxval": 1.0}})
        RandomUniform(minval=0.0, maxval=1.0, seed=None)
    """
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        return _class_for(identifier, argument)()
    if isinstance(identifier, dict):
        name, config = split_config(identifier, argument, "{'class_name': 'GlorotUniform', 'config': {}}")
        return _class_for(name, argument).from_config(config)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ConfigTypeError(
        f"`{argument}` expects an initializer name, config dict, Initializer or callable, "
        f"received {describe(identifier)}. Pass a name such as {argument}='glorot_uniform'."
    )


def serialize(initializer) -> dict:
    """The config dict under which an initializer is stored in a model file.

    Args:
        initializer: An initializer from this module, or a name ``get`` accepts.

    Returns:
        ``{"class_name": <class name>, "config": <get_config()>}``.

    Raises:
        ConfigError: ``initializer`` is a custom callable or class, which cannot be rebuilt
            from a model file.

    Example:
        >>> serialize("glorot_uniform")
        {'class_name': 'GlorotUniform', 'config': {'seed': None}}
    """
    init = get(initializer)
    if type(init) not in _CLASSES:
        received = getattr(init, "__name__", None) or type(init).__name__
        raise ConfigError(
            f"`initializer`: custom initializers cannot be saved in a model file, received {received}. "
            f"Use a named initializer instead, for example 'glorot_uniform' (valid names: {', '.join(ALL)})."
        )
    return {"class_name": type(init).__name__, "config": init.get_config()}


def deserialize(config: dict) -> Initializer:
    """Inverse of ``serialize``: same as ``get`` (kept for Keras parity)."""
    return get(config)
