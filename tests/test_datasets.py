"""Tests for trainwell.datasets: the bundled course CSVs and their loaders."""

import hashlib
from importlib import resources

import numpy as np
import pytest

from trainwell import datasets
from trainwell._errors import ConfigError

# MD5 sums of the course files, as listed in datasets/data/SOURCES.md.
MD5 = {
    "wages": "2465d58797c0e599922e64230bbcccce",
    "titanic": "7c622118581b9120eaf01dcae8c00ffd",
    "mnist": "da22a6f7055cf6dcc2474c9820918113",
}


@pytest.fixture(scope="module")
def mnist():
    return datasets.load_mnist()


@pytest.mark.parametrize("name", sorted(MD5))
def test_bundled_files_are_the_course_files(name):
    assert hashlib.md5(datasets.path(name).read_bytes()).hexdigest() == MD5[name]


def test_sources_file_is_bundled():
    text = resources.files("trainwell.datasets").joinpath("data", "SOURCES.md").read_text(encoding="utf-8")
    assert "1985 Current Population Survey" in text and "MNIST" in text


@pytest.mark.parametrize(
    "name, file",
    [
        ("wages", "hourly_wages.csv"),
        ("hourly_wages", "hourly_wages.csv"),
        ("titanic_all_numeric.csv", "titanic_all_numeric.csv"),
        ("MNIST", "mnist.csv"),
    ],
)
def test_path_accepts_short_and_file_names(name, file):
    assert datasets.path(name).name == file
    assert datasets.path(name).is_file()


def test_path_unknown_name_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown dataset 'mnsit'.*Did you mean 'mnist'"):
        datasets.path("mnsit")


def test_load_wages():
    X, y = datasets.load_wages()
    assert X.shape == (534, 9) and y.shape == (534,)
    assert X.dtype == np.float32 and y.dtype == np.float32
    # First data line: 5.1,0,8,21,35,1,1,0,1,0
    assert y[0] == np.float32(5.1)
    np.testing.assert_array_equal(X[0], [0, 8, 21, 35, 1, 1, 0, 1, 0])
    assert y.mean() == pytest.approx(9.024, abs=1e-3)
    assert y.var() == pytest.approx(26.36, abs=1e-2)
    assert (y.min(), y.max()) == (1.0, 44.5)


def test_load_wages_as_frame():
    frame = datasets.load_wages(as_frame=True)
    assert frame.shape == (534, 10)
    assert list(frame.columns[:3]) == ["wage_per_hour", "union", "education_yrs"]
    X, _ = datasets.load_wages()
    np.testing.assert_array_equal(frame.drop(columns="wage_per_hour").to_numpy(np.float32), X)


def test_load_titanic():
    X, y = datasets.load_titanic()
    assert X.shape == (891, 10) and y.shape == (891,)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1}
    assert y.sum() == 342  # 342 / 891 = 38.4% survived
    assert y.mean() == pytest.approx(0.384, abs=1e-3)
    # age_was_missing (8th column, index 6 of X) is 0/1 after the True/False conversion.
    assert set(np.unique(X[:, 6])) == {0.0, 1.0}
    assert X[:, 6].sum() == 177
    np.testing.assert_allclose(X[0], [3, 22, 1, 0, 7.25, 1, 0, 0, 0, 1])


def test_load_titanic_as_frame_has_integer_flags():
    frame = datasets.load_titanic(as_frame=True)
    assert frame.shape == (891, 11)
    assert frame["age_was_missing"].dtype == np.int64
    assert frame.columns[0] == "survived"


def test_load_mnist(mnist):
    X, y = mnist
    assert X.shape == (2001, 784) and y.shape == (2001,)
    assert X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [189, 237, 196, 210, 193, 180, 197, 200, 191, 208])
    assert X.min() == 0 and X.max() == 255
    # Every row but the first holds whole grey levels.
    np.testing.assert_array_equal(X[1:], np.floor(X[1:]))


def test_load_mnist_keeps_first_row_quirk(mnist):
    X, y = mnist
    # The first line is a pandas-mangled header: repeated zeros became 0, 0.1, 0.2, ...
    assert y[0] == 5
    np.testing.assert_allclose(X[0, :4], [0.0, 0.1, 0.2, 0.3], rtol=1e-6)
    assert not np.array_equal(X[0], np.floor(X[0]))
    # ... and flooring gives back the true image, a 5 with 166 inked pixels.
    true_image = np.floor(X[0])
    assert true_image.max() == 255 and np.count_nonzero(true_image) == 166


def test_load_mnist_as_frame():
    frame = datasets.load_mnist(as_frame=True)
    assert frame.shape == (2001, 785)
    assert list(frame.columns[:3]) == ["label", "pixel0", "pixel1"] and frame.columns[-1] == "pixel783"
    assert frame["label"].dtype == np.int64
