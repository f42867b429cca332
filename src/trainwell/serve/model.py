"""The model behind ``trainwell serve``: loaded once, its request format, outputs and metadata.

``ServedModel(path)`` loads a ``.tw`` file for prediction only and decides how requests look:
raw table rows for a model that holds a ``tabular.Preprocessor``, ``{"inputs": ...}`` arrays
otherwise. ``prepare`` parses and checks a request body (in a worker thread), ``run_batch``
preprocesses the rows of a batch of requests and runs the model on them (in a worker
thread, one batch at a time) and renders each request's JSON answer: the
predicted values, or for a classifier the labels and the class probabilities, row by row in
request order, under the names ``trainwell predict`` writes.
"""

from __future__ import annotations

import json
import os
import platform

import numpy as np

from .._errors import ModelFileError
from .inputs import ArrayInputs, RequestError, TableInputs, parse_json

__all__ = ["ServedModel"]

JSON_TYPES = ("application/json", "")
CSV_TYPES = ("text/csv", "application/csv")


class ServedModel:
    """A model file loaded for serving.

    Args:
        path: the ``.tw`` file.
        max_rows: rows per request at most.
        extra_columns: ``"error"`` or ``"ignore"`` for columns a table model does not know.

    Raises:
        ModelFileNotFoundError, ModelFileError: the file cannot be loaded (the message says why).
    """

    def __init__(self, path, max_rows: int, extra_columns: str = "error"):
        from ..models import load_model
        from ..saving import read_header, summarize

        self.path = os.fspath(path)
        self.max_rows = max_rows
        self.model = load_model(self.path, compile=False)
        self.header = read_header(self.path)
        self.summary = summarize(self.path)
        self.preprocessor = _preprocessor(self.path, self.model.preprocessing)
        if self.preprocessor is not None:
            self.inputs = TableInputs(self.preprocessor, extra_columns)
        else:
            shape = getattr(self.model, "input_shape", None)
            if not shape:
                raise ModelFileError(f"{self.path}: the model was never built, so its input shape is "
                                     f"unknown; train it (or call model.build(shape)) before saving it.")
            self.inputs = ArrayInputs(tuple(shape[1:]))
        self.model.eval()
        self.head = _output_head(self.model)
        self.predict(self._example_array())  # builds the inference plan before the first request

    @property
    def is_table(self) -> bool:
        return self.preprocessor is not None

    # ------------------------------------------------------------------------- requests

    def prepare(self, body: bytes, content_type: str | None):
        """A request body's checked rows (``TableRows`` or a float32 array); a ``RequestError`` says
        what is wrong."""
        media = (content_type or "").split(";")[0].strip().lower()
        if media in CSV_TYPES:
            if not self.is_table:
                raise RequestError(415, "unsupported_media_type", "This model was trained on arrays: send "
                                                                  'JSON {"inputs": [[...], ...]}, not CSV.')
            return self.inputs.from_frame(_read_csv_body(body), self.max_rows)
        if media in JSON_TYPES or media.endswith("+json"):
            return self.inputs.from_json(parse_json(body), self.max_rows)
        raise RequestError(415, "unsupported_media_type",
                           f"Content-Type {media!r} is not supported: send application/json"
                           + (" or text/csv" if self.is_table else "")
                           + " (with curl: -H 'Content-Type: application/json').")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs for a batch of rows (one batch at a time, off the event loop)."""
        return self.model.predict(x, verbose=0)

    def run_batch(self, batch: list) -> list:
        """For each prepared request of ``batch``: its JSON answer (bytes), or its ``RequestError``.

        One preprocessing call and one forward pass for the whole batch, then each answer is
        rendered here too (off the event loop, one batch at a time; one thread hop per request).
        """
        results = self.inputs.transform(batch) if self.is_table else [(x, []) for x in batch]
        done = [i for i, result in enumerate(results) if not isinstance(result, Exception)]
        if not done:
            return results
        features = [results[i][0] for i in done]
        out = self.predict(features[0] if len(features) == 1 else np.concatenate(features))
        start = 0
        for i, x in zip(done, features):
            results[i] = self.render(out[start : start + len(x)], results[i][1])
            start += len(x)
        return results

    def render(self, out: np.ndarray, warnings: list) -> bytes:
        """The JSON answer for one request's outputs."""
        if not np.isfinite(out).all():
            rows = np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1))
            warnings = [*warnings, f"the model produced non-finite outputs (sent as null) for rows "
                                   f"{rows[:10].tolist()}"]
        answer = {}
        if self.is_table and self.preprocessor.task == "classification":
            answer["predictions"] = self.preprocessor.inverse_transform_target(out).tolist()
            answer["probabilities"] = _json_array(out)
            answer["classes"] = list(self.preprocessor.classes)
        elif self.is_table:
            answer["predictions"] = _json_array(out.reshape(-1))
        elif self.head == "softmax":
            answer["predictions"] = out.argmax(axis=-1).tolist()
            answer["probabilities"] = _json_array(out)
        elif self.head == "sigmoid":
            answer["predictions"] = (out > 0.5).astype(np.int64).tolist()
            answer["probabilities"] = _json_array(out)
        else:
            answer["predictions"] = _json_array(out)
        answer["warnings"] = warnings
        return json.dumps(answer, allow_nan=False, separators=(",", ":")).encode()

    # ------------------------------------------------------------------------- description

    def output_names(self) -> dict:
        """What each answer field holds, with the column names ``trainwell predict`` writes."""
        if self.is_table:
            pre = self.preprocessor
            if pre.task == "classification":
                return {"predictions": f"predicted_{pre.target}: the most probable class label",
                        "probabilities": [f"probability_{label}" for label in pre.classes],
                        "classes": "the class labels, in the order of the probabilities"}
            return {"predictions": f"predicted_{pre.target}"}
        shape = list(self.model.output_shape[1:])
        if self.head == "softmax":
            return {"predictions": "the index of the most probable class",
                    "probabilities": f"the model's softmax outputs, shape {shape} per row"}
        if self.head == "sigmoid":
            return {"predictions": "1 when the sigmoid output is above 0.5, else 0",
                    "probabilities": f"the model's sigmoid outputs, shape {shape} per row"}
        return {"predictions": f"the model's outputs, shape {shape} per row"}

    def input_schema(self) -> dict:
        """What ``/predict`` takes, for ``/metadata``."""
        if not self.is_table:
            return {"format": '{"inputs": [row, ...]}', "row": self.inputs.describe(),
                    "shape": list(self.inputs.sample_shape), "dtype": "float32"}
        columns = []
        for spec in self.preprocessor.columns:
            entry = {"name": spec["name"], "kind": spec["kind"]}
            if spec["kind"] == "numeric":
                entry.update(type="number", median=spec["median"], mean=spec["mean"], std=spec["std"],
                             missing_seen_in_training=spec["missing_indicator"])
            elif spec["kind"] == "categorical":
                entry.update(type="category", categories=list(spec["categories"]), capped=spec["capped"])
            else:
                entry.update(reason=spec.get("reason"), note="not used by the model; accepted and ignored")
            columns.append(entry)
        return {"format": 'a list of row objects, {"columns": [...], "data": [[...], ...]}, or text/csv',
                "columns": columns, "target": self.preprocessor.target,
                "missing_values": "null in JSON, an empty cell in CSV; filled as in training"}

    def metadata(self, limits: dict) -> dict:
        import torch

        from .. import __version__

        pre = self.preprocessor
        return {
            "model": {"name": self.model.name, "file": os.path.basename(self.path),
                      "kind": "table" if self.is_table else "array", "parameters": self.model.count_params(),
                      "task": pre.task if pre is not None else None,
                      "classes": list(pre.classes) if pre is not None and pre.classes is not None else None},
            "input": self.input_schema(),
            "outputs": self.output_names(),
            "summary": self.summary,
            "versions": {"trainwell": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version(), **_server_versions(),
                         "file": {"trainwell": self.header.get("trainwell_version"),
                                  "format": self.header.get("format_version"),
                                  "written_with": self.header.get("versions")}},
            "limits": limits,
        }

    def openapi_body(self) -> dict:
        """The ``requestBody`` of ``POST /predict`` in the OpenAPI page, with an example."""
        example = self._example_body()
        if not self.is_table:
            schema = {"type": "object", "required": ["inputs"], "additionalProperties": False,
                      "properties": {"inputs": {"type": "array", "items": {"type": "array"}}}}
            return {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}
        properties = {}
        for name in self.inputs.names:
            numeric = name in self.inputs.numeric
            properties[name] = {"type": ["number", "null"]} if numeric else {
                "type": ["string", "number", "boolean", "null"]}
        records = {"type": "array", "items": {"type": "object", "properties": properties,
                                              "required": list(properties)}}
        split = {"type": "object", "required": ["columns", "data"],
                 "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array"}}}}
        header = ",".join(example[0])
        line = ",".join("" if v is None else str(v) for v in example[0].values())
        return {"required": True, "content": {
            "application/json": {"schema": {"oneOf": [records, split]}, "example": example},
            "text/csv": {"schema": {"type": "string"}, "example": f"{header}\n{line}\n"}}}

    def _example_body(self):
        if not self.is_table:
            return {"inputs": [np.zeros(self.inputs.sample_shape).tolist()]}
        row = {}
        for spec in self.preprocessor.columns:
            if spec["kind"] == "numeric":
                row[str(spec["name"])] = round(spec["median"], 4)
            elif spec["kind"] == "categorical":
                row[str(spec["name"])] = spec["categories"][0] if spec["categories"] else None
        return [row]

    def _example_array(self) -> np.ndarray:
        if self.is_table:
            return np.zeros((1, self.preprocessor.n_features_out), dtype=np.float32)
        return np.zeros((1, *self.inputs.sample_shape), dtype=np.float32)


