"""Workload specifications and their deterministic synthetic data.

Every workload is a plain Dense stack trained with Keras's names (optimizer, loss, batch
size, epochs, validation_split). Data comes from a fixed seed, so every peer, in every
process, sees the same bytes. Features are standardised; targets come from a fixed random
"teacher" network, so they are learnable and not noise:

- classification: label = argmax of the teacher's (mean-centred) outputs;
- regression: target = standardised teacher output + small Gaussian noise.

Only numpy is imported here: the worker must be able to time the import of each peer's
framework, so nothing heavy may be loaded before it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

# Seed for the teacher network and the features; each workload offsets it so the data sets differ.
DATA_SEED = 20240611
# Seed each peer uses for its own initialisation and shuffling.
MODEL_SEED = 0
# Width of the teacher's hidden layer, and the regression noise's standard deviation.
TEACHER_HIDDEN = 32
REGRESSION_NOISE = 0.1


@dataclass(frozen=True)
class Workload:
    """One benchmark task: data shape, network, optimizer and training schedule.

    Args:
        name: short identifier used on the command line and in the tables.
        n_samples: rows in the whole data set (training + validation).
        n_features: columns of X.
        n_classes: number of classes; 0 means regression with one output.
        hidden: units of the hidden Dense layers (all relu).
        optimizer: 'adam' (Keras defaults, learning rate 0.001) or 'sgd'.
        learning_rate: the optimizer's learning rate.
        batch_size: the `fit` batch size.
        epochs: the `fit` epochs.
        validation_split: the last fraction of rows held out, as Keras's `validation_split`.
        repeats: warm fits timed after the cold one (the median is reported).
        big: True for the workloads whose fits take tens of seconds.
    """

    name: str
    n_samples: int
    n_features: int
    n_classes: int
    hidden: tuple[int, ...]
    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int
    validation_split: float
    repeats: int
    big: bool = False

    @property
    def is_classification(self) -> bool:
        """True when the targets are class labels."""
        return self.n_classes > 0

    @property
    def n_outputs(self) -> int:
        """Units of the last Dense layer."""
        return self.n_classes if self.is_classification else 1

    @property
    def loss(self) -> str:
        """The Keras loss name the Keras-style peers compile with."""
        return "categorical_crossentropy" if self.is_classification else "mse"

    @property
    def output_activation(self) -> str:
        """The Keras activation of the last Dense layer."""
        return "softmax" if self.is_classification else "linear"

    def split_index(self, n_rows: int) -> int:
        """First validation row, computed exactly as Keras's `validation_split` does.

        Args:
            n_rows: rows passed to `fit`.

        Returns:
            The index where the held-out tail starts (`n_rows` when there is no validation).
        """
        if self.validation_split <= 0:
            return n_rows
        return int(math.floor(n_rows * (1.0 - self.validation_split)))

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every Dense layer, input to output."""
        widths = [self.n_features, *self.hidden, self.n_outputs]
        return list(zip(widths[:-1], widths[1:]))

    def flops_per_epoch(self) -> float:
        """Floating-point operations of one epoch of training plus its validation pass.

        A Dense layer costs 2*in*out per row forward and 4*in*out backward (grad of
        inputs and of weights), so training costs 6*n_train*sum(in*out) and the
        validation forward pass 2*n_val*sum(in*out). Bias adds and activations are
        ignored (they are O(out), not O(in*out)).

        Returns:
            FLOPs per epoch as a float.
        """
        macs = sum(i * o for i, o in self.layer_sizes())
        n_train = self.split_index(self.n_samples)
        n_val = self.n_samples - n_train
        return 6.0 * n_train * macs + 2.0 * n_val * macs


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("wages", 534, 9, 0, (50, 32), "adam", 0.001, 32, 30, 0.3, repeats=5),
        Workload("titanic", 891, 10, 2, (32, 32), "adam", 0.001, 32, 30, 0.3, repeats=5),
        Workload("digits", 1797, 64, 10, (50, 50), "sgd", 0.01, 32, 20, 0.3, repeats=5),
        Workload("mnist", 60000, 784, 10, (512, 512), "adam", 0.001, 128, 2, 0.1, repeats=1, big=True),
        Workload("wide", 200000, 100, 0, (256, 256, 256), "adam", 0.001, 1024, 2, 0.0, repeats=1, big=True),
    ]
}


def quick_version(spec: Workload) -> Workload:
    """The `--quick` variant of a workload: one warm fit, and big data cut to a tenth for one epoch.

    Args:
        spec: the full workload.

    Returns:
        A smaller copy of `spec` with the same name.
    """
    if not spec.big:
        return dataclasses.replace(spec, repeats=1)
    return dataclasses.replace(spec, n_samples=spec.n_samples // 10, epochs=1, repeats=1)


def make_data(spec: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Generate the workload's standardised features and teacher targets.

    Args:
        spec: the workload.

    Returns:
        X of shape (n_samples, n_features), float32, each column mean 0 and std 1; and
        y: int64 labels of shape (n_samples,) for classification, or float32 targets
        of shape (n_samples,) for regression.

    Example:
        >>> X, y = make_data(WORKLOADS["wages"])
        >>> X.shape, y.shape
        ((534, 9), (534,))
    """
    seed = DATA_SEED + sum(ord(c) for c in spec.name)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((spec.n_samples, spec.n_features), dtype=np.float32)
    X -= X.mean(axis=0)
    X /= X.std(axis=0)

    # The teacher: tanh hidden layer scaled so its units are neither linear nor saturated.
    w1 = rng.standard_normal((spec.n_features, TEACHER_HIDDEN)).astype(np.float32)
    w1 *= 1.5 / math.sqrt(spec.n_features)
    b1 = 0.1 * rng.standard_normal(TEACHER_HIDDEN).astype(np.float32)
    w2 = rng.standard_normal((TEACHER_HIDDEN, spec.n_outputs)).astype(np.float32)
    out = np.tanh(X @ w1 + b1) @ w2

    if spec.is_classification:
        # Centring each output keeps the classes roughly balanced.
        return X, np.argmax(out - out.mean(axis=0), axis=1).astype(np.int64)
    target = out[:, 0]
    target = (target - target.mean()) / target.std()
    noise = REGRESSION_NOISE * rng.standard_normal(spec.n_samples).astype(np.float32)
    return X, (target + noise).astype(np.float32)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Float32 one-hot rows, what `to_categorical` gives a Keras user.

    Args:
        labels: int labels of shape (n,).
        n_classes: number of columns.

    Returns:
        Array of shape (n, n_classes).

    Example:
        >>> one_hot(np.array([1, 0]), 3).tolist()
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    return np.eye(n_classes, dtype=np.float32)[labels]
