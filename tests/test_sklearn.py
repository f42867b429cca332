"""trainwell.sklearn: scikit-learn's estimator checks, pipelines, searches, pickling, parameters."""

import io
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from trainwell._errors import ConfigError, ConfigTypeError, DataError  # noqa: E402
from trainwell.datasets import load_titanic, load_wages  # noqa: E402
from trainwell.layers import Dense, Input  # noqa: E402
from trainwell.models import Sequential  # noqa: E402
from trainwell.sklearn import TrainwellClassifier, TrainwellRegressor, expected_failed_checks  # noqa: E402


@parametrize_with_checks([TrainwellRegressor(), TrainwellClassifier()],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_expected_failures_are_declared_with_reasons():
    for estimator in (TrainwellRegressor(), TrainwellClassifier()):
        failed = expected_failed_checks(estimator)
        assert "check_sample_weight_equivalence_on_dense_data" in failed
        assert all(len(reason) > 40 for reason in failed.values())
    assert "check_methods_subset_invariance" in expected_failed_checks(TrainwellRegressor())
    assert "check_methods_subset_invariance" not in expected_failed_checks(TrainwellClassifier())


@pytest.fixture(scope="module")
def wages():
    X, y = load_wages()
    return X, y


@pytest.fixture(scope="module")
def titanic():
    X, y = load_titanic()
    return StandardScaler().fit_transform(X).astype(np.float32), y


# ------------------------------------------------------------------------------ regression


def test_regressor_learns_wages_and_scales_the_target(wages):
    X, y = wages
    reg = TrainwellRegressor(layers=(32,), epochs=20, random_state=0)
    pipe = make_pipeline(StandardScaler(), reg).fit(X, y)
    assert pipe.score(X, y) > 0.25  # a linear model reaches about 0.28 on the raw wages data
    assert reg.target_mean_ == pytest.approx([y.mean()], rel=1e-5)
    assert reg.target_scale_ == pytest.approx([y.std()], rel=1e-5)
    assert pipe.predict(X[:5]).shape == (5,)
    assert abs(pipe.predict(X).mean() - y.mean()) < 1.0  # predictions in dollars, not in std units
    assert len(reg.history_["loss"]) == 20 and reg.n_features_in_ == 9


def test_regressor_scale_target_false_trains_on_raw_units(wages):
    X, y = wages
    X = StandardScaler().fit_transform(X)
    raw = TrainwellRegressor(layers=(32,), epochs=3, random_state=0, scale_target=False).fit(X, y)
    scaled = TrainwellRegressor(layers=(32,), epochs=3, random_state=0).fit(X, y)
    assert raw.target_mean_.tolist() == [0.0] and raw.target_scale_.tolist() == [1.0]
    # The raw loss is in squared dollars: far above the standardised one.
    assert raw.history_["loss"][0] > 10 * scaled.history_["loss"][0]


def test_regressor_multi_output():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    Y = np.column_stack([X[:, 0] * 100 + 5, X[:, 1] - X[:, 2]])
    reg = TrainwellRegressor(layers=(16,), epochs=60, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (200, 2) and reg.n_outputs_ == 2
    assert reg.score(X, Y) > 0.9


def test_same_random_state_same_numbers_and_global_rng_untouched(wages):
    import torch

    X, y = wages
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = TrainwellRegressor(layers=(8,), epochs=2, random_state=3).fit(X, y).predict(X)
    after = torch.rand(1)
    b = TrainwellRegressor(layers=(8,), epochs=2, random_state=3).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert before.item() == after.item()


# ------------------------------------------------------------------------------ classification


@pytest.mark.parametrize("labels", [np.array(["died", "survived"]), np.array([False, True]),
                                    np.array([3, 7])])
def test_classifier_labels(titanic, labels):
    X, y = titanic
    clf = TrainwellClassifier(layers=(16,), epochs=10, random_state=0).fit(X, labels[y.astype(int)])
    assert clf.classes_.tolist() == labels.tolist()
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert set(clf.predict(X).tolist()) <= set(labels.tolist())
    assert clf.score(X, labels[y.astype(int)]) > 0.75


@pytest.mark.parametrize("loss, units", [("binary_crossentropy", 1), ("categorical_crossentropy", 2),
                                         ("sparse_categorical_crossentropy", 2)])
def test_classifier_losses(titanic, loss, units):
    X, y = titanic
    clf = TrainwellClassifier(layers=(16,), epochs=5, loss=loss, random_state=0).fit(X, y)
    assert clf.model_.output_shape == (None, units)
    assert clf.predict_proba(X).shape == (len(X), 2) and clf.score(X, y) > 0.7


def test_classifier_multiclass_and_bad_losses():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = TrainwellClassifier(layers=(16,), epochs=60, learning_rate=0.01, random_state=0)
    model = make_pipeline(StandardScaler(), clf).fit(X, names)
    assert model.score(X, names) > 0.9 and clf.predict_proba(X[:3]).shape == (3, 3)
    with pytest.raises(ConfigError, match="needs two classes"):
        TrainwellClassifier(loss="binary_crossentropy").fit(X, y)
    with pytest.raises(ConfigError, match="must be a cross-entropy"):
        TrainwellClassifier(loss="mse").fit(X, y)


def test_partial_fit_and_unknown_labels(titanic):
    X, y = titanic
    clf = TrainwellClassifier(layers=(8,), random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1])
    clf.partial_fit(X[100:], y[100:])
    assert len(clf.history_["loss"]) == 2 and clf.model_.epochs_trained == 2
    with pytest.raises(DataError, match="not among classes_"):
        clf.partial_fit(X[:5], np.array([0, 1, 2, 0, 1]))
    reg = TrainwellRegressor(layers=(8,), random_state=0)
    for _ in range(3):
        reg.partial_fit(X, y.astype(np.float32))
    assert len(reg.history_["loss"]) == 3


def test_warm_start_continues(wages):
    X, y = wages
    reg = TrainwellRegressor(layers=(8,), epochs=2, warm_start=True, random_state=0).fit(X, y)
    first = reg.model_
    reg.fit(X, y)
    assert reg.model_ is first and len(reg.history_["loss"]) == 4 and first.epochs_trained == 4
    cold = TrainwellRegressor(layers=(8,), epochs=2, random_state=0).fit(X, y)
    model = cold.model_
    cold.fit(X, y)
    assert cold.model_ is not model and len(cold.history_["loss"]) == 2


def test_sample_weight_is_used(wages):
    X, y = wages
    X = StandardScaler().fit_transform(X)
    ones = TrainwellRegressor(layers=(8,), epochs=10, random_state=0).fit(X, y).predict(X)
    weights = np.where(y > np.median(y), 10.0, 0.1)  # the high wages count 100 times more
    tilted = TrainwellRegressor(layers=(8,), epochs=10, random_state=0).fit(X, y, sample_weight=weights)
    assert tilted.predict(X).mean() > ones.mean() + 1.0


def test_feature_names_in_from_a_dataframe():
    frame = load_wages(as_frame=True)
    X, y = frame.drop(columns="wage_per_hour"), frame["wage_per_hour"]
    reg = TrainwellRegressor(layers=(8,), epochs=1, random_state=0).fit(X, y)
    assert reg.feature_names_in_.tolist() == list(X.columns)


# ------------------------------------------------------------------------------ parameters and models


def test_nested_optimizer_parameters_and_clone(wages):
    X, y = wages
    reg = TrainwellRegressor(optimizer="sgd", optimizer__momentum=0.9, epochs=1, random_state=0)
    reg.set_params(optimizer__learning_rate=0.005, layers=(4,))
    params = reg.get_params()
    assert params["optimizer__momentum"] == 0.9 and params["optimizer__learning_rate"] == 0.005
    copy = clone(reg)
    assert copy.get_params() == params
    copy.fit(X, y)
    assert copy.model_.optimizer.learning_rate == pytest.approx(0.005)
    assert copy.model_.optimizer.get_config()["momentum"] == pytest.approx(0.9)
    with pytest.raises(ConfigError, match="optimizer__"):
        TrainwellRegressor(optimizer__no_such_argument=1, epochs=1).fit(X, y)
    with pytest.raises(ConfigTypeError, match="unexpected argument.*'epoch'"):
        TrainwellRegressor().set_params(epoch=3).fit(X, y)


def test_model_function_and_model_instance(wages):
    X, y = wages

    def build(n_features_in, n_outputs, units=4):
        return Sequential([Input(shape=(n_features_in,)), Dense(units, activation="relu"), Dense(n_outputs)])

    reg = TrainwellRegressor(model=build, model__units=7, epochs=1, random_state=0).fit(X, y)
    assert reg.model_.layers[0].units == 7

    template = Sequential([Input(shape=(9,)), Dense(5, activation="tanh"), Dense(1)])
    template.compile(optimizer="sgd", loss="mean_absolute_error")
    weights = [w.copy() for w in template.get_weights()]
    fitted = TrainwellRegressor(model=template, epochs=2, random_state=0).fit(X, y)
    assert fitted.model_ is not template and fitted.model_.loss.name == "mean_absolute_error"
    for before, now in zip(weights, template.get_weights()):  # the parameter itself is not trained
        np.testing.assert_array_equal(before, now)
    with pytest.raises(ConfigTypeError, match="must return a trainwell model"):
        TrainwellRegressor(model=lambda: "not a model", epochs=1).fit(X, y)


# ------------------------------------------------------------------------------ pickling


class _RecordingUnpickler(pickle.Unpickler):
    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.modules = set()

    def find_class(self, module, name):
        self.modules.add(module)
        return super().find_class(module, name)


def test_pickle_stores_the_model_file_not_torch_tensors(titanic):
    X, y = titanic
    template = Sequential([Input(shape=(X.shape[1],)), Dense(8, activation="relu"),
                           Dense(2, activation="softmax")])
    clf = TrainwellClassifier(model=template, epochs=3, random_state=0).fit(X, y)
    data = pickle.dumps(clf)
    unpickler = _RecordingUnpickler(data)
    restored = unpickler.load()
    assert not any(module.split(".")[0] == "torch" for module in unpickler.modules), unpickler.modules
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert isinstance(restored.model, Sequential) and restored.history_ == clf.history_
    assert clf.model_ is not None and isinstance(clf.model, Sequential)  # pickling left the original alone


# ------------------------------------------------------------------------------ scikit-learn tools


def test_column_transformer_pipeline_on_a_frame():
    frame = load_wages(as_frame=True)
    frame["sector"] = np.where(frame["manufacturing"] == 1, "manufacturing",
                               np.where(frame["construction"] == 1, "construction", "other"))
    X = frame.drop(columns=["wage_per_hour", "manufacturing", "construction"])
    y = frame["wage_per_hour"]
    numeric = [c for c in X.columns if c != "sector"]
    prep = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), ["sector"])])
    pipe = make_pipeline(prep, TrainwellRegressor(layers=(16,), epochs=10, random_state=0)).fit(X, y)
    assert pipe.score(X, y) > 0.2
    assert pipe[-1].n_features_in_ == len(numeric) + 3


