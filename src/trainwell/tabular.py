"""CSV files and DataFrames → float32 arrays for a neural network, learned on the training split.

``Preprocessor(target)`` learns, from the training rows only, how to turn every other column
into numbers: numbers are standardised with the training mean and standard deviation (after
filling missing values with the training median and flagging them in ``<col>_missing``),
text/bool/category columns are one-hot encoded over the training categories. It also learns
the task (regression or classification) and the class labels. Its whole state is a JSON-able
dict (``get_config``/``from_config``), so the model file can hold it without pickle.
``read_csv``, which reads the file, lives in ``csvio`` and is re-exported here.

``transform`` is a pure per-row function of the fitted state: applying it to chunks of a file
gives the same rows as applying it to the whole file.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    >>> pre = Preprocessor(target="y").fit(df)
    >>> pre.feature_names_out
    ['x', 'c=a', 'c=b']
    >>> pre.transform(df).shape, pre.task
    ((4, 3), 'classification')
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd

from ._errors import (
    ConfigError,
    ConfigTypeError,
    DataError,
    check_positive_int,
    closest,
    describe,
    unknown_name,
)

# read_csv lives in csvio; re-exported so `from trainwell.tabular import read_csv` keeps working.
from .csvio import read_csv

__all__ = ["read_csv", "detect_task", "Preprocessor", "TASKS"]

TASKS = ("regression", "classification")
# A numeric target with at most this many distinct integer values is taken as class labels.
MAX_CLASS_VALUES = 10
# A text column where at least this share of values parse as numbers is "numbers with typos".
NUMERIC_TEXT_SHARE = 0.9
DEFAULT_MAX_CATEGORIES = 50
CONFIG_VERSION = 2
SHOWN_ROWS = 5


# ----------------------------------------------------------------------------- values and rows


def _category_key(value) -> str | None:
    """The text a category is stored as; None for missing. 1, 1.0 and '1' all give '1'."""
    missing = pd.isna(value)
    if isinstance(missing, (bool, np.bool_)) and missing:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real) and float(value).is_integer():
        # A column of integers with one empty cell is read as floats; keep 1.0 == 1.
        return str(int(value))
    return str(value)


def _keys(series: pd.Series) -> pd.Series:
    """``_category_key`` of every value (object Series, None where missing)."""
    return series.astype(object).map(_category_key)


def category_text(series: pd.Series) -> pd.Series:
    """The text each value is one-hot encoded under ('' where missing): an exported ONNX file's input."""
    keys = _keys(series)
    return keys.where(keys.notna(), "")


