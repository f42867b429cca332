"""Tests for trainwell.tabular: detect_task and Preprocessor (read_csv: tests/test_csvio.py)."""

import json

import numpy as np
import pandas as pd
import pytest

from trainwell._errors import ConfigError, ConfigTypeError, DataError
from trainwell.tabular import Preprocessor, detect_task, read_csv


@pytest.fixture
def train():
    """Six training rows: numbers with a gap, counts, colours with a gap, a constant, an ID, a 0/1 flag."""
    return pd.DataFrame(
        {
            "num": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0],
            "count": [10, 20, 30, 40, 50, 60],
            "color": ["red", "blue", "red", None, "green", "red"],
            "const": [7, 7, 7, 7, 7, 7],
            "id": ["a1", "a2", "a3", "a4", "a5", "a6"],
            "flag": [0, 1, 0, 1, 1, 0],
            "y": ["yes", "no", "yes", "no", "yes", "no"],
        }
    )


@pytest.fixture
def fitted(train):
    return Preprocessor(target="y").fit(train)


# ----------------------------------------------------------------------------- detect_task


@pytest.mark.parametrize(
    "values, task",
    [
        ([0, 1, 1, 0], "classification"),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "classification"),  # 10 distinct whole numbers
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "regression"),  # 11
        ([0.0, 1.0, np.nan, 1.0], "classification"),  # whole floats with a gap
        ([0.5, 1.0, 1.5], "regression"),
        ([5.1, 4.95, 6.67], "regression"),
        (["cat", "dog", "cat"], "classification"),
        ([True, False, True], "classification"),
        (pd.Categorical(["lo", "hi"]), "classification"),
        (["1", "2", "1"], "classification"),  # digits as text: few whole numbers
        (["1.5", "2.5", "3.25", "4.0", "5.5", "6.5", "7.5", "8.5", "9.5", "oops"], "regression"),  # typos
    ],
)
def test_detect_task(values, task):
    assert detect_task(pd.Series(values)) == task


def test_detect_task_all_missing():
    with pytest.raises(DataError, match="all missing"):
        detect_task([np.nan, None])


# ----------------------------------------------------------------------------- fit


def test_fit_column_kinds_and_notes(fitted):
    assert fitted.feature_names_out == [
        "num", "num_missing", "count", "color=blue", "color=green", "color=red", "flag",
    ]
    assert fitted.n_features_out == 7
    kinds = {spec["name"]: spec["kind"] for spec in fitted.columns}
    assert kinds == {
        "num": "numeric", "count": "numeric", "color": "categorical",
        "const": "dropped", "id": "dropped", "flag": "numeric",
    }
    notes = "\n".join(fitted.notes)
    assert "column 'const' has the same value (7) in every training row: dropped" in notes
    assert "column 'id' looks like an identifier (all 6 values differ): dropped" in notes
    assert "column 'num': 1 missing value(s) filled with the training median 3" in notes
    assert "column 'color': 1 missing value(s) encoded as all zeros" in notes
    assert fitted.task == "classification" and fitted.classes == ["no", "yes"]


def test_fit_transform_of_training_rows_exact(train, fitted):
    X = fitted.transform(train)
    assert X.dtype == np.float32 and X.shape == (6, 7)
    # num: the gap is filled with the median of 1, 2, 3, 5, 6 = 3, giving 1, 2, 3, 3, 5, 6:
    # mean 20/6, variance 84/6 - (20/6)^2 (ddof=0).
    num_mean, num_std = 20 / 6, np.sqrt(84 / 6 - (20 / 6) ** 2)
    np.testing.assert_allclose(X[:, 0], (np.array([1, 2, 3, 3, 5, 6]) - num_mean) / num_std, rtol=1e-6)
    np.testing.assert_array_equal(X[:, 1], [0, 0, 0, 1, 0, 0])
    # count: mean 35, variance (25^2 + 15^2 + 5^2) * 2 / 6 = 875/3.
    np.testing.assert_allclose(X[:, 2], (np.arange(10, 70, 10) - 35) / np.sqrt(875 / 3), rtol=1e-6)
    one_hot = [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 1]]  # blue, green, red
    np.testing.assert_array_equal(X[:, 3:6], one_hot)
    # flag: a 0/1 integer column stays numeric, standardised: mean 0.5, std 0.5.
    np.testing.assert_array_equal(X[:, 6], [-1, 1, -1, 1, 1, -1])
    np.testing.assert_array_equal(fitted.transform_target(train["y"]), [1, 0, 1, 0, 1, 0])


