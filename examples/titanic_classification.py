"""Titanic classification: who survived? Softmax over two classes with categorical_crossentropy.

As in the course: one-hot targets from ``to_categorical``, a final ``Dense(2, activation='softmax')``,
``metrics=['accuracy']``, then the predicted probability of survival for some passengers.
A ``Normalization`` layer scales the predictors (fares reach 512, ages 80), which the course
advises for faster and steadier training.

Run:  python examples/titanic_classification.py
Set TRAINWELL_EXAMPLE_EPOCHS to train for fewer epochs (the tests use 2).
"""

import os

from trainwell import datasets
from trainwell.layers import Dense, Input, Normalization
from trainwell.models import Sequential
from trainwell.utils import set_random_seed, to_categorical

EPOCHS = int(os.environ.get("TRAINWELL_EXAMPLE_EPOCHS", "20"))
VALIDATION_SPLIT = 0.3


def main() -> None:
    set_random_seed(0)
    predictors, survived = datasets.load_titanic()
    target = to_categorical(survived)  # shape (891, 2): [died, survived]
    n_cols = predictors.shape[1]

    n_train = int(len(predictors) * (1 - VALIDATION_SPLIT))  # fit() validates on the last 30%
    scaling = Normalization()
    scaling.adapt(predictors[:n_train])

    model = Sequential([
        Input(shape=(n_cols,)),
        scaling,
        Dense(32, activation="relu"),
        Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(predictors, target, epochs=EPOCHS, validation_split=VALIDATION_SPLIT, verbose=2)
    print(f"final validation accuracy: {history.history['val_accuracy'][-1]:.3f}")

    predictions = model.predict(predictors[-5:], verbose=0)
    predicted_prob_true = predictions[:, 1]
    for prob, actual in zip(predicted_prob_true, survived[-5:]):
        print(f"probability of survival {prob:.2f}   survived: {'yes' if actual else 'no'}")


if __name__ == "__main__":
    main()
