"""From a CSV file to a trained model, predictions and metrics: the ``trainwell`` commands as Python.

The same one-command workflow as the command line, without the printing:

- ``train_csv(path, target, **settings)`` reads the file, learns the preprocessing on the
  training rows (``tabular.Preprocessor``), builds a Dense network for the detected task and
  fits it with early stopping; the model holds its preprocessing, so ``model.save`` writes it;
- ``predict_csv(model_path, data_path)`` streams a file in chunks through the stored
  preprocessing and the model;
- ``evaluate_csv(model_path, data_path)`` computes the metrics on labelled rows.

Nothing heavy is imported at module level: the command line imports this module, and
``trainwell --help`` must stay fast.

Example:
    >>> from trainwell.pipeline import evaluate_csv, predict_csv, train_csv
    >>> run = train_csv("houses.csv", "price", layers=(32, 16), epochs=50)  # doctest: +SKIP
    >>> run.model.save("houses.tw")  # doctest: +SKIP
    >>> predictions = predict_csv("houses.tw", "new.csv")  # a DataFrame  # doctest: +SKIP
    >>> evaluate_csv("houses.tw", "labelled.csv").metrics["r2"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "TrainedRun", "PreparedTable", "Evaluation", "DEFAULT_CHUNK_ROWS", "train_csv",
           "train_table", "prepare_table", "build_model", "predict_csv", "evaluate_csv", "compare_csv",
           "compare_table", "predict_table", "table_metrics", "run_report", "finding_text", "check_output",
           "load_with_preprocessing", "onnx_inputs", "repair_run"]

DEFAULT_CHUNK_ROWS = 10_000


@dataclass
class Settings:
    """The training options shared by ``train``, ``diagnose`` and ``demo`` (``train_csv``'s keywords)."""

    task: str = "auto"
    layers: tuple[int, ...] = (50, 32)
    activation: str = "relu"
    optimizer: str = "adam"
    learning_rate: float | None = None
    epochs: int = 200
    batch_size: int = 32
    validation_split: float = 0.2
    patience: int = 10
    seed: int = 0
    scale_target: bool = True  # standardise a regression target for training (predictions stay in units)


@dataclass
class TrainedRun:
    """What ``train_table`` produced: the model and everything the report and printout need."""

    model: object
    preprocessor: object
    history: object
    frame: object
    data_path: str
    notes: list[str]
    metrics: dict
    metrics_on: str
    y_true: object
    y_pred: object
    best_epoch: int | None
    findings: list = field(default_factory=list)
    settings: Settings | None = None
    table: PreparedTable | None = None  # the arrays it trained on (``repair_run`` retrains on them)


@dataclass
class PreparedTable:
    """A CSV file after the preprocessing of ``train``: training arrays (a regression target on its
    standardised training scale, ``preprocessor.to_training_scale``), validation pair or None."""

    frame: object
    X: object
    y: object
    validation: tuple | None
    preprocessor: object
    notes: list[str]


@dataclass
class Evaluation:
    """What ``evaluate_csv`` measured: the metrics on ``n_rows`` labelled rows."""

    metrics: dict
    preprocessor: object
    n_rows: int
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- preparing and training


def _split_rows(df, settings: Settings):
    """Shuffle the rows with the seed, then hold out the last ``validation_split`` of them."""
    import numpy as np

    from .data import validation_slice

    order = np.random.default_rng(settings.seed).permutation(len(df))
    shuffled = df.iloc[order]
    if not settings.validation_split:
        return shuffled, None
    split_at = validation_slice(len(df), settings.validation_split)
    return shuffled.iloc[:split_at], shuffled.iloc[split_at:]


def prepare_table(data_path, target: str, settings: Settings) -> PreparedTable:
    """Read a CSV and learn the preprocessing on the training rows, without training.

    Rows without a target are dropped; the rows are shuffled with ``settings.seed`` and the last
    ``settings.validation_split`` held out; validation rows whose class never occurs in the
    training rows are left out (each step adds a note).

    Raises:
        DataError: the file or the target cannot be used (the message says why and what to do).
    """
    from .tabular import Preprocessor, read_csv

    df = read_csv(data_path)
    notes = list(df.attrs.get("notes", []))
    preprocessor = Preprocessor(target=target, task=None if settings.task == "auto" else settings.task,
                                scale_target=settings.scale_target)
    labelled, n_dropped = preprocessor.drop_missing_target(df)
    if n_dropped:
        notes.append(f"dropped {n_dropped} of {len(df)} row(s) whose target {target!r} is missing")
    train_df, val_df = _split_rows(labelled, settings)
    preprocessor.fit(train_df)
    notes += preprocessor.notes
    validation = None
    if val_df is not None:
        known = preprocessor.known_target_rows(val_df[target])
        if not known.all():
            notes.append(f"left out {int((~known).sum())} validation row(s) whose class never occurs in the "
                         f"training rows")
            val_df = val_df[known]
        if len(val_df):
            validation = (preprocessor.transform(val_df), _training_target(preprocessor, val_df[target]))
    X, y = preprocessor.transform(train_df), _training_target(preprocessor, train_df[target])
    return PreparedTable(frame=df, X=X, y=y, validation=validation, preprocessor=preprocessor, notes=notes)


def _training_target(preprocessor, series):
    """The target as the network trains on it: class indices, or a standardised regression target."""
    return preprocessor.to_training_scale(preprocessor.transform_target(series))


def _target_units(preprocessor, y):
    """Training targets back in the target's units (class indices stay indices)."""
    return preprocessor.inverse_transform_target(y) if preprocessor.task == "regression" else y


def build_model(n_features: int, n_outputs: int, settings: Settings):
    """Dense layers of ``settings.layers``, then Dense(1) (regression) or Dense(k, softmax), compiled."""
    from . import optimizers
    from .layers import Dense, Input
    from .models import Sequential
    from .utils import clear_session

    clear_session()  # layer names restart at 'dense' for each model built here
    model = Sequential([Input(shape=(n_features,))])
    for units in settings.layers:
        model.add(Dense(units, activation=settings.activation))
    optimizer = optimizers.get(settings.optimizer)
    if settings.learning_rate is not None:
        optimizer.learning_rate = settings.learning_rate
    if n_outputs == 1:
        model.add(Dense(1))
        model.compile(optimizer=optimizer, loss="mean_squared_error", metrics=["mae"])
    else:
        # Two classes too get a 2-unit softmax: one probability column per class, like k > 2.
        model.add(Dense(n_outputs, activation="softmax"))
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def predict_table(model, preprocessor, X):
    """Model outputs for features ``X``: values of shape (n,) in the target's units, or probabilities
    of shape (n, k)."""
    out = model.predict(X, verbose=0)
    return preprocessor.inverse_transform_target(out) if preprocessor.task == "regression" else out


def table_metrics(preprocessor, y_true, y_pred) -> dict:
    """``report.regression_metrics`` or ``report.classification_metrics`` as the task asks."""
    from .report import classification_metrics, regression_metrics

    if preprocessor.task == "regression":
        return regression_metrics(y_true, y_pred)
    return classification_metrics(y_true, y_pred, preprocessor.classes)


def train_table(data_path, target: str, settings: Settings, diagnostics: str = "auto",
                callbacks=()) -> TrainedRun:
    """``prepare_table``, then build and fit the model with early stopping on the validation loss.

    Args:
        data_path: the CSV file.
        target: the column to predict.
        settings: the training options.
        diagnostics: passed to ``fit`` ("auto", "full", ...).
        callbacks: more callbacks for ``fit`` after the EarlyStopping (e.g. a progress bar), or a
            function returning them, called once the data is read (so a bad file fails before
            torch loads).

    Returns:
        A ``TrainedRun`` whose model holds the preprocessing (``model.preprocessing``).

    Raises:
        DataError: the file or the target cannot be used (the message says why and what to do).
    """
    table = prepare_table(data_path, target, settings)
    preprocessor, X, y, validation = table.preprocessor, table.X, table.y, table.validation
    # torch loads only now, so errors in the data come back without waiting for it.
    from .callbacks import EarlyStopping
    from .utils import set_random_seed

    set_random_seed(settings.seed)
    n_outputs = 1 if preprocessor.task == "regression" else len(preprocessor.classes)
    model = build_model(X.shape[1], n_outputs, settings)
    monitor = "loss" if validation is None else "val_loss"
    stopper = EarlyStopping(monitor=monitor, patience=settings.patience, restore_best_weights=True)
    extra = callbacks() if callable(callbacks) else list(callbacks)
    history = model.fit(X, y, batch_size=settings.batch_size, epochs=settings.epochs, verbose=0,
                        validation_data=validation, callbacks=[stopper, *extra], diagnostics=diagnostics)
    eval_x, eval_y = validation if validation is not None else (X, y)
    eval_y = _target_units(preprocessor, eval_y)
    y_pred = predict_table(model, preprocessor, eval_x)
    where = "validation rows" if validation is not None else "training rows (no validation split)"
    model.preprocessing = preprocessor.get_config()
    return TrainedRun(model=model, preprocessor=preprocessor, history=history, frame=table.frame,
                      data_path=str(data_path), notes=table.notes,
                      metrics=table_metrics(preprocessor, eval_y, y_pred),
                      metrics_on=f"{where} ({len(eval_y)})", y_true=eval_y, y_pred=y_pred,
                      best_epoch=_kept_epoch(stopper, history),
                      findings=list(getattr(history, "diagnosis", None) or []), settings=settings,
                      table=table)


def train_csv(path, target: str, *, diagnostics: str = "auto", callbacks=(), **settings) -> TrainedRun:
    """Train a model on a CSV file to predict ``target``: ``trainwell train`` from Python.

    Args:
        path: the CSV file.
        target: the column to predict.
        diagnostics: passed to ``fit`` ("auto", or "full" for every check of the training doctor).
        callbacks: more callbacks for ``fit``.
        **settings: the fields of ``Settings`` (``layers``, ``epochs``, ``learning_rate``, ...).

    Returns:
        A ``TrainedRun``: ``run.model`` (save it with ``run.model.save(path)``), ``run.metrics``,
        ``run.notes``, ``run.findings``.

    Raises:
        ConfigError: an unknown setting name.
        DataError: the file or the target cannot be used.

    Example:
        >>> run = train_csv("iris.csv", "species", layers=(16,), epochs=100)  # doctest: +SKIP
    """
    from ._errors import unknown_name

    names = Settings.__dataclass_fields__
    for name in settings:
        if name not in names:
            raise unknown_name("setting", name, names, argument="train_csv")
    if "layers" in settings:
        settings["layers"] = tuple(settings["layers"])
    return train_table(path, target, Settings(**settings), diagnostics=diagnostics, callbacks=callbacks)


def repair_run(run: TrainedRun):
    """``model.repair`` on the rows ``run`` trained on: each finding's fix tried on a fresh copy.

    Every copy trains for ``run.settings.epochs`` epochs with its seed and validation rows (no early
    stopping, so that the copies are compared on the same budget). A regression target stays on
    its standardised training scale, so ``val_mse`` is in units of the target's std.

    Returns:
        The ``diagnostics.RepairResult``.
    """
    table, settings = run.table, run.settings or Settings()
    return run.model.repair(table.X, table.y, findings=run.findings, epochs=settings.epochs,
                            batch_size=settings.batch_size, validation_data=table.validation,
                            validation_split=settings.validation_split or 0.2, seed=settings.seed, verbose=0)


def _kept_epoch(stopper, history) -> int | None:
    """The 0-based epoch whose weights the model holds after EarlyStopping restored the best."""
    if stopper.best_weights is None or not history.epoch:
        return None
    return int(stopper.best_epoch)


def finding_text(finding) -> str:
    """One line for a doctor's finding (code, severity, layer, message, fix), or its str."""
    message = getattr(finding, "message", None)
    if message is None:
        return str(finding)
    layer = getattr(finding, "layer", None)
    head = f"[{getattr(finding, 'severity', 'info')}] {getattr(finding, 'code', '')}"
    head += f" (layer {layer})" if layer else ""
    cause = getattr(finding, "caused_by", None)
    head += f" (caused by {cause}: fix that first)" if cause else ""
    fix = getattr(finding, "fix", None)
    return f"{head}: {message}" + (f" Fix: {fix}" if fix else "")


def run_report(run: TrainedRun, title: str, settings: Settings | None = None, files: dict | None = None):
    """The ``report.RunReport`` of a trained run (``settings`` default to the run's own)."""
    from dataclasses import asdict

    from .report import RunReport, data_summary, plot_doctor

    settings = settings or run.settings or Settings()
    columns, class_counts = data_summary(run.frame, run.model.preprocessing)
    architecture = [{"name": layer.name, "type": type(layer).__name__, "units": getattr(layer, "units", ""),
                     "activation": getattr(layer, "activation_name", ""), "params": layer.count_params()}
                    for layer in run.model.layers]
    shown = asdict(settings)
    if shown["learning_rate"] is None:
        shown["learning_rate"] = f"{settings.optimizer}'s default"
    shown["layers"] = ",".join(map(str, settings.layers)) or "none (linear model)"
    shown["features after preprocessing"] = run.preprocessor.n_features_out
    return RunReport(title=title, task=run.preprocessor.task, target=str(run.preprocessor.target),
                     history=run.history.history, metrics=run.metrics, metrics_on=run.metrics_on,
                     y_true=run.y_true, y_pred=run.y_pred, classes=run.preprocessor.classes,
                     findings=[finding_text(f) for f in run.findings], notes=run.notes, columns=columns,
                     class_counts=class_counts, architecture=architecture, settings=shown, files=files or {},
                     best_epoch=run.best_epoch,
                     doctor_plot=plot_doctor(getattr(run.history, "diagnosis", None)))


# ----------------------------------------------------------------------------- predicting and evaluating


def check_output(path, argument: str) -> Path:
    """Fail before any work when an output's folder is missing or the path is a folder."""
    from ._errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"`{argument}`: {path} is a folder; expected a file name such as {path / 'out'}.")
    if not path.absolute().parent.is_dir():
        raise ConfigError(f"`{argument}`: the folder {path.absolute().parent} does not exist. "
                          f"Create it first.")
    return path


