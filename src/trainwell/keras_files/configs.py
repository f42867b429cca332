"""Keras model configs ↔ trainwell model configs: the allow-list and the layer table.

Nothing here imports or calls anything a file names. A Keras config is read as data: every object
dict (``{"module", "class_name", "config", "registered_name"}``) must come from a module on
``ALLOWED_MODULES`` and name a class of trainwell's own tables (``LAYERS`` below, and the
``initializers``/``regularizers``/``losses``/``metrics``/``optimizers`` lookups). ``Lambda``, custom
and registered-but-unknown classes are refused with one ``ModelFileError`` naming the layer.

Reading: ``trainwell_model_config(keras_config, where)`` gives ``Sequential.get_config()``'s shape
(name, input_shape, layers as ``{"class_name", "config"}`` of trainwell layers), or for a functional
model ``Model.get_config()``'s (layers with ``inbound_nodes``, ``input_layers``, ``output_layers``).
Writing: ``keras_model_config(trainwell_config)`` gives Keras 3's ``config.json`` shape.

A Keras setting trainwell has no argument for is dropped when it holds its neutral value (None,
False, empty) and refused otherwise, so a file never loads into a model that computes something else.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import functional, initializers, regularizers
from .. import layers as layers_module
from .._errors import ModelFileError, describe

# Module paths Keras writes for its own classes. Only class names from trainwell's tables are
# ever built; a module outside this list means code from elsewhere (a custom object).
ALLOWED_MODULES = frozenset({
    "keras", "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints",
    "keras.activations", "keras.losses", "keras.metrics", "keras.optimizers",
    "keras.optimizers.schedules", "keras.src.models.sequential", "keras.src.models.functional",
    "keras.models",
})
# Keras 3 records its backend-specific optimizer classes (e.g. keras.src.backend.torch.optimizers.torch_adam).
_BACKEND_OPTIMIZER = re.compile(r"keras\.src\.backend\.(torch|jax|tensorflow|numpy)\.optimizers?(\.[a-z_]+)?")

REFUSED_LAYERS = {
    "Lambda": "holds Python code (marshalled bytecode), which trainwell never runs",
    "TFOpLambda": "holds a TensorFlow operation call, which trainwell never runs",
    "SlicingOpLambda": "holds a TensorFlow operation call, which trainwell never runs",
}
REBUILD_HINT = ("Rebuild that layer in trainwell, then load the other weights with "
                "model.load_weights(path) (Keras weight files are read too).")
COMPILE_HINT = ("Load the model with load_model(path, compile=False), then compile it with trainwell's "
                "optimizer, loss and metrics.")
_MODEL_PARTS = ("layer", "the model", "initializer", "regularizer", "activation")
_NEUTRAL = (None, False, 0, 0.0, "", [], {}, ())


def where_layer(index: int, config) -> str:
    name = config.get("config", {}).get("name") if isinstance(config, dict) and isinstance(
        config.get("config"), dict) else None
    kind = config.get("class_name") if isinstance(config, dict) else None
    return f"layer {index} ({name!r}, {kind})" if name else f"layer {index} ({kind})"


def check_object(entry: dict, kind: str, where: str) -> tuple[str, dict]:
    """``(class_name, config)`` of a Keras object dict, after the module and registration checks.

    Keras writes a built-in function (``loss=keras.losses.mean_squared_error``) as class ``function``
    with the function's name as its config: that gives ``("function", {"name": ...})``, resolved by
    name from trainwell's own tables.
    """
    hint = REBUILD_HINT if kind in _MODEL_PARTS else COMPILE_HINT
    is_dict = isinstance(entry, dict)
    if is_dict and entry.get("class_name") == "function" and isinstance(entry.get("config"), str):
        if entry.get("module") not in ALLOWED_MODULES | {"builtins"}:
            raise ModelFileError(f"{where}: {kind} function {entry['config']!r} comes from module "
                                 f"{entry.get('module')!r}: custom code, which trainwell never runs. {hint}")
        return "function", {"name": entry["config"]}
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ModelFileError(f"{where}: {kind} must be an object with a `class_name`, "
                             f"found {describe(entry)}.")
    name = entry["class_name"]
    module = entry.get("module")
    if module is not None and (not isinstance(module, str) or not (
            module in ALLOWED_MODULES or _BACKEND_OPTIMIZER.fullmatch(module))):
        raise ModelFileError(
            f"{where}: {kind} {name!r} comes from module {module!r}, which is not one of Keras's own "
            "modules: it is custom code, and trainwell never imports or runs code from a file. " + hint)
    registered = entry.get("registered_name")
    if registered is not None and registered not in (name, f"Custom>{name}"):
        raise ModelFileError(
            f"{where}: {kind} {name!r} is registered as {registered!r}, a custom object; trainwell "
            f"never runs code from a file. {hint}")
    config = entry.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ModelFileError(f"{where}: the config of {kind} {name!r} must be an object, found "
                             f"{describe(config)}.")
    return name.removeprefix("Custom>"), config


def plain(entry, kind: str, where: str):
    """A nested Keras object (initializer, regularizer, loss, ...) as trainwell's ``{class_name, config}``."""
    if entry is None or isinstance(entry, str):
        return entry
    name, config = check_object(entry, kind, where)
    if name == "function":
        return config["name"]
    return {"class_name": name, "config": {k: v for k, v in config.items() if k != "dtype" or v != "float32"}}


