"""Wages regression: predict the hourly wage from 9 predictors with Dense(50) -> Dense(32) -> Dense(1).

The course's first model: specify the architecture, compile with adam and mean_squared_error,
fit with a validation split, predict. A ``Normalization`` layer learns the scaling of the
predictors from the training rows, so the scaling travels with the model.

Run:  python examples/wages_regression.py
Set TRAINWELL_EXAMPLE_EPOCHS to train for fewer epochs (the tests use 2).
"""

import os

from trainwell import datasets
from trainwell.layers import Dense, Input, Normalization
from trainwell.models import Sequential
from trainwell.utils import set_random_seed

EPOCHS = int(os.environ.get("TRAINWELL_EXAMPLE_EPOCHS", "30"))
VALIDATION_SPLIT = 0.3


def main() -> None:
    set_random_seed(0)
    predictors, target = datasets.load_wages()
    n_cols = predictors.shape[1]

    # fit() keeps the *last* 30% aside for validation, so adapt the scaling on the first 70% only.
    n_train = int(len(predictors) * (1 - VALIDATION_SPLIT))
    scaling = Normalization()
    scaling.adapt(predictors[:n_train])

    model = Sequential([
        Input(shape=(n_cols,)),
        scaling,
        Dense(50, activation="relu"),
        Dense(32, activation="relu"),
        Dense(1),
    ])
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.summary()

    history = model.fit(predictors, target, epochs=EPOCHS, validation_split=VALIDATION_SPLIT, verbose=2)
    print(f"final validation MSE: {history.history['val_loss'][-1]:.2f} (dollars per hour, squared)")

    predictions = model.predict(predictors[-5:], verbose=0)[:, 0]
    for predicted, actual in zip(predictions, target[-5:]):
        print(f"predicted wage {predicted:6.2f}   actual {actual:6.2f}")


if __name__ == "__main__":
    main()
