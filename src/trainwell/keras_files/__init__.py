"""Keras's model files, read and written without running anything from them.

Formats, told apart by their first bytes (never by the suffix):

- Keras 3 ``.keras`` archives (a zip: ``config.json``, ``metadata.json``, ``model.weights.h5``),
- the legacy HDF5 format of Keras 2, tf.keras and Keras 3's ``model.save('x.h5')``,
- Keras weights files: ``.weights.h5`` (Keras 3) and legacy ``.h5`` weights (``save_weights``).

A Keras file is translated into what trainwell's own ``.tw`` file holds, a header dict and named
tensors (see ``trainwell.saving``), so loading goes through the same checks as a ``.tw`` file
(parameter counts before allocating, every weight's shape and dtype) and builds only trainwell's
own classes. Writing takes that same header and tensors. What is read:

- models: Sequential and functional (Keras 3's ``{args, kwargs}`` inbound nodes and Keras 2's lists),
  written back in Keras 3's form;
- layers: ``configs.LAYERS`` (Dense, Conv1D/2D, LayerNormalization, Embedding, the poolings,
  reshaping, merge and activation layers, ...) and ``InputLayer``; refused: ``Lambda`` and every
  other class, any module outside ``configs.ALLOWED_MODULES``, registered custom objects,
  non-float32 dtypes, settings trainwell does not implement (constraints, BatchNormalization's
  renorm, noise shapes, channels-first data, layer calls with extra arguments);
- the compile config (optimizer with its hyper-parameters, loss, metrics, loss weights), and the
  optimizer's state for SGD, Adam, AdamW, RMSprop and Adagrad in Keras 3's layout. An optimizer,
  loss or metric trainwell does not have loads the model uncompiled, with a warning.

Not kept in Keras files: the training history, the per-epoch shuffle seed, the random state and
a CSV preprocessing (``.tw`` keeps them all).
"""

from __future__ import annotations

import io
import json
import os
import warnings

import numpy as np
import torch

from .. import functional
from .. import layers as layers_module
from .._container import FORMAT_NAME, atomic_write_bytes
from .._errors import ModelFileError, ModelFileNotFoundError, describe
from .._file_checks import MAX_PARAMS, expected_shapes, layer_from, parse_input_shape
from . import archive, compile_settings, configs, hdf5, legacy, state

__all__ = ["detect", "model_config_from_json", "model_to_json", "read_model", "read_weights", "suffix_kind",
           "write_model", "write_weights"]

ZIP_MAGIC, HDF5_MAGIC = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"
KERAS_SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
MAX_JSON_CHARS = 64 * 2**20
MAX_FEATURES = 2**24  # a Normalization's statistics written out from constants


def detect(path) -> str | None:
    """'keras' (a zip archive), 'h5' (HDF5) or None (anything else), from the file's first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(HDF5_MAGIC))
    except OSError:
        return None
    if head.startswith(ZIP_MAGIC):
        return "keras"
    return "h5" if head == HDF5_MAGIC else None


def suffix_kind(path) -> str | None:
    """'keras', 'h5' or None from the path's suffix (what ``model.save`` writes)."""
    return KERAS_SUFFIXES.get(os.path.splitext(os.fspath(path))[1].lower())


def _version() -> str:
    from .. import __version__

    return str(__version__)


