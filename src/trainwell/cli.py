"""The ``trainwell`` command line: from a CSV file to a model, predictions and a report.

Thin ``click`` subcommands over the public API: they parse options, call ``pipeline`` (the same
workflow as Python functions) and print. Nothing heavy is imported at module level: torch,
pandas and matplotlib load inside the commands, so ``trainwell --help`` answers at once.

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
from pathlib import Path

import click

# pipeline imports only the standard library at module level, so --help stays fast.
from .pipeline import (
    DEFAULT_CHUNK_ROWS,
    Settings,
    TrainedRun,
    check_output,
    finding_text,
    repair_run,
    run_report,
    train_table,
)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
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


def _format_metrics(metrics: dict) -> str:
    from .report import scalar_metrics

    return "  ".join(f"{name} {value:.4g}" for name, value in scalar_metrics(metrics).items())


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
            click.echo(f"{indent}  - {finding_text(finding)}")
    else:
        click.echo(f"{indent}The training doctor found no problem.")


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


# ----------------------------------------------------------------------------- predicting a file


def _count_rows(path) -> int:
    """Data rows of a file (lines minus the header), counted in blocks with bounded memory."""
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(lines - 1, 1)


def _predict_file(model_path, data, output, chunk_size: int = DEFAULT_CHUNK_ROWS) -> int:
    """``pipeline.predict_csv`` with a progress bar (terminals only) and its warnings on stderr."""
    from .pipeline import predict_csv

    if str(output) != "-":
        output = check_output(output, "--output")
    bar = _progress("Predicting")
    on_rows = None
    if bar is not None:
        task = bar.add_task("predict", total=_count_rows(data), info="")
        bar.start()

        def on_rows(rows):
            bar.update(task, completed=rows)

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            return predict_csv(model_path, data, output, chunk_size, on_rows=on_rows)
        finally:
            if bar is not None:
                bar.stop()
            for record in records:
                click.echo(f"warning: {record.message}", err=True)


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
    output = check_output(output, "--output")
    report_path = check_output(report_path or output.with_name(f"{output.stem}-report.html"), "--report")
    run = train_table(data, target, settings, callbacks=lambda: [_epoch_progress(settings.epochs)])
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
    rows = _predict_file(model_path, data, output, chunk_size)
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
    from .pipeline import evaluate_csv

    evaluation = evaluate_csv(model_path, data)
    for message in evaluation.notes:
        _note(message)
    preprocessor = evaluation.preprocessor
    if as_json:
        click.echo(json.dumps(evaluation.metrics, indent=2, default=str))
        return
    click.echo(f"{evaluation.n_rows} row(s) of {data}, target {preprocessor.target!r} ({preprocessor.task})")
    print_metrics(evaluation.metrics, preprocessor)


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False, path_type=Path))
def summary(model_path):
    """Describe MODEL (a .tw, .keras or .h5 file): layers, training, preprocessing.

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


@cli.command("export")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", default="model.onnx", show_default=True, type=click.Path(path_type=Path),
              help="The ONNX file to write.")
@click.option("--no-preprocessing", is_flag=True,
              help="Export the network alone, without the stored CSV preprocessing.")
def export_command(model_path, output, no_preprocessing):
    """Write MODEL (a .tw file) as an ONNX file for onnxruntime and other runtimes.

    A model trained by `trainwell train` takes the raw CSV columns: its preprocessing is in the graph.

    \b
    Example:
      trainwell export model.tw -o model.onnx
    """
    from .export import OPSET
    from .models import load_model

    output = check_output(output, "--output")
    model = load_model(model_path)
    model.export(output, preprocessing=not no_preprocessing)
    kind = "raw columns in" if model.preprocessing and not no_preprocessing else "network only"
    click.echo(f"Wrote {output} (ONNX opset {OPSET}, {kind})")


@cli.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write; its suffix picks the format: .tw, .keras or .h5.")
def convert(source, output):
    """Convert a model file between trainwell's .tw and Keras's .keras and .h5.

    SOURCE is read by content (never run); weights, compile settings and optimizer state carry over.
    Keras files do not keep a .tw file's history, CSV preprocessing or random state.

    \b
    Examples:
      trainwell convert model_file.h5 -o model.tw
      trainwell convert model.tw -o model.keras
    """
    from .models import load_model

    load_model(source).save(output)
    click.echo(f"Wrote {output}")