def _preprocessor(path: str, config):
    if not config:
        return None
    from ..tabular import Preprocessor

    try:
        return Preprocessor.from_config(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: the stored preprocessing cannot be used: {exc}") from exc


def _output_head(model) -> str | None:
    """'softmax' or 'sigmoid' when the last layer ends in one (a classifier), else None."""
    layers = getattr(model, "layers", None) or []
    name = getattr(layers[-1], "activation_name", None) if layers else None
    return name if name in ("softmax", "sigmoid") else None


def _json_array(out: np.ndarray):
    """A float array as nested lists; non-finite values become None (JSON null)."""
    values = out.astype(np.float64)
    if np.isfinite(values).all():
        return values.tolist()
    return np.where(np.isfinite(values), values, None).tolist()


def _read_csv_body(body: bytes):
    from .._errors import DataError
    from ..csvio import read_csv_text

    if not body.strip():
        raise RequestError(400, "empty_body", "The request body is empty. Send a CSV header line and rows.")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "not_utf8", f"The CSV body is not UTF-8 text (byte {exc.start}). "
                                            f"Save it as UTF-8.") from None
    try:
        return read_csv_text(text, "the request body", allow_single_column=True)
    except DataError as exc:
        raise RequestError(400, "malformed_csv", str(exc)) from None


def _server_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("fastapi", "starlette", "uvicorn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found
