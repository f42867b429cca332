"""The HTML report of a training run, and the table metrics it shows.

One self-contained HTML file: inline CSS, plots drawn with matplotlib and embedded as base64
PNG ``data:`` URIs, no script and no network access, so it opens anywhere (a browser, an e-mail
attachment, an offline machine). A report holds one section per run (``trainwell train`` writes
one, ``trainwell demo`` two). Each section shows:

- the metrics on the validation rows (regression: MSE, MAE, R²; classification: accuracy, log
  loss, per-class precision and recall);
- the training and validation curves of the loss and of each metric;
- predicted against actual values (regression) or the confusion matrix (classification);
- the training doctor's findings and the preprocessing notes;
- the data summary (columns, types, missing values, how each is used, class balance);
- the architecture and the settings.

Plots use ``matplotlib.figure.Figure`` directly (the Agg renderer, no pyplot), so writing a
report never changes the user's global matplotlib backend or opens a window.

Example:
    >>> import numpy as np
    >>> regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))["mae"]
    0.3333333333333333
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "RunReport",
    "regression_metrics",
    "classification_metrics",
    "data_summary",
    "render_report",
    "write_report",
]

# Keras clips probabilities at 1e-7 in its cross-entropies; the log loss here follows it.
EPSILON = 1e-7
MAX_SCATTER_POINTS = 5000  # predicted-vs-actual plots of bigger sets show a seeded sample
DPI = 100


# ----------------------------------------------------------------------------- metrics


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MSE, MAE and R² of predictions.

    Args:
        y_true: true values, shape (n,).
        y_pred: predictions, shape (n,) or (n, 1).

    Returns:
        ``{"mse", "mae", "r2"}`` as floats. R² is 1 - SS_res / SS_tot; it is NaN when the true
        values are all equal (SS_tot = 0).

    Example:
        >>> m = regression_metrics(np.array([0.0, 2.0]), np.array([1.0, 1.0]))
        >>> m["mse"], m["mae"], m["r2"]
        (1.0, 1.0, 0.0)
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    error = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = 1.0 - float(np.sum(error**2)) / ss_tot if ss_tot > 0 else float("nan")
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))), "r2": r2}


def classification_metrics(y_true, proba, classes) -> dict:
    """Accuracy, log loss, per-class precision and recall, and the confusion matrix.

    Args:
        y_true: true class indices 0..k-1, shape (n,).
        proba: predicted probabilities, shape (n, k); the prediction is the argmax.
        classes: the k class labels, in index order.

    Returns:
        ``{"accuracy", "log_loss", "per_class", "confusion"}``: ``per_class`` is a list of
        ``{"class", "precision", "recall", "support"}`` (precision is NaN for a class never
        predicted); ``confusion[i][j]`` counts rows of true class i predicted as class j.

    Example:
        >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> m = classification_metrics(np.array([0, 1, 1]), proba, ["a", "b"])
        >>> round(m["accuracy"], 4), m["confusion"]
        (0.6667, [[1, 0], [1, 1]])
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    k = len(classes)
    y_pred = proba.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], EPSILON, 1.0 - EPSILON)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    diagonal = np.diag(confusion)
    per_class = [
        {
            "class": classes[i],
            "precision": float(diagonal[i] / predicted[i]) if predicted[i] else float("nan"),
            "recall": float(diagonal[i] / support[i]) if support[i] else float("nan"),
            "support": int(support[i]),
        }
        for i in range(k)
    ]
    return {
        "accuracy": float(np.mean(y_pred == y_true)),
        "log_loss": float(-np.mean(np.log(p_true))),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The single-number entries of a metrics dict (drops ``per_class`` and ``confusion``)."""
    return {name: value for name, value in metrics.items() if isinstance(value, float)}


# ----------------------------------------------------------------------------- data summary


def data_summary(df, preprocessing: dict) -> tuple[list[dict], dict | None]:
    """Per-column rows for the report, and the class balance.

    Args:
        df: the whole table as read (pandas DataFrame), target included.
        preprocessing: ``Preprocessor.get_config()`` of the fitted preprocessor.

    Returns:
        ``(columns, class_counts)``: one dict per column with ``name``, ``dtype``, ``missing``,
        ``distinct`` and ``use`` (how the model sees it); ``class_counts`` maps each label to its
        number of rows for classification, else None.
    """
    specs = {spec["name"]: spec for spec in preprocessing["columns"]}
    target = preprocessing["target"]
    rows = []
    for name in df.columns:
        series = df[name]
        rows.append(
            {
                "name": str(name),
                "dtype": str(series.dtype),
                "missing": int(series.isna().sum()),
                "distinct": int(series.nunique(dropna=True)),
                "use": "target" if name == target else _column_use(specs.get(name)),
            }
        )
    class_counts = None
    if preprocessing["task"] == "classification" and target in df.columns:
        labels = df[target].dropna()
        counts = labels.astype(str).value_counts()
        class_counts = {str(label): int(counts.get(str(label), 0)) for label in preprocessing["classes"]}
    return rows, class_counts


def _column_use(spec: dict | None) -> str:
    if spec is None:
        return "not used"
    if spec["kind"] == "numeric":
        flag = " + missing flag" if spec["missing_indicator"] else ""
        return f"standardised (mean {spec['mean']:.4g}, std {spec['std']:.4g}){flag}"
    if spec["kind"] == "categorical":
        return f"one-hot, {len(spec['categories'])} categories"
    return f"dropped ({spec['reason']})"


# ----------------------------------------------------------------------------- the run


@dataclass
class RunReport:
    """Everything one section of the report shows; plain data, filled by the caller.

    Attributes:
        title: heading of the section (e.g. the data file's name).
        task: ``'regression'`` or ``'classification'``.
        target: the target column.
        history: ``History.history`` (per-epoch lists: ``loss``, ``val_loss``, metrics).
        metrics: ``regression_metrics`` or ``classification_metrics`` of the evaluated rows.
        metrics_on: which rows the metrics describe, e.g. ``'validation rows (107)'``.
        y_true: true values (regression) or class indices (classification), shape (n,).
        y_pred: predicted values, shape (n,), or probabilities, shape (n, k).
        classes: the class labels (classification), else None.
        findings: the training doctor's findings, as text lines.
        notes: preprocessing and reading notes.
        columns, class_counts: ``data_summary``'s output.
        architecture: one dict per layer: ``name``, ``type``, ``units``, ``activation``, ``params``.
        settings: name → value (optimizer, epochs, seed, ...).
        files: what the run wrote, name → path.
        best_epoch: the 0-based epoch whose weights were kept, or None.
        doctor_plot: the training doctor's evidence (``Diagnosis.figure()``) as a data URI, or None.
    """

    title: str
    task: str
    target: str
    history: dict
    metrics: dict
    metrics_on: str
    y_true: np.ndarray
    y_pred: np.ndarray
    classes: list | None = None
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    columns: list[dict] = field(default_factory=list)
    class_counts: dict | None = None
    architecture: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    best_epoch: int | None = None
    doctor_plot: str | None = None


# ----------------------------------------------------------------------------- plots


def _png(fig) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float):
    # Figure without pyplot: no global backend switch, no window, nothing kept alive after use.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_curves(history: dict, best_epoch: int | None) -> str:
    """Loss and metric curves, training and validation, one panel per quantity."""
    names = [name for name in history if not name.startswith("val_") and name != "learning_rate"]
    fig = _figure(5.2 * len(names), 3.4)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="training", color="#1f77b4")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation", color="#d62728")
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", linestyle=":", label=f"kept (epoch {best_epoch + 1})")
        if name == "loss" and min(history[name]) > 0 and max(history[name]) / min(history[name]) > 100:
            ax.set_yscale("log")  # a loss falling by orders of magnitude is flat on a linear axis
        ax.set(title=name, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def plot_doctor(diagnosis) -> str | None:
    """The training doctor's evidence figure as a data URI, or None without a record (diagnostics off)."""
    figure = getattr(diagnosis, "figure", None)
    return _png(figure()) if figure is not None and getattr(diagnosis, "record", None) is not None else None


def plot_predicted_vs_actual(y_true, y_pred, target: str) -> str:
    """Scatter of predictions against true values, with the line of perfect predictions."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if len(y_true) > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(len(y_true), MAX_SCATTER_POINTS, replace=False)
        y_true, y_pred = y_true[keep], y_pred[keep]
    fig = _figure(4.6, 4.2)
    ax = fig.subplots()
    ax.scatter(y_true, y_pred, s=12, alpha=0.6, color="#1f77b4", edgecolors="none")
    low, high = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
    ax.plot([low, high], [low, high], color="#d62728", linewidth=1, label="perfect prediction")
    ax.set(title="predicted against actual", xlabel=f"actual {target}", ylabel=f"predicted {target}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_confusion(confusion, classes) -> str:
    """The confusion matrix as a heat map with the counts written in each cell."""
    matrix = np.asarray(confusion)
    size = min(3.2 + 0.45 * len(classes), 10.0)
    fig = _figure(size + 0.8, size)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    labels = [str(c) for c in classes]
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0)
    ax.set_yticks(range(len(labels)), labels)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    ax.set(title="confusion matrix", xlabel="predicted", ylabel="true")
    return _png(fig)


# ----------------------------------------------------------------------------- HTML

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.metrics td.num { font-size: 1.15em; font-weight: 600; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .3em 0; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
ul.findings li { margin: .3em 0; } .muted { color: #777; }
.bar { display: inline-block; height: .8em; background: #1f77b4; vertical-align: middle; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _number(value) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4g}"
    return _e(value)


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset(), css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{_number(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
                  for i, v in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><tr>{head}</tr>{body}</table>'


def _image(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _section(run: RunReport) -> str:
    parts = [f"<h2>{_e(run.title)}</h2>"]
    parts.append(f"<p>Target <b>{_e(run.target)}</b>, {_e(run.task)}. "
                 f"Metrics on the {_e(run.metrics_on)}.</p>")
    scalars = scalar_metrics(run.metrics)
    parts.append(_table(list(scalars), [list(scalars.values())], set(range(len(scalars))), "metrics"))
    if run.task == "classification":
        rows = [[c["class"], c["precision"], c["recall"], c["support"]] for c in run.metrics["per_class"]]
        parts.append(_table(["class", "precision", "recall", "rows"], rows, {1, 2, 3}))
    plots = [_image(plot_curves(run.history, run.best_epoch), "training and validation curves")]
    if run.task == "classification":
        plots.append(_image(plot_confusion(run.metrics["confusion"], run.classes), "confusion matrix"))
    else:
        scatter = plot_predicted_vs_actual(run.y_true, run.y_pred, run.target)
        plots.append(_image(scatter, "predicted vs actual"))
    parts.append('<h3>Training</h3><div class="plots">' + "".join(plots) + "</div>")
    parts.append("<h3>The training doctor</h3>")
    if run.findings:
        parts.append('<ul class="findings">' + "".join(f"<li>{_e(f)}</li>" for f in run.findings) + "</ul>")
    else:
        parts.append('<p class="muted">No problems found.</p>')
    if run.doctor_plot:
        alt = ("the doctor's evidence: loss with finding epochs, gradient norms, dead or saturated units, "
               "update ratios")
        parts.append(f'<div class="plots doctor">{_image(run.doctor_plot, alt)}</div>')
    if run.notes:
        notes = "".join(f"<li>{_e(note)}</li>" for note in run.notes)
        parts.append(f"<h3>Notes on the data</h3><ul>{notes}</ul>")
    parts.append(_data_html(run))
    arch = [[a["name"], a["type"], a["units"], a["activation"], a["params"]] for a in run.architecture]
    headers = ["layer", "type", "units", "activation", "parameters"]
    parts.append("<h3>Architecture</h3>" + _table(headers, arch, {2, 4}))
    settings = [[name, value] for name, value in run.settings.items()]
    parts.append("<h3>Settings</h3>" + _table(["setting", "value"], settings))
    if run.files:
        parts.append("<h3>Files</h3>" + _table(["file", "path"], [[k, v] for k, v in run.files.items()]))
    return "\n".join(parts)


def _data_html(run: RunReport) -> str:
    rows = [[c["name"], c["dtype"], c["missing"], c["distinct"], c["use"]] for c in run.columns]
    text = "<h3>Data</h3>" + _table(["column", "type", "missing", "distinct values", "used as"], rows, {2, 3})
    if run.class_counts:
        total = max(sum(run.class_counts.values()), 1)
        balance = [
            [label, count, f"{count / total:.1%}"] for label, count in run.class_counts.items()
        ]
        bars = "".join(
            f'<tr><td>{_e(label)}</td><td class="num">{count}</td><td>{share} '
            f'<span class="bar" style="width:{200 * run.class_counts[label] / total:.0f}px"></span></td></tr>'
            for label, count, share in balance
        )
        head = "<tr><th>class</th><th>rows</th><th>share</th></tr>"
        text += f"<h3>Class balance</h3><table>{head}{bars}</table>"
    return text


def render_report(runs: list[RunReport], title: str = "trainwell report") -> str:
    """The whole report as one HTML string (plots embedded, no external resources)."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = "\n".join(_section(run) for run in runs)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="muted">Written by trainwell on {when}.</p>\n{body}\n</body></html>\n'
    )


def write_report(path, runs: list[RunReport], title: str = "trainwell report") -> None:
    """Write ``render_report(runs, title)`` to ``path`` atomically (a whole file or none).

    Raises:
        ModelFileError: the folder does not exist or cannot be written.
    """
    from .saving import atomic_write_bytes

    atomic_write_bytes(path, render_report(runs, title).encode("utf-8"))


# ----------------------------------------------------------------------------- comparisons


def render_compare_report(result, title: str = "trainwell comparison", metric: str | None = None) -> str:
    """A comparison (``experiments.compare``'s result) as one HTML page: the table, then the curves.

    Args:
        result: a ``CompareResult``.
        title: the page title.
        metric: the curves to overlay; defaults to the quantity the table is ranked by.
    """
    metric = metric or result.monitor
    table = result.table.drop(columns=["config"], errors="ignore").astype(object)
    table = table.where(table.notna(), "")
    headers = ["configuration", *table.columns]
    rows = [[config, *values] for config, values in zip(result.table["config"], table.values.tolist())]
    text_columns = ("candidate", "status", "findings", "error")
    numeric = {i + 1 for i, column in enumerate(table.columns) if column not in text_columns}
    curves = _image(_png(result.plot(metric)), f"{metric} per epoch") if result.histories else ""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = (f"<h2>Configurations, best first (ranked by {_e(result.monitor)} at each run's best epoch)</h2>"
            f"{_table(headers, rows, numeric)}<h2>{_e(metric)} per epoch</h2>{curves}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="muted">Written by trainwell on {when}.</p>\n{body}\n</body></html>\n'
    )


def write_compare_report(path, result, title: str = "trainwell comparison") -> None:
    """Write ``render_compare_report(result, title)`` to ``path`` atomically."""
    from .saving import atomic_write_bytes

    atomic_write_bytes(path, render_compare_report(result, title).encode("utf-8"))