def load_with_preprocessing(model_path, required: bool = True):
    """``(model, preprocessor)`` from a .tw file trained from a table; ``(model, None)`` for a model
    without one (a Keras file) when not ``required``."""
    from ._errors import ModelFileError
    from .models import load_model
    from .tabular import Preprocessor

    model = load_model(model_path)
    config = getattr(model, "preprocessing", None)
    if not config and not required:
        return model, None
    if not config:
        raise ModelFileError(f"{model_path}: the model holds no CSV preprocessing (it was not trained with "
                             f"`trainwell train`). Use it from Python: model.predict(X).")
    return model, Preprocessor.from_config(config)


def _prediction_frame(preprocessor, out):
    import numpy as np
    import pandas as pd

    name = f"predicted_{preprocessor.target}"
    if preprocessor.task == "regression":
        return pd.DataFrame({name: out.astype(np.float64)})
    frame = pd.DataFrame({name: preprocessor.inverse_transform_target(out)})
    for index, label in enumerate(preprocessor.classes):
        frame[f"probability_{label}"] = out[:, index].astype(np.float64)
    return frame


def _collect_warnings(records: list, seen: dict) -> None:
    """Group warnings of all chunks by their text with the numbers left out."""
    import re

    for record in records:
        key = re.sub(r"\d+", "#", str(record.message))
        if key in seen:
            seen[key][1] += 1
        else:
            seen[key] = [str(record.message), 1]