def test_transform_uses_training_statistics(fitted):
    other = pd.DataFrame(
        {"num": [4.0, np.nan], "count": [35, 0], "color": ["green", None], "flag": [1, 0], "y": ["no", "no"]}
    )
    X = fitted.transform(other)
    num_mean, num_std = 20 / 6, np.sqrt(84 / 6 - (20 / 6) ** 2)
    expected = [
        [(4 - num_mean) / num_std, 0, 0, 0, 1, 0, 1],
        [(3 - num_mean) / num_std, 1, -35 / np.sqrt(875 / 3), 0, 0, 0, -1],
    ]
    np.testing.assert_allclose(X, np.array(expected, dtype=np.float32), rtol=1e-6)


def test_missing_target_rows_dropped_before_learning(train):
    train.loc[5, "y"] = None  # the row with num=6, count=60
    pre = Preprocessor(target="y").fit(train)
    assert "dropped 1 row(s) whose target 'y' is missing" in pre.notes
    kept, n_dropped = pre.drop_missing_target(train)
    assert n_dropped == 1 and len(kept) == 5
    # count statistics come from 10..50 only: mean 30, std sqrt(200).
    X = pre.transform(pd.DataFrame({"num": [1.0], "count": [50], "color": ["red"], "flag": [0]}))
    assert X[0, pre.feature_names_out.index("count")] == pytest.approx(20 / np.sqrt(200), rel=1e-6)
    X, y = pre.transform_xy(train)
    assert X.shape == (5, pre.n_features_out) and y.tolist() == [1, 0, 1, 0, 1]
    with pytest.raises(DataError, match=r"missing in rows \(by index\) 5 \(nan\).*drop_missing_target"):
        pre.transform_target(train["y"])


def test_config_json_round_trip(train, fitted):
    config = json.loads(json.dumps(fitted.get_config()))
    assert config == fitted.get_config()
    rebuilt = Preprocessor.from_config(config)
    np.testing.assert_array_equal(rebuilt.transform(train), fitted.transform(train))
    assert rebuilt.feature_names_out == fitted.feature_names_out
    assert rebuilt.classes == ["no", "yes"] and rebuilt.task == "classification"
    assert rebuilt.get_config() == config


def test_config_of_integer_column_names_round_trips():
    df = pd.DataFrame(np.arange(12.0).reshape(4, 3) ** 2)  # columns 0, 1, 2
    pre = Preprocessor(target=0).fit(df)
    rebuilt = Preprocessor.from_config(json.loads(json.dumps(pre.get_config())))
    np.testing.assert_array_equal(rebuilt.transform(df), pre.transform(df))
    assert rebuilt.feature_names_out == ["1", "2"]


def test_from_config_errors():
    with pytest.raises(ConfigError, match=r"lacks \['columns'\]"):
        incomplete = {"version": 1, "target": None, "task": None, "max_categories": 5, "classes": None}
        Preprocessor.from_config(incomplete)
    with pytest.raises(ConfigTypeError, match="expected a dict"):
        Preprocessor.from_config("config.json")


def test_unseen_categories_warn_with_count_per_column():
    train = pd.DataFrame({"color": list("rgbrgb"), "size": list("SMLSML"), "x": range(6)})
    pre = Preprocessor().fit(train)
    new = pd.DataFrame({"color": ["p", "p", "r", "q"], "size": ["S", "M", "XL", "L"], "x": [0, 1, 2, 3]})
    with pytest.warns(UserWarning) as record:
        X = pre.transform(new)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "column 'color' has 3 value(s) not seen in training, encoded as all zeros: 'p', 'q'" in messages[0]
    assert "column 'size' has 1 value(s) not seen in training" in messages[1] and "'XL'" in messages[1]
    names = pre.feature_names_out
    assert X[0, names.index("color=r")] == 0 and X[2, names.index("color=r")] == 1
    assert X[2, [names.index(f"size={s}") for s in "LMS"]].sum() == 0


def test_missing_columns_listed(fitted):
    df = pd.DataFrame({"Color": ["red"], "count": [1], "flag": [0]})
    expected = r"2 column\(s\) used in training are absent: 'num', 'color'.*'color' ~ 'Color'"
    with pytest.raises(DataError, match=expected):
        fitted.transform(df)


def test_extra_columns_warn_dropped_columns_not_required(fitted):
    df = pd.DataFrame({"num": [1.0], "count": [10], "color": ["red"], "flag": [0], "shoe": [42]})
    with pytest.warns(UserWarning, match=r"ignored 1 column\(s\) not seen in training: 'shoe'"):
        X = fitted.transform(df)
    assert X.shape == (1, 7)  # 'const' and 'id' were dropped at fit, so they are not needed