def keep_known(cls, config: dict, where: str, accepted=()) -> dict:
    """``config`` restricted to ``cls``'s constructor arguments; other settings must be neutral."""
    known = set(accepted)
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            known |= set(inspect.signature(klass.__init__).parameters) - {"self", "kwargs"}
    out = {}
    for key, value in config.items():
        if key in known:
            out[key] = value
        elif not any(value is n or (type(value) is type(n) and value == n) for n in _NEUTRAL):
            raise ModelFileError(f"{where}: the Keras setting {key}={value!r} is not supported by trainwell. "
                                 f"{REBUILD_HINT}")
    return out


def check_dtype(value, where: str) -> None:
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name") if isinstance(value.get("config"), dict) else None
    if value not in (None, "float32"):
        raise ModelFileError(f"{where}: dtype {value!r} is not supported; trainwell reads float32 models. "
                             "Save the model in Keras with the 'float32' dtype policy.")


def _nested(value, kind: str, module, where: str):
    """A nested object restricted to the arguments of trainwell's class of that name."""
    value = plain(value, kind, where)
    if not isinstance(value, dict):
        return value
    try:
        cls = type(module.get(value["class_name"]))
    except (ValueError, TypeError):
        return value  # unknown names and required arguments: the layer's constructor says which
    return {"class_name": value["class_name"],
            "config": keep_known(cls, value["config"], f"{where}: {kind} {value['class_name']}")}


def _initializer(value, where):
    return _nested(value, "initializer", initializers, where)


def _regularizer(value, where):
    return _nested(value, "regularizer", regularizers, where)


def _activation(value, where: str):
    """Keras writes built-in activations by name; an object dict must name a Keras function."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("config"), str):
        return plain(value, "activation", where)
    name, _ = check_object(value, "activation", where)
    raise ModelFileError(f"{where}: the activation {name!r} is an object, not a built-in activation name; "
                         f"trainwell reads activations by name. {REBUILD_HINT}")


def _axis_last(value, where: str, rank: int | None) -> int:
    """Keras writes the feature axis as -1, [-1], or its positive index counting the batch axis."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value == -1 or (rank is not None and value == rank):
        return -1
    raise ModelFileError(f"{where}: axis={value!r} is not supported; trainwell normalises the last "
                         "axis only.")


def _dense_in(config, where, rank):
    config = dict(config)
    for key in ("kernel_initializer", "bias_initializer"):
        if key in config:  # absent: the layer's default
            config[key] = _initializer(config[key], where)
    for key in ("kernel_regularizer", "bias_regularizer"):
        config[key] = _regularizer(config.get(key), where)
    return config


