"""``to_categorical``, ``set_random_seed`` and ``clear_session`` with Keras's behaviour."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

from trainwell._errors import ConfigError, DataError
from trainwell.layers import Dense
from trainwell.utils import clear_session, set_random_seed, to_categorical


def test_to_categorical_one_hot():
    out = to_categorical([0, 2, 1, 2])
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])


@pytest.mark.parametrize("labels", [np.array([[1], [0]]), pd.Series([1, 0]), torch.tensor([1, 0]),
                                    np.array([1.0, 0.0])])
def test_to_categorical_accepts_columns_series_tensors_and_whole_floats(labels):
    np.testing.assert_array_equal(to_categorical(labels), [[0, 1], [1, 0]])


def test_to_categorical_num_classes_and_dtype():
    out = to_categorical([1], num_classes=4, dtype="int64")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[0, 1, 0, 0]])


@pytest.mark.parametrize("labels, error, fragment", [
    ([0.5, 1.0], DataError, "not whole numbers"),
    (["a", "b"], DataError, "integer class labels"),
    ([-1, 0], DataError, "labels >= 0"),
])
def test_to_categorical_rejects_bad_labels(labels, error, fragment):
    with pytest.raises(error, match=fragment):
        to_categorical(labels)


@pytest.mark.parametrize("num_classes", [2, 2.5, "3"])
def test_to_categorical_rejects_too_few_classes(num_classes):
    with pytest.raises(ConfigError, match="`num_classes` expects an integer >= 3"):
        to_categorical([0, 2], num_classes=num_classes)


def test_set_random_seed_seeds_python_numpy_and_torch():
    draws = []
    for _ in range(2):
        set_random_seed(7)
        draws.append((random.random(), np.random.rand(), torch.rand(()).item()))
    assert draws[0] == draws[1]
    set_random_seed(8)
    assert torch.rand(()).item() != draws[0][2]


def test_set_random_seed_gives_identical_dense_weights():
    set_random_seed(3)
    a = Dense(4)
    a.build((5,))
    set_random_seed(3)
    b = Dense(4)
    b.build((5,))
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])


@pytest.mark.parametrize("seed", [-1, 1.5, "1", None, True])
def test_set_random_seed_rejects_bad_seeds(seed):
    with pytest.raises(ConfigError, match="`seed` expects a non-negative integer"):
        set_random_seed(seed)


def test_clear_session_restarts_auto_names():
    clear_session()
    assert Dense(1).name == "dense"
    assert Dense(1).name == "dense_1"
    clear_session()
    assert Dense(1).name == "dense"


def test_keras2_np_utils_spelling():
    # Keras 2 course solutions: `from keras.utils.np_utils import to_categorical`.
    from trainwell.utils.np_utils import normalize, to_categorical

    np.testing.assert_array_equal(to_categorical([2, 0], num_classes=3), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(normalize([[3.0, 4.0], [0.0, 0.0]]), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(normalize(np.array([[1.0, 1.0], [2.0, 0.0]]), axis=0, order=1),
                               [[1 / 3, 1.0], [2 / 3, 0.0]])