def _predicted_chunks(model, preprocessor, data_path, chunk_size: int, seen: dict):
    """Yield ``(rows, prediction frame)`` per chunk, grouping the preprocessing warnings in ``seen``."""
    from .tabular import read_csv

    for chunk in read_csv(data_path, chunksize=chunk_size):
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            X = preprocessor.transform(chunk)
        _collect_warnings(records, seen)
        yield len(chunk), _prediction_frame(preprocessor, predict_table(model, preprocessor, X))


def _raw_chunks(model, data_path, chunk_size: int):
    """Yield ``(rows, prediction frame)`` for a model without a stored preprocessing (a Keras file):
    the CSV's columns are its features, as they are."""
    import numpy as np
    import pandas as pd

    from ._errors import DataError
    from .tabular import read_csv

    for chunk in read_csv(data_path, chunksize=chunk_size):
        text = [c for c in chunk.columns if not pd.api.types.is_numeric_dtype(chunk[c])]
        if text:
            raise DataError(f"{data_path}: column {text[0]!r} is not numeric; this model holds no CSV "
                            "preprocessing (a Keras file), so every column must be a number, in the model's "
                            "feature order.")
        out = model.predict(chunk.to_numpy(np.float32), verbose=0)
        names = ["prediction"] if out.shape[1] == 1 else [f"prediction_{i}" for i in range(out.shape[1])]
        yield len(chunk), pd.DataFrame(out.astype(np.float64), columns=names)