def _batchnorm_in(config, where, rank):
    config = dict(config)
    config["axis"] = _axis_last(config.get("axis", -1), where, rank)
    for key in ("beta", "gamma", "moving_mean", "moving_variance"):
        config[f"{key}_initializer"] = _initializer(config.get(f"{key}_initializer"), where)
    config.pop("renorm_momentum", None)  # only used when renorm is on, which is refused below
    config.pop("synchronized", None)  # cross-device statistics: no effect on one device's outputs
    config.pop("fused", None)  # Keras 2's choice of kernel, same numbers
    return config


def _normalization_in(config, where, rank):
    config = dict(config)
    config["axis"] = _axis_last(config.get("axis", -1), where, rank)
    for key in ("mean", "variance"):
        value = config.get(key)
        if value is not None and not (isinstance(value, (list, int, float)) and not isinstance(value, bool)):
            raise ModelFileError(f"{where}: `{key}` must be a number or a list of numbers, found "
                                 f"{describe(value)}.")
    return config


def _embedding_in(config, where, rank):
    config = dict(config)
    config["embeddings_initializer"] = _initializer(config.get("embeddings_initializer"), where)
    config["embeddings_regularizer"] = _regularizer(config.get("embeddings_regularizer"), where)
    config.pop("input_length", None)  # Keras 2's shape hint, read from the input shape instead
    return config


def _layernorm_in(config, where, rank):
    config = dict(config)
    for key in ("beta", "gamma"):
        config[f"{key}_initializer"] = _initializer(config.get(f"{key}_initializer"), where)
        if config.get(f"{key}_regularizer") is not None or config.get(f"{key}_constraint") is not None:
            raise ModelFileError(f"{where}: {key} regularizers and constraints are not supported by "
                                 f"trainwell's LayerNormalization. {REBUILD_HINT}")
    if config.pop("rms_scaling", False):
        raise ModelFileError(f"{where}: rms_scaling=True is not supported by trainwell. {REBUILD_HINT}")
    return config


def _same(config, where, rank):
    return dict(config)


@dataclass(frozen=True)
class LayerSpec:
    """One row of the layer table: a Keras class name ↔ a trainwell layer class.

    ``to_trainwell(keras_config, where, rank)`` adapts Keras's settings (nested objects, axes);
    ``variables(trainwell_config)`` lists Keras's variables in its file order as trainwell weight
    names, None for a variable trainwell does not keep (Normalization's ``count``);
    ``to_keras(trainwell_config)`` adds the settings Keras expects.
    """

    cls: type
    to_trainwell: Callable = _same
    variables: Callable[[dict], list] = lambda config: []
    to_keras: Callable[[dict], dict] = lambda config: {}
    trainable: tuple[str, ...] = ()


def keras_object(entry, module: str):
    if not isinstance(entry, dict):
        return entry
    return {"module": module, "class_name": entry["class_name"], "config": entry.get("config", {}),
            "registered_name": None}


def _dense_out(config):
    return {"kernel_initializer": keras_object(config.get("kernel_initializer"), "keras.initializers"),
            "bias_initializer": keras_object(config.get("bias_initializer"), "keras.initializers"),
            "kernel_regularizer": keras_object(config.get("kernel_regularizer"), "keras.regularizers"),
            "bias_regularizer": keras_object(config.get("bias_regularizer"), "keras.regularizers"),
            "kernel_constraint": None, "bias_constraint": None}


def _batchnorm_out(config):
    return {**{f"{k}_initializer": keras_object(config.get(f"{k}_initializer"), "keras.initializers")
               for k in ("beta", "gamma", "moving_mean", "moving_variance")},
            "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
            "gamma_constraint": None, "synchronized": False}


