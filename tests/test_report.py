"""Tests for trainwell.report: the table metrics, the data summary and the self-contained HTML.

The browser test renders a report in headless Chromium (Debian's ``chromium`` package) and is
skipped when ``chromium`` is not on PATH. Run it alone with
``.venv/bin/python -m pytest tests/test_report.py -k chromium``.
"""

import base64
import math
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from trainwell.report import (
    RunReport,
    classification_metrics,
    data_summary,
    plot_doctor,
    regression_metrics,
    render_report,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOT_BLUE = np.array([0x1F, 0x77, 0xB4]) / 255  # the training curve's colour


# ----------------------------------------------------------------------------- metrics


def test_regression_metrics_hand_worked():
    # errors: +1, -2, 0, +1 → MSE (1 + 4 + 0 + 1) / 4 = 1.5, MAE 4 / 4 = 1.
    # y_true mean 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5, SS_res = 6 → R² = 1 - 6/5 = -0.2.
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], np.array([[2.0], [0.0], [3.0], [5.0]]))
    assert m == pytest.approx({"mse": 1.5, "mae": 1.0, "r2": -0.2})


def test_regression_r2_is_nan_for_a_constant_target():
    assert math.isnan(regression_metrics([2.0, 2.0], [1.0, 3.0])["r2"])


def test_classification_metrics_hand_worked():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    proba = np.array([
        [0.7, 0.2, 0.1],  # 0 → 0
        [0.1, 0.8, 0.1],  # 0 → 1
        [0.2, 0.6, 0.2],  # 1 → 1
        [0.0, 0.0, 1.0],  # 2 → 2 (p = 1 is clipped to 1 - 1e-7)
        [0.5, 0.1, 0.4],  # 2 → 0
        [0.1, 0.1, 0.8],  # 2 → 2
    ])
    m = classification_metrics(y_true, proba, ["a", "b", "c"])
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    p_true = np.array([0.7, 0.1, 0.6, 1 - 1e-7, 0.4, 0.8])
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(p_true)))
    # precision = diagonal / column sums (predicted), recall = diagonal / row sums (true).
    assert [c["precision"] for c in m["per_class"]] == pytest.approx([1 / 2, 1 / 2, 2 / 2])
    assert [c["recall"] for c in m["per_class"]] == pytest.approx([1 / 2, 1 / 1, 2 / 3])
    assert [c["support"] for c in m["per_class"]] == [2, 1, 3]


def test_precision_of_a_class_never_predicted_is_nan():
    m = classification_metrics([0, 1], np.array([[0.9, 0.1], [0.8, 0.2]]), [0, 1])
    assert math.isnan(m["per_class"][1]["precision"]) and m["per_class"][1]["recall"] == 0.0


def test_log_loss_clips_zero_probabilities_as_keras():
    m = classification_metrics([1], np.array([[1.0, 0.0]]), [0, 1])
    assert m["log_loss"] == pytest.approx(-np.log(1e-7))


# ----------------------------------------------------------------------------- data summary


def test_data_summary_describes_each_column_and_the_class_balance():
    df = pd.DataFrame(
        {"x": [1.0, None, 3.0, 4.0], "c": ["a", "b", "a", "a"], "k": [5, 5, 5, 5],
         "y": ["no", "yes", "no", None]}
    )
    config = {
        "target": "y", "task": "classification", "classes": ["no", "yes"],
        "columns": [
            {"name": "x", "kind": "numeric", "mean": 2.5, "std": 1.0, "median": 3.0,
             "missing_indicator": True},
            {"name": "c", "kind": "categorical", "categories": ["a", "b"], "capped": False},
            {"name": "k", "kind": "dropped", "reason": "constant"},
        ],
    }
    columns, balance = data_summary(df, config)
    by_name = {row["name"]: row for row in columns}
    assert by_name["x"]["missing"] == 1
    assert by_name["x"]["use"] == "standardised (mean 2.5, std 1) + missing flag"
    assert by_name["c"]["use"] == "one-hot, 2 categories" and by_name["c"]["distinct"] == 2
    assert by_name["k"]["use"] == "dropped (constant)"
    assert by_name["y"]["use"] == "target" and by_name["y"]["missing"] == 1
    assert balance == {"no": 2, "yes": 1}


# ----------------------------------------------------------------------------- HTML


def make_runs():
    """A regression run and a classification run with made-up but consistent numbers."""
    rng = np.random.default_rng(0)
    epochs = 12
    loss = list(10.0 / np.arange(1, epochs + 1))
    y_true = rng.normal(10, 3, 40)
    regression = RunReport(
        title="houses <test>", task="regression", target="price",
        history={"loss": loss, "mae": [v / 2 for v in loss], "val_loss": [v * 1.2 for v in loss],
                 "val_mae": [v / 1.8 for v in loss]},
        metrics=regression_metrics(y_true, y_true + rng.normal(0, 1, 40)),
        metrics_on="validation rows (40)",
        y_true=y_true, y_pred=y_true + rng.normal(0, 1, 40),
        findings=["[warning] overfitting: validation loss rises from epoch 9. Fix: use EarlyStopping."],
        notes=["column 'id' looks like an identifier: dropped"],
        columns=[{"name": "size", "dtype": "float64", "missing": 2, "distinct": 38, "use": "standardised"}],
        architecture=[{"name": "dense", "type": "Dense", "units": 8, "activation": "relu", "params": 40}],
        settings={"optimizer": "adam", "epochs": epochs}, files={"model": "houses.tw"}, best_epoch=8,
    )
    truth = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    classification = RunReport(
        title="animals", task="classification", target="animal",
        history={"loss": loss, "accuracy": list(np.linspace(0.4, 0.9, epochs))},
        metrics=classification_metrics(truth, proba, ["bird", "cat", "dog"]),
        metrics_on="validation rows (60)", y_true=truth, y_pred=proba, classes=["bird", "cat", "dog"],
        class_counts={"bird": 20, "cat": 25, "dog": 15},
    )
    return [regression, classification]


