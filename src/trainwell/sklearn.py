"""scikit-learn estimators over trainwell models: ``TrainwellRegressor`` and ``TrainwellClassifier``.

They follow scikit-learn's contract (``__init__`` stores hyper-parameters only; ``fit`` validates
the data and sets the trailing-underscore attributes), so they work in ``Pipeline``,
``ColumnTransformer``, ``GridSearchCV``/``RandomizedSearchCV`` (``n_jobs`` > 1 too) and
``cross_val_score``. Pickling a fitted estimator stores the model as trainwell's own model-file
bytes (JSON + safetensors), never a torch pickle of its tensors.

This module needs scikit-learn (``pip install trainwell[sklearn]``); ``import trainwell`` does not
load it. ``import sklearn`` below is absolute: it is scikit-learn, not this module.

Example:
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from trainwell.sklearn import TrainwellRegressor
    >>> pipe = make_pipeline(StandardScaler(), TrainwellRegressor(layers=(50, 32), epochs=30))
    >>> search = GridSearchCV(pipe, {"trainwellregressor__learning_rate": [1e-3, 1e-2]}, n_jobs=2)
    >>> search.fit(X, y).best_params_  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import losses as losses_module
from . import optimizers as optimizers_module
from ._errors import ConfigError, ConfigTypeError, DataError, describe
from .callbacks import EarlyStopping
from .layers import Dense, Input
from .models import Sequential, load_model
from .utils import to_categorical

__all__ = ["TrainwellRegressor", "TrainwellClassifier", "expected_failed_checks"]

# Keyword arguments routed to a component, as scikeras does: ``optimizer__momentum=0.9`` goes to the
# optimizer, ``model__units=64`` to the function given as ``model=``.
ROUTED_PREFIXES = ("optimizer__", "model__")
# Replaces a trainwell model in a pickled estimator's state: the bytes of its .tw file.
_MODEL_FILE_KEY = "trainwell_model_file"

# Checks of sklearn.utils.estimator_checks these estimators cannot pass, with the reason; the
# project's parametrize_with_checks test passes this as `expected_failed_checks`.
_SAMPLE_WEIGHT_REASON = (
    "mini-batch training: a row of weight 2 is not the same as the row twice (the copies fall in other "
    "batches, the batches and the shuffles change with the number of rows), so the two fits differ "
    "beyond the check's tolerance, as for any stochastic mini-batch learner"
)
EXPECTED_FAILED_CHECKS = {"check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_REASON}
REGRESSOR_FAILED_CHECKS = {
    "check_methods_subset_invariance": (
        "float32 network: a matrix product over 20 rows and over 2 rows sums in another order in the "
        "BLAS kernels, so a prediction can differ in the 7th significant digit (the check allows 1e-7)"
    ),
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """The estimator checks ``estimator`` is expected to fail: ``{check name: reason}``.

    For ``parametrize_with_checks(..., expected_failed_checks=expected_failed_checks)`` and
    ``check_estimator(estimator, expected_failed_checks=expected_failed_checks(estimator))``.
    """
    failed = dict(EXPECTED_FAILED_CHECKS)
    if isinstance(estimator, TrainwellRegressor):
        failed.update(REGRESSOR_FAILED_CHECKS)
    return failed


@contextlib.contextmanager
def _seeded(random_state):
    """Run the block with torch's generator seeded from ``random_state``, leaving the global one
    untouched (None: the global generator as it is, as scikit-learn's ``random_state=None``)."""
    if random_state is None:
        yield
        return
    seed = check_random_state(random_state).randint(0, 2**31 - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _model_bytes(model) -> bytes:
    """The model's .tw file as bytes (through a temporary file: the writer is the checked one)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tw")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _model_from_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tw")
        with open(path, "wb") as f:
            f.write(data)
        return load_model(path)


def _is_model(value) -> bool:
    """A trainwell model (Sequential or any model class with the same file and config methods)."""
    return all(hasattr(value, name) for name in ("get_config", "save", "fit", "predict"))


def _fresh_copy(model):
    """A new model with ``model``'s architecture and compile settings, fresh weights and optimizer."""
    copy = type(model).from_config(model.get_config())
    if model.optimizer is not None:
        copy.compile(optimizer=optimizers_module.get(optimizers_module.serialize(model.optimizer)),
                     loss=losses_module.get(losses_module.serialize(model.loss)),
                     metrics=list(model.metrics_identifiers),
                     weighted_metrics=list(model.weighted_metrics_identifiers) or None)
    return copy


class _TrainwellEstimator(BaseEstimator):
    """What the regressor and the classifier share: parameters, building, fitting, pickling."""

    _task = ""  # 'regression' or 'classification'

    def __init__(self, model=None, layers=(50, 32), activation="relu", optimizer="adam", learning_rate=None,
                 loss=None, epochs=100, batch_size=32, validation_split=0.0, early_stopping=False,
                 patience=10, random_state=None, verbose=0, warm_start=False, **kwargs):
        self.model = model
        self.layers = layers
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.early_stopping = early_stopping
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        # Stored as given; scikit-learn's contract leaves validation to fit (_check_arguments).
        for key, value in kwargs.items():
            setattr(self, key, value)

    # -- parameters: the routed ``optimizer__*``/``model__*`` ones are parameters too --------
    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update({k: v for k, v in vars(self).items() if k.startswith(ROUTED_PREFIXES)})
        return params

    def set_params(self, **params):
        # Routed names are stored as they come; so are unknown plain names, which fit refuses with
        # the list of valid ones (scikit-learn's contract: set_params does not validate).
        valid = super().get_params(deep=False)
        stored = [k for k in params if k.startswith(ROUTED_PREFIXES) or (k not in valid and "__" not in k)]
        for key in stored:
            setattr(self, key, params.pop(key))
        return super().set_params(**params)

    def _check_arguments(self) -> None:
        """Refuse, at fit, keyword arguments that are neither parameters nor routed ones."""
        known = set(self.get_params(deep=False))
        unexpected = [k for k in vars(self) if k not in known and not k.startswith("_")
                      and not k.endswith("_")]
        if unexpected:
            raise ConfigTypeError(
                f"{type(self).__name__}: unexpected argument(s) {', '.join(map(repr, unexpected))}. "
                "Arguments of the optimizer or of the model-building function take a prefix: "
                "optimizer__momentum=0.9, model__units=64.")

    def _routed(self, prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in vars(self).items() if k.startswith(prefix)}

    # -- tags ------------------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # -- building ----------------------------------------------------------------------------
    def _build_model(self, n_features: int, n_outputs: int):
        """The network for this fit: from ``model`` (a model or a function), or Dense ``layers``."""
        if self.model is None:
            model = Sequential([Input(shape=(n_features,))])
            for units in self.layers:
                model.add(Dense(units, activation=self.activation))
            model.add(self._output_layer(n_outputs))
        elif _is_model(self.model):
            model = _fresh_copy(self.model)  # each fit starts from fresh weights, as scikit-learn expects
        elif callable(self.model):
            model = self._call_model_function(n_features, n_outputs)
        else:
            raise ConfigTypeError(f"{type(self).__name__}: `model` expects a trainwell model, a function "
                                  "returning one, or None (Dense `layers`), received "
                                  f"{describe(self.model)}.")
        if model.optimizer is None:
            model.compile(optimizer=self._make_optimizer(), loss=self._loss_name(n_outputs))
        return model

    def _call_model_function(self, n_features: int, n_outputs: int):
        kwargs = self._routed("model__")
        accepted = inspect.signature(self.model).parameters
        for name, value in (("n_features_in", n_features), ("n_outputs", n_outputs)):
            if name in accepted:
                kwargs.setdefault(name, value)
        model = self.model(**kwargs)
        if not _is_model(model):
            raise ConfigTypeError(f"{type(self).__name__}: the `model` function returned {describe(model)}; "
                                  "it must return a trainwell model such as Sequential([...]).")
        return model

    def _make_optimizer(self):
        """A new optimizer from ``optimizer`` (name, config or instance, never the instance itself),
        with ``learning_rate`` and the ``optimizer__*`` arguments applied."""
        template = optimizers_module.get(self.optimizer)
        config = dict(template.get_config())
        if self.learning_rate is not None:
            config["learning_rate"] = self.learning_rate
        config.update(self._routed("optimizer__"))
        try:
            return type(template).from_config(config)
        except TypeError as exc:
            raise ConfigError(f"{type(self).__name__}: the optimizer {type(template).__name__} rejects its "
                              f"arguments ({exc}). Check the optimizer__* names.") from None

    def _callbacks(self) -> list:
        if not self.early_stopping:
            return []
        monitor = "val_loss" if self.validation_split else "loss"
        return [EarlyStopping(monitor=monitor, patience=self.patience, restore_best_weights=True)]

    # -- fitting ---------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, epochs: int, reset: bool, classes=None):
        self._check_arguments()
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, **self._y_checks)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float32)
        targets = self._encode_target(y, reset, classes)
        with _seeded(self.random_state):
            if reset:
                self.model_ = self._build_model(X.shape[1], self._n_model_outputs())
                self.history_ = {}
            history = self.model_.fit(X, targets, batch_size=self.batch_size, epochs=epochs,
                                      verbose=self.verbose, validation_split=self.validation_split,
                                      callbacks=self._callbacks(), sample_weight=sample_weight)
        for key, values in history.history.items():
            self.history_.setdefault(key, []).extend(values)
        return self

    def fit(self, X, y, sample_weight=None):
        """Train a new network on ``(X, y)`` for ``epochs`` (with ``warm_start``, continue the last one).

        Args:
            X: array-like or DataFrame of shape (n_samples, n_features), numbers only.
            y: targets of shape (n_samples,) (or (n_samples, n_outputs) for the regressor).
            sample_weight: optional per-sample weights of shape (n_samples,).

        Returns:
            self, fitted: ``model_``, ``history_``, ``n_features_in_`` (and ``feature_names_in_``
            for a DataFrame).
        """
        warm = self.warm_start and hasattr(self, "model_")
        return self._fit(X, y, sample_weight, self.epochs, reset=not warm)

    def _forward(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return self.model_.predict(X, verbose=0)

    # -- pickling: the model travels as its model file, not as pickled tensors -------------------
    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        for key in ("model", "model_"):
            value = state.get(key)
            if _is_model(value):
                state[key] = {_MODEL_FILE_KEY: _model_bytes(value)}
        return state

    def __setstate__(self, state):
        for key in ("model", "model_"):
            value = state.get(key)
            if isinstance(value, dict) and _MODEL_FILE_KEY in value:
                state[key] = _model_from_bytes(value[_MODEL_FILE_KEY])
        super().__setstate__(state)


class TrainwellRegressor(RegressorMixin, _TrainwellEstimator):
    """A scikit-learn regressor over a trainwell network.

    Args:
        model: None (Dense ``layers`` then ``Dense(n_outputs)``), a trainwell model (used as an
            architecture: every fit starts from fresh weights) or a function returning one; the
            function gets its ``model__*`` arguments and, if it names them, ``n_features_in`` and
            ``n_outputs``. An uncompiled model is compiled with ``optimizer``/``loss``.
        layers: units of the hidden Dense layers. Defaults to ``(50, 32)``.
        activation: activation of the hidden layers. Defaults to ``'relu'``.
        optimizer: optimizer name, config or instance. Defaults to ``'adam'``; ``optimizer__*``
            arguments (e.g. ``optimizer__momentum=0.9``) go to its constructor.
        learning_rate: None keeps the optimizer's default.
        loss: None means ``'mean_squared_error'``.
        epochs: epochs per ``fit``. Defaults to 100. ``partial_fit`` runs one.
        batch_size: rows per gradient step. Defaults to 32.
        validation_split: fraction of the rows held out (the last ones, as Keras) for ``val_loss``.
        early_stopping: stop when the validation loss (the training loss without a validation
            split) has not improved for ``patience`` epochs, keeping the best weights.
        patience: see ``early_stopping``. Defaults to 10.
        random_state: int for reproducible fits (torch's global generator is left untouched).
        verbose: 0 silent (default), 1 or 2 as Keras's ``fit``.
        warm_start: ``fit`` continues the fitted network instead of starting a new one.
        scale_target: standardise each target column with its training mean and standard
            deviation, train on that, and invert it on ``predict`` (default True): raw targets
            far from unit scale (prices, wages) otherwise start the loss orders of magnitude too
            high. The loss in ``history_`` is in standardised units.

    Attributes:
        model_: the fitted trainwell model. With ``scale_target`` it predicts standardised targets:
            ``predict`` returns ``model_.predict(X) * target_scale_ + target_mean_`` (keep that in
            mind when exporting ``model_`` alone). history_: dict of per-epoch lists ('loss', ...).
        n_features_in_, feature_names_in_, n_outputs_; target_mean_, target_scale_ (zeros and ones
        when ``scale_target=False``).

    Example:
        >>> reg = TrainwellRegressor(layers=(50, 32), epochs=50, random_state=0).fit(X, y)
        >>> reg.score(X, y)  # R²  # doctest: +SKIP
    """

    _task = "regression"
    _y_checks = {"multi_output": True, "y_numeric": True}

    def __init__(self, model=None, layers=(50, 32), activation="relu", optimizer="adam", learning_rate=None,
                 loss=None, epochs=100, batch_size=32, validation_split=0.0, early_stopping=False,
                 patience=10, random_state=None, verbose=0, warm_start=False, scale_target=True, **kwargs):
        super().__init__(model=model, layers=layers, activation=activation, optimizer=optimizer,
                         learning_rate=learning_rate, loss=loss, epochs=epochs, batch_size=batch_size,
                         validation_split=validation_split, early_stopping=early_stopping, patience=patience,
                         random_state=random_state, verbose=verbose, warm_start=warm_start, **kwargs)
        self.scale_target = scale_target

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _output_layer(self, n_outputs: int):
        return Dense(n_outputs)

    def _loss_name(self, n_outputs: int):
        return "mean_squared_error" if self.loss is None else self.loss

    def _n_model_outputs(self) -> int:
        return self.n_outputs_

    def _encode_target(self, y, reset: bool, classes=None) -> np.ndarray:
        y2d = y.reshape(len(y), -1).astype(np.float64)
        if reset:
            self._y_is_1d = y.ndim == 1
            self.n_outputs_ = y2d.shape[1]
            if self.scale_target:
                std = y2d.std(axis=0)
                self.target_mean_, self.target_scale_ = y2d.mean(axis=0), np.where(std > 0, std, 1.0)
            else:
                self.target_mean_, self.target_scale_ = np.zeros(y2d.shape[1]), np.ones(y2d.shape[1])
        elif y2d.shape[1] != self.n_outputs_:
            raise DataError(f"{type(self).__name__}: y has {y2d.shape[1]} target column(s), the fitted "
                            f"model predicts {self.n_outputs_}. Pass the same targets as in the first fit.")
        return ((y2d - self.target_mean_) / self.target_scale_).astype(np.float32)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on ``(X, y)``; the first call builds the network (and learns the target scaling)."""
        return self._fit(X, y, sample_weight, 1, reset=not hasattr(self, "model_"))

    def predict(self, X) -> np.ndarray:
        """Predictions in the target's units: shape (n_samples,), or (n_samples, n_outputs)."""
        out = self._forward(X).astype(np.float64) * self.target_scale_ + self.target_mean_
        return out.ravel() if self._y_is_1d else out


class TrainwellClassifier(ClassifierMixin, _TrainwellEstimator):
    """A scikit-learn classifier over a trainwell network (binary and multi-class).

    Takes the arguments of ``TrainwellRegressor`` except ``scale_target``. Labels may be strings,
    integers or booleans; ``classes_`` holds them sorted, ``predict`` returns them and
    ``predict_proba`` gives one column per class. The default network ends in
    ``Dense(n_classes, activation='softmax')`` with ``loss='sparse_categorical_crossentropy'``;
    ``loss='binary_crossentropy'`` (two classes) ends in ``Dense(1, activation='sigmoid')`` and
    ``'categorical_crossentropy'`` trains on one-hot targets.

    Attributes:
        model_, history_, n_features_in_, feature_names_in_, classes_, n_outputs_ (the number
        of classes).

    Example:
        >>> clf = TrainwellClassifier(layers=(32,), epochs=30, random_state=0).fit(X, y)
        >>> clf.predict_proba(X[:2])  # doctest: +SKIP
    """

    _task = "classification"
    _y_checks = {}

    def _loss_name(self, n_outputs: int):
        if self.loss is not None:
            return self.loss
        return "binary_crossentropy" if n_outputs == 1 else "sparse_categorical_crossentropy"

    def _loss_kind(self) -> str:
        kind = losses_module.kind(self.loss) if self.loss is not None else "sparse"
        if kind == "regression":
            raise ConfigError(f"{type(self).__name__}: `loss` must be a cross-entropy "
                              "('sparse_categorical_crossentropy', 'categorical_crossentropy', or "
                              f"'binary_crossentropy' for two classes), received {self.loss!r}.")
        if kind == "binary" and len(self.classes_) != 2:
            raise ConfigError(f"{type(self).__name__}: loss='binary_crossentropy' needs two classes, y has "
                              f"{len(self.classes_)}. Use 'sparse_categorical_crossentropy'.")
        return kind

    def _output_layer(self, n_outputs: int):
        return Dense(n_outputs, activation="sigmoid" if n_outputs == 1 else "softmax")

    def _n_model_outputs(self) -> int:
        return 1 if self._loss_kind() == "binary" else len(self.classes_)

    def _encode_target(self, y, reset: bool, classes=None) -> np.ndarray:
        check_classification_targets(y)
        if reset:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise DataError(f"{type(self).__name__}: y holds one class ({self.classes_[0]!r}); a "
                                "classifier needs at least two classes.")
            self.n_outputs_ = len(self.classes_)
        index = np.searchsorted(self.classes_, y)
        last = len(self.classes_) - 1
        unknown = (index > last) | (self.classes_[np.minimum(index, last)] != y)
        if unknown.any():
            raise DataError(f"{type(self).__name__}: y holds labels not among classes_ "
                            f"{self.classes_.tolist()[:10]}: {np.unique(y[unknown]).tolist()[:5]}. Fit "
                            "again (or pass every class to the first partial_fit as classes=...).")
        kind = self._loss_kind()
        if kind == "binary":
            return index.astype(np.float32)
        if kind == "categorical":
            return to_categorical(index, len(self.classes_))
        return index

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch on ``(X, y)``; the first call builds the network. Pass every label as
        ``classes`` on the first call when a batch may lack some."""
        return self._fit(X, y, sample_weight, 1, reset=not hasattr(self, "model_"), classes=classes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of shape (n_samples, n_classes), columns in ``classes_`` order."""
        out = self._forward(X).astype(np.float64)
        if out.shape[1] == 1:
            out = np.hstack([1.0 - out, out])
        return out / out.sum(axis=1, keepdims=True)  # exact sums of 1 (float32 softmax is not)

    def predict(self, X) -> np.ndarray:
        """The most probable label of each row, shape (n_samples,)."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