# The layer table. Adding a layer family is one entry here (and its variable order).
LAYERS: dict[str, LayerSpec] = {
    "Dense": LayerSpec(layers_module.Dense, _dense_in,
                       lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []), _dense_out,
                       ("kernel", "bias")),
    "Activation": LayerSpec(layers_module.Activation),
    "Dropout": LayerSpec(layers_module.Dropout, to_keras=lambda c: {"noise_shape": None}),
    "BatchNormalization": LayerSpec(
        layers_module.BatchNormalization, _batchnorm_in,
        lambda c: ["gamma"] * c.get("scale", True) + ["beta"] * c.get("center", True)
        + ["moving_mean", "moving_variance"], _batchnorm_out, ("gamma", "beta")),
    "Normalization": LayerSpec(layers_module.Normalization, _normalization_in,
                               lambda c: ["mean", "variance", None],
                               lambda c: {"mean": None, "variance": None}),
    "Embedding": LayerSpec(layers_module.Embedding, _embedding_in, lambda c: ["embeddings"],
                           lambda c: {"embeddings_initializer": keras_object(
                               c.get("embeddings_initializer"), "keras.initializers"),
                               "embeddings_regularizer": keras_object(
                                   c.get("embeddings_regularizer"), "keras.regularizers"),
                               "embeddings_constraint": None}, ("embeddings",)),
    "LayerNormalization": LayerSpec(
        layers_module.LayerNormalization, _layernorm_in,
        lambda c: ["gamma"] * c.get("scale", True) + ["beta"] * c.get("center", True),
        lambda c: {f"{k}_initializer": keras_object(c.get(f"{k}_initializer"), "keras.initializers")
                   for k in ("beta", "gamma")}, ("gamma", "beta")),
    **{kind: LayerSpec(getattr(layers_module, kind), _dense_in,
                       lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []), _dense_out,
                       ("kernel", "bias")) for kind in ("Conv1D", "Conv2D")},
    # Layers without weights: Keras's config keys are trainwell's constructor arguments.
    **{kind: LayerSpec(getattr(layers_module, kind)) for kind in (
        "Flatten", "Reshape", "Permute", "RepeatVector", "Rescaling", "Softmax", "ReLU", "LeakyReLU", "ELU",
        "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
        "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Concatenate", "Add",
        "Subtract", "Multiply", "Average", "Maximum", "Minimum", "UpSampling2D", "ZeroPadding2D",
        "Cropping2D", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise")},
}
_INPUT_LAYERS = ("InputLayer",)
_LAYER_COMMON = ("name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_shape",
                 "input_dim", "batch_size")


# ------------------------------------------------------------------------------------------ reading
def trainwell_model_config(entry, where: str) -> dict:
    """A Keras model config (``{"class_name": "Sequential", "config": ...}``) as a trainwell one."""
    name, config = check_object(entry, "the model", where) if isinstance(entry, dict) else (None, None)
    if name in ("Functional", "Model"):
        return functional_config(config, where)
    if name != "Sequential":
        raise ModelFileError(f"{where}: the model class is {name!r}; trainwell reads Keras 'Sequential' "
                             "models (and functional models once trainwell has the functional API).")
    layer_entries = config if isinstance(config, list) else config.get("layers")  # Keras 2.0 wrote a list
    if not isinstance(layer_entries, list):
        raise ModelFileError(f"{where}: the Sequential config must hold a list of `layers`.")
    input_shape = None
    if isinstance(config, dict):
        check_dtype(config.get("dtype"), f"{where}: model {config.get('name')!r}")
        input_shape = _batch_shape(config.get("build_input_shape"), where)
    layers, rank = [], None if input_shape is None else len(input_shape)
    for index, layer_entry in enumerate(layer_entries):
        at = f"{where}: {where_layer(index, layer_entry)}"
        kind, layer_config = check_object(layer_entry, "layer", at)
        shape = _batch_shape(layer_config.get("batch_shape", layer_config.get("batch_input_shape")), at)
        if kind in _INPUT_LAYERS or (shape is not None and not layers):
            if layers:
                raise ModelFileError(f"{at}: an input declaration must come first in a Sequential model.")
            input_shape = shape if shape is not None else input_shape
            rank = None if input_shape is None else len(input_shape)
            if kind in _INPUT_LAYERS:
                for key in ("sparse", "ragged", "optional"):
                    if layer_config.get(key):
                        raise ModelFileError(f"{at}: {key}=True inputs are not supported.")
                check_dtype(layer_config.get("dtype"), at)
                continue
        layers.append(trainwell_layer_config(kind, layer_config, at, rank))
    return {"name": config.get("name") if isinstance(config, dict) else None,
            "input_shape": None if input_shape is None else list(input_shape), "layers": layers}


def functional_config(config, where: str) -> dict:
    """A Keras functional model's graph as trainwell's ``Model`` config (see ``Graph.from_config``).

    Keras 3 writes each call of a layer as ``{"args": [...], "kwargs": {}}`` whose tensors are
    ``__keras_tensor__`` entries naming ``keras_history`` ``[layer, node_index, tensor_index]``;
    Keras 2 as a list of ``[layer, node_index, tensor_index, kwargs]``. Both become the latter.
    """
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelFileError(f"{where}: the functional model config must hold a list of `layers`.")
    check_dtype(config.get("dtype"), f"{where}: model {config.get('name')!r}")
    layers = []
    for index, layer_entry in enumerate(config["layers"]):
        at = f"{where}: {where_layer(index, layer_entry)}"
        kind, layer_config = check_object(layer_entry, "layer", at)
        if kind in _INPUT_LAYERS:
            converted = {"class_name": "InputLayer", "config": _input_layer(layer_config, at)}
        else:
            converted = trainwell_layer_config(kind, layer_config, at, None)
        nodes = layer_entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ModelFileError(f"{at}: `inbound_nodes` must be a list, found {describe(nodes)}.")
        layers.append({**converted, "name": converted["config"]["name"],
                       "inbound_nodes": [_node(node, at) for node in nodes]})
    return {"name": config.get("name"), "trainable": bool(config.get("trainable", True)), "layers": layers,
            "input_layers": _refs(config.get("input_layers"), f"{where}: input_layers"),
            "output_layers": _refs(config.get("output_layers"), f"{where}: output_layers")}


def _input_layer(config: dict, where: str) -> dict:
    shape = _batch_shape(config.get("batch_shape", config.get("batch_input_shape")), where)
    name = config.get("name")
    if shape is None or not isinstance(name, str) or not name:
        raise ModelFileError(f"{where}: an input layer needs a name and a shape [null, d1, ...].")
    for key in ("sparse", "ragged", "optional"):
        if config.get(key):
            raise ModelFileError(f"{where}: {key}=True inputs are not supported.")
    check_dtype(config.get("dtype"), where)
    return {"name": name, "shape": list(shape)}


def _neutral_kwargs(kwargs, where: str) -> None:
    if kwargs is None:
        return
    if not isinstance(kwargs, dict) or any(v not in (None, False, {}, []) for v in kwargs.values()):
        raise ModelFileError(f"{where}: the layer call passes arguments {describe(kwargs)}; trainwell "
                             f"reads calls on tensors only. {REBUILD_HINT}")


def _history(value, where: str) -> list:
    """``[layer, node_index, tensor_index]`` checked (trainwell layers make one tensor each)."""
    ok = isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value[1:])
    if not ok:
        raise ModelFileError(f"{where}: a tensor reference must be [layer name, node index, tensor index], "
                             f"found {describe(value)}.")
    if value[2] != 0:
        raise ModelFileError(f"{where}: tensor {value[2]} of layer {value[0]!r} is read; trainwell layers "
                             "have one output.")
    return list(value)


