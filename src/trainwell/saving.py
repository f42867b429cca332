"""Model ↔ file: ``save_model``, ``read_model_file``/``restore_model``, ``save_weights``/``load_weights``,
``summarize``.

This module reads, checks and writes files; it never builds a model. ``models.load_model`` builds one
from the checked config (``Sequential.from_config``) and hands it to ``restore_model``, so this module
sits below ``models`` and ``callbacks`` in the layer order (``docs/DESIGN.md``).

A model file (``.tw``) is the container of ``trainwell._container``: a checksummed JSON header and a
safetensors payload, written atomically, never pickled. This module decides what goes in it.

Header (JSON object)::

    format, format_version, trainwell_version   set by the container
    versions        {"torch", "numpy", "python"} of the writer
    model           {"class_name": "Sequential", "config": model.get_config()}: name, input_shape,
                    layers as layers.serialize(...) (class_name + constructor arguments)
    compile         {"optimizer": optimizers.serialize(...), "loss": losses.serialize(...),
                    "metrics": [...], "weighted_metrics": [...], "loss_weights": ...}, or null
                    when not compiled (files without "weighted_metrics" load with none)
    optimizer       the optimizer's export_state() metadata (class_name, iterations,
                    learning_rate, values), or null when it holds no state yet
    layer_state     per-layer flags the config does not carry ({"<name>": {"adapted": true}})
    history         {"history": {"loss": [...], ...}, "epoch": [...]} of the last fit, or null
    epochs_trained  epochs finished so far (the per-epoch shuffle is drawn from shuffle_seed + it)
    shuffle_seed    the model's shuffle seed
    preprocessing   model.preprocessing (e.g. a tabular Preprocessor config), stored untouched

Tensors: ``layers/<layer name>/<weight name>`` (float32, Keras layout, e.g. ``dense/kernel`` of
shape (in, units)); ``optimizer/param_<i>/<slot>`` (i = position among the trainable weights);
``rng/torch_cpu`` (uint8, ``torch.get_rng_state()``, so Dropout continues its random stream).

A weights file (``save_weights``) is a plain safetensors file holding only the ``layers/...``
entries, with the layer order and classes in its metadata (``"layers"``: JSON list of
``[name, class_name]``), so weights load into a re-created model whose auto names differ.

Loading checks everything before building anything (``read_model_file``): layer types, a parameter
count computed from the config (refused above ``max_params`` before any allocation), every weight's
presence, shape and dtype against the config; only then is a fresh model built and filled. Loading
returns a complete model or raises one ``ModelFileError`` that names the file and the bad entry;
never a half-built model.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import safetensors
import torch

from . import functional, keras_files
from . import layers as layers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from ._container import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_TENSOR_BYTES,
    atomic_write_bytes,
    load_tensors,
    read_container,
    read_header,
    save_tensors,
    write_container,
)
from ._errors import ModelFileError, describe
from ._file_checks import (
    LAYERS,
    MAX_PARAMS,
    OPTIMIZER,
    RNG,
    check_prefixes,
    check_unique_names,
    copy_into,
    dict_entry,
    expected_shapes,
    int_entry,
    layer_from,
    match_weights,
    model_config,
    optional_str,
    parse_input_shape,
)
from ._file_summary import summarize

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "MAGIC", "MAX_HEADER_BYTES", "MAX_PARAMS", "MAX_TENSOR_BYTES",
    "ModelFile", "atomic_write_bytes", "file_errors", "load_tensors", "load_weights", "read_container",
    "read_header", "read_model_file", "restore_model", "restore_training_state", "save_model", "save_tensors",
    "save_weights", "saved_history", "summarize", "write_container",
]



# ------------------------------------------------------------------------------------------ saving
def save_model(model, filepath, overwrite: bool = True) -> None:
    """Write ``model`` (architecture, weights, compile settings, optimizer state, history,
    preprocessing, random state) to one ``.tw`` file, atomically.

    Args:
        model: a ``Sequential``, built or not, compiled or not.
        filepath: where to write (``.tw`` suggested; any suffix works); its folder must exist.
        overwrite: when False, refuse to replace an existing file.

    Raises:
        ModelFileError: ``overwrite=False`` and the file exists, or the file cannot be written.

    Example:
        >>> model.save("model.tw")
    """
    path = os.fspath(filepath)
    _check_overwrite(path, overwrite)
    header, tensors = model_state(model)
    if keras_files.suffix_kind(path):  # .keras, .h5: Keras's own formats
        keras_files.write_model(path, header, tensors)
    else:
        write_container(path, header, tensors)


def model_state(model) -> tuple[dict, dict[str, torch.Tensor]]:
    """The header dict and tensors that ``save_model`` writes (``BackupAndRestore`` extends them)."""
    compile_config = _compile_config(model)
    header = {
        "versions": {"torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "model": {"class_name": "Functional" if getattr(model, "_graph", None) is not None
                  else type(model).__name__, "config": model.get_config()},
        "compile": compile_config,
        "optimizer": None,
        "layer_state": {layer.name: {"adapted": bool(layer.adapted)} for layer in model.layers
                        if hasattr(layer, "adapted")},
        "history": _history_dict(model.history),
        "epochs_trained": int(model.epochs_trained),
        "shuffle_seed": int(model.shuffle_seed),
        "preprocessing": model.preprocessing,
    }
    tensors = {f"{LAYERS}{key}": w for key, w in _named_weights(model).items()}
    optimizer = model.optimizer
    if compile_config is not None and optimizer is not None and optimizer.built:
        state, header["optimizer"] = optimizer.export_state()
        tensors.update({OPTIMIZER + key: value for key, value in state.items()})
    # A loaded model not yet trained still holds the saved stream (fit restores it): keep that one.
    pending = model._resume_rng_state
    tensors[RNG] = torch.get_rng_state() if pending is None else pending
    return header, tensors


def _compile_config(model) -> dict | None:
    if model.optimizer is None or model.compiled_loss is None:
        return None
    try:
        loss = model.compiled_loss
        per_output = getattr(loss, "pack_targets", None) is not None  # a multi-output graph model
        return {
            "optimizer": optimizers_module.serialize(model.optimizer),
            "loss": [None if each is None else losses_module.serialize(each) for each in loss.losses]
            if per_output else losses_module.serialize(loss),
            "metrics": [[metrics_module.serialize(m) for m in ms] for ms in model.output_metrics_identifiers]
            if per_output else [metrics_module.serialize(m) for m in model.metrics_identifiers],
            "weighted_metrics": [metrics_module.serialize(m) for m in model.weighted_metrics_identifiers],
            "loss_weights": loss.weights if per_output else model.loss_weights,
            "precision": getattr(model, "precision", "32-true"),
        }
    except (ValueError, TypeError) as exc:
        # As Keras does, a model compiled with custom code still saves; it loads uncompiled.
        warnings.warn(f"model.save: the compile settings are not stored ({exc}). The file loads "
                      "uncompiled: call compile() again after load_model.", UserWarning, stacklevel=4)
        return None


def _history_dict(history) -> dict | None:
    if history is None or not getattr(history, "history", None):
        return None
    return {"history": {k: list(v) for k, v in history.history.items()}, "epoch": list(history.epoch)}


def _named_weights(model) -> dict[str, torch.Tensor]:
    return {f"{layer.name}/{name}": w for layer in model.layers
            for name, w in zip(layer.weight_names(), layer.weights)}


def _check_overwrite(path: str, overwrite: bool) -> None:
    if not overwrite and os.path.exists(path):
        raise ModelFileError(f"{path}: the file exists and overwrite=False. Pass overwrite=True to replace "
                             "it, or choose another path.")


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Write the weights alone as a safetensors file (``layers/<layer>/<weight>`` entries).

    Raises:
        ModelFileError: ``overwrite=False`` and the file exists, or the file cannot be written.

    Example:
        >>> model.save_weights("model.weights.safetensors")
    """
    path = os.fspath(filepath)
    _check_overwrite(path, overwrite)
    if keras_files.suffix_kind(path) == "h5":  # Keras's weight files: .weights.h5 and legacy .h5
        keras_files.write_weights(path, *model_state(model))
        return
    order = [[layer.name, type(layer).__name__] for layer in model.layers]
    metadata = {"format": "trainwell.weights", "layers": json.dumps(order)}
    save_tensors(path, {f"{LAYERS}{k}": w for k, w in _named_weights(model).items()}, metadata)