def test_grid_search_with_two_jobs_and_cross_val_score(wages):
    X, y = wages
    pipe = make_pipeline(StandardScaler(), TrainwellRegressor(epochs=5, random_state=0))
    grid = {"trainwellregressor__layers": [(8,), (16,)], "trainwellregressor__learning_rate": [1e-3, 1e-2]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.predict(X[:3]).shape == (3,)

    randomized = RandomizedSearchCV(TrainwellClassifier(epochs=3, random_state=0),
                                    {"optimizer__learning_rate": [1e-3, 3e-3, 1e-2]}, n_iter=2, cv=2,
                                    n_jobs=2, random_state=0)
    Xt, yt = load_titanic()
    randomized.fit(StandardScaler().fit_transform(Xt), yt)
    assert set(randomized.best_params_) == {"optimizer__learning_rate"}

    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_import_trainwell_without_scikit_learn():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import trainwell, trainwell.models, trainwell.pipeline\n"
            "try:\n    import trainwell.sklearn\nexcept ImportError as e:\n    print('ImportError', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ImportError")



@pytest.mark.gpu
def test_estimator_over_a_gpu_model_fits_pickles_and_predicts(titanic):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    X, y = titanic

    def build(n_features_in, n_outputs):
        model = Sequential([Input(shape=(n_features_in,)), Dense(16, activation="relu"),
                            Dense(n_outputs, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", device="cuda")
        return model

    clf = TrainwellClassifier(model=build, epochs=5, random_state=0).fit(X, y)
    assert clf.model_.device.type == "cuda" and clf.score(X, y) > 0.7
    restored = pickle.loads(pickle.dumps(clf))  # the model file holds no device: it loads on the CPU
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), atol=1e-5)
