"""The ``trainwell`` command line: from a CSV file to a model, predictions and a report.

Thin ``click`` subcommands over the public API (``tabular``, ``Sequential``, ``report``,
``saving``). Nothing heavy is imported at module level: torch, pandas and matplotlib load inside
the commands, so ``trainwell --help`` answers at once.

Conventions of every command:

- results go to stdout; notes, warnings and progress bars go to stderr, and progress bars only
  appear when stderr is a terminal (quiet in a pipe);
- a bad input gives one line ``trainwell: error: ...`` on stderr and exit status 1 (2 for a
  bad option), never a traceback (set ``TRAINWELL_DEBUG=1`` to see one);
- output files are written whole or not at all (temporary file, then rename).

Example:
    $ trainwell train data.csv --target price -o model.tw
    $ trainwell predict model.tw new.csv -o predictions.csv
    $ trainwell evaluate model.tw labelled.csv
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import click

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
DEFAULT_CHUNK_ROWS = 10_000
DEMO_DATASETS = (("wages", "hourly wages"), ("titanic", "Titanic passengers"))

EXAMPLES_TRAIN = """
\b
Examples:
  trainwell train houses.csv --target price -o houses.tw
  trainwell train iris.csv --target species --layers 32,16 --epochs 300 --report iris.html
"""


# ----------------------------------------------------------------------------- output helpers


def _note(message: str) -> None:
    click.echo(f"note: {message}", err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning: ...`` line on stderr, without the source file and line."""
    click.echo(f"warning: {message}", err=True)


def _interactive() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _progress(description: str):
    """A rich progress bar on stderr, or None when stderr is not a terminal."""
    if not _interactive():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True)


def _check_output(path, option: str) -> Path:
    """Fail before any work when an output's folder is missing or the path is a folder."""
    path = Path(path)
    from ._errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"`{option}`: {path} is a folder; expected a file name such as {path / 'out'}.")
    if not path.absolute().parent.is_dir():
        raise ConfigError(f"`{option}`: the folder {path.absolute().parent} does not exist. Create it first.")
    return path


def _finding_text(finding) -> str:
    """One line for a doctor's finding (code, severity, layer, message, fix), or its str."""
    message = getattr(finding, "message", None)
    if message is None:
        return str(finding)
    layer = getattr(finding, "layer", None)
    head = f"[{getattr(finding, 'severity', 'info')}] {getattr(finding, 'code', '')}"
    head += f" (layer {layer})" if layer else ""
    fix = getattr(finding, "fix", None)
    return f"{head}: {message}" + (f" Fix: {fix}" if fix else "")


def _format_metrics(metrics: dict) -> str:
    from .report import scalar_metrics

    return "  ".join(f"{name} {value:.4g}" for name, value in scalar_metrics(metrics).items())


# ----------------------------------------------------------------------------- training from a table


@dataclass
class Settings:
    """The options shared by ``train``, ``diagnose`` and ``demo``."""

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


def _parse_layers(ctx, param, value: str) -> tuple[int, ...]:
    if value.strip().lower() in ("", "none"):
        return ()
    try:
        units = tuple(int(part) for part in value.split(","))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise click.BadParameter(f"expected positive whole numbers separated by commas such as 50,32; "
                                 f"received {value!r}.")
    return units


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


def build_model(n_features: int, n_outputs: int, settings: Settings):
    """Dense layers of ``settings.layers``, then Dense(1) (regression) or Dense(k, softmax), compiled."""
    from . import optimizers
    from .layers import Dense, Input
    from .models import Sequential
    from .utils import clear_session

    clear_session()  # layer names restart at 'dense' for each model the command builds
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
    """Model outputs for features ``X``: values of shape (n,) or probabilities of shape (n, k)."""
    out = model.predict(X, verbose=0)
    return out.reshape(-1) if preprocessor.task == "regression" else out


def table_metrics(preprocessor, y_true, y_pred) -> dict:
    """``report.regression_metrics`` or ``report.classification_metrics`` as the task asks."""
    from .report import classification_metrics, regression_metrics

    if preprocessor.task == "regression":
        return regression_metrics(y_true, y_pred)
    return classification_metrics(y_true, y_pred, preprocessor.classes)