def test_new_missing_values_warn_and_use_median():
    pre = Preprocessor().fit(pd.DataFrame({"a": [1.0, 2.0, 10.0], "b": [0.0, 1.0, 0.0]}))
    with pytest.warns(UserWarning, match="column 'a' has 1 missing value.*none in training.*median 2"):
        X = pre.transform(pd.DataFrame({"a": [np.nan], "b": [1.0]}))
    assert X[0, 0] == pytest.approx((2 - 13 / 3) / np.std([1, 2, 10]), rel=1e-6)


def test_text_in_numeric_column_names_rows(fitted):
    df = pd.DataFrame({"num": ["1.5", "abc", None], "count": [1, 2, 3], "color": "red", "flag": 0})
    expected = r"column 'num'.*expected numbers, found text in rows \(by index\) 1 \('abc'\)"
    with pytest.raises(DataError, match=expected):
        fitted.transform(df)


def test_infinite_values_rejected():
    with pytest.raises(DataError, match=r"column 'a'.*infinite values in rows \(by index\) 2 \(inf\)"):
        Preprocessor().fit(pd.DataFrame({"a": [1.0, 2.0, np.inf], "b": [1, 2, 3]}))


def test_bool_column_is_categorical_and_empty_column_dropped():
    df = pd.DataFrame({"b": [True, False, True], "gone": [np.nan] * 3, "x": [1.0, 2.0, 4.0]})
    pre = Preprocessor().fit(df)
    assert pre.feature_names_out == ["b=False", "b=True", "x"]
    assert "column 'gone' has no values in training: dropped" in pre.notes
    np.testing.assert_array_equal(pre.transform(df)[:, :2], [[0, 1], [1, 0], [0, 1]])


def test_max_categories_keeps_most_frequent_without_warning():
    df = pd.DataFrame({"c": list("aaabbbccd"), "x": range(9)})
    pre = Preprocessor(max_categories=2).fit(df)
    assert pre.feature_names_out == ["c=a", "c=b", "x"]
    note = "column 'c' has 4 categories: kept the 2 most frequent; the other 2 are encoded as all zeros"
    assert note in pre.notes
    X = pre.transform(pd.DataFrame({"c": ["c", "z", "b"], "x": [0, 0, 0]}))  # rare and new: no warning
    np.testing.assert_array_equal(X[:, :2], [[0, 0], [0, 0], [0, 1]])


def test_not_fitted_and_bad_arguments():
    with pytest.raises(ConfigError, match="not fitted"):
        Preprocessor().transform(pd.DataFrame({"a": [1]}))
    with pytest.raises(ConfigError, match="Did you mean 'regression'"):
        Preprocessor(task="regresion")
    with pytest.raises(ConfigError, match="`max_categories` expects a positive integer"):
        Preprocessor(max_categories=0)
    with pytest.raises(ConfigTypeError, match="expected a pandas DataFrame, received ndarray"):
        Preprocessor().fit(np.zeros((3, 2)))


# ----------------------------------------------------------------------------- target


def test_target_not_found_suggests_closest(train):
    with pytest.raises(DataError, match=r"no target column 'Y'.*'num', 'count'.*Did you mean 'y'"):
        Preprocessor(target="Y").fit(train)


def test_single_class_target(train):
    train["y"] = "yes"
    with pytest.raises(DataError, match=r"single class \('yes'\).*at least two"):
        Preprocessor(target="y").fit(train)


def test_regression_target_with_text_names_rows(train):
    train["y"] = ["1.5", "2.5", "oops", "4.0", "n/a", "6.5"]
    expected = r"target column 'y'.*text in rows \(by index\) 2 \('oops'\), 4 \('n/a'\)"
    with pytest.raises(DataError, match=expected):
        Preprocessor(target="y", task="regression").fit(train)


def test_numeric_class_labels_are_json_ints(train):
    train["y"] = [3.0, 1.0, 2.0, 1.0, 3.0, 2.0]
    pre = Preprocessor(target="y").fit(train)
    assert pre.classes == [1, 2, 3] and all(type(c) is int for c in pre.classes)
    # Labels read as ints or text later map to the same indices.
    np.testing.assert_array_equal(pre.transform_target(pd.Series([3, 1, 2])), [2, 0, 1])
    np.testing.assert_array_equal(pre.transform_target(pd.Series(["3", "1"])), [2, 0])
    with pytest.raises(DataError, match=r"labels not seen in training in rows \(by index\) 1 \(7\)"):
        pre.transform_target(pd.Series([1, 7]))


