"""What the initializer and regularizer registries share: config round trip and config dicts."""

from __future__ import annotations

from trainwell._errors import ConfigError, describe


class Configurable:
    """Mixin for objects rebuilt from their constructor arguments (``get_config``)."""

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return {}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild an object from ``get_config()``'s dict.

        Raises:
            ConfigError: ``config`` holds an argument the class does not take.
        """
        try:
            return cls(**config)
        except TypeError as err:
            raise ConfigError(
                f"{cls.__name__}.from_config: cannot build from {describe(config)} ({err}). "
                f"Pass the dict returned by {cls.__name__}(...).get_config()."
            ) from err

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def split_config(identifier: dict, argument: str, example: str) -> tuple[str, dict]:
    """``(class_name, config)`` of a ``{"class_name": ..., "config": {...}}`` dict.

    Raises:
        ConfigError: ``class_name`` is not a string or ``config`` is not a dict; the message ends
            with ``example``.
    """
    name, config = identifier.get("class_name"), identifier.get("config", {})
    if not isinstance(name, str) or not isinstance(config, dict):
        raise ConfigError(
            f"`{argument}`: a config dict needs a string 'class_name' and a dict 'config', "
            f"received {describe(identifier)}. Example: {example}."
        )
    return name, config
