"""Titanic with the functional API: two inputs (numbers and the passenger class), one output.

Keras's structured-data examples build models this way: ``Input`` tensors, layers called on
them, branches merged with ``Concatenate``, then ``Model(inputs, outputs)``. Here the numeric
predictors go through a ``Normalization`` layer and a Dense branch, the passenger class (1, 2, 3)
through an ``Embedding``, and the two meet before the output. ``fit`` and ``predict`` take a
dict of arrays keyed by input name.

Run:  python examples/functional_tabular.py
Set TRAINWELL_EXAMPLE_EPOCHS to train for fewer epochs (the tests use 2).
"""

import os

import numpy as np

from trainwell import datasets
from trainwell.layers import Concatenate, Dense, Dropout, Embedding, Flatten, Input, Normalization
from trainwell.models import Model
from trainwell.utils import set_random_seed

EPOCHS = int(os.environ.get("TRAINWELL_EXAMPLE_EPOCHS", "20"))
VALIDATION_SPLIT = 0.3


def main() -> None:
    set_random_seed(0)
    frame = datasets.load_titanic(as_frame=True)
    survived = frame.pop("survived").to_numpy()
    pclass = frame.pop("pclass").to_numpy() - 1  # 0, 1, 2
    numbers = frame.to_numpy(dtype=np.float32)

    n_train = int(len(numbers) * (1 - VALIDATION_SPLIT))  # fit() validates on the last 30%
    scaling = Normalization()
    scaling.adapt(numbers[:n_train])

    number_input = Input(shape=(numbers.shape[1],), name="numbers")
    class_input = Input(shape=(1,), name="pclass")
    x = Dense(16, activation="relu")(scaling(number_input))
    c = Flatten()(Embedding(input_dim=3, output_dim=2)(class_input))
    x = Dropout(0.2)(Concatenate()([x, c]))
    output = Dense(1, activation="sigmoid", name="survived")(x)
    model = Model({"numbers": number_input, "pclass": class_input}, output)

    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.summary()
    inputs = {"numbers": numbers, "pclass": pclass}
    history = model.fit(inputs, survived, epochs=EPOCHS, validation_split=VALIDATION_SPLIT, verbose=2)
    print(f"final validation accuracy: {history.history['val_accuracy'][-1]:.3f}")

    last = {name: values[-5:] for name, values in inputs.items()}
    for p, actual in zip(model.predict(last, verbose=0)[:, 0], survived[-5:]):
        print(f"probability of survival {p:.2f}   survived {int(actual)}")


if __name__ == "__main__":
    main()