def _warn_grouped(seen: dict) -> None:
    """One warning per kind met in the chunks, saying in how many more chunks it recurred."""
    for message, count in seen.values():
        more = f" (and similar in {count - 1} more chunk(s))" if count > 1 else ""
        warnings.warn(f"{message}{more}", UserWarning, stacklevel=3)


def predict_csv(model_path, data_path, out=None, chunk_size: int = DEFAULT_CHUNK_ROWS, on_rows=None):
    """Predict every row of a CSV file with a model from ``train_csv``/``trainwell train``.

    The file is read in chunks of ``chunk_size`` rows through the stored preprocessing, so memory
    stays bounded. Each kind of preprocessing warning (e.g. unseen categories) is raised once.

    A model without a stored preprocessing (a Keras ``.keras``/``.h5`` file, a model built in
    Python) takes the CSV's columns as its features, as they are; the output columns are then
    ``prediction`` (or ``prediction_<i>`` per output unit).

    Args:
        model_path: the model file (.tw with its CSV preprocessing, or a Keras file).
        data_path: the CSV file to predict.
        out: None to return the predictions; a path to write them as CSV (whole or not at all:
            a temporary file beside it, renamed at the end); ``"-"`` for stdout.
        chunk_size: rows read at a time.
        on_rows: called with the number of rows done after each chunk (a progress bar).

    Returns:
        A DataFrame (``predicted_<target>``, and ``probability_<class>`` columns for
        classification) when ``out`` is None, else the number of rows written.

    Raises:
        ModelFileError: the model holds no CSV preprocessing.
        DataError: the file cannot be read or lacks columns the model was trained on.
    """
    model, preprocessor = load_with_preprocessing(model_path, required=False)
    seen: dict = {}
    chunks = _raw_chunks(model, data_path, chunk_size) if preprocessor is None else \
        _predicted_chunks(model, preprocessor, data_path, chunk_size, seen)
    if out is None:
        import pandas as pd

        result = pd.concat([frame for _, frame in chunks], ignore_index=True)
    elif str(out) == "-":
        result = _write_chunks(chunks, sys.stdout, on_rows)
    else:
        result = _write_atomically(chunks, check_output(out, "out"), on_rows)
    _warn_grouped(seen)  # after the output is complete, so warnings-as-errors cannot lose it
    return result


