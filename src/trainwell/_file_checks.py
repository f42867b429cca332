"""Checks of a model file's content against the model it describes, before anything is built.

Every function takes the file's ``path`` and raises ``ModelFileError`` naming the path and the bad
entry (``model.config.layers[2]``, ``layers/dense/kernel``), so the loader in ``saving.py`` reads
as a list of steps. Nothing here allocates model weights: shapes and parameter counts are computed
from the config, so a crafted config asking for 10**12 weights is refused before any allocation.
"""

from __future__ import annotations

import math

import torch

from . import layers as layers_module
from ._container import FORMAT_NAME
from ._errors import ModelFileError, describe

MAX_PARAMS = 2**31  # elements; a config asking for more is refused before anything is allocated
LAYERS, OPTIMIZER, RNG = "layers/", "optimizer/", "rng/torch_cpu"
_MAX_LISTED = 8  # problems listed in one error message


def model_config(path: str, header: dict) -> dict:
    if header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: the header's `format` is {header.get('format')!r}, expected "
                             f"{FORMAT_NAME!r}: this container does not hold a trainwell model.")
    entry = header.get("model")
    if not isinstance(entry, dict) or entry.get("class_name") not in ("Sequential", "Functional"):
        found = entry.get("class_name") if isinstance(entry, dict) else entry
        raise ModelFileError(f"{path}: header entry `model.class_name` is {found!r}; this trainwell loads "
                             "'Sequential' and 'Functional' models.")
    config = entry.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelFileError(f"{path}: header entry `model.config.layers` must be a list of layer configs.")
    return config


def layer_from(path: str, index: int, entry):
    where = f"model.config.layers[{index}]"
    kind = entry.get("class_name") if isinstance(entry, dict) else None
    try:
        layer = layers_module.deserialize(entry)
    except Exception as exc:  # unknown type, bad argument: the constructor's own message says which
        raise ModelFileError(f"{path}: header entry `{where}` ({kind!r}) cannot be built: {exc}") from exc
    if isinstance(layer, layers_module.InputLayer):
        raise ModelFileError(f"{path}: header entry `{where}` is an InputLayer; the input shape belongs in "
                             "`model.config.input_shape`.")
    return layer


def check_unique_names(path: str, stack) -> None:
    names = [layer.name for layer in stack]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ModelFileError(f"{path}: the config names layers {twice} more than once; names must be unique.")


def parse_input_shape(path: str, value) -> tuple[int, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and value and all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_PARAMS for v in value)
    if not ok:
        raise ModelFileError(f"{path}: header entry `model.config.input_shape` must be a list of positive "
                             f"integers, found {describe(value)}.")
    return tuple(value)


def weight_shapes(layer, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]] | None:
    """The weights ``layer`` will create for ``input_shape``, computed without allocating (None: unknown)."""
    n = input_shape[-1]
    if isinstance(layer, layers_module.Dense):
        return {"kernel": (n, layer.units), **({"bias": (layer.units,)} if layer.use_bias else {})}
    if isinstance(layer, layers_module.BatchNormalization):
        names = ["gamma"] * layer.scale + ["beta"] * layer.center + ["moving_mean", "moving_variance"]
        return {name: (n,) for name in names}
    if isinstance(layer, layers_module.Normalization):
        return {"mean": (n,), "variance": (n,)}
    if isinstance(layer, (layers_module.Activation, layers_module.Dropout)):
        return {}
    return _shapes_on_meta(layer, input_shape)


def _shapes_on_meta(layer, input_shape) -> dict[str, tuple[int, ...]] | None:
    """Build a copy of ``layer`` on torch's 'meta' device: shapes without memory (None: unknown)."""
    try:
        copy = type(layer).from_config(layer.get_config())
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            copy.build(tuple(input_shape))
        return {name: tuple(w.shape) for name, w in zip(copy.weight_names(), copy.weights)}
    except Exception:  # noqa: BLE001 - an unknown layer is then checked against the file after building
        return None


def expected_shapes(path: str, stack, input_shape, max_params: int) -> dict[str, tuple[int, ...]]:
    expected: dict[str, tuple[int, ...]] = {}
    if input_shape is None:
        return expected  # an unbuilt model has no weights
    shape, total = input_shape, 0
    for layer in stack:
        shapes = weight_shapes(layer, shape) or {}
        count = sum(math.prod(s) for s in shapes.values())
        total += count
        if total > max_params:
            raise ModelFileError(
                f"{path}: layer '{layer.name}' ({type(layer).__name__}) would hold {count:,} weights (model "
                f"total {total:,}), above max_params={max_params:,}. The config is probably corrupted or "
                "crafted; nothing was allocated. If you trust it, pass a larger max_params.")
        expected.update({f"{LAYERS}{layer.name}/{name}": s for name, s in shapes.items()})
        shape = layer.compute_output_shape(shape)
    return expected


def match_weights(path: str, expected: dict[str, tuple], found: dict[str, torch.Tensor]) -> None:
    """Raise one ModelFileError listing missing, unexpected, mis-shaped and non-float32 weights."""
    problems = [f"missing weight '{k}' of shape {s}" for k, s in expected.items() if k not in found]
    problems += [f"unexpected weight '{k}' of shape {tuple(t.shape)}" for k, t in found.items()
                 if k not in expected]
    for key, shape in expected.items():
        tensor = found.get(key)
        if tensor is not None and tuple(tensor.shape) != tuple(shape):
            problems.append(f"'{key}': the config expects shape {tuple(shape)}, "
                            f"the file holds {tuple(tensor.shape)}")
        elif tensor is not None and tensor.dtype != torch.float32:
            problems.append(f"'{key}': expected dtype float32, the file holds {tensor.dtype}")
    if problems:
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise ModelFileError(f"{path}: the weights do not match the model: "
                             + "; ".join(problems[:_MAX_LISTED]) + more + ".")


def check_prefixes(path: str, tensors: dict) -> None:
    for key in tensors:
        if not (key.startswith((LAYERS, OPTIMIZER)) or key == RNG):
            raise ModelFileError(f"{path}: unexpected tensor entry '{key}' "
                                 f"(known: layers/..., optimizer/..., {RNG}).")


def copy_into(path: str, key: str, weight: torch.Tensor, value: torch.Tensor) -> None:
    if tuple(value.shape) != tuple(weight.shape) or value.dtype != weight.dtype:
        raise ModelFileError(f"{path}: weight '{key}' has shape {tuple(value.shape)} ({value.dtype}); "
                             f"the built layer expects {tuple(weight.shape)} ({weight.dtype}).")
    with torch.no_grad():
        weight.copy_(value)


def optional_str(path: str, config: dict, key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise ModelFileError(f"{path}: header entry `model.config.{key}` must be a string, "
                             f"found {describe(value)}.")
    return value


def int_entry(path: str, header: dict, key: str, default: int) -> int:
    value = header.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ModelFileError(f"{path}: header entry `{key}` must be an integer >= 0, "
                             f"found {describe(value)}.")
    return value


def dict_entry(path: str, header: dict, key: str) -> dict:
    value = header.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ModelFileError(f"{path}: header entry `{key}` must be an object of objects, "
                             f"found {describe(value)}.")
    return value
