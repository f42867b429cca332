"""ONNX export: a trained model, and the CSV preprocessing it was trained with, as one ``.onnx`` file.

``export_onnx(model, path)`` (``model.export(path)``, ``trainwell export model.tw -o model.onnx``)
traces the model's forward pass with ``torch.onnx.export`` (the ``torch.export`` based exporter),
so every layer whose forward torch can trace exports, with no per-layer table here. The file:

- uses ONNX opset ``OPSET`` (20: ``Equal`` on strings, which the preprocessing needs, arrived in 19);
- has a dynamic batch axis named ``batch``;
- takes one float32 input ``input`` of the model's sample shape and gives ``output``, for a
  model built in Python;
- for a model trained from a table (``trainwell train``, ``pipeline.train_csv``), takes the raw
  columns instead, one input per column used in training, each of shape (batch, 1): numbers as
  double (NaN for a missing value), text/bool/category columns as strings (the text of the value
  as training stored it, ``''`` for missing; ``pipeline.onnx_inputs`` builds the feed from a
  DataFrame).
  The graph fills missing numbers with the training median and flags them (``<col>_missing``),
  standardises, one-hot encodes the training categories (others give all zeros), then runs the
  network (and turns a standardised regression target back into its units). Outputs:
  ``predictions`` (batch, 1) for regression; ``probabilities`` (batch, k) and ``label`` (batch,)
  for classification.

Nothing here imports the model classes (``models`` imports this module for ``model.export``): any
built module with ``eval()`` and a forward works.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings

import numpy as np
import torch

from ._container import atomic_write_bytes
from ._errors import ConfigError, ConfigTypeError, describe

__all__ = ["OPSET", "export_onnx"]

OPSET = 20
# The keys of a Preprocessor config this module knows how to put in a graph; any other key is a
# setting it would silently drop, so export refuses it (see _check_preprocessing).
_KNOWN_PREPROCESSING_KEYS = {"version", "target", "task", "max_categories", "classes", "columns", "notes",
                             "target_scale"}


class _Forward(torch.nn.Module):
    """The model's inference forward as a module of its own (torch.onnx traces ``forward``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


@contextlib.contextmanager
def _quiet_exporter():
    """Hide the exporter's chatter: progress lines, and warnings about torch's own internals."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _network_proto(model, input_name: str, output_name: str):
    """The network alone as an ONNX ModelProto, traced at a batch of 2 with a dynamic batch axis."""
    shape = getattr(model, "input_shape", None)
    if not getattr(model, "built", False) or shape is None:
        raise ConfigError(f"export: model '{getattr(model, 'name', '?')}' is not built, so its input shape "
                          "is unknown. Train it, or call model.build(input_shape) first.")
    if isinstance(shape, list):
        raise ConfigError(f"export: model '{getattr(model, 'name', '?')}' takes {len(shape)} inputs; the "
                          "ONNX export supports models with one input.")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros((2, *shape[1:]), dtype=torch.float32, device=device)
    was_training = model.training
    wrapper = _Forward(model).eval()  # Dropout off, BatchNormalization on its moving averages
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                wrapper, (example,), None, input_names=[input_name], output_names=[output_name],
                opset_version=OPSET, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False)
    except Exception as exc:  # the exporter raises many types; name the model and the cause
        raise ConfigError(f"export: torch.onnx could not trace model '{getattr(model, 'name', '?')}': "
                          f"{type(exc).__name__}: {str(exc)[:500]}") from exc
    finally:
        model.train(was_training)
    return program.model_proto


# ----------------------------------------------------------------------------- preprocessing as a graph


def _check_preprocessing(config) -> None:
    if not isinstance(config, dict) or config.get("columns") is None:
        raise ConfigTypeError(f"export: the model's preprocessing is not a fitted Preprocessor config, "
                              f"received {describe(config)}.")
    unknown = sorted(set(config) - _KNOWN_PREPROCESSING_KEYS)
    if unknown:
        raise ConfigError(
            f"export: the model's preprocessing has settings the ONNX exporter does not know ({unknown}), so "
            "the graph would compute other numbers than trainwell. Export the network alone with "
            "preprocessing=False and apply the preprocessing before calling it.")


def _preprocessing_nodes(config: dict, features: str):
    """Graph inputs, nodes and initializers turning the raw columns into the network's ``features``."""
    from onnx import TensorProto, helper, numpy_helper

    inputs, nodes, inits, blocks = [], [], [], []

    def const(name, value, dtype=None):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    for i, spec in enumerate(c for c in config["columns"] if c["kind"] != "dropped"):
        column, p = str(spec["name"]), f"pre/{i}/"
        if spec["kind"] == "numeric":
            inputs.append(helper.make_tensor_value_info(column, TensorProto.DOUBLE, ["batch", 1]))
            nodes += [
                # In double, as the Preprocessor computes, then float32 for the network.
                helper.make_node("IsNaN", [column], [p + "missing"]),
                helper.make_node("Where", [p + "missing", const(p + "median", [spec["median"]], np.float64),
                                           column], [p + "filled"]),
                helper.make_node("Sub", [p + "filled", const(p + "mean", [spec["mean"]], np.float64)],
                                 [p + "centred"]),
                helper.make_node("Div", [p + "centred", const(p + "std", [spec["std"]], np.float64)],
                                 [p + "scaled64"]),
                helper.make_node("Cast", [p + "scaled64"], [p + "scaled"], to=TensorProto.FLOAT),
            ]
            blocks.append(p + "scaled")
            if spec["missing_indicator"]:
                nodes.append(helper.make_node("Cast", [p + "missing"], [p + "flag"], to=TensorProto.FLOAT))
                blocks.append(p + "flag")
        else:
            inputs.append(helper.make_tensor_value_info(column, TensorProto.STRING, ["batch", 1]))
            categories = np.array([str(c) for c in spec["categories"]], dtype=object)
            nodes += [  # (batch, 1) == (k,) broadcasts to the (batch, k) one-hot block
                helper.make_node("Equal", [column, const(p + "categories", categories)], [p + "equal"]),
                helper.make_node("Cast", [p + "equal"], [p + "onehot"], to=TensorProto.FLOAT),
            ]
            blocks.append(p + "onehot")
    nodes.append(helper.make_node("Concat", blocks, [features], axis=1))
    return inputs, nodes, inits