def train_table(data_path, target: str, settings: Settings, diagnostics: str = "auto") -> TrainedRun:
    """Read a CSV, learn the preprocessing on the training rows, build and fit the model.

    Raises:
        DataError: the file or the target cannot be used (the message says why and what to do).
    """
    from .tabular import Preprocessor, read_csv

    df = read_csv(data_path)
    notes = list(df.attrs.get("notes", []))
    preprocessor = Preprocessor(target=target, task=None if settings.task == "auto" else settings.task)
    labelled, n_dropped = preprocessor.drop_missing_target(df)
    if n_dropped:
        notes.append(f"dropped {n_dropped} of {len(df)} row(s) whose target {target!r} is missing")
    train_df, val_df = _split_rows(labelled, settings)
    preprocessor.fit(train_df)
    notes += preprocessor.notes
    if val_df is not None:
        known = preprocessor.known_target_rows(val_df[target])
        if not known.all():
            notes.append(f"left out {int((~known).sum())} validation row(s) whose class never occurs in the "
                         f"training rows")
            val_df = val_df[known]
    X, y = preprocessor.transform(train_df), preprocessor.transform_target(train_df[target])
    # torch loads only now, so errors in the data come back without waiting for it.
    from .callbacks import EarlyStopping
    from .utils import set_random_seed

    set_random_seed(settings.seed)
    n_outputs = 1 if preprocessor.task == "regression" else len(preprocessor.classes)
    model = build_model(X.shape[1], n_outputs, settings)
    validation, monitor = None, "loss"
    if val_df is not None and len(val_df):
        validation = (preprocessor.transform(val_df), preprocessor.transform_target(val_df[target]))
        monitor = "val_loss"
    stopper = EarlyStopping(monitor=monitor, patience=settings.patience, restore_best_weights=True)
    bar = _epoch_progress(settings.epochs)
    history = model.fit(X, y, batch_size=settings.batch_size, epochs=settings.epochs, verbose=0,
                        validation_data=validation, callbacks=[stopper, bar], diagnostics=diagnostics)
    eval_x, eval_y = validation if validation is not None else (X, y)
    y_pred = predict_table(model, preprocessor, eval_x)
    where = "validation rows" if validation is not None else "training rows (no validation split)"
    model.preprocessing = preprocessor.get_config()
    return TrainedRun(model=model, preprocessor=preprocessor, history=history, frame=df,
                      data_path=str(data_path), notes=notes,
                      metrics=table_metrics(preprocessor, eval_y, y_pred),
                      metrics_on=f"{where} ({len(eval_y)})", y_true=eval_y, y_pred=y_pred,
                      best_epoch=_kept_epoch(stopper, history),
                      findings=list(getattr(history, "diagnosis", None) or []))


def _kept_epoch(stopper, history) -> int | None:
    """The 0-based epoch whose weights the model holds after EarlyStopping restored the best."""
    if stopper.best_weights is None or not history.epoch:
        return None
    return int(stopper.best_epoch)


def _epoch_progress(epochs: int):
    """A callback showing one progress bar over the epochs (stderr, terminals only) with the losses."""
    from .callbacks import LambdaCallback

    state = {}

    def begin(logs=None):
        state["bar"] = _progress("Training")
        if state["bar"] is not None:
            state["task"] = state["bar"].add_task("train", total=epochs, info="")
            state["bar"].start()

    def epoch_end(epoch, logs=None):
        if state.get("bar") is not None:
            info = "  ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items() if "loss" in k)
            state["bar"].update(state["task"], completed=epoch + 1, info=info)

    def end(logs=None):
        if state.get("bar") is not None:
            state.pop("bar").stop()

    return LambdaCallback(on_train_begin=begin, on_epoch_end=epoch_end, on_train_end=end)


def print_run(run: TrainedRun, indent: str = "") -> None:
    """The training summary: epochs, metrics, the doctor's findings."""
    epochs = len(run.history.epoch)
    kept = f"; kept the weights of epoch {run.best_epoch + 1}" if run.best_epoch is not None else ""
    click.echo(f"{indent}Trained {epochs} epoch(s){kept}.")
    click.echo(f"{indent}Metrics on the {run.metrics_on}: {_format_metrics(run.metrics)}")
    if run.findings:
        click.echo(f"{indent}The training doctor found:")
        for finding in run.findings:
            click.echo(f"{indent}  - {_finding_text(finding)}")
    else:
        click.echo(f"{indent}The training doctor found no problem.")


