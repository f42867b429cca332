"""Stochastic gradient descent at three learning rates: too small, about right, too large.

The course's experiment: the same network, compiled with ``SGD(learning_rate=lr)`` for
``lr in [0.000001, 0.01, 1]``, trained on the Titanic data. A tiny rate barely moves the loss;
a large one jumps around (or diverges). Each model starts from the same seed, so the rate is the
only difference.

Run:  python examples/sgd_learning_rates.py
Set TRAINWELL_EXAMPLE_EPOCHS to train for fewer epochs (the tests use 2).
"""

import os

from trainwell import datasets
from trainwell.layers import Dense
from trainwell.models import Sequential
from trainwell.optimizers import SGD
from trainwell.utils import set_random_seed, to_categorical

EPOCHS = int(os.environ.get("TRAINWELL_EXAMPLE_EPOCHS", "10"))


def get_new_model(input_shape):
    model = Sequential()
    model.add(Dense(100, activation="relu", input_shape=input_shape))
    model.add(Dense(100, activation="relu"))
    model.add(Dense(2, activation="softmax"))
    return model


def main() -> None:
    predictors, survived = datasets.load_titanic()
    predictors = predictors / predictors.max(axis=0)  # scale each column to [0, 1]
    target = to_categorical(survived)
    input_shape = (predictors.shape[1],)

    results = {}
    for lr in [0.000001, 0.01, 1]:
        print(f"\nTesting model with learning rate: {lr:g}")
        set_random_seed(0)
        model = get_new_model(input_shape)
        model.compile(optimizer=SGD(learning_rate=lr), loss="categorical_crossentropy")
        history = model.fit(predictors, target, epochs=EPOCHS, verbose=2)
        results[lr] = (history.history["loss"][0], history.history["loss"][-1])

    print("\nlearning rate   first-epoch loss   last-epoch loss")
    for lr, (first, last) in results.items():
        print(f"{lr:13g}   {first:16.4f}   {last:15.4f}")


if __name__ == "__main__":
    main()
