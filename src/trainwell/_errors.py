"""The error classes and message helpers, in one place.

Every trainwell error subclasses both ``TrainwellError`` and the builtin a user would
catch (``ValueError``, ``TypeError``, ...), so ``except ValueError`` keeps working.
Messages follow one template: where, what is expected, what was received, what to do.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable


class TrainwellError(Exception):
    """Base class of every error trainwell raises on purpose."""


class ConfigError(TrainwellError, ValueError):
    """An argument, identifier or setting is invalid."""


class ConfigTypeError(TrainwellError, TypeError):
    """An argument has the wrong type."""


class DataError(TrainwellError, ValueError):
    """Input data (arrays, frames, CSV files) cannot be used as given."""


class NotCompiledError(TrainwellError, RuntimeError):
    """A model was trained or evaluated before ``compile``."""


class ModelFileError(TrainwellError, ValueError):
    """A model or weights file is missing, corrupt, or incompatible."""


class DistributedError(TrainwellError, RuntimeError):
    """A distributed run is misconfigured or lost a worker."""


def describe(value) -> str:
    """``value (type)`` for error messages, shortened for long values."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name).lower(), [c.lower() for c in choices], n=1, cutoff=0.5)
    if not matches:
        return None
    lookup = {c.lower(): c for c in choices}
    return lookup[matches[0]]


def unknown_name(
    kind: str, name, choices: Iterable[str], argument: str | None = None, names_helper: str | None = None
) -> ConfigError:
    """A ConfigError for an unknown string identifier that leads with the nearest valid name.

    ``names_helper`` (e.g. ``"trainwell.losses.names()"``) is where the full list lives when it is
    too long to paste into every message; without it, the valid names are listed.
    """
    choices = sorted(set(choices))
    where = f"`{argument}`: " if argument else ""
    msg = f"{where}unknown {kind} {name!r}."
    guess = closest(str(name), choices)
    if guess is not None:
        msg += f" Did you mean {guess!r}?"
    if names_helper:
        msg += f" {names_helper} lists all {len(choices)}."
    else:
        msg += f" Valid {kind} names: {', '.join(choices)}."
    return ConfigError(msg)


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def check_number(value, argument: str, where: str = "", *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 allow_none: bool = False, allow_inf: bool = False, example=None) -> float | None:
    """``value`` as a float when it is a real number within the bounds, else a ``ConfigError``.

    The one number check of the package (optimizers, initializers, regularizers, callbacks, ...).
    NaN is always refused, infinities unless ``allow_inf``; bools are not numbers here.

    Args:
        value: what the caller passed.
        argument: its name, as the user wrote it (``"learning_rate"``).
        where: the function or class that received it (``"Adam"``), or "".
        low, high: bounds (None: unbounded); ``low_open``/``high_open`` exclude them.
        allow_none: let None through (returned as None).
        allow_inf: accept ``inf`` and ``-inf``.
        example: the value the message suggests.

    Returns:
        ``float(value)``, or None for an allowed None.

    Raises:
        ConfigError: "`where: `argument` expects a number >= 0, received -1 (int). Pass for example
            argument=0.01."

    Example:
        >>> check_number(0.5, "rate", "Dropout", low=0, high=1, high_open=True)
        0.5
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (allow_inf or math.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return float(value)
    if low is not None and high is not None:
        what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low == 0 and low_open:
        what = "a positive number"
    elif low is not None:
        what = f"a number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        what = f"a number {'<' if high_open else '<='} {high:g}"
    else:
        what = "a number"
    if example is None:
        example = 0.5 * (low + high) if low is not None and high is not None else (low or 0) + 1
    none = " or None" if allow_none else ""
    raise ConfigError(f"{_where(where)}`{argument}` expects {what}{none}, received {describe(value)}. "
                      f"Pass for example {argument}={example!r}.")


VERBOSE_VALUES = ("auto", 0, 1, 2)


def check_verbose(value, where: str = "") -> int:
    """Keras's ``verbose``: 'auto' (= 1), 0 (silent), 1 (progress bar) or 2 (one line per epoch).

    The one verbose rule of the package (``fit``, ``evaluate``, the callbacks). ``False`` and
    ``True`` count as 0 and 1, as in Keras (the course writes ``verbose=False``).

    Returns:
        The level as an int.

    Raises:
        ConfigError: any other value.
    """
    if value == "auto":
        return 1
    if isinstance(value, numbers.Integral) and value in (0, 1, 2):
        return int(value)
    raise ConfigError(f"{_where(where)}`verbose` expects 'auto', 0, 1 or 2, received {describe(value)}. "
                      "Pass for example verbose=0 for silence or verbose=2 for one line per epoch.")


def check_positive_int(value, argument: str, where: str = "") -> int:
    """Return ``value`` as int if it is a positive integer, else raise a ConfigError naming ``argument``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
    if not ok:
        raise ConfigError(
            f"{_where(where)}`{argument}` expects a positive integer, received {describe(value)}. "
            f"Pass for example {argument}=32."
        )
    return int(value)


def check_fraction(value, argument: str, *, allow_zero: bool = True, allow_one: bool = False) -> float:
    """Return ``value`` as float if it lies in [0, 1) (bounds adjustable), else raise a ConfigError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        low_ok = value > 0 or (allow_zero and value == 0)
        high_ok = value < 1 or (allow_one and value == 1)
        ok = low_ok and high_ok
    if not ok:
        low = "[0" if allow_zero else "(0"
        high = "1]" if allow_one else "1)"
        raise ConfigError(
            f"`{argument}` expects a number in {low}, {high}, received {describe(value)}. "
            f"Pass for example {argument}=0.2 (20% of the data aside)."
        )
    return float(value)


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file (CSV) does not exist; catchable as DataError, ValueError or FileNotFoundError."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """A model or weights file (or the folder to save it in) does not exist.

    Also a ``FileNotFoundError``, so ``except FileNotFoundError`` keeps working.
    """