def run_report(run: TrainedRun, title: str, settings: Settings, files: dict):
    """The ``report.RunReport`` of a trained run."""
    from dataclasses import asdict

    from .report import RunReport, data_summary

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
                     findings=[_finding_text(f) for f in run.findings], notes=run.notes, columns=columns,
                     class_counts=class_counts, architecture=architecture, settings=shown, files=files,
                     best_epoch=run.best_epoch)


# ----------------------------------------------------------------------------- predicting a file


def _load_with_preprocessing(model_path):
    """``(model, preprocessor)`` from a .tw file trained from a table."""
    from ._errors import ModelFileError
    from .models import load_model
    from .tabular import Preprocessor

    model = load_model(model_path)
    config = getattr(model, "preprocessing", None)
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


def _count_rows(path) -> int:
    """Data rows of a file (lines minus the header), counted in blocks with bounded memory."""
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(lines - 1, 1)


def _collect_warnings(records: list, seen: dict) -> None:
    """Group warnings of all chunks by their text with the numbers left out."""
    import re

    for record in records:
        key = re.sub(r"\d+", "#", str(record.message))
        if key in seen:
            seen[key][1] += 1
        else:
            seen[key] = [str(record.message), 1]


def predict_file(model_path, data_path, output, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Stream ``data_path`` in chunks through the stored preprocessing and the model into ``output``.

    ``output`` is a path (written to a temporary file, renamed at the end) or ``"-"`` (stdout).

    Returns:
        The number of rows predicted.
    """
    import secrets

    from .tabular import read_csv

    model, preprocessor = _load_with_preprocessing(model_path)
    to_stdout = str(output) == "-"
    if not to_stdout:
        output = _check_output(output, "--output")
        # Beside the target so the final rename stays on one file system; mode 0o666 lets the
        # umask decide, as for any file the user creates (mkstemp would force 0o600).
        tmp_name = output.with_name(f".{output.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        handle = os.fdopen(fd, "w", newline="", encoding="utf-8")
    else:
        handle = sys.stdout
    bar = _progress("Predicting")
    seen: dict = {}
    rows = 0
    try:
        if bar is not None:
            task = bar.add_task("predict", total=_count_rows(data_path), info="")
            bar.start()
        for index, chunk in enumerate(read_csv(data_path, chunksize=chunk_rows)):
            with warnings.catch_warnings(record=True) as records:
                warnings.simplefilter("always")
                X = preprocessor.transform(chunk)
            _collect_warnings(records, seen)
            frame = _prediction_frame(preprocessor, predict_table(model, preprocessor, X))
            frame.to_csv(handle, header=index == 0, index=False, lineterminator="\n")
            rows += len(chunk)
            if bar is not None:
                bar.update(task, completed=rows)
        if not to_stdout:
            handle.close()
            os.replace(tmp_name, output)
    except BaseException:
        if not to_stdout:
            handle.close()
            os.unlink(tmp_name)
        raise
    finally:
        if bar is not None:
            bar.stop()
    for message, count in seen.values():
        more = f" (and similar in {count - 1} more chunk(s))" if count > 1 else ""
        click.echo(f"warning: {message}{more}", err=True)
    return rows


def evaluate_file(model_path, data_path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[dict, object, int]:
    """``(metrics, preprocessor, n_rows)`` of a model on a labelled CSV, read in chunks."""
    import numpy as np

    from ._errors import DataError
    from .tabular import read_csv

    model, preprocessor = _load_with_preprocessing(model_path)
    truths, outputs, dropped = [], [], 0
    for chunk in read_csv(data_path, chunksize=chunk_rows):
        if preprocessor.target not in chunk.columns:
            names = ", ".join(map(repr, map(str, chunk.columns[:30])))
            raise DataError(f"{data_path}: no target column {preprocessor.target!r} to evaluate against. "
                            f"Columns: {names}. Evaluate on labelled rows; `trainwell predict` needs none.")
        chunk, n_missing = preprocessor.drop_missing_target(chunk)
        dropped += n_missing
        truths.append(preprocessor.transform_target(chunk[preprocessor.target]))
        outputs.append(predict_table(model, preprocessor, preprocessor.transform(chunk)))
    if dropped:
        _note(f"left out {dropped} row(s) whose target {preprocessor.target!r} is missing")
    y_true, y_pred = np.concatenate(truths), np.concatenate(outputs)
    if not len(y_true):
        raise DataError(f"{data_path}: no row has a target value; nothing to evaluate.")
    return table_metrics(preprocessor, y_true, y_pred), preprocessor, len(y_true)


def print_metrics(metrics: dict, preprocessor) -> None:
    """Metrics as aligned text: the numbers, then per-class precision/recall and the confusion matrix."""
    from .report import scalar_metrics

    for name, value in scalar_metrics(metrics).items():
        click.echo(f"{name:<10} {value:.4f}")
    if preprocessor.task != "classification":
        return
    labels = [str(label) for label in preprocessor.classes]
    width = max(8, *(len(label) + 2 for label in labels))
    click.echo(f"\n{'class':<{width}}{'precision':>10}{'recall':>10}{'rows':>8}")
    for row in metrics["per_class"]:
        click.echo(f"{str(row['class']):<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['support']:>8}")
    click.echo("\nconfusion matrix (rows: true class, columns: predicted class)")
    click.echo(" " * width + "".join(f"{label:>{width}}" for label in labels))
    for label, counts in zip(labels, metrics["confusion"]):
        click.echo(f"{label:<{width}}" + "".join(f"{count:>{width}}" for count in counts))


# ----------------------------------------------------------------------------- commands


def _training_options(epochs_default: int):
    """The options of `train` and `diagnose`."""
    defaults = Settings()

    def decorate(command):
        options = [
            click.option("--task", type=click.Choice(["auto", "regression", "classification"]),
                         default="auto", show_default=True,
                         help="auto: numbers with many values are regression; text or a few whole numbers "
                         "are classification."),
            click.option("--layers", default="50,32", show_default=True, callback=_parse_layers,
                         help="Hidden Dense layer sizes, comma-separated ('none' for a linear model)."),
            click.option("--activation", default=defaults.activation, show_default=True,
                         help="Activation of the hidden layers (relu, tanh, sigmoid, elu, ...)."),
            click.option("--optimizer", default=defaults.optimizer, show_default=True,
                         help="adam, sgd, rmsprop, adamw or adagrad."),
            click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
                         help="Learning rate [default: the optimizer's Keras default]."),
            click.option("--epochs", type=click.IntRange(min=1), default=epochs_default, show_default=True,
                         help="Most epochs; early stopping usually ends sooner."),
            click.option("--batch-size", type=click.IntRange(min=1), default=defaults.batch_size,
                         show_default=True),
            click.option("--validation-split", type=click.FloatRange(0, 1, max_open=True),
                         default=defaults.validation_split, show_default=True,
                         help="Fraction of rows held out for validation. The rows are shuffled with --seed "
                         "first (CSV files are often sorted), then the last fraction is held out."),
            click.option("--patience", type=click.IntRange(min=0), default=defaults.patience,
                         show_default=True,
                         help="Early stopping: epochs without improvement of the validation loss before "
                         "stopping; the best weights are restored."),
            click.option("--seed", type=click.IntRange(min=0), default=defaults.seed, show_default=True,
                         help="Seed of the row shuffle and the initial weights: the same seed gives the same "
                         "model."),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _settings(options: dict) -> Settings:
    names = Settings.__dataclass_fields__
    return Settings(**{key: value for key, value in options.items() if key in names})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="trainwell", prog_name="trainwell")
def cli():
    """trainwell: train a neural network on a CSV file, predict, evaluate and see why.

    \b
    A CSV-to-predictions session:
      trainwell train data.csv --target price -o model.tw
      trainwell predict model.tw new.csv -o predictions.csv
      trainwell evaluate model.tw labelled.csv

    Run `trainwell demo` to see it on the bundled datasets.
    """


@cli.command(epilog=EXAMPLES_TRAIN)
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "-t", required=True, help="The column to predict.")
@click.option("--output", "-o", default="model.tw", show_default=True, type=click.Path(path_type=Path),
              help="Where to save the model (preprocessing included).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="Where to write the HTML report [default: next to the model, <model>-report.html].")
@_training_options(epochs_default=200)
def train(data, target, output, report_path, **options):
    """Train a model on DATA (a CSV file) to predict the --target column.

    The task is detected from the target. Numbers are standardised, text and few-valued columns
    one-hot encoded, missing values filled (with an indicator column), all learned on the
    training rows only and stored in the model file, so `trainwell predict` applies exactly the
    same steps. Training stops early when the validation loss stops improving and keeps the best
    weights. Prints the validation metrics and the training doctor's findings, saves the model
    and writes an HTML report with the curves and plots.
    """
    settings = _settings(options)
    output = _check_output(output, "--output")
    report_path = _check_output(report_path or output.with_name(f"{output.stem}-report.html"), "--report")
    run = train_table(data, target, settings)
    for message in run.notes:
        _note(message)
    print_run(run)
    run.model.save(output)
    from .report import write_report

    write_report(report_path, [run_report(run, Path(data).name, settings, {"model": str(output)})],
                 title=f"trainwell: {Path(data).name}")
    click.echo(f"Saved the model to {output}")
    click.echo(f"Wrote the report to {report_path}")


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", default="predictions.csv", show_default=True,
              help="Where to write the predictions ('-' for stdout).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=DEFAULT_CHUNK_ROWS, show_default=True,
              help="Rows read at a time: memory stays bounded on large files.")
def predict(model_path, data, output, chunk_size):
    """Predict every row of DATA (a CSV file) with MODEL (a .tw file from `trainwell train`).

    Applies the preprocessing stored in the model. Writes one row per input row, in order: the
    predicted value, or for classification the predicted label and one probability column per
    class. Columns the model was not trained on are ignored; categories never seen in training
    are encoded as all zeros (with a warning counting them).

    \b
    Example:
      trainwell predict model.tw new.csv -o predictions.csv
    """
    rows = predict_file(model_path, data, output, chunk_size)
    if output != "-":
        click.echo(f"Wrote {rows} prediction(s) to {output}")


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(model_path, data, as_json):
    """Metrics of MODEL on DATA, a CSV file that holds the target column.

    Regression: MSE, MAE and R². Classification: accuracy, log loss, per-class precision and
    recall, and the confusion matrix.

    \b
    Example:
      trainwell evaluate model.tw labelled.csv
    """
    metrics, preprocessor, n_rows = evaluate_file(model_path, data)
    if as_json:
        click.echo(json.dumps(metrics, indent=2, default=str))
        return
    click.echo(f"{n_rows} row(s) of {data}, target {preprocessor.target!r} ({preprocessor.task})")
    print_metrics(metrics, preprocessor)


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False, path_type=Path))
def summary(model_path):
    """Describe MODEL (a .tw file): layers, training, preprocessing.

    \b
    Example:
      trainwell summary model.tw
    """
    from . import saving

    summarize = getattr(saving, "summarize", None)
    if summarize is not None:
        click.echo(summarize(model_path))
        return
    from .models import load_model

    model = load_model(model_path)
    model.summary(print_fn=click.echo)


@cli.command()
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "-t", required=True, help="The column to predict.")
@_training_options(epochs_default=30)
def diagnose(data, target, **options):
    """Train briefly on DATA with every check of the training doctor, and print its findings.

    Nothing is saved. Try the options you would give `trainwell train` to see how they behave.

    \b
    Example:
      trainwell diagnose data.csv --target price --learning-rate 1
    """
    settings = _settings(options)
    run = train_table(data, target, settings, diagnostics="full")
    for message in run.notes:
        _note(message)
    print_run(run)


@cli.command()
@click.option("--out", "out_dir", default="trainwell-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the models, predictions and report (created if needed).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=Settings.epochs, show_default=True,
              help="Most epochs per dataset (early stopping usually ends sooner); small for a quick look.")
def demo(out_dir, seed, epochs):
    """Train on the two bundled datasets and write models, predictions and one report.

    Hourly wages (regression) and Titanic passengers (classification) go through exactly the
    path of `trainwell train` with its defaults. Takes well under a minute.
    """
    from . import datasets
    from .report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(seed=seed, epochs=epochs)
    reports, written = [], []
    for index, (name, title) in enumerate(DEMO_DATASETS, start=1):
        path = datasets.path(name)
        target = {"wages": datasets.WAGES_TARGET, "titanic": datasets.TITANIC_TARGET}[name]
        run = train_table(path, target, settings)
        task = run.preprocessor.task
        click.echo(f"[{index}/{len(DEMO_DATASETS)}] {title}: {path.name}, {len(run.frame)} rows, "
                   f"predict {target!r} ({task})")
        print_run(run, indent="    ")
        model_file, predictions = out_dir / f"{name}.tw", out_dir / f"{name}-predictions.csv"
        run.model.save(model_file)
        predict_file(model_file, path, predictions)
        written += [model_file, predictions]
        reports.append(run_report(run, f"{title} ({path.name})", settings,
                                  {"model": str(model_file), "predictions": str(predictions)}))
    report_file = out_dir / "report.html"
    write_report(report_file, reports, title="trainwell demo")
    click.echo("\nWrote:")
    for file in [*written, report_file]:
        click.echo(f"  {file}")
    click.echo(f"Open {report_file} in a browser to see the curves and plots.\n\nOn your own CSV file:\n"
               "  trainwell train data.csv --target COLUMN -o model.tw\n"
               "  trainwell predict model.tw new.csv -o predictions.csv\n"
               "  trainwell evaluate model.tw labelled.csv")


# ----------------------------------------------------------------------------- comparing settings


def prepare_table(data_path, target: str, settings: Settings):
    """The preprocessing of `train` without the training: (X, y, validation or None, preprocessor, notes)."""
    from .tabular import Preprocessor, read_csv

    df = read_csv(data_path)
    notes = list(df.attrs.get("notes", []))
    preprocessor = Preprocessor(target=target, task=None if settings.task == "auto" else settings.task)
    labelled, n_dropped = preprocessor.drop_missing_target(df)
    if n_dropped:
        notes.append(f"dropped {n_dropped} of {len(df)} row(s) whose target {target!r} is missing")
    train_df, val_df = _split_rows(labelled, settings)
    preprocessor.fit(train_df)
    notes += preprocessor.notes
    validation = None
    if val_df is not None:
        val_df = val_df[preprocessor.known_target_rows(val_df[target])]
        if len(val_df):
            validation = (preprocessor.transform(val_df), preprocessor.transform_target(val_df[target]))
    X, y = preprocessor.transform(train_df), preprocessor.transform_target(train_df[target])
    return X, y, validation, preprocessor, notes


def _parse_rates(ctx, param, value):
    if value is None:
        return None
    try:
        rates = [float(part) for part in value.split(",")]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0:
        raise click.BadParameter(f"expected positive numbers separated by commas such as 0.001,0.01; "
                                 f"received {value!r}.")
    return rates


def _compare_table(rows: list[dict], monitor: str):
    from rich.table import Table

    table = Table(title="trainwell compare", title_justify="left")
    for column in ("configuration", "status", monitor, "best epoch", "epochs", "seconds"):
        table.add_column(column, justify="left" if column in ("configuration", "status") else "right")
    for record in rows:
        history = record.get("history") or {}
        values = history.get(monitor) or history.get("loss") or []
        best = min(values) if values else None
        table.add_row(record["run_id"], record["status"], "" if best is None else f"{best:.4g}",
                      "" if best is None else str(values.index(best) + 1), str(len(values)),
                      f"{record.get('time_s') or 0:.2f}")
    return table


@cli.command("compare")
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "-t", required=True, help="The column to predict.")
@click.option("--layers", "layer_sets", multiple=True,
              callback=lambda ctx, param, values: [_parse_layers(ctx, param, v) for v in values],
              help="Hidden Dense layer sizes of one candidate, comma-separated; repeat for more candidates.")
@click.option("--learning-rate", "learning_rates", default=None, callback=_parse_rates,
              help="Learning rates to cross with the candidates, comma-separated [default: the optimizer's].")
@click.option("--optimizer", default="adam", show_default=True, help="adam, sgd, rmsprop, adamw or adagrad.")
@click.option("--activation", default="relu", show_default=True, help="Activation of the hidden layers.")
@click.option("--task", type=click.Choice(["auto", "regression", "classification"]), default="auto",
              show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--validation-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Fraction of rows held out (after a seeded shuffle), as in `train`.")
@click.option("--patience", type=click.IntRange(min=0), default=None,
              help="Early stopping on the validation loss per candidate [default: off].")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds per configuration; the table shows the mean and spread over them.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the row shuffle.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="Write an HTML report with the table and the curves.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for results.jsonl; a rerun with the same folder skips finished runs.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes for candidates of different shapes [default: one per core].")
def compare_command(data, target, layer_sets, learning_rates, optimizer, activation, task, epochs,
                    batch_size, validation_split, patience, seeds, seed, report_path, out_dir, workers):
    """Train several architectures and learning rates on DATA and compare them in one table.

    Same preprocessing as `trainwell train`. Candidates of the same shape (e.g. several learning
    rates) train together as one batched model, with the same numbers as separate runs.

    \b
    Example:
      trainwell compare wages.csv --target wage_per_hour --layers 10 --layers 50,50 \\
          --learning-rate 0.001,0.01 --seeds 3 --report compare.html
    """
    if report_path is not None:
        report_path = _check_output(report_path, "--report")
    settings = Settings(task=task, validation_split=validation_split, seed=seed)
    X, y, validation, preprocessor, notes = prepare_table(data, target, settings)
    for message in notes:
        _note(message)
    from .callbacks import EarlyStopping
    from .experiments import compare
    from .layers import Dense, Input

    classes = preprocessor.task != "regression"
    head = Dense(len(preprocessor.classes), activation="softmax") if classes else Dense(1)
    candidates = {}
    for units in layer_sets or [Settings().layers]:
        name = "layers " + (",".join(map(str, units)) or "none")
        hidden = [Dense(u, activation=activation) for u in units]
        candidates[name] = [Input(shape=(X.shape[1],)), *hidden, head]
    compile_kw = dict(optimizer=optimizer, metrics=["accuracy" if classes else "mae"],
                      loss="sparse_categorical_crossentropy" if classes else "mean_squared_error")
    callbacks = [] if patience is None else [EarlyStopping(patience=patience, restore_best_weights=True)]
    fit_kw = dict(epochs=epochs, batch_size=batch_size, validation_data=validation, callbacks=callbacks)
    grid = {"learning_rate": learning_rates} if learning_rates else None
    finished: list[dict] = []
    monitor = "val_loss" if validation is not None else "loss"
    live = None
    if _interactive():
        from rich.console import Console
        from rich.live import Live

        live = Live(_compare_table(finished, monitor), console=Console(stderr=True), refresh_per_second=4)
        live.start()

    def on_result(record):
        finished.append(record)
        if live is not None:
            live.update(_compare_table(finished, monitor))

    try:
        result = compare(candidates, X, y, compile=compile_kw, fit=fit_kw, grid=grid, seeds=seeds,
                         out_dir=out_dir, workers=workers, on_result=on_result)
    finally:
        if live is not None:
            live.stop()
    shown = result.table.drop(columns=["candidate"], errors="ignore")
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if report_path is not None:
        from .report import write_compare_report

        write_compare_report(report_path, result, title=f"trainwell compare: {Path(data).name}")
        click.echo(f"Wrote the report to {report_path}")


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """The console script: run a command, turning expected errors into one line on stderr.

    Exit status: 0 on success, 1 for bad data, files or settings, 2 for bad options (click's
    usage errors), 130 when interrupted.
    """
    from ._errors import TrainwellError

    debug = bool(os.environ.get("TRAINWELL_DEBUG"))
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            status = cli.main(args=argv, prog_name="trainwell", standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("trainwell: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except KeyboardInterrupt:
            click.echo("trainwell: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (TrainwellError, OSError, ValueError, UnicodeError) as exc:
            if debug:
                raise
            click.echo(f"trainwell: error: {_one_line(exc)}", err=True)
            sys.exit(EXIT_ERROR)
        except Exception as exc:  # a bug: still one line, and the way to see the traceback
            if debug:
                raise
            click.echo(f"trainwell: internal error: {type(exc).__name__}: {_one_line(exc)} "
                       f"(set TRAINWELL_DEBUG=1 to see the traceback, and please report it)", err=True)
            sys.exit(EXIT_ERROR)
    sys.exit(status if isinstance(status, int) else 0)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(text.split())


if __name__ == "__main__":
    main()
