"""Keras's "simple MNIST convnet" on the bundled 2,001 MNIST digits.

The network of the Keras example, unchanged: two Conv2D + MaxPooling2D blocks, Flatten, Dropout
and a softmax Dense. Images are channels-last, ``(n, 28, 28, 1)``, as in Keras; the pixel values
are scaled to [0, 1] first.

Run:  python examples/mnist_convnet.py
Set TRAINWELL_EXAMPLE_EPOCHS to train for fewer epochs (the tests use 2).
"""

import os

from trainwell import datasets
from trainwell.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from trainwell.models import Sequential
from trainwell.utils import set_random_seed, to_categorical

EPOCHS = int(os.environ.get("TRAINWELL_EXAMPLE_EPOCHS", "15"))
NUM_CLASSES = 10


def main() -> None:
    set_random_seed(0)
    pixels, digits = datasets.load_mnist()
    images = pixels.reshape(-1, 28, 28, 1) / 255.0
    labels = to_categorical(digits, NUM_CLASSES)

    model = Sequential([
        Input(shape=(28, 28, 1)),
        Conv2D(32, kernel_size=(3, 3), activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Conv2D(64, kernel_size=(3, 3), activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Flatten(),
        Dropout(0.5),
        Dense(NUM_CLASSES, activation="softmax"),
    ])
    model.summary()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(images, labels, batch_size=128, epochs=EPOCHS, validation_split=0.1, verbose=2)
    print(f"final validation accuracy: {history.history['val_accuracy'][-1]:.3f}")
    guesses = model.predict(images[-5:], verbose=0).argmax(axis=1)
    print("predicted digits:", " ".join(map(str, guesses)), "  actual:", " ".join(map(str, digits[-5:])))


if __name__ == "__main__":
    main()
