"""The changes ``model.repair`` can make, by name: each a small function editing a ``Recipe``.

A ``Recipe`` is what a training run is made of, as plain data: the layer configs, the optimizer's
config, the loss and metrics, the callbacks, whether a Normalization layer goes first and whether
the target is standardised. A finding names its changes in ``Finding.repairs`` (alternatives, best
first); ``REPAIRS`` maps each name to its words and its function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import activations
from ..callbacks import EarlyStopping, ReduceLROnPlateau
from .registry import _default_lr, _lower_lr


@dataclass
class Recipe:
    """A model's config, compile settings and fit extras, as plain data the changes edit."""

    config: dict
    optimizer: dict
    loss: object
    metrics: list
    callbacks: list = field(default_factory=list)  # factories: () -> Callback
    normalize: str | None = None  # None, 'adapt' or 'pixels': a Normalization layer goes first
    target_scale: tuple[float, float] | None = None  # (mean, std) of a standardised target

    @property
    def layers(self) -> list[dict]:
        return self.config["layers"]

    @property
    def dense(self) -> list[dict]:
        return [layer["config"] for layer in self.layers if layer["class_name"] == "Dense"]

    @property
    def kernel_layers(self) -> list[dict]:
        """Dense and convolution layers: the ones with a kernel initializer and an activation."""
        return [layer["config"] for layer in self.layers if layer["class_name"] in _KERNEL_LAYERS]


_KERNEL_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv2DTranspose")


def _normalize_inputs(recipe: Recipe, x, y) -> None:
    pixels = np.issubdtype(np.asarray(x).dtype, np.number) and _looks_like_pixels(np.asarray(x))
    recipe.normalize = "pixels" if pixels else "adapt"


def _looks_like_pixels(x: np.ndarray) -> bool:
    # Whole numbers in [0, 255] over many columns (1% of other values allowed: MNIST's first row).
    return x.ndim == 2 and x.shape[1] >= 64 and x.min() >= 0 and 1 < x.max() <= 255 and bool(
        np.mean(x == np.round(x)) >= 0.99
    )


def _standardize_target(recipe: Recipe, x, y) -> None:
    values = np.asarray(y, dtype=np.float64)
    std = float(values.std())
    recipe.target_scale = (float(values.mean()), std if std > 0 else 1.0)


def _default_initializers(recipe: Recipe, x, y) -> None:
    for layer in recipe.kernel_layers:
        relu = layer.get("activation") in activations.RELU_FAMILY
        layer["kernel_initializer"] = {"class_name": "HeUniform" if relu else "GlorotUniform", "config": {}}
        layer["bias_initializer"] = {"class_name": "Zeros", "config": {}}


def _relu_activations(recipe: Recipe, x, y) -> None:
    for layer in recipe.kernel_layers[:-1]:
        if layer.get("activation") in ("tanh", "sigmoid", "hard_sigmoid", "softsign"):
            layer["activation"] = "relu"
            layer["kernel_initializer"] = {"class_name": "HeUniform", "config": {}}


def _learning_rate(recipe: Recipe) -> tuple[float, str]:
    lr = recipe.optimizer["config"].get("learning_rate")
    if not isinstance(lr, (int, float)):  # a schedule: start from the optimizer's default
        lr = _default_lr(recipe.optimizer["class_name"])
    return float(lr), recipe.optimizer["class_name"]


def _lower_learning_rate(recipe: Recipe, x, y) -> None:
    lr, name = _learning_rate(recipe)
    recipe.optimizer["config"]["learning_rate"] = _lower_lr(lr, name)


def _raise_learning_rate(recipe: Recipe, x, y) -> None:
    lr, name = _learning_rate(recipe)
    default = _default_lr(name)
    recipe.optimizer["config"]["learning_rate"] = default if lr < default / 10 else lr * 10


def _clip_gradients(recipe: Recipe, x, y) -> None:
    recipe.optimizer["config"]["clipnorm"] = 1.0


def _early_stopping(recipe: Recipe, x, y) -> None:
    recipe.callbacks.append(
        lambda: EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    )


def _reduce_lr_on_plateau(recipe: Recipe, x, y) -> None:
    recipe.callbacks.append(lambda: ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5))


def _match_output(recipe: Recipe, x, y) -> None:
    """The output layer and loss the targets call for: linear + MSE, sigmoid + BCE or softmax + CE."""
    out = recipe.dense[-1]
    t = np.asarray(y)
    t2 = t.reshape(len(t), -1)
    whole = bool(np.all(t == np.round(t)))
    if t2.shape[1] > 1:  # one-hot rows
        out.update(units=t2.shape[1], activation="softmax")
        recipe.loss = "categorical_crossentropy"
    elif whole and set(np.unique(t2)) <= {0, 1}:
        out.update(units=1, activation="sigmoid")
        recipe.loss = "binary_crossentropy"
    elif whole and np.unique(t2).size <= 20 and t2.min() >= 0:
        out.update(units=int(t2.max()) + 1, activation="softmax")
        recipe.loss = "sparse_categorical_crossentropy"
    else:
        out.update(units=1, activation="linear")
        recipe.loss = "mean_squared_error"
        recipe.metrics = [m for m in recipe.metrics if m not in ("accuracy", "acc")]


def _more_capacity(recipe: Recipe, x, y) -> None:
    """Hidden layers at least 64 units wide, and two of them when there are fewer."""
    hidden = recipe.dense[:-1]
    for layer in hidden:
        layer["units"] = max(int(layer.get("units", 0)), 64)
    out = recipe.layers.pop()
    for i in range(max(0, 2 - len(hidden))):
        recipe.layers.append(
            {
                "class_name": "Dense",
                "config": {"name": f"repair_dense_{i}", "units": 64, "activation": "relu",
                           "kernel_initializer": {"class_name": "HeUniform", "config": {}}},
            }
        )
    recipe.layers.append(out)


REPAIRS = {
    "normalize_inputs": ("a Normalization layer first (x/255 for pixels)", _normalize_inputs),
    "standardize_target": ("the target standardised (undone in the output layer)", _standardize_target),
    "default_initializers": ("default initializers (he_uniform for relu, zero biases)",
                             _default_initializers),
    "relu_activations": ("relu hidden layers with he_uniform", _relu_activations),
    "lower_learning_rate": ("a lower learning rate", _lower_learning_rate),
    "raise_learning_rate": ("a higher learning rate", _raise_learning_rate),
    "clip_gradients": ("clipnorm=1.0", _clip_gradients),
    "early_stopping": ("EarlyStopping(patience=5, restore_best_weights=True)", _early_stopping),
    "reduce_lr_on_plateau": ("ReduceLROnPlateau(factor=0.5, patience=5)", _reduce_lr_on_plateau),
    "match_output": ("the output layer and loss the targets call for", _match_output),
    "more_capacity": ("hidden layers of at least 64 units, two or more", _more_capacity),
}
"""name → (what it changes, in words; ``fn(recipe, x_train, y_train)`` that changes a ``Recipe``)."""


def describe_changes(names, recipe: Recipe) -> str:
    """The changes in words, with the values ``recipe`` (after the changes) ended up with."""
    words = []
    for name in names:
        text = REPAIRS[name][0]
        if name in ("lower_learning_rate", "raise_learning_rate"):
            text = f"learning_rate={recipe.optimizer['config']['learning_rate']:g}"
        elif name == "normalize_inputs":
            text = (
                "Normalization(mean=0, variance=255**2) first (x/255)"
                if recipe.normalize == "pixels"
                else "Normalization() adapted on x first"
            )
        words.append(text)
    return "; ".join(words)