# ------------------------------------------------------------------------------------------ reading
def read_model(filepath, compile: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """A Keras model file as the header and tensors of a ``.tw`` file (see ``trainwell.saving``);
    ``compile=False`` leaves the compile settings and optimizer state out (not even read).

    Raises:
        ModelFileNotFoundError: no such file.
        ModelFileError: damaged, hostile or unsupported content; the message names the layer or entry.
    """
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise ModelFileNotFoundError(f"{path}: no such model file.")
    try:
        return _read_model(path, compile)
    except (ModelFileError, UserWarning):
        raise
    except Exception as exc:  # untrusted content: any other failure is still "a bad file", never a crash
        raise ModelFileError(f"{path}: the Keras file is inconsistent "
                             f"({type(exc).__name__}: {exc}).") from exc


def _read_model(path: str, compile: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    if detect(path) == "keras":
        entry, weights = archive.read_archive(path)
        found, optimizer_values = archive.read_variables(path, io.BytesIO(weights)) if weights else ({}, None)
        found = {"": found}  # keyed by archive path until the layer configs are known
        compile_entry = entry.get("compile_config")
        compile_entry = compile_entry if isinstance(compile_entry, dict) else None
        optimizer_entry = None if compile_entry is None else compile_entry.get("optimizer")
    else:
        entry, compile_entry, found, optimizer_values = legacy.read_model(path)
        optimizer_entry = None if compile_entry is None else compile_entry.get("optimizer_config")
    config = configs.trainwell_model_config(entry, path)
    graph = "input_layers" in config  # a functional model: its inputs always have shapes
    if "" in found:
        found = _by_archive_path(path, config["layers"], found[""])
    if not graph:
        found = _constant_statistics(config, found)
    if not graph and config["input_shape"] is None:  # an unbuilt model has no weights yet
        if any(found.values()):
            raise ModelFileError(f"{path}: the file holds weights but its model config declares no input "
                                 "shape, so they cannot be placed.")
        tensors = {}
    else:
        tensors = state.layer_tensors(path, config["layers"], found)
    header = {"format": FORMAT_NAME,
              "model": {"class_name": "Functional" if graph else "Sequential", "config": config},
              "compile": None, "optimizer": None, "layer_state": _layer_state(config, tensors)}
    if compile and compile_entry is not None and optimizer_entry is not None:
        header["compile"] = compile_settings.from_keras(path, compile_entry, optimizer_entry,
                                                         _output_names(config))
    if header["compile"] is not None and optimizer_values is not None and (graph or config["input_shape"]):
        params = [tensors[k] for k in state.trainable_keys(config["layers"], tensors)]
        if params:
            optimizer = header["compile"]["optimizer"]
            restored = state.optimizer_from_keras(path, optimizer, optimizer_values, params)
            if restored is not None:
                opt_tensors, header["optimizer"] = restored
                tensors.update({state.OPTIMIZER + k: v for k, v in opt_tensors.items()})
    return header, tensors


def _output_names(config: dict) -> list[str]:
    """The model's output names in order: a graph's output keys or layers, a Sequential's last layer."""
    outputs = config.get("output_layers")
    if outputs is None:
        return [config["layers"][-1]["config"]["name"]] if config["layers"] else []
    return list(outputs) if isinstance(outputs, dict) else [ref[0] for ref in outputs]


def _constant_statistics(config: dict, found: dict) -> dict:
    """Keras keeps a Normalization given ``mean``/``variance`` as constants, not variables; trainwell
    keeps them as weights, so they move from the config to the weights here."""
    shape = None if config["input_shape"] is None else tuple(config["input_shape"])
    found = dict(found)
    for entry in config["layers"]:
        settings = entry["config"]
        if entry["class_name"] == "Normalization" and settings.get("mean") is not None and shape is not None:
            mean, variance = settings.pop("mean"), settings.pop("variance", None)
            if shape[-1] > MAX_FEATURES:
                raise ModelFileError(f"Normalization '{settings['name']}': {shape[-1]:,} features, above "
                                     f"{MAX_FEATURES:,}; nothing was allocated.")
            if not found.get(settings["name"]):
                found[settings["name"]] = [np.broadcast_to(np.asarray(v, np.float32), shape[-1:]).copy()
                                           for v in (mean, variance)] + [np.array(0, np.int32)]
        if shape is not None:
            shape = layers_module.deserialize(entry).compute_output_shape(shape)
    return found


def _by_archive_path(path: str, layer_configs: list[dict], found: dict) -> dict:
    """Keras 3 weights files name layer groups by class (``dense``, ``dense_1``): back to layer names."""
    paths = configs.archive_paths(layer_configs)
    unknown = sorted(set(found) - set(paths))
    if any(found[p] for p in unknown):
        raise ModelFileError(f"{path}: the weights file holds groups {unknown} that match no layer of the "
                             "model config.")
    return {c["config"]["name"]: found.get(p, []) for c, p in zip(layer_configs, paths)}


def _layer_state(config: dict, tensors: dict) -> dict:
    """Normalization layers count as adapted when their statistics are not the identity."""
    out = {}
    for entry in config["layers"]:
        if entry["class_name"] == "Normalization":
            name = entry["config"]["name"]
            mean, var = tensors.get(f"layers/{name}/mean"), tensors.get(f"layers/{name}/variance")
            out[name] = {"adapted": mean is not None and bool((mean != 0).any() or (var != 1).any())}
    return out


def read_weights(filepath, layer_configs: list[dict]) -> dict[str, torch.Tensor]:
    """``layers/<layer>/<weight>`` tensors for a model's layers from a Keras weights or model file.

    Layers are matched by name when every layer holding weights finds its name in the file, else
    by position among the layers that hold weights (as Keras's ``load_weights`` does for ``.h5``).
    """
    path = os.fspath(filepath)
    try:
        return _read_weights(path, layer_configs)
    except (ModelFileError, UserWarning):
        raise
    except Exception as exc:  # untrusted content, as in read_model
        raise ModelFileError(f"{path}: the Keras weights file is inconsistent ({type(exc).__name__}: "
                             f"{exc}).") from exc


def _read_weights(path: str, layer_configs: list[dict]) -> dict[str, torch.Tensor]:
    kind = detect(path)
    if kind == "keras":
        _, weights = archive.read_archive(path)
        found = _by_archive_path(path, layer_configs, archive.read_variables(path, io.BytesIO(weights))[0])
    else:
        with hdf5.open_file(path, path) as handle:
            variables = archive.is_variables_file(handle)
            if not variables:
                group = hdf5.child(handle, "model_weights", path, "group") or handle
                found = _match_layers(path, layer_configs, legacy.read_weight_group(path, group))
        if variables:
            found = _by_archive_path(path, layer_configs, archive.read_variables(path, path)[0])
    return state.layer_tensors(path, layer_configs, found)


def _match_layers(path: str, layer_configs: list[dict], found: dict) -> dict:
    holding = [c["config"]["name"] for c in layer_configs if configs.variable_names(c)]
    if all(name in found for name in holding):
        return {name: found[name] for name in holding}
    in_file = [name for name, values in found.items() if values]
    if len(in_file) != len(holding):
        raise ModelFileError(f"{path}: the file holds weights for {len(in_file)} layers "
                             f"({', '.join(in_file)}), "
                             f"the model has {len(holding)} layers with weights ({', '.join(holding)}).")
    return {own: found[theirs] for own, theirs in zip(holding, in_file)}


def model_config_from_json(json_string: str, max_params: int = MAX_PARAMS) -> dict:
    """trainwell's Sequential config from Keras's ``model.to_json()`` text (architecture only)."""
    where = "model_from_json"
    if not isinstance(json_string, (str, bytes)) or len(json_string) > MAX_JSON_CHARS:
        raise ModelFileError(f"{where}: expected the JSON text of model.to_json(), received "
                             f"{describe(json_string)}.")
    try:
        entry = json.loads(json_string)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{where}: the text is not JSON ({exc}).") from exc
    config = configs.trainwell_model_config(entry, where)
    if "input_layers" in config:
        _check_graph(where, config, max_params)
        return config
    stack = [layer_from(where, i, layer) for i, layer in enumerate(config["layers"])]
    expected_shapes(where, stack, parse_input_shape(where, config["input_shape"]), max_params)
    return config


def _check_graph(where: str, config: dict, max_params: int) -> None:
    """A functional config built on torch's 'meta' device (shapes, no memory): broken links and
    absurd sizes are refused before anything is allocated."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        try:
            graph = functional.Graph(*functional.Graph.from_config(config))
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFileError(f"{where}: the functional graph cannot be built: {exc}") from exc
        total = sum(layer.count_params() for layer in graph.layers)
    if total > max_params:
        raise ModelFileError(f"{where}: the model would hold {total:,} weights, above "
                             f"max_params={max_params:,}; nothing was allocated.")


# ------------------------------------------------------------------------------------------ writing
def model_to_json(config: dict, **kwargs) -> str:
    """Keras's ``model.to_json()`` text of a trainwell Sequential config (architecture only)."""
    return json.dumps(configs.keras_model_config(config), **kwargs)


def write_model(filepath, header: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write the header and tensors of a ``.tw`` file as a Keras ``.keras`` archive or legacy ``.h5``
    file (by the path's suffix), atomically.

    Raises:
        ModelFileError: a layer without a Keras mapping (save as ``.tw`` instead).
    """
    path = os.fspath(filepath)
    kind = suffix_kind(path)
    config = header["model"]["config"]
    if header.get("preprocessing") is not None:
        warnings.warn(f"{path}: Keras files do not keep trainwell's CSV preprocessing; save as .tw to keep "
                      "it (trainwell predict on a CSV file needs it).", UserWarning, stacklevel=4)
    keras_config = configs.keras_model_config(config)
    layers = _keras_layers(config, tensors)
    compile_config, optimizer = compile_settings.to_keras(header, tensors)
    if kind == "keras":
        if compile_config is not None:
            keras_config["compile_config"] = compile_config
        weights = archive.variables_bytes(_by_path(config, layers), optimizer, keras_config["config"]["name"])
        data = archive.archive_bytes(keras_config, weights, _version())
    else:
        model_config = _legacy_config(keras_config)
        training = None if compile_config is None else {
            **{k: compile_config[k] for k in ("loss", "metrics", "weighted_metrics", "loss_weights")},
            "optimizer_config": {k: compile_config["optimizer"][k] for k in ("class_name", "config")}}
        name = keras_config["config"]["name"]
        opt_name = (compile_config or {}).get("optimizer", {}).get("config", {}).get("name", "optimizer")
        data = legacy.model_bytes(model_config, training, layers, _legacy_names(name, config, layers),
                                  optimizer, opt_name, _version())
    atomic_write_bytes(path, data)


def _keras_layers(config: dict, tensors: dict) -> dict:
    built = "input_layers" in config or config.get("input_shape") is not None
    return {e["config"]["name"]: state.keras_variables(e, tensors) if built else [] for e in config["layers"]}


def _by_path(config: dict, layers: dict) -> dict:
    return dict(zip(configs.archive_paths(config["layers"]), layers.values()))


def _legacy_config(keras_config: dict) -> dict:
    """Keras's legacy ``model_config``: the layer entries without ``module``/``build_config``."""
    config = dict(keras_config["config"])
    config["layers"] = [{"class_name": e["class_name"], "config": e["config"],
                         **{k: e[k] for k in ("name", "inbound_nodes") if k in e}}  # functional models
                        for e in config["layers"]]
    return {"class_name": keras_config["class_name"], "config": config}


def _legacy_names(model: str, config: dict, layers: dict) -> dict[str, list[str]]:
    names = {}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        listed = [f"{model}/{name}/{w or 'count'}" for w in configs.variable_names(entry)]
        names[name] = listed[:len(layers[name])]  # none for an unbuilt model
    return names


def write_weights(filepath, header: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Keras weights: ``.weights.h5`` in Keras 3's layout (with the optimizer's variables when
    compiled, as Keras's ``save_weights`` writes them), any other ``.h5`` in the legacy one."""
    path = os.fspath(filepath)
    config = header["model"]["config"]
    layers = _keras_layers(config, tensors)
    if path.lower().endswith(".weights.h5"):
        optimizer = compile_settings.to_keras(header, tensors)[1]
        name = config.get("name") or "sequential"
        data = archive.variables_bytes(_by_path(config, layers), optimizer, name)
    else:
        data = legacy.weights_bytes(layers, _legacy_names(config.get("name") or "sequential", config, layers),
                                    _version())
    atomic_write_bytes(path, data)