# ------------------------------------------------------------------------------------------ loading
@dataclass
class ModelFile:
    """A model file read and checked: what ``models.load_model`` builds a model from.

    Attributes:
        path: the file's path, for error messages.
        header: the JSON header.
        tensors: every tensor of the file, by key.
        class_name: the model class the file describes ('Sequential').
        config: the checked model config, for ``<class>.from_config``.
    """

    path: str
    header: dict
    tensors: dict[str, torch.Tensor]
    class_name: str
    config: dict


def read_model_file(filepath, *, compile: bool = True, max_params: int = MAX_PARAMS) -> ModelFile:
    """Read a file written by ``model.save`` and check everything before anything is built.

    Layer types, a parameter count computed from the config (refused above ``max_params`` before any
    allocation), every weight's presence, shape and dtype against the config, the counters and the
    random state are checked here; ``models.load_model`` then builds the model from ``config`` and
    ``restore_model`` fills it.

    Args:
        filepath: a file written by ``model.save``, or a Keras ``.keras``/``.h5`` model file (told by
            its content; ``keras_files`` turns it into the same header and tensors).
        compile: read the compile settings and optimizer state (a Keras file's are otherwise not read).
        max_params: refuse configs declaring more weight elements than this (default 2**31).

    Returns:
        A ``ModelFile``.

    Raises:
        ModelFileNotFoundError: no such file.
        ModelFileError: not a model file, damaged, written by a newer format, an unknown layer type,
            weights that disagree with the config, or absurd sizes; the message names the entry.
    """
    path = os.fspath(filepath)
    # A Keras file (told by its content) becomes the same header and tensors, checked the same way.
    if keras_files.detect(path):
        header, tensors = keras_files.read_model(path, compile)
    else:
        header, tensors = read_container(path)
    with file_errors(path):
        config = model_config(path, header)
        layer_weights = {k: v for k, v in tensors.items() if k.startswith(LAYERS)}
        if header["model"]["class_name"] == "Functional":
            match_weights(path, _graph_weight_shapes(path, config, max_params), layer_weights)
            checked = config
        else:
            stack = [layer_from(path, i, entry) for i, entry in enumerate(config["layers"])]
            check_unique_names(path, stack)
            input_shape = parse_input_shape(path, config.get("input_shape"))
            match_weights(path, expected_shapes(path, stack, input_shape, max_params), layer_weights)
            checked = {"name": optional_str(path, config, "name"),
                       "input_shape": None if input_shape is None else list(input_shape),
                       "layers": config["layers"]}
        check_prefixes(path, tensors)
        for key in ("epochs_trained", "shuffle_seed"):
            int_entry(path, header, key, 0)
        dict_entry(path, header, "layer_state")
        _rng_state(path, tensors)
    return ModelFile(path, header, tensors, header["model"]["class_name"], checked)


