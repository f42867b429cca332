"""Request bodies → feature arrays for ``trainwell serve``; every client mistake is a ``RequestError``.

Two kinds of model take two kinds of body:

- a model trained on a table (``trainwell train``, ``pipeline.train_csv``) holds a
  ``tabular.Preprocessor``; it takes raw column values as JSON rows (a list of objects, or
  ``{"columns": [...], "data": [[...], ...]}``) or as CSV text, checks them cell by cell, and
  turns them into features with the stored preprocessing, as ``pipeline.predict_csv`` does
  (unseen categories and unexpected missing values are warnings, not errors);
- any other model takes ``{"inputs": [[...], ...]}``: one nested list of numbers per row, of
  the model's sample shape.

Every problem names its row (0-based, in request order) and its column, so a client can fix
the data without guessing. Nothing from a body is executed: JSON is parsed by ``json.loads``,
CSV by ``csvio.read_csv_text``.
"""

from __future__ import annotations

import json
import math
import threading
import warnings

import numpy as np

from .._errors import DataError, closest

__all__ = ["RequestError", "parse_json", "TableInputs", "TableRows", "ArrayInputs", "MAX_PROBLEMS"]

MAX_PROBLEMS = 20  # problems listed in one error response; the total is counted
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = frozenset({int, float})
_CATEGORY_TYPES = frozenset({str, int, bool})
# warnings.catch_warnings swaps process-wide state, so concurrent requests take turns recording.
_RECORDING = threading.Lock()


class RequestError(DataError):
    """A client mistake: an HTTP status, a short code, a message, and the cells at fault.

    ``problems`` is a list of ``{"row": int | None, "column": str | int | None, "message": str}``.
    """

    def __init__(self, status: int, code: str, message: str, problems: list | None = None, total: int = 0):
        super().__init__(message)
        self.status, self.code, self.problems = status, code, list(problems or [])
        self.total = max(total, len(self.problems))

    def to_json(self) -> dict:
        body = {"error": self.code, "message": str(self)}
        if self.problems:
            body["problems"] = self.problems[:MAX_PROBLEMS]
            body["problems_total"] = self.total
        return body


