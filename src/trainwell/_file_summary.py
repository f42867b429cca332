"""``summarize(path)``: a text description of a model file, read from its header alone.

Used by ``trainwell summary model.tw``. No weights are loaded and no model is run: the layer
table and parameter count are computed from the config, as the loader's checks do.
"""

from __future__ import annotations

import math
import os

from . import keras_files
from ._container import read_header
from ._errors import describe
from ._file_checks import layer_from, model_config, parse_input_shape, weight_shapes


def summarize(filepath) -> str:
    """Describe a model file: architecture, parameter count, compile settings, training, versions.

    Args:
        filepath: a file written by ``model.save``.

    Returns:
        A multi-line text, ready to print.

    Raises:
        ModelFileNotFoundError, ModelFileError: as ``load_model`` (the header is fully checked).

    Example:
        >>> print(summarize("model.tw"))  # doctest: +SKIP
        Model "sequential" (trainwell 0.1.0, file format 1)
        ...
    """
    path = os.fspath(filepath)
    kind = keras_files.detect(path)
    header = keras_files.read_model(path)[0] if kind else read_header(path)
    config = model_config(path, header)
    source = (f"Keras {'.keras archive' if kind == 'keras' else 'HDF5 file'}" if kind else
              f"trainwell {header.get('trainwell_version')}, file format {header.get('format_version')}")
    lines = [f'Model "{config.get("name")}" ({source})']
    lines += _architecture(path, config)
    lines += _compile_lines(header)
    lines += _training_lines(header)
    lines += _preprocessing_lines(header.get("preprocessing"))
    versions = header.get("versions")
    if isinstance(versions, dict):
        lines.append("Written with: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines)


def _architecture(path: str, config: dict) -> list[str]:
    stack = [layer_from(path, i, entry) for i, entry in enumerate(config["layers"])]
    shape = first = parse_input_shape(path, config.get("input_shape"))
    rows = [("Layer (type)", "Output Shape", "Param #")]
    total = 0
    for layer in stack:
        if shape is None:
            rows.append((f"{layer.name} ({type(layer).__name__})", "?", "0 (unbuilt)"))
            continue
        shapes = weight_shapes(layer, shape)
        count = None if shapes is None else sum(math.prod(s) for s in shapes.values())
        total += count or 0
        shape = layer.compute_output_shape(shape)
        rows.append((f"{layer.name} ({type(layer).__name__})", str((None, *shape)),
                     "?" if count is None else f"{count:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    table = [f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    table.insert(1, "  " + "-" * (sum(widths) + 4))
    inputs = "unknown (never built)" if first is None else str((None, *first))
    return [f"Input shape: {inputs}", *table, f"Total params: {total:,}"]


def _name(entry) -> str:
    """'Adam(learning_rate=0.001)' from a {"class_name", "config"} dict; strings as they are."""
    if not isinstance(entry, dict):
        return str(entry)
    config = entry.get("config") or {}
    shown = {k: v for k, v in config.items() if k in ("learning_rate", "momentum", "from_logits") and v}
    args = ", ".join(f"{k}={v if not isinstance(v, dict) else v.get('class_name')}" for k, v in shown.items())
    return f"{entry.get('class_name')}({args})"


def _compile_lines(header: dict) -> list[str]:
    settings = header.get("compile")
    if not isinstance(settings, dict):
        return ["Compiled: no"]
    metrics = ", ".join(_name(m) for m in settings.get("metrics") or []) or "none"
    lines = [f"Compiled: optimizer {_name(settings.get('optimizer'))}, loss {_name(settings.get('loss'))}, "
             f"metrics: {metrics}"]
    state = header.get("optimizer")
    if isinstance(state, dict):
        lines.append(f"Optimizer state: {state.get('iterations')} steps taken (saved, training can continue)")
    return lines


def _training_lines(header: dict) -> list[str]:
    lines = [f"Epochs trained: {header.get('epochs_trained', 0)}"]
    saved = header.get("history")
    history = saved.get("history") if isinstance(saved, dict) else None
    if not isinstance(history, dict):
        return lines
    for key in ("loss", "val_loss", *sorted(k for k in history if k not in ("loss", "val_loss"))):
        values = history.get(key)
        if not isinstance(values, list) or not values:
            continue
        numbers = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        best = ""
        if numbers:
            pick = max if ("acc" in key or key.endswith("auc")) else min
            value = pick(numbers)
            best = f", best {value:.4g} (epoch {values.index(value) + 1})"
        last = values[-1]
        last = f"{last:.4g}" if isinstance(last, (int, float)) else describe(last)
        lines.append(f"  {key}: last {last}{best} over {len(values)} epochs of the last fit")
    return lines


def _preprocessing_lines(pre) -> list[str]:
    if pre is None:
        return []
    if not isinstance(pre, dict):
        return [f"Preprocessing: {describe(pre)}"]
    columns = pre.get("columns") if isinstance(pre.get("columns"), list) else []
    names = [str(c.get("name")) + (f" ({c.get('kind')})" if c.get("kind") else "")
             for c in columns if isinstance(c, dict)]
    text = f"Preprocessing: target {pre.get('target')!r}, task {pre.get('task')!r}"
    if names:
        text += f", {len(names)} columns: " + ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    return [text]

