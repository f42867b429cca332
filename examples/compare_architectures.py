"""Two architectures compared by their validation loss, plotted with matplotlib.

``model_1`` is small (two layers of 10 units), ``model_2`` larger (two layers of 100 units).
Both train on the Titanic data with the same validation split and early stopping; the plot shows
which one reaches the lower validation loss, and how fast.

Run:  python examples/compare_architectures.py [plot.png]
The plot goes to the path given as the first argument, else to $TRAINWELL_EXAMPLE_PLOT, else to
``compare_architectures.png`` next to this script. Set TRAINWELL_EXAMPLE_EPOCHS to train for fewer
epochs (the tests use 2).
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write a file; no window needed
import matplotlib.pyplot as plt  # noqa: E402

from trainwell import datasets  # noqa: E402
from trainwell.callbacks import EarlyStopping  # noqa: E402
from trainwell.layers import Dense, Input, Normalization  # noqa: E402
from trainwell.models import Sequential  # noqa: E402
from trainwell.utils import set_random_seed, to_categorical  # noqa: E402

EPOCHS = int(os.environ.get("TRAINWELL_EXAMPLE_EPOCHS", "15"))
VALIDATION_SPLIT = 0.2


def plot_path() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    if os.environ.get("TRAINWELL_EXAMPLE_PLOT"):
        return Path(os.environ["TRAINWELL_EXAMPLE_PLOT"])
    return Path(__file__).with_name("compare_architectures.png")


def build(units: int, scaling: Normalization, n_cols: int) -> Sequential:
    model = Sequential([
        Input(shape=(n_cols,)),
        scaling,
        Dense(units, activation="relu"),
        Dense(units, activation="relu"),
        Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    predictors, survived = datasets.load_titanic()
    target = to_categorical(survived)
    n_cols = predictors.shape[1]
    scaling_data = predictors[: int(len(predictors) * (1 - VALIDATION_SPLIT))]

    histories = {}
    for name, units in [("model_1: 2 x 10 units", 10), ("model_2: 2 x 100 units", 100)]:
        set_random_seed(0)
        scaling = Normalization()
        scaling.adapt(scaling_data)
        model = build(units, scaling, n_cols)
        early_stopping_monitor = EarlyStopping(patience=2)
        history = model.fit(predictors, target, epochs=EPOCHS, validation_split=VALIDATION_SPLIT,
                            callbacks=[early_stopping_monitor], verbose=0)
        histories[name] = history.history["val_loss"]
        print(f"{name}: {model.count_params()} parameters, {len(history.epoch)} epochs, "
              f"best val_loss {min(history.history['val_loss']):.4f}")

    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, val_loss), color in zip(histories.items(), ["r", "b"]):
        ax.plot(range(1, len(val_loss) + 1), val_loss, color, label=name)
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Validation loss")
    ax.legend()
    fig.tight_layout()
    path = plot_path()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