def _node(node, where: str) -> list:
    """One layer call as trainwell's list of ``[layer, node_index, 0, {}]``."""
    if isinstance(node, list):  # Keras 2
        refs = []
        for item in node:
            if not isinstance(item, list) or len(item) not in (3, 4):
                raise ModelFileError(f"{where}: an inbound node entry must be [layer, node index, "
                                     f"tensor index, kwargs], found {describe(item)}.")
            _neutral_kwargs(item[3] if len(item) == 4 else None, where)
            refs.append(_history(item[:3], where) + [{}])
        return refs
    if not isinstance(node, dict) or not isinstance(node.get("args"), list):
        raise ModelFileError(f"{where}: an inbound node must hold `args`, found {describe(node)}.")
    _neutral_kwargs(node.get("kwargs"), where)
    args = node["args"]
    if len(args) != 1:
        raise ModelFileError(f"{where}: the layer is called with {len(args)} positional arguments; trainwell "
                             "reads calls on one tensor or one list of tensors.")
    tensors = args[0] if isinstance(args[0], list) else [args[0]]
    refs = []
    for tensor in tensors:
        if not isinstance(tensor, dict) or tensor.get("class_name") != "__keras_tensor__" \
                or not isinstance(tensor.get("config"), dict):
            raise ModelFileError(f"{where}: a layer input must be a Keras tensor, found {describe(tensor)}.")
        refs.append(_history(tensor["config"].get("keras_history"), where) + [{}])
    return refs