def _write_atomically(chunks, out: Path, on_rows) -> int:
    import secrets

    # Beside the target so the final rename stays on one file system; mode 0o666 lets the
    # umask decide, as for any file the user creates (mkstemp would force 0o600).
    tmp_name = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            rows = _write_chunks(chunks, handle, on_rows)
        os.replace(tmp_name, out)
    except BaseException:
        os.unlink(tmp_name)
        raise
    return rows


def _write_chunks(chunks, handle, on_rows) -> int:
    rows = 0
    for index, (n_rows, frame) in enumerate(chunks):
        frame.to_csv(handle, header=index == 0, index=False, lineterminator="\n")
        rows += n_rows
        if on_rows is not None:
            on_rows(rows)
    return rows


def evaluate_csv(model_path, data_path, chunk_size: int = DEFAULT_CHUNK_ROWS) -> Evaluation:
    """Metrics of a model from ``train_csv`` on a labelled CSV file, read in chunks.

    Returns:
        An ``Evaluation``: ``metrics`` (regression: MSE, MAE, R²; classification: accuracy, log
        loss, per-class precision/recall, confusion matrix), ``n_rows``, ``notes``.

    Raises:
        DataError: the file has no target column, or no row has a target value.
    """
    import numpy as np

    from ._errors import DataError
    from .tabular import read_csv

    model, preprocessor = load_with_preprocessing(model_path)
    truths, outputs, dropped = [], [], 0
    for chunk in read_csv(data_path, chunksize=chunk_size):
        if preprocessor.target not in chunk.columns:
            names = ", ".join(map(repr, map(str, chunk.columns[:30])))
            raise DataError(f"{data_path}: no target column {preprocessor.target!r} to evaluate against. "
                            f"Columns: {names}. Evaluate on labelled rows; `trainwell predict` needs none.")
        chunk, n_missing = preprocessor.drop_missing_target(chunk)
        dropped += n_missing
        truths.append(preprocessor.transform_target(chunk[preprocessor.target]))
        outputs.append(predict_table(model, preprocessor, preprocessor.transform(chunk)))
    notes = [f"left out {dropped} row(s) whose target {preprocessor.target!r} is missing"] if dropped else []
    y_true, y_pred = np.concatenate(truths), np.concatenate(outputs)
    if not len(y_true):
        raise DataError(f"{data_path}: no row has a target value; nothing to evaluate.")
    return Evaluation(table_metrics(preprocessor, y_true, y_pred), preprocessor, len(y_true), notes)


