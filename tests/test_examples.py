"""The scripts in ``examples/`` run, each in its own Python process, and print what they promise.

They run with ``TRAINWELL_EXAMPLE_EPOCHS`` set low, one torch thread each, all at once (the
processes start together in a module fixture, so the suite pays for one interpreter start-up, not
five), with warnings turned into errors as in the rest of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every example script end to end; `-m "not slow"` leaves them out

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["wages_regression", "titanic_classification", "sgd_learning_rates", "early_stopping",
         "compare_architectures", "functional_tabular", "mnist_convnet"]
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every example, then wait for all: name -> CompletedProcess-like (returncode, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "TRAINWELL_EXAMPLE_EPOCHS": "2", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "TRAINWELL_EXAMPLE_PLOT": str(folder / "from_env.png"), "PYTHONWARNINGS": "error"}
    started = {}
    for name in NAMES:
        script = str(EXAMPLES / f"{name}.py")
        args = [sys.executable, "-W", "error", "-W", "ignore::DeprecationWarning", script]
        if name == "compare_architectures":
            args.append(str(folder / "from_argument.png"))
        started[name] = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    results = {}
    for name, process in started.items():
        try:
            out, err = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            err += f"\n(timed out after {TIMEOUT_S} s)"
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return {"results": results, "folder": folder}


def check(runs, name):
    result = runs["results"][name]
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert result.stderr.strip() == "", result.stderr
    return result.stdout


def test_every_example_is_listed():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(NAMES)


def test_wages_regression(runs):
    out = check(runs, "wages_regression")
    assert "Total params: 2,183" in out  # 2,165 in the Dense layers + 18 (mean, variance) in Normalization
    assert "Epoch 2/2" in out and "val_loss: " in out
    assert out.count("predicted wage") == 5


def test_titanic_classification(runs):
    out = check(runs, "titanic_classification")
    assert "Epoch 2/2" in out and "val_accuracy: " in out
    assert out.count("probability of survival") == 5


def test_sgd_learning_rates(runs):
    out = check(runs, "sgd_learning_rates")
    for lr in ("1e-06", "0.01", "1"):
        assert f"Testing model with learning rate: {lr}\n" in out
    assert "learning rate   first-epoch loss   last-epoch loss" in out


def test_early_stopping(runs):
    out = check(runs, "early_stopping")
    assert "trained 2 of at most 2 epochs" in out
    assert "best epoch" in out


def test_compare_architectures_writes_a_png(runs):
    out = check(runs, "compare_architectures")
    assert "model_1: 2 x 10 units" in out and "model_2: 2 x 100 units" in out
    png = runs["folder"] / "from_argument.png"
    assert f"plot written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_functional_tabular(runs):
    out = check(runs, "functional_tabular")
    assert "Connected to" in out and "dense[0][0], flatten[0][0]" in out
    assert "Epoch 2/2" in out and "val_accuracy: " in out
    assert out.count("probability of survival") == 5


def test_mnist_convnet(runs):
    out = check(runs, "mnist_convnet")
    assert "Total params: 34,826" in out  # Keras's simple MNIST convnet has 34,826 parameters too
    assert "(None, 5, 5, 64)" in out and "Epoch 2/2" in out
    assert "predicted digits:" in out