def _graph_weight_shapes(path: str, config: dict, max_params: int) -> dict[str, tuple[int, ...]]:
    """A functional model's weight shapes, from its graph built on torch's 'meta' device (shapes,
    no memory), so that absurd sizes are refused before anything is allocated."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        try:
            graph = functional.Graph(*functional.Graph.from_config(config))
        except Exception as exc:  # an unknown layer, a broken link: the message names it
            raise ModelFileError(f"{path}: header entry `model.config` cannot be built: {exc}") from exc
        total = sum(layer.count_params() for layer in graph.layers)
    if total > max_params:
        raise ModelFileError(f"{path}: the model would hold {total:,} weights, above "
                             f"max_params={max_params:,}. The config is probably corrupted or crafted; "
                             "nothing was allocated. If you trust it, pass a larger max_params.")
    return {f"{LAYERS}{layer.name}/{name}": tuple(w.shape) for layer in graph.layers
            for name, w in zip(layer.weight_names(), layer.weights)}


@contextmanager
def file_errors(path: str):
    """Turn any failure while reading or restoring ``path`` into one ``ModelFileError`` naming it."""
    try:
        yield
    except ModelFileError:
        raise
    except Exception as exc:  # untrusted content: any other failure is still "a bad file", never a crash
        raise ModelFileError(f"{path}: the model file is inconsistent "
                             f"({type(exc).__name__}: {exc}).") from exc


def restore_model(model, saved: ModelFile, compile: bool = True) -> None:
    """Fill ``model`` (built from ``saved.config``) with the file's weights, layer flags, counters,
    preprocessing, compile settings, optimizer state and random state.

    ``predict`` then gives bit-identical outputs and the next ``fit`` continues the saved run
    exactly: torch's CPU random state is put back at the start of that ``fit`` (so Dropout repeats
    an uninterrupted run), not here, so loading never disturbs the caller's random stream.

    Raises:
        ModelFileError: the compile settings or optimizer state cannot be restored.
    """
    path, header, tensors = saved.path, saved.header, saved.tensors
    with file_errors(path):
        for key, weight in _named_weights(model).items():
            copy_into(path, LAYERS + key, weight, tensors[LAYERS + key])
        for name, state in dict_entry(path, header, "layer_state").items():
            layer = next((la for la in model.layers if la.name == name), None)
            if layer is not None and hasattr(layer, "adapted"):
                layer.adapted = bool(state.get("adapted", True))
        model.epochs_trained = int_entry(path, header, "epochs_trained", 0)
        model.shuffle_seed = int_entry(path, header, "shuffle_seed", model.shuffle_seed)
        model.preprocessing = header.get("preprocessing")
        if compile and header.get("compile") is not None:
            _compile_from(path, model, header, tensors)
        model._resume_rng_state = _rng_state(path, tensors)


def saved_history(saved: ModelFile) -> dict | None:
    """``{"history": {name: [values]}, "epoch": [...]}`` of the saved run's last fit, or None."""
    entry = saved.header.get("history")
    if not isinstance(entry, dict) or not isinstance(entry.get("history"), dict):
        return None
    return {"history": {str(k): list(v) for k, v in entry["history"].items()},
            "epoch": list(entry.get("epoch") or [])}