# ----------------------------------------------------------------------------- comparing settings


def compare_table(table: PreparedTable, layers=None, learning_rates=None, *, optimizer: str = "adam",
                  activation: str = "relu", epochs: int = 30, batch_size: int = 32,
                  patience: int | None = None, seeds=1, out_dir=None, workers: int | None = None,
                  on_result=None):
    """``experiments.compare`` over Dense architectures on a prepared table.

    Args:
        table: from ``prepare_table``.
        layers: hidden layer sizes of each candidate, e.g. ``[(10,), (50, 50)]`` [default: one
            candidate with ``Settings().layers``].
        learning_rates: learning rates crossed with the candidates [default: the optimizer's].
        optimizer, activation, epochs, batch_size: as for ``train_csv``.
        patience: early stopping on the validation loss per candidate; None for none.
        seeds, out_dir, workers, on_result: as for ``experiments.compare``.

    Returns:
        The ``experiments.CompareResult``.
    """
    from .callbacks import EarlyStopping
    from .experiments import compare
    from .layers import Dense, Input

    classes = table.preprocessor.task != "regression"
    head = Dense(len(table.preprocessor.classes), activation="softmax") if classes else Dense(1)
    candidates = {}
    for units in layers or [Settings().layers]:
        name = "layers " + (",".join(map(str, units)) or "none")
        hidden = [Dense(u, activation=activation) for u in units]
        candidates[name] = [Input(shape=(table.X.shape[1],)), *hidden, head]
    compile_kw = dict(optimizer=optimizer, metrics=["accuracy" if classes else "mae"],
                      loss="sparse_categorical_crossentropy" if classes else "mean_squared_error")
    callbacks = [] if patience is None else [EarlyStopping(patience=patience, restore_best_weights=True)]
    fit_kw = dict(epochs=epochs, batch_size=batch_size, validation_data=table.validation, callbacks=callbacks)
    grid = {"learning_rate": list(learning_rates)} if learning_rates else None
    return compare(candidates, table.X, table.y, compile=compile_kw, fit=fit_kw, grid=grid, seeds=seeds,
                   out_dir=out_dir, workers=workers, on_result=on_result)