def _json_value(value):
    """A class label as a plain JSON value (numpy scalars → Python, 2.0 → 2)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def _show_rows(series: pd.Series, mask) -> str:
    """'3 ('abc'), 7 ('x') and 2 more': index labels and values of the rows where ``mask``."""
    bad = series[np.asarray(mask)]
    shown = ", ".join(f"{index!r} ({value!r})" for index, value in bad.head(SHOWN_ROWS).items())
    more = len(bad) - SHOWN_ROWS
    return shown + (f" and {more} more" if more > 0 else "")


def _numbers(series: pd.Series, where: str) -> np.ndarray:
    """The values as float64 (NaN where missing); text or infinite values raise a DataError."""
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        parsed = pd.to_numeric(series.astype(object), errors="coerce")
        text = parsed.isna() & series.notna()
        if text.any():
            raise DataError(
                f"{where}: expected numbers, found text in rows (by index) {_show_rows(series, text)}. "
                f"Fix or remove those values (empty cells are allowed and count as missing)."
            )
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        raise DataError(
            f"{where}: infinite values in rows (by index) {_show_rows(series, infinite)}. "
            f"Replace them with finite numbers or leave the cells empty."
        )
    return values


def _few_integer_values(values: np.ndarray) -> bool:
    """True when ``values`` hold at most MAX_CLASS_VALUES distinct whole numbers."""
    distinct = np.unique(values[np.isfinite(values)])
    return len(distinct) <= MAX_CLASS_VALUES and bool(np.all(distinct == np.round(distinct)))


def _is_text_like(dtype) -> bool:
    """Text, bool and category columns are categorical; numbers (0/1 flags included) are not."""
    return (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def detect_task(y) -> str:
    """``'classification'`` or ``'regression'`` for a target column.

    Rules (missing values ignored):

    - text, bool or category values → classification, except text that is mostly
      (≥ 90%) numbers that are not a few whole numbers → regression (numbers with typos;
      ``Preprocessor.fit`` then names the text rows);
    - numbers with at most 10 distinct values, all whole → classification;
    - other numbers → regression.

    Args:
        y: the target values (Series, array or list).

    Returns:
        ``'classification'`` or ``'regression'``.

    Raises:
        DataError: the target has no values, or its values are neither numbers nor text.

    Example:
        >>> detect_task([0, 1, 1, 0]), detect_task([1.5, 2.25, 3.0]), detect_task(["cat", "dog"])
        ('classification', 'regression', 'classification')
    """
    series = y if isinstance(y, pd.Series) else pd.Series(y)
    values = series.dropna()
    if values.empty:
        raise DataError("detect_task: the target has no values (all missing). Pass a column with values.")
    if pd.api.types.is_bool_dtype(values.dtype):
        return "classification"
    if _is_text_like(values.dtype):
        parsed = pd.to_numeric(values.astype(object), errors="coerce").to_numpy(dtype=np.float64)
        numeric_share = np.isfinite(parsed).mean()
        if numeric_share >= NUMERIC_TEXT_SHARE and not _few_integer_values(parsed):
            return "regression"
        return "classification"
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_complex_dtype(values.dtype):
        numbers_ = values.to_numpy(dtype=np.float64)
        return "classification" if _few_integer_values(numbers_) else "regression"
    raise DataError(
        f"detect_task: cannot use a target of dtype {values.dtype}; expected numbers or text labels. "
        f"Convert the column first."
    )


def _check_frame(df, where: str) -> pd.DataFrame:
    """Raise unless ``df`` is a DataFrame with unique column names."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigTypeError(
            f"{where}: expected a pandas DataFrame, received {type(df).__name__}. "
            f"Read the file with trainwell.tabular.read_csv(path) or wrap arrays in pd.DataFrame."
        )
    duplicated = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"{where}: column names must be unique; repeated: {duplicated}. Rename them.")
    return df



def _sorted_labels(labels: list) -> list:
    """Class labels in a stable order: numbers numerically, otherwise by their text."""
    if all(isinstance(v, bool) for v in labels):
        return sorted(labels)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        return sorted(labels)
    return sorted(labels, key=str)


def _json_name(name, where: str):
    """A column name as a JSON value (str or int); others cannot go in the model file."""
    if isinstance(name, str):
        return name
    if isinstance(name, numbers.Integral) and not isinstance(name, (bool, np.bool_)):
        return int(name)
    raise DataError(f"{where}: column names must be text or integers, received {name!r}. Rename the column.")


# ----------------------------------------------------------------------------- fitting columns


def _dropped(name, reason: str, note: str, notes: list) -> dict:
    """The spec of a column left out of the features, with its note."""
    notes.append(note)
    return {"name": name, "kind": "dropped", "reason": reason}


def _fit_column(name, series: pd.Series, max_categories: int, notes: list) -> dict:
    """Learn how to encode one feature column from its training values."""
    name = _json_name(name, "Preprocessor.fit")
    if series.isna().all():
        return _dropped(name, "empty", f"column {name!r} has no values in training: dropped", notes)
    if _is_text_like(series.dtype):
        return _fit_categorical(name, series, max_categories, notes)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
        return _fit_numeric(name, series, notes)
    return _dropped(
        name, "unsupported", f"column {name!r} has dtype {series.dtype}, which cannot be encoded: dropped "
        f"(convert it to numbers or text to use it)", notes,
    )


def _fit_numeric(name, series: pd.Series, notes: list) -> dict:
    """Median for missing values, then the mean and std (ddof=0) of the filled training column."""
    values = _numbers(series, f"Preprocessor.fit: column {name!r}")
    missing = np.isnan(values)
    observed = values[~missing]
    if observed.min() == observed.max():
        note = f"column {name!r} has the same value ({observed[0]:g}) in every training row: dropped"
        return _dropped(name, "constant", note, notes)
    median = float(np.median(observed))
    filled = np.where(missing, median, values)
    if missing.any():
        notes.append(
            f"column {name!r}: {int(missing.sum())} missing value(s) filled with the training median "
            f"{median:g} and flagged in '{name}_missing'"
        )
    return {
        "name": name, "kind": "numeric", "mean": float(filled.mean()), "std": float(filled.std()),
        "median": median, "missing_indicator": bool(missing.any()),
    }