def test_inverse_transform_target(fitted):
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    assert fitted.inverse_transform_target(probabilities).tolist() == ["no", "yes"]
    assert fitted.inverse_transform_target(np.array([[0.7], [0.5], [0.2]])).tolist() == ["yes", "no", "no"]
    assert fitted.inverse_transform_target(np.array([1, 0])).tolist() == ["yes", "no"]
    with pytest.raises(DataError, match=r"shape \(n, 2\).*received shape \(2, 3\)"):
        fitted.inverse_transform_target(np.zeros((2, 3)))


def test_regression_target_kept_in_units():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "wage": [5.1, 4.95, 6.67]})
    pre = Preprocessor(target="wage").fit(df)
    assert pre.task == "regression" and pre.classes is None
    np.testing.assert_array_equal(pre.transform_target(df["wage"]), np.float32([5.1, 4.95, 6.67]))
    unscaled = Preprocessor(target="wage", scale_target=False).fit(df)
    assert unscaled.target_scale is None
    np.testing.assert_array_equal(unscaled.inverse_transform_target([[1.5], [2.0]]), np.float32([1.5, 2.0]))


def test_regression_target_standardised_for_training_and_back():
    # Issue 18: a target in the thousands (penguins' body mass) trains on its standardised scale.
    grams = np.array([3750.5, 3800.0, 3250.0, 4675.0, 5200.0])
    df = pd.DataFrame({"x": np.arange(5.0), "mass": grams})  # a half gram: regression
    pre = Preprocessor(target="mass").fit(df)
    assert pre.target_scale == pytest.approx({"mean": grams.mean(), "std": grams.std()})
    scaled = pre.to_training_scale(pre.transform_target(df["mass"]))
    assert scaled.dtype == np.float32 and abs(scaled.mean()) < 1e-6
    assert scaled.std() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(pre.inverse_transform_target(scaled.reshape(-1, 1)), grams, rtol=1e-6)
    assert any("standardised for training" in note for note in pre.notes)
    again = Preprocessor.from_config(json.loads(json.dumps(pre.get_config())))
    np.testing.assert_allclose(again.inverse_transform_target(scaled), grams, rtol=1e-6)


def test_constant_regression_target_keeps_a_unit_std():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [7.0, 7.0, 7.0]})
    pre = Preprocessor(target="y", task="regression").fit(df)
    assert pre.target_scale == {"mean": 7.0, "std": 1.0}


@pytest.mark.parametrize(
    "scale", [{"mean": 1.0}, {"mean": 0.0, "std": 0.0}, {"mean": "a", "std": 1.0}, [1, 2]]
)
def test_bad_stored_target_scale_is_a_clear_error(scale):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.5, 2.0, 4.25]})
    config = Preprocessor(target="y").fit(df).get_config()
    config["target_scale"] = scale
    with pytest.raises(ConfigError, match="target_scale"):
        Preprocessor.from_config(config)


def test_version_1_config_reads_without_target_scale():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.5, 2.0, 4.25]})
    config = Preprocessor(target="y").fit(df).get_config()
    config["version"] = 1
    del config["target_scale"]
    old = Preprocessor.from_config(config)
    assert old.target_scale is None
    np.testing.assert_array_equal(old.inverse_transform_target([2.5]), np.float32([2.5]))


# ----------------------------------------------------------------------------- streaming


def test_chunked_transform_equals_whole(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "height": np.round(rng.normal(170, 10, n), 1),
            "visits": pd.array(rng.integers(0, 5, n), dtype="Int64"),  # written as 3, not 3.0
            "city": rng.choice(["Oslo", "Rome", "Lima"], n),
            "member": rng.choice([True, False], n).astype(object),
            "label": rng.choice(["a", "b", "c"], n),
        }
    )
    # Gaps in a few rows only, so some chunks read 'visits' as integers and others as floats.
    frame.loc[[3, 41], "visits"] = pd.NA
    frame.loc[[7, 50], "city"] = None
    frame.loc[[12], "member"] = None
    file = tmp_path / "people.csv"
    frame.to_csv(file, index=False)
    whole = read_csv(file)
    pre = Preprocessor(target="label").fit(whole)
    chunks = [pre.transform(chunk) for chunk in read_csv(file, chunksize=8)]
    assert {chunk["visits"].dtype.kind for chunk in read_csv(file, chunksize=8)} == {"i", "f"}
    np.testing.assert_array_equal(np.concatenate(chunks), pre.transform(whole))
    assert pre.feature_names_out == [
        "height", "visits", "visits_missing", "city=Lima", "city=Oslo", "city=Rome",
        "member=False", "member=True",
    ]
