"""The error classes and message helpers, in one place.

Every trainwell error subclasses both ``TrainwellError`` and the builtin a user would
catch (``ValueError``, ``TypeError``, ...), so ``except ValueError`` keeps working.
Messages follow one template: where, what is expected, what was received, what to do.
"""

from __future__ import annotations

import difflib
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


def check_positive_int(value, argument: str, where: str = "") -> int:
    """Return ``value`` as int if it is a positive integer, else raise a ConfigError naming ``argument``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
    if not ok:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}`{argument}` expects a positive integer, received {describe(value)}. "
            f"Pass a whole number such as {argument}=32."
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
            f"For example {argument}=0.2 keeps 20% of the data aside."
        )
    return float(value)


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file (CSV) does not exist; catchable as DataError, ValueError or FileNotFoundError."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """A model or weights file (or the folder to save it in) does not exist.

    Also a ``FileNotFoundError``, so ``except FileNotFoundError`` keeps working.
    """