def _fit_categorical(name, series: pd.Series, max_categories: int, notes: list) -> dict:
    """The training categories (the most frequent ``max_categories``), or a drop for ID/constant columns."""
    keys = _keys(series)
    counts = keys.value_counts()
    n_present = int(keys.notna().sum())
    dtype = series.dtype
    is_text = not pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
    if is_text and n_present > 1 and len(counts) == n_present:
        note = f"column {name!r} looks like an identifier (all {n_present} values differ): dropped"
        return _dropped(name, "id", note, notes)
    if len(counts) == 1 and n_present == len(series):
        note = f"column {name!r} has the same value ({counts.index[0]!r}) in every training row: dropped"
        return _dropped(name, "constant", note, notes)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    capped = len(ranked) > max_categories
    if capped:
        notes.append(
            f"column {name!r} has {len(ranked)} categories: kept the {max_categories} most frequent; "
            f"the other {len(ranked) - max_categories} are encoded as all zeros"
        )
    if n_present < len(series):
        notes.append(f"column {name!r}: {len(series) - n_present} missing value(s) encoded as all zeros")
    if is_text:
        share = pd.to_numeric(keys.dropna(), errors="coerce").notna().mean()
        if share >= NUMERIC_TEXT_SHARE:
            notes.append(
                f"column {name!r} holds mostly numbers ({share:.0%}) but some text, so it is treated as "
                f"categories; fix the text values to use it as a number"
            )
    categories = sorted(key for key, _ in ranked[:max_categories])
    return {"name": name, "kind": "categorical", "categories": categories, "capped": capped}


# ----------------------------------------------------------------------------- transforming columns


def _transform_numeric(spec: dict, series: pd.Series) -> np.ndarray:
    """(n, 1) standardised values, plus the 0/1 missing flag column when training had missing values."""
    name = spec["name"]
    values = _numbers(series, f"Preprocessor.transform: column {name!r}")
    missing = np.isnan(values)
    if missing.any() and not spec["missing_indicator"]:
        warnings.warn(
            f"Preprocessor.transform: column {name!r} has {int(missing.sum())} missing value(s) but had none "
            f"in training; filled with the training median {spec['median']:g}.",
            stacklevel=3,
        )
    scaled = (np.where(missing, spec["median"], values) - spec["mean"]) / spec["std"]
    if spec["missing_indicator"]:
        return np.column_stack([scaled, missing])
    return scaled[:, None]


def _transform_categorical(spec: dict, series: pd.Series) -> np.ndarray:
    """(n, n_categories) one-hot rows; missing, rare and unseen values give all-zero rows."""
    keys = _keys(series)
    codes = pd.Index(spec["categories"], dtype=object).get_indexer(keys)  # -1: missing or not a category
    unseen = (codes < 0) & keys.notna().to_numpy()
    # A capped column knows only its top categories, so the others are expected, not unseen.
    if unseen.any() and not spec["capped"]:
        examples = pd.Series(keys.to_numpy()[unseen]).value_counts().index[:SHOWN_ROWS].tolist()
        warnings.warn(
            f"Preprocessor.transform: column {spec['name']!r} has {int(unseen.sum())} value(s) not seen in "
            f"training, encoded as all zeros: {', '.join(map(repr, examples))}. "
            f"Known categories: {spec['categories'][:10]}.",
            stacklevel=3,
        )
    block = np.zeros((len(codes), len(spec["categories"])), dtype=np.float32)
    rows = np.flatnonzero(codes >= 0)
    block[rows, codes[rows]] = 1.0
    return block


# ----------------------------------------------------------------------------- the preprocessor