def _refs(value, where: str):
    """``input_layers``/``output_layers``: Keras 3 writes one reference flat, several as a list or dict."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [_history(value, where)]
    if isinstance(value, list) and value:
        return [_history(v, where) for v in value]
    if isinstance(value, dict) and value:
        return {str(k): _history(v, where) for k, v in value.items()}
    raise ModelFileError(f"{where}: expected tensor references [layer, node index, tensor index], found "
                         f"{describe(value)}.")


def trainwell_layer_config(kind: str, config: dict, where: str, rank: int | None) -> dict:
    if kind in REFUSED_LAYERS:
        raise ModelFileError(f"{where}: a {kind} layer {REFUSED_LAYERS[kind]}. Nothing from it was run. "
                             f"{REBUILD_HINT}")
    spec = LAYERS.get(kind)
    if spec is None:
        raise ModelFileError(
            f"{where}: the Keras layer class {kind!r} is not supported by trainwell (supported: "
            f"{', '.join(sorted([*LAYERS, *_INPUT_LAYERS]))}). Nothing from it was run. {REBUILD_HINT}")
    check_dtype(config.get("dtype"), where)
    adapted = spec.to_trainwell(config, where, rank)
    if "activation" in adapted:
        adapted["activation"] = _activation(adapted["activation"], where)
    own = inspect.signature(spec.cls.__init__).parameters  # Embedding's input_dim is its own argument
    out = keep_known(spec.cls, {k: v for k, v in adapted.items()
                                if k not in _LAYER_COMMON or k in own}, where)
    name = config.get("name")
    if name is not None:
        if not isinstance(name, str) or not name or "/" in name:
            raise ModelFileError(f"{where}: the layer name must be a non-empty string without '/', found "
                                 f"{describe(name)}.")
        out["name"] = name
    out["trainable"] = bool(config.get("trainable", True))
    return {"class_name": spec.cls.__name__, "config": out}


def _batch_shape(value, where: str) -> tuple[int, ...] | None:
    """The sample shape from a Keras batch shape ``[null, d1, ...]``."""
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) >= 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value[1:])
    if not ok:
        raise ModelFileError(f"{where}: the input shape must be [null, positive integers...], found "
                             f"{describe(value)}.")
    return tuple(value[1:])


def variable_names(layer_config: dict) -> list:
    """Keras's variable order of a trainwell layer config, as trainwell weight names (None: dropped)."""
    spec = LAYERS.get(keras_class_name(layer_config["class_name"]))
    return [] if spec is None else spec.variables(layer_config.get("config", {}))


def archive_paths(layer_configs: list[dict]) -> list[str]:
    """Each layer's group under ``layers/`` in a Keras 3 weights file: its Keras class name in snake
    case, numbered from the second of a class on (Keras names them so, not by the layer's name)."""
    used: dict[str, int] = {}
    paths = []
    for entry in layer_configs:
        base = re.sub(r"([a-z])([A-Z])", r"\1_\2",
                      re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", keras_class_name(entry["class_name"]))).lower()
        count = used.get(base)
        used[base] = 0 if count is None else count + 1
        paths.append(base if count is None else f"{base}_{count + 1}")
    return paths


def keras_class_name(trainwell_class_name: str) -> str:
    for kind, spec in LAYERS.items():
        if spec.cls.__name__ == trainwell_class_name:
            return kind
    return trainwell_class_name


# ------------------------------------------------------------------------------------------ writing
_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
           "registered_name": None}


