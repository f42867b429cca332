"""Data at the public boundary: conversion to float32 tensors, clear errors, the validation slice."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from trainwell._errors import ConfigError, DataError
from trainwell.data import (
    as_tensor,
    check_lengths,
    is_integer_valued,
    to_numpy,
    validation_slice,
    warn_if_sorted,
)

# ---------------------------------------------------------------------------------------------
# conversion


@pytest.mark.parametrize(
    "data",
    [
        np.array([[1, 2], [3, 4]], dtype=np.int64),
        np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float64),
        [[1, 2], [3, 4]],
        pd.DataFrame({"a": [1, 3], "b": [2.0, 4.0]}),
        torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64),
        np.array([["1", "2"], ["3", "4"]], dtype=object),
    ],
    ids=["int-array", "float64-array", "list", "frame", "tensor", "object-array"],
)
def test_as_tensor_accepts_every_input_type(data):
    t = as_tensor(data)
    assert t.dtype == torch.float32 and t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), [[1.0, 2.0], [3.0, 4.0]])


def test_as_tensor_series_and_bools():
    np.testing.assert_array_equal(as_tensor(pd.Series([1, 0, 1])).numpy(), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(as_tensor(np.array([True, False])).numpy(), [1.0, 0.0])


def test_as_tensor_read_only_series_does_not_warn():
    # Regression: pandas copy-on-write hands out read-only arrays, and torch.from_numpy warned
    # ("The given NumPy array is not writable") on every fit with a Series target.
    series = pd.Series(np.arange(5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = as_tensor(series)
    t += 1  # our tensor is ours to write to
    np.testing.assert_array_equal(series.to_numpy(), np.arange(5.0))


@pytest.mark.parametrize("bad", [np.array([[1.0, np.nan], [np.nan, 2.0], [1.0, 1.0]]),
                                 pd.DataFrame({"age": [1.0, np.nan, 3.0], "fare": [np.nan, 2.0, np.nan]})])
def test_nan_error_names_columns_and_counts_rows(bad):
    with pytest.raises(DataError, match=r"contains NaN values in [23] row\(s\)"):
        as_tensor(bad, "x")


def test_nan_error_uses_column_names_of_frames():
    frame = pd.DataFrame({"age": [1.0, np.nan, 3.0], "fare": [1.0, 2.0, 3.0], "sex": [np.nan, 0.0, np.inf]})
    # Regression: a mix of NaN and inf was reported as "NaN values" only.
    fragment = r"`x` contains NaN and inf values in 3 row\(s\), column\(s\) age, sex\."
    with pytest.raises(DataError, match=fragment):
        as_tensor(frame, "x")


def test_inf_error_and_opt_out():
    data = np.array([[1.0, np.inf], [0.0, 1.0]])
    with pytest.raises(DataError, match=r"inf values in 1 row\(s\), column\(s\) 1"):
        as_tensor(data, "x")
    assert torch.isinf(as_tensor(data, check_finite=False)).any()


@pytest.mark.parametrize("bad, fragment", [
    (np.array([["a", "b"], ["c", "d"]]), "non-numeric values"),
    ([[1, "x"], [2, 3]], "non-numeric values"),
    (pd.DataFrame({"name": ["a", "b"], "n": [1, 2]}), "column\\(s\\) 'name' are not numeric"),
    (pd.Series(["a", "b"], name="city"), "column\\(s\\) 'city' are not numeric"),
])
def test_non_numeric_data_is_refused_with_a_fix(bad, fragment):
    with pytest.raises(DataError, match=fragment):
        as_tensor(bad, "x")


@pytest.mark.parametrize("empty", [np.zeros((0, 3)), [], pd.DataFrame({"a": []})])
def test_empty_data_is_refused(empty):
    with pytest.raises(DataError, match="is empty"):
        as_tensor(empty, "x")


def test_scalars_none_and_ragged_lists_are_refused():
    with pytest.raises(DataError, match="scalar"):
        as_tensor(torch.tensor(3.0))
    with pytest.raises(DataError, match="is None"):
        to_numpy(None, "y")
    with pytest.raises(DataError, match="rectangular"):
        as_tensor([[1, 2], [3]])


def test_check_lengths():
    check_lengths(torch.zeros(3, 2), torch.zeros(3))
    check_lengths(torch.zeros(3, 2), None)
    with pytest.raises(DataError, match="`x` has 3 samples but `y` has 2"):
        check_lengths(torch.zeros(3, 2), torch.zeros(2))


def test_is_integer_valued():
    assert is_integer_valued(torch.tensor([0.0, 1.0, 2.0]))
    assert is_integer_valued(torch.tensor([0, 3]))
    assert not is_integer_valued(torch.tensor([0.5, 1.0]))


# ---------------------------------------------------------------------------------------------
# the validation slice: Keras takes the last fraction, floor(n * (1 - split)) rows for training


@pytest.mark.parametrize("n, split, expected", [(10, 0.3, 7), (10, 0.25, 7), (10, 0.35, 6), (534, 0.3, 373),
                                                (3, 0.5, 1), (100, 0.0, 100)])
def test_validation_slice_is_keras_floor(n, split, expected):
    assert validation_slice(n, split) == expected


@pytest.mark.parametrize("split", [-0.1, 1, 1.0, 1.5, "0.2", True])
def test_validation_slice_rejects_fractions_outside_0_1(split):
    with pytest.raises(ConfigError, match=r"`validation_split` expects a number in \[0, 1\)"):
        validation_slice(10, split)


def test_validation_slice_refuses_empty_parts():
    with pytest.raises(DataError, match="empty validation set"):
        validation_slice(10, 1e-20)
    with pytest.raises(DataError, match="empty training set"):
        validation_slice(1, 0.3)


def test_warn_if_sorted_warns_on_sorted_targets_only():
    with pytest.warns(UserWarning, match="targets look sorted"):
        warn_if_sorted(torch.arange(30.0), 0.3)
    with pytest.warns(UserWarning, match="targets look sorted"):
        warn_if_sorted(torch.eye(3).repeat_interleave(10, dim=0), 0.3)  # one-hot, sorted by class
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_sorted(torch.arange(30.0), 0.0)  # no split, no trap
        warn_if_sorted(torch.arange(30.0)[torch.randperm(30)], 0.3)
        warn_if_sorted(torch.ones(30), 0.3)  # constant targets are not "sorted"
        warn_if_sorted(torch.arange(10.0), 0.3)  # too few rows to tell


def test_finite_values_whose_sum_overflows_are_accepted():
    """The finite check sums first; a sum that overflows on finite values must not be an error."""
    x = np.full((4, 2), 3e38, dtype=np.float32)
    assert torch.equal(as_tensor(x), torch.from_numpy(x))
    x[2, 1] = np.nan
    with pytest.raises(DataError, match=r"NaN values in 1 row\(s\), column\(s\) 1"):
        as_tensor(x)


def test_float64_beyond_float32_range_is_an_error_naming_the_column():
    x = np.ones((3, 2))
    x[1, 0] = 1e40
    with pytest.raises(DataError, match=r"beyond float32's range .* 1 row\(s\), column\(s\) 0"):
        as_tensor(x)