def _label_nodes(classes: list, probabilities: str):
    """``label``: the class label of the most probable column (int64 when every label is an int)."""
    from onnx import TensorProto, helper, numpy_helper

    as_int = all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
    values = np.array(classes, dtype=np.int64) if as_int else \
        np.array([str(c) for c in classes], dtype=object)
    nodes = [helper.make_node("ArgMax", [probabilities], ["post/index"], axis=1, keepdims=0),
             helper.make_node("Gather", ["post/classes", "post/index"], ["label"], axis=0)]
    output = helper.make_tensor_value_info("label", TensorProto.INT64 if as_int else TensorProto.STRING,
                                           ["batch"])
    return nodes, [numpy_helper.from_array(values, "post/classes")], output


def _unscale_nodes(scale: dict, scaled: str):
    """``predictions``: a standardised regression output back in the target's units (in double)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Cast", [scaled], ["post/scaled64"], to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["post/scaled64", "post/std"], ["post/spread"]),
             helper.make_node("Add", ["post/spread", "post/mean"], ["post/values"]),
             helper.make_node("Cast", ["post/values"], ["predictions"], to=TensorProto.FLOAT)]
    inits = [numpy_helper.from_array(np.array([scale["std"]], dtype=np.float64), "post/std"),
             numpy_helper.from_array(np.array([scale["mean"]], dtype=np.float64), "post/mean")]
    return nodes, inits, helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["batch", 1])


def _with_preprocessing(network, config: dict):
    """One model: raw columns → preprocessing → ``network`` (input 'features') → outputs."""
    from onnx import helper

    inputs, nodes, inits = _preprocessing_nodes(config, "features")
    graph = network.graph
    outputs = list(graph.output)
    nodes += list(graph.node)
    inits += list(graph.initializer)
    if config.get("target_scale"):  # the network learnt (y - mean) / std
        unscale_nodes, unscale_inits, predictions = _unscale_nodes(config["target_scale"], outputs[0].name)
        nodes += unscale_nodes
        inits += unscale_inits
        outputs = [predictions]
    if config["task"] == "classification":
        label_nodes, label_inits, label_output = _label_nodes(config["classes"], outputs[0].name)
        nodes += label_nodes
        inits += label_inits
        outputs.append(label_output)
    merged = helper.make_graph(nodes, "trainwell", inputs, outputs, initializer=inits,
                               value_info=list(graph.value_info))
    return helper.make_model(merged, opset_imports=list(network.opset_import), ir_version=network.ir_version,
                             functions=list(network.functions))


# ----------------------------------------------------------------------------- the public functions


def export_onnx(model, filepath, *, preprocessing: bool = True) -> str:
    """Write ``model`` as an ONNX file that onnxruntime (or any ONNX runtime) can run.

    Args:
        model: a built trainwell model (trained or not); its weights are read, not changed.
        filepath: where to write (``.onnx``); written atomically, its folder must exist.
        preprocessing: for a model trained from a table, put the stored preprocessing in the
            graph so the file takes the raw columns (default); False exports the network alone.

    Returns:
        The path written.

    Raises:
        ConfigError: the model is not built, torch cannot trace it, or its preprocessing holds
            settings this exporter does not know.
        ConfigError: also when the ``onnx`` extra is not installed (``pip install trainwell[onnx]``).

    Example:
        >>> model.export("model.onnx")
        >>> import onnxruntime
        >>> onnxruntime.InferenceSession("model.onnx").run(None, {"input": X[:5]})  # doctest: +SKIP
    """
    try:
        import onnx
    except ImportError:
        raise ConfigError("export: ONNX export needs the `onnx` package: "
                          "pip install 'trainwell[onnx]'.") from None

    config = getattr(model, "preprocessing", None) if preprocessing else None
    if config is not None:
        _check_preprocessing(config)
        output = "probabilities" if config["task"] == "classification" else \
            "scaled_predictions" if config.get("target_scale") else "predictions"
        proto = _with_preprocessing(_network_proto(model, "features", output), config)
        meta = {"task": config["task"], "target": json.dumps(config["target"]),
                "classes": json.dumps(config["classes"])}
    else:
        proto = _network_proto(model, "input", "output")
        meta = {}
    proto.producer_name, proto.producer_version = "trainwell", _version()
    for key, value in {"opset": str(OPSET), **meta}.items():
        proto.metadata_props.add(key=f"trainwell.{key}", value=value)
    onnx.checker.check_model(proto)
    path = os.fspath(filepath)
    atomic_write_bytes(path, proto.SerializeToString())
    return path


def _version() -> str:
    from . import __version__

    return __version__