def keras_model_config(config: dict, *, with_build: bool = True) -> dict:
    """A trainwell Sequential or functional config as Keras 3's serialized model (``config.json``'s shape)."""
    if "input_layers" in config:
        return keras_functional_config(config)
    layers, shape = [], config.get("input_shape")
    if shape is not None:
        layers.append({"module": "keras.layers", "class_name": "InputLayer",
                       "config": {"batch_shape": [None, *shape], "dtype": "float32", "sparse": False,
                                  "ragged": False, "name": "input_layer", "optional": False},
                       "registered_name": None})
    current = shape
    for entry in config["layers"]:
        layers.append(keras_layer_config(entry, current, with_build))
        if current is not None:
            current = layers_module.deserialize(entry).compute_output_shape(tuple(current))
    out = {"module": "keras", "class_name": "Sequential",
           "config": {"name": config.get("name") or "sequential", "trainable": True, "dtype": _POLICY,
                      "layers": layers},
           "registered_name": None}
    if shape is not None:
        out["config"]["build_input_shape"] = [None, *shape]
        if with_build:
            out["build_config"] = {"input_shape": [None, *shape]}
    return out


def keras_layer_config(entry: dict, input_shape, with_build: bool = True) -> dict:
    kind = keras_class_name(entry["class_name"])
    spec = LAYERS.get(kind)
    if spec is None:
        raise ModelFileError(
            f"layer {entry.get('config', {}).get('name')!r} ({entry['class_name']}) has no Keras file "
            "mapping yet; save the model as .tw instead (model.save('model.tw')).")
    config = {k: v for k, v in entry.get("config", {}).items() if k != "input_shape"}
    config = {"name": config.pop("name"), "trainable": config.pop("trainable", True), "dtype": _POLICY,
              **config, **spec.to_keras(config)}
    out = {"module": "keras.layers", "class_name": kind, "config": config, "registered_name": None}
    if with_build and input_shape is not None and spec.variables(config):
        out["build_config"] = {"input_shape": [None, *input_shape]}
    return out


def _tensor_shapes(config: dict) -> dict[tuple[str, int], tuple]:
    """Each (layer, node index)'s output shape, from the graph built on torch's 'meta' device."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        graph = functional.Graph(*functional.Graph.from_config(config))
    index = graph._node_indices()
    shapes = {(t.node.layer.name, 0): t.shape for t in graph.inputs}
    shapes.update({(node.layer.name, index.get(id(node), 0)): node.output.shape for node in graph.nodes})
    return shapes


def keras_functional_config(config: dict) -> dict:
    """A trainwell ``Model`` config as Keras 3's serialized ``Functional``: each layer call written
    as ``{"args": [tensor or list of tensors], "kwargs": {}}`` with ``__keras_tensor__`` entries."""
    shapes = _tensor_shapes(config)

    def tensor(ref):
        return {"class_name": "__keras_tensor__", "config": {
            "shape": list(shapes[(ref[0], ref[1])]), "dtype": "float32", "keras_history": list(ref[:3])}}

    layers = []
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            out = {"module": "keras.layers", "class_name": "InputLayer",
                   "config": {"batch_shape": [None, *entry["config"]["shape"]], "dtype": "float32",
                              "sparse": False, "ragged": False, "name": entry["name"], "optional": False},
                   "registered_name": None}
        else:
            out = keras_layer_config(entry, None, with_build=False)
        nodes = []
        for node in entry.get("inbound_nodes", []):
            args = [tensor(ref) for ref in node]
            nodes.append({"args": [args[0] if len(args) == 1 else args], "kwargs": {}})
        layers.append({**out, "name": entry["name"], "inbound_nodes": nodes})

    def refs(value):
        if isinstance(value, dict):
            return {k: list(v[:3]) for k, v in value.items()}
        return list(value[0][:3]) if len(value) == 1 else [list(v[:3]) for v in value]

    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": config.get("name") or "functional", "trainable": config.get("trainable", True),
                       "layers": layers, "input_layers": refs(config["input_layers"]),
                       "output_layers": refs(config["output_layers"])},
            "registered_name": "Functional"}