@cli.command()
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "-t", required=True, help="The column to predict.")
@click.option("--repair", "repair", is_flag=True,
              help="Then try each fix the doctor suggests (and all together) on fresh copies, and print "
              "a table: finding, fix, validation loss before and after, whether the finding is gone.")
@_training_options(epochs_default=30)
def diagnose(data, target, repair=False, **options):
    """Train briefly on DATA with every check of the training doctor, and print its findings.

    Nothing is saved. Try the options you would give `trainwell train` to see how they behave.

    \b
    Example:
      trainwell diagnose data.csv --target price --learning-rate 1
      trainwell diagnose data.csv --target price --learning-rate 1 --repair
    """
    settings = _settings(options)
    run = train_table(data, target, settings, diagnostics="full",
                      callbacks=lambda: [_epoch_progress(settings.epochs)])
    for message in run.notes:
        _note(message)
    print_run(run)
    if repair and any(f.is_problem for f in run.findings):
        click.echo(f"\nRepairs ({settings.epochs} epochs per copy, seed {settings.seed}, the same validation "
                   f"rows):")
        click.echo(repair_run(run).table)


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
        run = train_table(path, target, settings, callbacks=lambda: [_epoch_progress(settings.epochs)])
        task = run.preprocessor.task
        click.echo(f"[{index}/{len(DEMO_DATASETS)}] {title}: {path.name}, {len(run.frame)} rows, "
                   f"predict {target!r} ({task})")
        print_run(run, indent="    ")
        model_file, predictions = out_dir / f"{name}.tw", out_dir / f"{name}-predictions.csv"
        run.model.save(model_file)
        _predict_file(model_file, path, predictions)
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
        report_path = check_output(report_path, "--report")
    from .pipeline import compare_table, prepare_table

    table = prepare_table(data, target, Settings(task=task, validation_split=validation_split, seed=seed))
    for message in table.notes:
        _note(message)
    finished: list[dict] = []
    monitor = "val_loss" if table.validation is not None else "loss"
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
        result = compare_table(table, layer_sets, learning_rates, optimizer=optimizer, activation=activation,
                               epochs=epochs, batch_size=batch_size, patience=patience, seeds=seeds,
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


# ----------------------------------------------------------------------------- serving


@cli.command("serve")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes, each with its own copy of the model.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch threads per worker (more help large requests on idle cores).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=None,
              help="Larger request bodies get a 413 [default: 16 MiB].")
@click.option("--max-rows", type=click.IntRange(min=1), default=None,
              help="Requests with more rows get a 413 [default: 10000].")
@click.option("--max-batch-rows", type=click.IntRange(min=1), default=None,
              help="Rows of concurrent requests predicted together at most [default: 1024].")
@click.option("--batch-wait-ms", type=click.FloatRange(0, 1000), default=None,
              help="How long a batch waits at most for requests still being read [default: 2].")
@click.option("--extra-columns", type=click.Choice(["error", "ignore"]), default="error", show_default=True,
              help="What a column the model does not know gets: a 422, or a warning in the answer.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="Log every request.")
def serve_command(model_path, host, port, workers, threads, log_level, access_log, **limits):
    """Serve MODEL (a .tw file) over HTTP: POST /predict, GET /health, GET /metadata, /docs.

    A model from `trainwell train` takes raw column values (JSON rows or CSV) and applies its
    stored preprocessing; any other model takes {"inputs": [[...], ...]}. Bad requests get a
    4xx JSON error naming the row and column. Stops cleanly on Ctrl+C or SIGTERM, answering
    the requests in flight first.

    \b
    Example:
      trainwell serve model.tw --port 8000
      curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '[{"age": 31, "city": "Oslo"}]'
    """
    from .serve import run

    options = {key: value for key, value in limits.items() if value is not None}
    run(model_path, host=host, port=port, workers=workers, threads=threads, log_level=log_level,
        access_log=access_log, **options)


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