def _compile_from(path: str, model, header: dict, tensors: dict) -> None:
    settings = header["compile"]
    loss = settings["loss"]  # one loss, or a list with one per output (graph models)
    try:
        model.compile(optimizer=optimizers_module.get(settings["optimizer"]),
                      loss=loss if isinstance(loss, list) else losses_module.get(loss),
                      metrics=settings.get("metrics") or None,
                      weighted_metrics=settings.get("weighted_metrics") or None,
                      loss_weights=settings.get("loss_weights"),
                      precision=settings.get("precision"))  # absent in files written before it was kept
    except Exception as exc:  # unknown names, bad arguments: the component's message says which
        raise ModelFileError(f"{path}: header entry `compile` cannot be restored: {exc}") from exc
    _import_optimizer(path, model, header.get("optimizer"), tensors)


def _import_optimizer(path: str, model, meta, tensors: dict) -> None:
    state = {k[len(OPTIMIZER):]: v for k, v in tensors.items() if k.startswith(OPTIMIZER)}
    if meta is None:
        if state:
            raise ModelFileError(f"{path}: the file holds optimizer tensors but no `optimizer` header entry.")
        return
    if not isinstance(meta, dict) or not model.trainable_parameters():
        raise ModelFileError(f"{path}: header entry `optimizer` must be an object and the model must have "
                             f"trainable weights, found {describe(meta)}.")
    model.optimizer.build(model.trainable_parameters())
    try:
        model.optimizer.import_state(state, meta)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc


def _rng_state(path: str, tensors: dict) -> torch.Tensor | None:
    state = tensors.get(RNG)
    if state is None:
        return None
    try:
        with torch.random.fork_rng(devices=[]):  # validate by setting it, then put the caller's back
            torch.set_rng_state(state)
    except (RuntimeError, TypeError) as exc:
        raise ModelFileError(f"{path}: tensor entry '{RNG}' is not a torch CPU random state "
                             f"({exc}).") from exc
    return state.clone()