class _Problems:
    """Collects problems (the first MAX_PROBLEMS of them, and a count) and raises them as one error."""

    def __init__(self):
        self.items, self.total = [], 0

    def add(self, row, column, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append({"row": row, "column": column, "message": message})

    def raise_if_any(self, status: int, code: str, what: str) -> None:
        if not self.total:
            return
        shown = "; ".join(_where(p) + p["message"] for p in self.items[:3])
        more = f" (and {self.total - 3} more)" if self.total > 3 else ""
        raise RequestError(status, code, f"{self.total} problem(s) with {what}: {shown}{more}.",
                           self.items, self.total)


def _where(problem: dict) -> str:
    parts = []
    if problem["row"] is not None:
        parts.append(f"row {problem['row']}")
    if problem["column"] is not None:
        parts.append(f"column {problem['column']!r}")
    return (", ".join(parts) + ": ") if parts else ""


class _NonFinite:
    """What ``json.loads`` gives for the non-standard literals NaN, Infinity and -Infinity."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _kind(value) -> str:
    """How a JSON value is named in messages: 'text', 'true/false', 'a list', ..."""
    if isinstance(value, _NonFinite):
        return f"the non-finite number {value.text}"
    if isinstance(value, bool):
        return f"{json.dumps(value)} (true/false)"
    if isinstance(value, str):
        return f"{value[:40]!r} (text)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return repr(value)


def parse_json(body: bytes):
    """The JSON value of a request body; NaN/Infinity literals become markers that the checks reject.

    Raises:
        RequestError: 400 for an empty body, text that is not UTF-8, or malformed JSON.
    """
    if not body.strip():
        raise RequestError(400, "empty_body", "The request body is empty. Send JSON rows such as "
                                              '[{"column": value, ...}] (see GET /metadata).')
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "not_utf8", f"The request body is not UTF-8 text (byte {exc.start}). "
                                            f"Encode the JSON as UTF-8.") from None
    try:
        return json.loads(text, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise RequestError(400, "malformed_json", f"The request body is not valid JSON: {exc.msg} at line "
                                                  f"{exc.lineno}, column {exc.colno}.") from None
    except RecursionError:
        raise RequestError(400, "malformed_json", "The request body's JSON is nested too deeply.") from None


def _too_many_rows(n: int, max_rows: int) -> None:
    if n > max_rows:
        raise RequestError(413, "too_many_rows", f"The request has {n} rows; this server takes at most "
                                                 f"{max_rows} per request (--max-rows). Split the rows "
                                                 f"over several requests.")


# ----------------------------------------------------------------------------- tables


def _number_problem(value) -> str | None:
    """Why ``value`` cannot go in a numeric column, or None (a number, numeric text, or null)."""
    kind = type(value)
    if kind is int or value is None:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"non-finite number {value}; send a finite number or null"
    if kind is str:
        try:
            number = float(value)
        except ValueError:
            return f"expected a number, received {_kind(value)}"
        return None if math.isfinite(number) else f"non-finite number {value!r}; send a finite number or null"
    if kind is _NonFinite:
        return f"non-finite number {value.text}; send a finite number, or null for a missing value"
    return f"expected a number, received {_kind(value)}"


def _category_problem(value) -> str | None:
    """Why ``value`` cannot go in a category column, or None (text, a number, true/false, or null)."""
    kind = type(value)
    if kind in _CATEGORY_TYPES or value is None:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"non-finite number {value}; send a category or null"
    if kind is _NonFinite:
        return f"non-finite number {value.text}; send a category, or null for a missing value"
    return f"expected a category (text, a number or true/false), received {_kind(value)}"


class TableInputs:
    """Rows of raw column values → the features of a fitted ``tabular.Preprocessor``.

    Args:
        preprocessor: the model's fitted preprocessor.
        extra_columns: ``"error"`` (a column the model does not know is a 422) or ``"ignore"``
            (it is dropped with a warning, as ``predict_csv`` does). The target and the columns
            training dropped are always accepted and ignored.
    """

    def __init__(self, preprocessor, extra_columns: str = "error"):
        self.preprocessor = preprocessor
        used = [spec for spec in preprocessor.columns if spec["kind"] != "dropped"]
        # JSON keys and CSV headers are text; the model file may hold integer column names.
        self.names = {str(spec["name"]): spec["name"] for spec in used}
        self.numeric = {str(spec["name"]) for spec in used if spec["kind"] == "numeric"}
        self.known = {str(spec["name"]) for spec in preprocessor.columns} | {str(preprocessor.target)}
        self.extra_columns = extra_columns

    def from_json(self, payload, max_rows: int) -> TableRows:
        """The checked rows of a parsed JSON body: a list of row objects, or columns + data."""
        if isinstance(payload, dict) and ("columns" in payload or "data" in payload):
            columns, values = self._split_form(payload, max_rows)
        elif isinstance(payload, list):
            columns, values = self._records_form(payload, max_rows)
        else:
            hint = (' ("inputs" is for models trained on arrays)' if isinstance(payload, dict)
                    and "inputs" in payload else "")
            raise RequestError(400, "wrong_format",
                               f"This model was trained on a table{hint}: send a list of rows "
                               f'[{{"column": value, ...}}, ...] or {{"columns": [...], "data": [[...]]}}, '
                               f"received {_kind(payload)}. One row is a list of one object.")
        return self._features(columns, values)

    def from_frame(self, frame, max_rows: int) -> TableRows:
        """The checked rows of a DataFrame read from CSV text (empty cells are missing values)."""
        import pandas as pd

        _too_many_rows(len(frame), max_rows)
        problems = _Problems()
        columns = [str(c) for c in frame.columns]
        self._check_names(columns, None, problems)
        problems.raise_if_any(422, "wrong_columns", "the CSV columns")
        values = {}
        for name, column in zip(columns, frame.columns):
            series = frame[column]
            if name not in self.names:
                continue
            if name in self.numeric and pd.api.types.is_numeric_dtype(series.dtype):
                values[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                values[name] = series.astype(object).where(series.notna(), None).tolist()
        return self._features(columns, values)

    def _records_form(self, rows: list, max_rows: int):
        if not rows:
            raise RequestError(400, "no_rows", "The request holds no rows. Send at least one row object.")
        _too_many_rows(len(rows), max_rows)
        problems, seen = _Problems(), {}
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.add(index, None, f"expected an object of column values, received {_kind(row)}")
            else:
                self._check_names(row, index, problems)
                seen.update(dict.fromkeys(row))
        problems.raise_if_any(422, "wrong_columns", "the rows' columns")
        return list(seen), {name: [row[name] for row in rows] for name in self.names}

    def _split_form(self, payload: dict, max_rows: int):
        unknown = sorted(set(payload) - {"columns", "data"})
        shapes_ok = isinstance(payload.get("columns"), list) and isinstance(payload.get("data"), list)
        if unknown or not shapes_ok:
            raise RequestError(400, "wrong_format", 'Expected {"columns": [names], "data": [[values], ...]} '
                                                    f"and nothing else; received keys {sorted(payload)}.")
        columns, data = payload["columns"], payload["data"]
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise RequestError(400, "wrong_format", '"columns" must list distinct column names (text).')
        if not data:
            raise RequestError(400, "no_rows", 'The request holds no rows: "data" is empty.')
        _too_many_rows(len(data), max_rows)
        problems = _Problems()
        self._check_names(columns, None, problems)
        for index, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(columns):
                got = f"{len(row)} values" if isinstance(row, list) else _kind(row)
                problems.add(index, None, f"expected a list of {len(columns)} values (one per column), "
                                          f"received {got}")
        problems.raise_if_any(422, "wrong_columns", "the rows")
        position = {name: i for i, name in enumerate(columns)}
        return columns, {name: [row[position[name]] for row in data] for name in self.names}

    def _check_names(self, columns, row, problems: _Problems) -> None:
        """Missing model columns, and (unless ignored) columns the model does not know."""
        for name in self.names:
            if name not in columns:
                guess = closest(name, [str(c) for c in columns if str(c) not in self.known])
                hint = f" (is {guess!r} a misspelling?)" if guess else ""
                problems.add(row, name, "missing column" + hint)
        if self.extra_columns == "error":
            for name in columns:
                if str(name) not in self.known:
                    guess = closest(str(name), list(self.names))
                    hint = f" (did you mean {guess!r}?)" if guess else ""
                    problems.add(row, str(name), f"unknown column{hint}; GET /metadata lists the columns")

    def _features(self, columns: list, values: dict) -> TableRows:
        """Check every cell; the columns as float64 (numbers and nulls) or object arrays."""
        problems = _Problems()
        checked = {}
        for name, original in self.names.items():
            cells = values[name]
            if name in self.numeric:
                checked[original] = self._numeric_cells(name, cells, problems)
            else:
                for index, value in enumerate(cells):
                    message = _category_problem(value)
                    if message is not None:
                        problems.add(index, name, message)
                checked[original] = cells
        problems.raise_if_any(422, "invalid_values", "the values")
        arrays = {name: cells if isinstance(cells, np.ndarray) else _objects(cells)
                  for name, cells in checked.items()}
        rows = len(next(iter(arrays.values())))
        return TableRows(arrays, rows, [c for c in columns if c not in self.known])

    def transform(self, batch: list) -> list:
        """``(features, warnings)`` or a ``RequestError`` for each ``TableRows`` of ``batch``.

        The requests of a batch go through the stored preprocessing together (one DataFrame:
        its per-call cost is most of a small request's). ``transform`` is row by row, so the
        rows come out as they would alone; when the batch raised warnings or an error, each
        request is transformed again alone, so that each gets its own.
        """
        if len(batch) > 1:
            merged = {name: np.concatenate([rows.columns[name] for rows in batch])
                      for name in batch[0].columns}
            features, messages = self._transform(merged)
            if not messages and not isinstance(features, Exception):
                bounds = np.cumsum([0] + [rows.count for rows in batch])
                return [(features[a:b], rows.extra_warnings())
                        for rows, a, b in zip(batch, bounds, bounds[1:])]
        results = []
        for rows in batch:
            features, messages = self._transform(rows.columns)
            results.append(features if isinstance(features, Exception) else
                           (features, rows.extra_warnings() + messages))
        return results

    @staticmethod
    def _numeric_cells(name: str, cells, problems: _Problems):
        """The column as float64 when it holds only numbers and nulls, else as checked objects."""
        if isinstance(cells, np.ndarray):  # CSV numbers: NaN is an empty cell, infinities are errors
            for index in np.flatnonzero(np.isinf(cells))[:MAX_PROBLEMS]:
                problems.add(int(index), name, f"non-finite number {cells[index]}; send a finite number")
            return cells
        if set(map(type, cells)) <= _NUMBER_TYPES | {type(None)}:
            array = np.array(cells, dtype=np.float64)  # None → NaN, a missing value
            for index in np.flatnonzero(np.isinf(array))[:MAX_PROBLEMS]:
                problems.add(int(index), name, f"non-finite number {cells[index]}; send a number or null")
            return array
        for index, value in enumerate(cells):
            message = _number_problem(value)
            if message is not None:
                problems.add(index, name, message)
        return np.asarray(cells, dtype=object)  # numeric text is read by the preprocessing, as in a CSV

    def _transform(self, columns: dict):
        """The stored preprocessing on checked columns: ``(features or a RequestError, warnings)``."""
        import pandas as pd

        with _RECORDING, warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            try:
                features = self.preprocessor.transform(pd.DataFrame(columns))
            except DataError as exc:  # a check above missed a case: still the client's data
                features = RequestError(422, "invalid_values", str(exc))
        return features, [str(record.message) for record in records]


class TableRows:
    """One request's checked columns (name → float64 or object array), row count and ignored columns."""

    __slots__ = ("columns", "count", "extra")

    def __init__(self, columns: dict, count: int, extra: list):
        self.columns, self.count, self.extra = columns, count, extra

    def __len__(self) -> int:
        return self.count

    def extra_warnings(self) -> list:
        if not self.extra:
            return []
        return [f"ignored {len(self.extra)} column(s) the model does not use: "
                f"{', '.join(map(repr, self.extra[:10]))}"]


def _objects(cells: list) -> np.ndarray:
    """A 1-D object array of the values (np.asarray would make lists of equal length a 2-D array)."""
    array = np.empty(len(cells), dtype=object)
    array[:] = cells
    return array


# ----------------------------------------------------------------------------- arrays


class ArrayInputs:
    """``{"inputs": [[...], ...]}`` → a float32 array of shape ``(n, *sample_shape)``."""

    def __init__(self, sample_shape: tuple[int, ...]):
        self.sample_shape = tuple(sample_shape)
        self.size = math.prod(self.sample_shape)

    def describe(self) -> str:
        if len(self.sample_shape) == 1:
            return f"a list of {self.size} numbers"
        return f"nested lists of shape {list(self.sample_shape)}"

    def from_json(self, payload, max_rows: int) -> np.ndarray:
        """The float32 rows of a parsed JSON body."""
        rows = payload.get("inputs") if isinstance(payload, dict) and len(payload) == 1 else None
        if not isinstance(rows, list):
            keys = f" with keys {sorted(payload)}" if isinstance(payload, dict) else ""
            raise RequestError(400, "wrong_format", f'This model takes {{"inputs": [row, ...]}}, each row '
                                                    f"{self.describe()}; received {_kind(payload)}{keys}.")
        if not rows:
            raise RequestError(400, "no_rows", 'The request holds no rows: "inputs" is empty.')
        _too_many_rows(len(rows), max_rows)
        problems = _Problems()
        flat = []
        for index, row in enumerate(rows):
            values = self._flatten(row, self.sample_shape)
            if values is None:
                problems.add(index, None, f"expected {self.describe()}, received {_shape_of(row)}")
            elif set(map(type, values)) <= _NUMBER_TYPES:
                flat.append(values)
            else:
                for position, value in enumerate(values):
                    if type(value) not in _NUMBER_TYPES:
                        message = f"expected a number, received {_kind(value)}"
                        problems.add(index, self._position(position), message)
        problems.raise_if_any(422, "invalid_values", "the inputs")
        array = np.array(flat, dtype=np.float64)
        bad = ~np.isfinite(array) | (np.abs(array) > FLOAT32_MAX)
        for index, position in zip(*np.nonzero(bad)):
            problems.add(int(index), self._position(int(position)),
                         f"{array[index, position]} is not a finite float32 number")
        problems.raise_if_any(422, "invalid_values", "the inputs")
        return array.astype(np.float32).reshape(len(rows), *self.sample_shape)

    def _position(self, flat_index: int):
        """The column of a flat position: its index for 1-D samples, '[i][j]...' for nested ones."""
        if len(self.sample_shape) == 1:
            return flat_index
        return "".join(f"[{i}]" for i in np.unravel_index(flat_index, self.sample_shape))

    @classmethod
    def _flatten(cls, value, shape):
        """The leaves of nested lists of exactly ``shape``, or None for any other shape."""
        if type(value) is not list or len(value) != shape[0]:
            return None
        if len(shape) == 1:
            return value
        out = []
        for item in value:
            leaves = cls._flatten(item, shape[1:])
            if leaves is None:
                return None
            out.extend(leaves)
        return out


def _shape_of(value) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)} values"
    return _kind(value)
