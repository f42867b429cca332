"""Validation split and early stopping: stop when the validation loss stops improving.

``validation_split=0.3`` keeps the last 30% of the rows aside (as Keras does, before shuffling)
and ``EarlyStopping(patience=2)`` ends training two epochs after the best validation loss, so
``epochs=30`` is an upper bound rather than a guess. ``restore_best_weights=True`` goes back to
the best epoch's weights at the end.

Run:  python examples/early_stopping.py
Set TRAINWELL_EXAMPLE_EPOCHS to cap the epochs (the tests use 3).
"""

import os

from trainwell import datasets
from trainwell.callbacks import EarlyStopping
from trainwell.layers import Dense, Input, Normalization
from trainwell.models import Sequential
from trainwell.utils import set_random_seed, to_categorical

EPOCHS = int(os.environ.get("TRAINWELL_EXAMPLE_EPOCHS", "30"))
VALIDATION_SPLIT = 0.3


def main() -> None:
    set_random_seed(0)
    predictors, survived = datasets.load_titanic()
    target = to_categorical(survived)

    scaling = Normalization()
    scaling.adapt(predictors[: int(len(predictors) * (1 - VALIDATION_SPLIT))])
    model = Sequential([
        Input(shape=(predictors.shape[1],)),
        scaling,
        Dense(100, activation="relu"),
        Dense(100, activation="relu"),
        Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

    early_stopping_monitor = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(predictors, target, epochs=EPOCHS, validation_split=VALIDATION_SPLIT,
                        callbacks=[early_stopping_monitor], verbose=2)

    print(f"trained {len(history.epoch)} of at most {EPOCHS} epochs")
    print(early_stopping_monitor.stop_message)
    best = early_stopping_monitor.best_epoch
    print(f"best epoch {best + 1}: val_loss {history.history['val_loss'][best]:.4f}, "
          f"val_accuracy {history.history['val_accuracy'][best]:.3f}")


if __name__ == "__main__":
    main()