def restore_training_state(model, filepath) -> tuple[dict, dict[str, torch.Tensor]]:
    """Put a saved run's weights, optimizer state, epoch count, shuffle seed and random state into
    ``model`` (built and compiled with the same architecture), as ``BackupAndRestore`` does.

    Everything is checked before anything is changed. Returns the file's header and the tensors
    stored under ``callbacks/`` (the callbacks' saved state).

    Raises:
        ModelFileError: the file is damaged, or its layers, weights or optimizer differ from ``model``'s.
    """
    path = os.fspath(filepath)
    header, tensors = read_container(path)
    found = {k: v for k, v in tensors.items() if k.startswith(LAYERS)}
    found = _match_layer_names(found, _layer_order(header), model)
    expected = {LAYERS + k: tuple(w.shape) for k, w in _named_weights(model).items()}
    match_weights(path, expected, found)
    epochs = int_entry(path, header, "epochs_trained", 0)
    seed = int_entry(path, header, "shuffle_seed", 0)
    rng = _rng_state(path, tensors)
    if model.optimizer is not None:
        _import_optimizer(path, model, header.get("optimizer"), tensors)  # validates, then loads at once
    for key, weight in _named_weights(model).items():
        copy_into(path, LAYERS + key, weight, found[LAYERS + key])
    model.epochs_trained, model.shuffle_seed, model._resume_rng_state = epochs, seed, rng
    return header, {k: v for k, v in tensors.items() if k.startswith("callbacks/")}


def load_weights(model, filepath) -> None:
    """Copy weights from a ``save_weights`` file (or a ``.tw`` model file) into ``model``.

    Layers are matched by name; when the names differ (a model re-created in the same session gets
    'dense_2' instead of 'dense') but the file lists the same layer classes in the same order, by position.

    Raises:
        ModelFileError: the file is damaged, or one error listing the layers and weights whose names
            or shapes do not match (nothing is changed then).

    Example:
        >>> model.load_weights("model.weights.safetensors")
    """
    path = os.fspath(filepath)
    if not model.built and model.input_shape_hint is not None:
        model.build()
    if not model.built:
        raise ModelFileError(f"{path}: model '{model.name}' is not built, so its weights do not exist yet. "
                             "Give the first layer an input_shape (or call model.build(input_shape)) first.")
    if keras_files.detect(path):
        found = keras_files.read_weights(path, [layers_module.serialize(layer) for layer in model.layers])
    else:
        found, order = _read_weights(path)
        found = _match_layer_names(found, order, model)
    weights = _named_weights(model)
    match_weights(path, {LAYERS + k: tuple(w.shape) for k, w in weights.items()}, found)
    for key, weight in weights.items():
        copy_into(path, LAYERS + key, weight, found[LAYERS + key])


def _match_layer_names(found: dict[str, torch.Tensor], order, model) -> dict[str, torch.Tensor]:
    """Rename the file's layers to ``model``'s when names differ but classes agree position by position."""
    own = [[layer.name, type(layer).__name__] for layer in model.layers]
    if not order or order == own or [c for _, c in order] != [c for _, c in own]:
        return found
    rename = {old: new for (old, _), (new, _) in zip(order, own)}
    renamed = {}
    for key, value in found.items():
        layer, _, weight = key[len(LAYERS):].rpartition("/")
        renamed[f"{LAYERS}{rename.get(layer, layer)}/{weight}"] = value
    return renamed


def _read_weights(path: str) -> tuple[dict[str, torch.Tensor], list | None]:
    """The ``layers/...`` tensors of a weights or model file, and its layer order when recorded."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError:
        head = b""  # load_tensors below reports a missing or unreadable file properly
    if head == MAGIC:
        header, tensors = read_container(path)
        order = _layer_order(header)
    else:
        tensors = load_tensors(path)
        try:
            with safetensors.safe_open(path, framework="pt") as handle:
                order = json.loads((handle.metadata() or {}).get("layers", "null"))
        except Exception:  # the tensors already parsed; a missing or odd order only disables renaming
            order = None
    return {k: v for k, v in tensors.items() if k.startswith(LAYERS)}, order


def _layer_order(header: dict) -> list:
    """``[[name, class_name], ...]`` of the layers in a model file's config (empty when unreadable)."""
    entries = ((header.get("model") or {}).get("config") or {}).get("layers") or []
    if not isinstance(entries, list):
        return []
    return [[(e.get("config") or {}).get("name"), e.get("class_name")]
            for e in entries if isinstance(e, dict)]