class Preprocessor:
    """Turns a DataFrame into float32 features (and the target into numbers), learned on training rows.

    Per feature column (every column but ``target``):

    - numbers (int, float; 0/1 flags included): missing values filled with the training median,
      plus a ``<col>_missing`` 0/1 column when training had missing values; then standardised
      with the training mean and standard deviation (``ddof=0``, as Keras ``Normalization``).
    - text, bool and category columns: one-hot over the training categories (sorted), output
      names ``<col>=<category>``; at most ``max_categories`` (the most frequent), the rest all
      zeros. Missing values are all zeros too (no extra category).
    - dropped, each with a note in ``notes``: columns with no values, constant columns, text
      columns whose values all differ (identifiers), and other dtypes (dates, ...).

    The target keeps its units for regression (float32) and becomes class indices 0..k-1 for
    classification, with ``classes`` the sorted labels. A regression target is also standardised
    for training (``to_training_scale``, with the training mean and std kept in ``target_scale``):
    a target in the thousands makes the first losses millions and the gradients huge, so the
    network trains on ``(y - mean) / std`` and ``inverse_transform_target`` turns its outputs back
    into the target's units. Rows with a missing target are left out of
    ``fit``; drop them from other frames with ``drop_missing_target``.

    Args:
        target: name of the target column, or None for features only.
        task: ``'regression'``, ``'classification'`` or None to detect it (``detect_task``).
        max_categories: the most one-hot columns per categorical column.
        scale_target: standardise a regression target for training (True) or keep its units.

    Example:
        >>> df = pd.DataFrame({"age": [20.0, None, 40.0], "city": ["A", "B", "A"], "y": [1.0, 2.5, 4.0]})
        >>> pre = Preprocessor(target="y")
        >>> X = pre.fit_transform(df)
        >>> pre.feature_names_out, pre.task
        (['age', 'age_missing', 'city=A', 'city=B'], 'regression')
    """

    def __init__(self, target=None, task: str | None = None, max_categories: int = DEFAULT_MAX_CATEGORIES,
                 scale_target: bool = True):
        if target is not None:
            _json_name(target, "Preprocessor: `target`")
        if task is not None and task not in TASKS:
            raise unknown_name("task", task, TASKS, argument="task")
        self.target = target
        self.task = task
        self._task_argument = task
        self.max_categories = check_positive_int(max_categories, "max_categories", "Preprocessor")
        self.scale_target = bool(scale_target)
        self.classes: list | None = None
        self.target_scale: dict | None = None  # {"mean", "std"} of a standardised regression target
        self.columns: list[dict] | None = None
        self.notes: list[str] = []

    # --------------------------------------------------------------------- fitting

    def fit(self, df: pd.DataFrame) -> Preprocessor:
        """Learn the encodings (and the task and classes) from training rows.

        Args:
            df: the training DataFrame, target column included when ``target`` is set.

        Returns:
            self, fitted; ``notes`` holds what was dropped or filled.

        Raises:
            DataError: no rows, the target column is absent (the message suggests the closest
                name), the target has a single class or text in a regression target, or no
                feature column is usable.
        """
        df = _check_frame(df, "Preprocessor.fit")
        notes: list[str] = []
        if df.empty:
            raise DataError("Preprocessor.fit: the DataFrame has no rows. Pass the training rows.")
        task, classes, scale = None, None, None
        if self.target is not None:
            df, n_dropped = self.drop_missing_target(df)
            if df.empty:
                raise DataError(f"Preprocessor.fit: every row has a missing target {self.target!r}.")
            if n_dropped:
                notes.append(f"dropped {n_dropped} row(s) whose target {self.target!r} is missing")
            task, classes = self._fit_target(df[self.target], notes)
            if task == "regression" and self.scale_target:
                scale = _target_scale(df[self.target], notes, self.target)
        features = [name for name in df.columns if name != self.target]
        columns = [_fit_column(name, df[name], self.max_categories, notes) for name in features]
        if all(spec["kind"] == "dropped" for spec in columns):
            raise DataError(
                f"Preprocessor.fit: no usable feature column ({'; '.join(notes) or 'only the target'}). "
                f"Add columns with numbers or categories."
            )
        self.task, self.classes, self.columns, self.notes = task, classes, columns, notes
        self.target_scale = scale
        return self

    def _fit_target(self, series: pd.Series, notes: list) -> tuple[str, list | None]:
        """The task and (for classification) the sorted JSON-safe class labels."""
        where = f"Preprocessor.fit: target column {self.target!r}"
        task = self._task_argument or detect_task(series)
        if task == "regression":
            values = _numbers(series, where)
            summary = f"mean {values.mean():.4g}, std {values.std():.4g}"
            notes.append(f"target {self.target!r}: regression ({summary})")
            return task, None
        pairs = pd.DataFrame({"key": _keys(series).to_numpy(), "value": series.astype(object).to_numpy()})
        labels = _sorted_labels([_json_value(v) for v in pairs.drop_duplicates("key")["value"]])
        if len(labels) < 2:
            raise DataError(
                f"{where}: a single class ({labels[0]!r}) in the training rows; classification needs at "
                f"least two. Check the target column, and shuffle the rows if the file is sorted by it."
            )
        notes.append(f"target {self.target!r}: classification with {len(labels)} classes {labels[:10]}")
        return task, labels

    def fit_transform(self, df: pd.DataFrame) -> np.ndarray:
        """``fit(df)`` then ``transform(df)``: the features of every row of ``df``."""
        return self.fit(df).transform(df)

    def drop_missing_target(self, df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """``(rows of df whose target is present, number of rows dropped)``.

        Raises:
            DataError: no ``target`` was set, or ``df`` lacks the target column.
        """
        df = _check_frame(df, "Preprocessor.drop_missing_target")
        self._check_target_column(df, "Preprocessor.drop_missing_target")
        missing = df[self.target].isna()
        return df.loc[~missing], int(missing.sum())

    def _check_target_column(self, df: pd.DataFrame, where: str) -> None:
        """Raise a DataError naming the columns (and the closest) when the target is absent."""
        if self.target is None:
            raise ConfigError(f"{where}: no target was set. Create it with Preprocessor(target=...).")
        if self.target in df.columns:
            return
        names = [str(c) for c in df.columns]
        msg = f"{where}: no target column {self.target!r}. Columns: {', '.join(map(repr, names[:30]))}."
        guess = closest(str(self.target), names)
        if guess is not None:
            msg += f" Did you mean {guess!r}?"
        raise DataError(msg)

    # --------------------------------------------------------------------- transforming

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """The features of every row, as learned by ``fit``. Row by row, so chunks give the same rows.

        Args:
            df: a DataFrame with the training feature columns (any order; the target and the
                columns dropped at fit time may be present or not).

        Returns:
            float32 array of shape (len(df), n_features_out).

        Raises:
            DataError: columns used in training are absent (listed, with close names), or a
                numeric column holds text or infinite values (rows named).

        Warns:
            UserWarning: categories not seen in training (counted per column), missing values in
            a column that had none in training, and extra columns (ignored).
        """
        self._check_fitted("transform")
        df = _check_frame(df, "Preprocessor.transform")
        used = [spec for spec in self.columns if spec["kind"] != "dropped"]
        self._check_columns(df, used)
        out = np.empty((len(df), self.n_features_out), dtype=np.float32)
        start = 0
        for spec in used:
            encode = _transform_numeric if spec["kind"] == "numeric" else _transform_categorical
            block = encode(spec, df[spec["name"]])
            out[:, start : start + block.shape[1]] = block
            start += block.shape[1]
        return out

    def _check_columns(self, df: pd.DataFrame, used: list[dict]) -> None:
        """Raise for absent training columns; warn that extra columns are ignored."""
        absent = [spec["name"] for spec in used if spec["name"] not in df.columns]
        names = [str(c) for c in df.columns]
        if absent:
            hints = [f"{a!r} ~ {g!r}" for a in absent if (g := closest(str(a), names)) is not None]
            raise DataError(
                f"Preprocessor.transform: {len(absent)} column(s) used in training are absent: "
                f"{', '.join(map(repr, absent))}. Columns received: {', '.join(map(repr, names[:30]))}. "
                + (f"Close names: {', '.join(hints)}. " if hints else "")
                + "Add them with the training names (empty values are allowed)."
            )
        known = {spec["name"] for spec in self.columns} | {self.target}
        extra = [c for c in df.columns if c not in known]
        if extra:
            warnings.warn(
                f"Preprocessor.transform: ignored {len(extra)} column(s) not seen in training: "
                f"{', '.join(map(repr, extra[:10]))}.",
                stacklevel=3,
            )

    def transform_target(self, y) -> np.ndarray:
        """The target as numbers: float32 values (regression) or int64 class indices (classification).

        Raises:
            DataError: missing values, text in a regression target, or labels not seen in
                training (rows named).
        """
        self._check_fitted("transform_target")
        series = y if isinstance(y, pd.Series) else pd.Series(y)
        where = f"Preprocessor.transform_target: target {self.target!r}"
        missing = series.isna()
        if missing.any():
            raise DataError(
                f"{where} is missing in rows (by index) {_show_rows(series, missing)}. Drop those rows "
                f"first: df, n_dropped = preprocessor.drop_missing_target(df)."
            )
        if self.task != "classification":
            return _numbers(series, where).astype(np.float32)
        lookup = {_category_key(label): index for index, label in enumerate(self.classes)}
        codes = _keys(series).map(lookup)
        unknown = codes.isna()
        if unknown.any():
            raise DataError(
                f"{where}: labels not seen in training in rows (by index) {_show_rows(series, unknown)}. "
                f"Known classes: {self.classes}. Remove those rows or retrain with them."
            )
        return codes.to_numpy(dtype=np.int64)

    def to_training_scale(self, y) -> np.ndarray:
        """What the network trains on: ``(y - mean) / std`` for a standardised regression target.

        Args:
            y: target values in their units (``transform_target``'s output).

        Returns:
            float32 array of the same shape; ``y`` unchanged when the target is not standardised.
        """
        self._check_fitted("to_training_scale")
        if self.target_scale is None:
            return np.asarray(y)
        scale = self.target_scale
        return ((np.asarray(y, dtype=np.float64) - scale["mean"]) / scale["std"]).astype(np.float32)

    def known_target_rows(self, y) -> np.ndarray:
        """Boolean mask, shape (n,): rows whose target is present and (classification) a known class.

        Lets a caller leave out, with a note, validation rows of a class absent from training
        instead of failing in ``transform_target``.
        """
        self._check_fitted("known_target_rows")
        series = y if isinstance(y, pd.Series) else pd.Series(y)
        present = series.notna().to_numpy()
        if self.task != "classification":
            return present
        known = {_category_key(label) for label in self.classes}
        return present & _keys(series).isin(known).to_numpy()

    def transform_xy(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` for the rows of ``df`` whose target is present."""
        df, _ = self.drop_missing_target(df)
        return self.transform(df), self.transform_target(df[self.target])

    def inverse_transform_target(self, y_pred) -> np.ndarray:
        """Model outputs → target values: class labels for classification, values for regression.

        Args:
            y_pred: regression: shape (n,) or (n, 1), on the training scale (``to_training_scale``).
                Classification: probabilities of shape
                (n, n_classes) (argmax), or for two classes one probability per row, shape (n,)
                or (n, 1) (class 1 when > 0.5, Keras's threshold), or int class indices (n,).

        Returns:
            Array of shape (n,): float32 values, or labels from ``classes``.

        Raises:
            DataError: the shape does not fit the number of classes.
        """
        self._check_fitted("inverse_transform_target")
        pred = np.asarray(y_pred)
        single = pred.ndim == 1 or (pred.ndim == 2 and pred.shape[1] == 1)
        if self.task != "classification":
            if not single:
                raise DataError(f"Preprocessor.inverse_transform_target: expected shape (n,) or (n, 1), "
                                f"received {pred.shape}.")
            values = pred.reshape(-1).astype(np.float64)
            if self.target_scale is not None:  # back from the standardised training scale
                values = values * self.target_scale["std"] + self.target_scale["mean"]
            return values.astype(np.float32)
        k = len(self.classes)
        is_index = pred.ndim == 1 and np.issubdtype(pred.dtype, np.integer)
        if is_index and (pred.size == 0 or (pred.min() >= 0 and pred.max() < k)):
            index = pred
        elif pred.ndim == 2 and pred.shape[1] == k:
            index = pred.argmax(axis=1)
        elif single and k == 2:
            index = (pred.reshape(-1) > 0.5).astype(np.int64)
        else:
            raise DataError(
                f"Preprocessor.inverse_transform_target: expected probabilities of shape (n, {k}) for the "
                f"{k} classes{' or (n,)' if k == 2 else ''}, received shape {pred.shape}."
            )
        return np.asarray(self.classes)[index]

    # --------------------------------------------------------------------- state

    @property
    def feature_names_out(self) -> list[str]:
        """Names of the output columns: ``'age'``, ``'age_missing'``, ``'color=red'``, ..."""
        self._check_fitted("feature_names_out")
        names = []
        for spec in self.columns:
            if spec["kind"] == "numeric":
                names.append(str(spec["name"]))
                if spec["missing_indicator"]:
                    names.append(f"{spec['name']}_missing")
            elif spec["kind"] == "categorical":
                names.extend(f"{spec['name']}={category}" for category in spec["categories"])
        return names

    @property
    def n_features_out(self) -> int:
        """Number of output columns (the model's input size)."""
        return len(self.feature_names_out)

    def _check_fitted(self, method: str) -> None:
        if self.columns is None:
            raise ConfigError(
                f"Preprocessor.{method}: the preprocessor is not fitted. Call fit(train_df) first, "
                f"or rebuild it with Preprocessor.from_config(config)."
            )

    def get_config(self) -> dict:
        """Everything needed to rebuild the preprocessor, as a JSON-serialisable dict."""
        return {
            "version": CONFIG_VERSION,
            "target": self.target,
            "task": self.task,
            "max_categories": self.max_categories,
            "classes": None if self.classes is None else list(self.classes),
            "target_scale": None if self.target_scale is None else dict(self.target_scale),
            "columns": None if self.columns is None else [_copy_spec(spec) for spec in self.columns],
            "notes": list(self.notes),
        }

    @classmethod
    def from_config(cls, config: dict) -> Preprocessor:
        """Rebuild a (fitted) preprocessor from ``get_config()``'s dict.

        Raises:
            ConfigError: keys are missing, a column kind is unknown, or the version is newer.
        """
        if not isinstance(config, dict):
            raise ConfigTypeError(f"Preprocessor.from_config: expected a dict, received {describe(config)}.")
        required = ("version", "target", "task", "max_categories", "classes", "columns")
        absent = [key for key in required if key not in config]
        if absent:
            raise ConfigError(f"Preprocessor.from_config: the config lacks {absent}; pass get_config()'s.")
        if config["version"] > CONFIG_VERSION:
            raise ConfigError(
                f"Preprocessor.from_config: config version {config['version']} is newer than this trainwell "
                f"reads ({CONFIG_VERSION}). Upgrade trainwell."
            )
        for spec in config["columns"] or []:
            if spec.get("kind") not in ("numeric", "categorical", "dropped"):
                raise ConfigError(
                    f"Preprocessor.from_config: column {spec.get('name')!r} has unknown kind "
                    f"{spec.get('kind')!r}; expected 'numeric', 'categorical' or 'dropped'."
                )
        pre = cls(target=config["target"], task=config["task"], max_categories=config["max_categories"])
        pre.classes = None if config["classes"] is None else list(config["classes"])
        pre.target_scale = _checked_scale(config.get("target_scale"))  # absent from version 1 files
        pre.scale_target = pre.target_scale is not None
        pre.columns = None if config["columns"] is None else [_copy_spec(spec) for spec in config["columns"]]
        pre.notes = list(config.get("notes", []))
        return pre

    def __repr__(self) -> str:
        state = f"{self.n_features_out} features out" if self.columns is not None else "not fitted"
        return f"Preprocessor(target={self.target!r}, task={self.task!r}, {state})"


def _target_scale(series: pd.Series, notes: list, target) -> dict:
    """Mean and std (ddof=0) of a regression target's training values; std 1 for a constant target."""
    values = _numbers(series, f"Preprocessor.fit: target column {target!r}").astype(np.float64)
    mean, std = float(values.mean()), float(values.std())
    std = std if std > 1e-12 * max(1.0, abs(mean)) else 1.0
    notes.append(f"target {target!r} standardised for training (mean {mean:.4g}, std {std:.4g}); "
                 f"predictions and metrics are in its units")
    return {"mean": mean, "std": std}


def _checked_scale(scale) -> dict | None:
    """A stored target scale, checked: None, or finite numbers with a positive std."""
    if scale is None:
        return None
    ok = isinstance(scale, dict) and all(isinstance(scale.get(k), (int, float)) for k in ("mean", "std"))
    if not ok or not (np.isfinite(scale["mean"]) and np.isfinite(scale["std"]) and scale["std"] > 0):
        raise ConfigError(
            f"Preprocessor.from_config: `target_scale` expects {{'mean': number, 'std': positive number}}, "
            f"received {describe(scale)}. Pass get_config()'s dict, or retrain the model."
        )
    return {"mean": float(scale["mean"]), "std": float(scale["std"])}


def _copy_spec(spec: dict) -> dict:
    """A column spec copied so that configs and the live object never share lists."""
    copy = dict(spec)
    if "categories" in copy:
        copy["categories"] = list(copy["categories"])
    return copy