def compare_csv(path, target: str, layers=None, learning_rates=None, *, task: str = "auto",
                validation_split: float = 0.2, seed: int = 0, **options):
    """``trainwell compare`` from Python: ``prepare_table`` then ``compare_table``.

    Example:
        >>> result = compare_csv("wages.csv", "wage_per_hour", layers=[(10,), (50, 50)],
        ...                      learning_rates=[1e-3, 1e-2], seeds=3)  # doctest: +SKIP
        >>> result.table  # doctest: +SKIP
    """
    settings = Settings(task=task, validation_split=validation_split, seed=seed)
    return compare_table(prepare_table(path, target, settings), layers, learning_rates, **options)


# ----------------------------------------------------------------------------- exported ONNX files


def onnx_inputs(source, frame) -> dict:
    """The input feed of an ONNX file exported from a table model (``trainwell export``) for ``frame``.

    Args:
        source: the ``.onnx`` path, or an ``onnxruntime.InferenceSession`` of it.
        frame: a DataFrame with (at least) the columns the model was trained on.

    Returns:
        ``{column: array of shape (n, 1)}``: float64 for numbers (NaN where missing), for the
        other columns the text training stored each category under (``''`` where missing), ready
        for ``session.run(None, feed)``.

    Raises:
        DataError: a column the model takes is absent, or a number column holds text.

    Example:
        >>> session = onnxruntime.InferenceSession("model.onnx")  # doctest: +SKIP
        >>> session.run(None, onnx_inputs(session, pd.read_csv("new.csv")))  # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd

    from ._errors import DataError
    from .tabular import category_text

    inputs = _onnx_input_types(source)
    absent = [name for name, _ in inputs if name not in frame.columns]
    if absent:
        raise DataError(f"onnx_inputs: the model takes column(s) {absent}, absent from the frame (columns: "
                        f"{list(frame.columns)[:20]}).")
    feed = {}
    for name, is_text in inputs:
        series = frame[name]
        if is_text:
            feed[name] = category_text(series).to_numpy(dtype=object).reshape(-1, 1)
            continue
        values = pd.to_numeric(series, errors="coerce")
        bad = values.isna() & series.notna()
        if bad.any():
            raise DataError(f"onnx_inputs: column {name!r} holds text where the model takes numbers, "
                            f"e.g. {series[bad].iloc[0]!r} in row {series[bad].index[0]!r}.")
        feed[name] = values.to_numpy(dtype=np.float64).reshape(-1, 1)
    return feed


def _onnx_input_types(source) -> list[tuple[str, bool]]:
    """``[(input name, takes text)]`` of an ONNX file or an onnxruntime session."""
    if hasattr(source, "get_inputs"):
        return [(i.name, i.type == "tensor(string)") for i in source.get_inputs()]
    import onnx

    graph = onnx.load(os.fspath(source), load_external_data=False).graph
    return [(i.name, i.type.tensor_type.elem_type == onnx.TensorProto.STRING) for i in graph.input]
