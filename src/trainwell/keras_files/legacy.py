"""The legacy HDF5 format of Keras 2, tf.keras and Keras 3's ``model.save('x.h5')``.

A model file holds, on its root: the attributes ``model_config`` (the model as JSON),
``training_config`` (JSON: loss, metrics, ``optimizer_config``; absent when not compiled),
``keras_version`` and ``backend``; the group ``model_weights``; and, when the optimizer was saved,
``optimizer_weights``. A weights group (``model_weights``, or the root of a file written by
``save_weights('x.h5')``) lists its layers in the attribute ``layer_names``; each layer's group lists
its datasets, in the layer's variable order, in ``weight_names`` (paths inside that group, such as
``sequential/dense/kernel`` or Keras 2's ``dense/kernel:0``). ``optimizer_weights`` lists its
datasets the same way: ``iteration``, ``learning_rate``, then the slots.
"""

from __future__ import annotations

import io
import json

import numpy as np

from .._errors import ModelFileError, describe
from . import hdf5
from .archive import KERAS_FORMAT_VERSION

MODEL_CONFIG, TRAINING_CONFIG = "model_config", "training_config"


def read_model(path: str) -> tuple[dict, dict | None, dict[str, list[np.ndarray]], list[np.ndarray] | None]:
    """``(model config, training config or None, layer variables, optimizer variables or None)``."""
    with hdf5.open_file(path, path) as handle:
        text = hdf5.text_attribute(handle, MODEL_CONFIG, path)
        if text is None:
            raise ModelFileError(f"{path}: this HDF5 file has no `model_config` attribute, so it holds "
                                 "weights "
                                 "only (Keras's save_weights): build the model in trainwell and call "
                                 "model.load_weights(path).")
        config = _json(path, MODEL_CONFIG, text)
        training = hdf5.text_attribute(handle, TRAINING_CONFIG, path)
        training = None if training is None else _json(path, TRAINING_CONFIG, training)
        weights = hdf5.child(handle, "model_weights", path, "group")
        layers = read_weight_group(path, weights) if weights is not None else {}
        group = hdf5.child(handle, "optimizer_weights", path, "group")
        optimizer = None if group is None else _named_values(path, group)
    return config, training, layers, optimizer


def _json(path: str, key: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: HDF5 attribute `{key}` is not JSON ({exc}); trainwell decodes "
                             "nothing else (no pickle).") from exc
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: HDF5 attribute `{key}` must hold a JSON object, "
                             f"found {describe(value)}.")
    return value


def read_weight_group(path: str, group) -> dict[str, list[np.ndarray]]:
    """Each layer's variable list from a legacy weights group, in ``layer_names`` order."""
    names = hdf5.names_attribute(group, "layer_names", path)
    if names is None:
        raise ModelFileError(f"{path}: HDF5 group '{group.name}' has no `layer_names` attribute; it is not a "
                             "Keras weights group.")
    found = {}
    for name in names:
        layer = hdf5.child(group, name, path, "group")
        if layer is None:
            raise ModelFileError(f"{path}: layer '{name}' is listed in `layer_names` but has no group.")
        found[name] = _named_values(path, layer)
    return found


def _named_values(path: str, group) -> list[np.ndarray]:
    names = hdf5.names_attribute(group, "weight_names", path) or []
    return [hdf5.read_dataset(_dataset_at(path, group, name), path) for name in names]


def _dataset_at(path: str, group, name: str):
    """The dataset at ``name`` (a '/'-separated path) inside ``group``, hard links only."""
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ModelFileError(f"{path}: weight name {name!r} in '{group.name}' is not a path inside "
                             "the group.")
    node = group
    for part in parts[:-1]:
        node = hdf5.child(node, part, path, "group")
        if node is None:
            break
    dataset = None if node is None else hdf5.child(node, parts[-1], path, "dataset")
    if dataset is None:
        raise ModelFileError(f"{path}: weight {name!r} is listed in '{group.name}' but missing.")
    return dataset


# ------------------------------------------------------------------------------------------ writing
def model_bytes(model_config: dict, training_config: dict | None, layers: dict[str, list[np.ndarray]],
                weight_names: dict[str, list[str]], optimizer: list[np.ndarray] | None,
                optimizer_name: str, trainwell_version: str) -> bytes:
    h5py = hdf5.h5py_module()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        _root_attrs(handle, trainwell_version)
        handle.attrs[MODEL_CONFIG] = json.dumps(model_config)
        if training_config is not None:
            handle.attrs[TRAINING_CONFIG] = json.dumps(training_config)
        write_weight_group(handle.create_group("model_weights"), layers, weight_names, trainwell_version)
        if optimizer is not None:
            group = handle.create_group("optimizer_weights")
            names = [f"{optimizer_name}/variable_{i}" for i in range(len(optimizer))]
            hdf5.write_names(group, "weight_names", names)
            for name, value in zip(names, optimizer):
                group.create_dataset(name, data=value)
    return buffer.getvalue()


def weights_bytes(layers: dict[str, list[np.ndarray]], weight_names: dict[str, list[str]],
                  trainwell_version: str) -> bytes:
    h5py = hdf5.h5py_module()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write_weight_group(handle, layers, weight_names, trainwell_version)
    return buffer.getvalue()


def _root_attrs(group, trainwell_version: str) -> None:
    group.attrs["keras_version"] = KERAS_FORMAT_VERSION
    group.attrs["backend"] = "torch"
    group.attrs["trainwell_version"] = trainwell_version


def write_weight_group(group, layers: dict[str, list[np.ndarray]], weight_names: dict[str, list[str]],
                       trainwell_version: str) -> None:
    _root_attrs(group, trainwell_version)
    hdf5.write_names(group, "layer_names", list(layers))
    for layer, values in layers.items():
        sub = group.create_group(layer)
        names = weight_names[layer]
        hdf5.write_names(sub, "weight_names", names)
        for name, value in zip(names, values):
            sub.create_dataset(name, data=value)
    hdf5.write_names(group.create_group("top_level_model_weights"), "weight_names", [])