class ImageAndLinkParser(HTMLParser):
    """Collects every <img> source and every attribute that could load something from outside."""

    def __init__(self):
        super().__init__()
        self.images, self.external = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for name in ("src", "href"):
            if tag != "img" and name in attrs:
                self.external.append((tag, attrs[name]))
        if tag in ("script", "link", "iframe"):
            self.external.append((tag, attrs))


def test_report_is_self_contained_with_embedded_png_plots():
    text = render_report(make_runs(), title="test report")
    parser = ImageAndLinkParser()
    parser.feed(text)
    # curves + predicted-vs-actual for regression, curves + confusion matrix for classification
    assert len(parser.images) == 4
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert parser.external == []
    assert "http://" not in text and "https://" not in text
    assert "houses &lt;test&gt;" in text  # titles are escaped
    assert "overfitting: validation loss rises from epoch 9" in text
    assert "No problems found." in text  # the classification run has no findings
    assert "one-hot" not in text and "standardised" in text


def test_write_report_replaces_the_file_whole(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    write_report(target, make_runs()[:1])
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package on PATH")
def test_report_renders_in_headless_chromium_with_its_plots(tmp_path):
    import matplotlib.image

    page = tmp_path / "report.html"
    write_report(page, make_runs())
    shot = tmp_path / "shot.png"
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri(),
    ]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 20_000
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 0.05  # not a blank page
    # The training curves are drawn in matplotlib's blue: only a rendered plot image holds it.
    blue = np.abs(pixels - PLOT_BLUE).max(axis=-1) < 0.08
    assert blue.sum() > 500


# ----------------------------------------------------------------------------- the doctor's pictures


def sick_diagnosis():
    """A real sick fit (Titanic's raw features, SGD at 0.5) probed every epoch."""
    from trainwell.datasets import load_titanic
    from trainwell.layers import Dense, Input
    from trainwell.models import Sequential
    from trainwell.optimizers import SGD
    from trainwell.utils import set_random_seed

    set_random_seed(0)
    x, y = load_titanic()
    model = Sequential([Input(shape=(x.shape[1],)), Dense(32, activation="relu"),
                        Dense(32, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer=SGD(learning_rate=0.5), loss="binary_crossentropy")
    return model.fit(x, y, validation_split=0.3, epochs=12, verbose=0, diagnostics="full").diagnosis


def test_diagnosis_plot_draws_the_evidence_per_layer(tmp_path):
    diagnosis = sick_diagnosis()
    assert [f.code for f in diagnosis][:1] == ["unscaled_inputs"]
    fig = diagnosis.plot(tmp_path / "doctor.png")
    assert (tmp_path / "doctor.png").read_bytes().startswith(PNG_MAGIC)
    loss_ax, grad_ax, unit_ax, ratio_ax = fig.axes
    # one gradient curve and one update-ratio curve per Dense layer, one dead-share curve per ReLU layer
    names = [layer.name for layer in diagnosis.record.dense_layers]
    curves = [line for line in grad_ax.lines if not line.get_label().startswith("_")]
    assert [line.get_label() for line in curves] == names
    assert len(unit_ax.lines) == 2
    assert [line.get_label() for line in ratio_ax.lines if not line.get_label().startswith("_")] == names + [
        "about healthy (1e-3)"]
    dead_share = unit_ax.lines[0].get_ydata()
    assert dead_share[0] < 1.0 and dead_share[-1] == 1.0  # the first layer dies during training
    # each gradient before training and then every epoch; once the layers die it is exactly 0,
    # drawn at the bottom of the log axis (with an x)
    assert all(list(line.get_xdata()) == list(range(0, 13)) for line in curves)
    assert min(curves[0].get_ydata()) < 1e-3 * max(curves[0].get_ydata())
    # the findings' epochs are marked on the loss curves: unscaled_inputs before training (epoch 0)
    marks = [text.get_text() for text in loss_ax.texts]
    assert "unscaled_inputs" in marks and any(mark.endswith(" *") for mark in marks)


def test_report_shows_the_doctor_section_with_its_picture():
    runs = make_runs()
    runs[0].doctor_plot = plot_doctor(sick_diagnosis())
    text = render_report(runs)
    parser = ImageAndLinkParser()
    parser.feed(text)
    assert len(parser.images) == 5 and '<div class="plots doctor">' in text
    assert plot_doctor([]) is None  # diagnostics off: no evidence, no picture


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package on PATH")
def test_doctor_picture_renders_in_headless_chromium(tmp_path):
    runs = make_runs()[:1]
    runs[0].doctor_plot = plot_doctor(sick_diagnosis())
    # The page reports, once loaded, the size the browser decoded the doctor's image to.
    script = ("<script>window.addEventListener('load', () => { const img = document.querySelector("
              "'.doctor img'); document.body.dataset.decoded = img.naturalWidth + 'x' + img.naturalHeight; "
              "});</script>")
    page = tmp_path / "report.html"
    page.write_text(render_report(runs).replace("</body>", script + "</body>"), encoding="utf-8")
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False).stdout
    decoded = dom.split('data-decoded="', 1)[1].split('"', 1)[0]
    width, height = (int(v) for v in decoded.split("x"))
    assert width > 800 and height > 500  # the 11 x 7 inch figure, decoded by the browser
