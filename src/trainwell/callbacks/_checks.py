"""Argument checks shared by the callbacks' constructors: one wording for every error."""

from __future__ import annotations

import numbers

from trainwell._errors import ConfigError, ConfigTypeError, describe


def _check_non_negative_int(value, argument: str, where: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise ConfigError(
        f"{where}: `{argument}` expects a non-negative integer, received {describe(value)}. "
        f"Pass a whole number such as {argument}=3."
    )


def _check_callable(value, argument: str, where: str):
    if not callable(value):
        raise ConfigTypeError(
            f"{where}: `{argument}` expects a function, received {describe(value)}. "
            f"Pass e.g. {argument}=lambda *args: print(args)."
        )
    return value


def _check_save_freq(value, where: str):
    if value == "epoch":
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(
        f"{where}: `save_freq` expects 'epoch' or a positive number of batches, received "
        f"{describe(value)}. Use save_freq='epoch' to save once per epoch."
    )
