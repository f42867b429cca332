"""Small datasets bundled with trainwell: the three CSV files of the Keras deep-learning course.

Each loader returns ``(X, y)`` as numpy arrays ready for ``Sequential.fit``, or the whole table
as a pandas DataFrame with ``as_frame=True``. ``SOURCES.md`` beside the files says where they
come from and what is odd about them.

Example:
    >>> from trainwell import datasets
    >>> X, y = datasets.load_wages()
    >>> X.shape, y.shape
    ((534, 9), (534,))
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import unknown_name

__all__ = ["load_wages", "load_titanic", "load_mnist", "path"]

# Short names and full file names both work in `path`.
_FILES = {
    "wages": "hourly_wages.csv",
    "titanic": "titanic_all_numeric.csv",
    "mnist": "mnist.csv",
}

WAGES_TARGET = "wage_per_hour"
TITANIC_TARGET = "survived"
MNIST_IMAGE_SIZE = 28


def path(name: str) -> Path:
    """The path of a bundled data file.

    Args:
        name: a short name (``"wages"``, ``"titanic"``, ``"mnist"``) or a file name, with or
            without ``.csv`` (``"hourly_wages.csv"``, ``"titanic_all_numeric"``).

    Returns:
        A ``pathlib.Path`` to the CSV file inside the installed package.

    Raises:
        ConfigError: the name is not one of the bundled files (the message lists them).

    Example:
        >>> path("wages").name
        'hourly_wages.csv'
    """
    key = str(name).lower()
    by_stem = {file.removesuffix(".csv"): file for file in _FILES.values()}
    file = _FILES.get(key) or by_stem.get(key.removesuffix(".csv"))
    if file is None:
        raise unknown_name("dataset", name, [*_FILES, *_FILES.values()], argument="name")
    # The package is installed as plain files (setuptools package-data), so the resource is a
    # real path on disk; `Path(str(...))` turns the Traversable into a filesystem path.
    return Path(str(resources.files(__name__).joinpath("data", file)))


def load_wages(as_frame: bool = False):
    """The 1985 CPS hourly wages of 534 people (regression).

    Args:
        as_frame: if True, return the whole table as a DataFrame (target first, as in the file).

    Returns:
        ``(X, y)``: ``X`` float32 of shape (534, 9) with the predictors in file order
        (``union``, ``education_yrs``, ``experience_yrs``, ``age``, ``female``, ``marr``,
        ``south``, ``manufacturing``, ``construction``); ``y`` float32 of shape (534,), the
        ``wage_per_hour``. With ``as_frame=True``, a DataFrame of shape (534, 10).

    Example:
        >>> X, y = load_wages()
        >>> round(float(y.mean()), 2)
        9.02
    """
    frame = pd.read_csv(path("wages"))
    if as_frame:
        return frame
    return _split_target(frame, WAGES_TARGET, np.float32)


def load_titanic(as_frame: bool = False):
    """The 891 Titanic passengers of the Kaggle training set, all-numeric (binary classification).

    The file stores ``age_was_missing`` as the text ``True``/``False``; both outputs turn it
    into 0/1 integers so every column is numeric.

    Args:
        as_frame: if True, return the whole table as a DataFrame (11 columns, ``survived`` first).

    Returns:
        ``(X, y)``: ``X`` float32 of shape (891, 10) with the predictors in file order;
        ``y`` int64 of shape (891,), 1 for survived. With ``as_frame=True``, a DataFrame.

    Example:
        >>> X, y = load_titanic()
        >>> round(float(y.mean()), 3)
        0.384
    """
    frame = pd.read_csv(path("titanic"))
    # pandas already parses True/False as bool; mapping the text too keeps this right if a
    # future pandas reads the column as strings.
    flags = frame["age_was_missing"].map({True: 1, False: 0, "True": 1, "False": 0})
    frame["age_was_missing"] = flags.astype(np.int64)
    if as_frame:
        return frame
    return _split_target(frame, TITANIC_TARGET, np.int64)


def load_mnist(as_frame: bool = False):
    """2001 handwritten digits of MNIST, 28x28 grey levels flattened to 784 columns.

    Quirk kept from the course file: its first line is a header mangled by pandas, so the
    first image's pixels read as ``0, 0.1, 0.2, ...`` (all below 1) instead of 0-255. The
    course loads that row as data, and so does this loader (its label, 5, is right).

    Args:
        as_frame: if True, return a DataFrame with columns ``label``, ``pixel0`` ...
            ``pixel783``.

    Returns:
        ``(X, y)``: ``X`` float32 of shape (2001, 784), pixel values as in the file (0-255, not
        scaled; divide by 255 before fitting); ``y`` int64 of shape (2001,), digits 0-9.

    Example:
        >>> X, y = load_mnist()
        >>> X.shape, int(y[0])
        ((2001, 784), 5)
    """
    n_pixels = MNIST_IMAGE_SIZE * MNIST_IMAGE_SIZE
    names = ["label"] + [f"pixel{i}" for i in range(n_pixels)]
    frame = pd.read_csv(path("mnist"), header=None, names=names, dtype=np.float32)
    frame["label"] = frame["label"].astype(np.int64)
    if as_frame:
        return frame
    return _split_target(frame, "label", np.int64)


def _split_target(frame: pd.DataFrame, target: str, target_dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a frame: every column but ``target`` as float32, and ``target``."""
    X = frame.drop(columns=[target]).to_numpy(dtype=np.float32)
    y = frame[target].to_numpy(dtype=target_dtype)
    return X, y
