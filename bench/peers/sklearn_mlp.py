"""scikit-learn's MLPRegressor / MLPClassifier, configured to match the Keras workloads.

Matching choices, and the differences that remain:

- same hidden layers, relu, the workload's optimizer, learning rate, batch size, and
  `max_iter=epochs`; `alpha=0` (no L2, as Keras's Dense); Adam's epsilon 1e-7 as Keras;
  plain SGD (`momentum=0`, constant rate) for the SGD workload;
- `tol=0`, a huge `n_iter_no_change` and `early_stopping=False`, so every epoch runs;
- sklearn has no `validation_split`: it is fitted on the first rows only and the harness
  scores the held-out tail itself. It therefore skips the per-epoch validation pass the
  other peers pay for;
- initialisation is sklearn's own (glorot-uniform bounds for weights *and* biases; not configurable);
- a 2-class problem gets one logistic output unit instead of a 2-unit softmax, and the
  regressor's loss is squared error / 2 (Adam is insensitive to that scale).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

from bench.workloads import MODEL_SEED, Workload

# Large enough that the no-improvement stop never triggers within the workload's epochs.
NEVER = 10**9


def prepare_targets(spec: Workload, y: np.ndarray) -> np.ndarray:
    """sklearn takes int labels or a 1-D target as they are."""
    return y


def build(spec: Workload, n_features: int) -> MLPClassifier | MLPRegressor:
    """An unfitted estimator with the workload's settings (`n_features` is learned by `fit`)."""
    cls = MLPClassifier if spec.is_classification else MLPRegressor
    return cls(
        hidden_layer_sizes=spec.hidden,
        activation="relu",
        solver=spec.optimizer,
        alpha=0.0,
        batch_size=spec.batch_size,
        learning_rate="constant",
        learning_rate_init=spec.learning_rate,
        max_iter=spec.epochs,
        shuffle=True,
        random_state=MODEL_SEED,
        tol=0.0,
        n_iter_no_change=NEVER,
        early_stopping=False,
        momentum=0.0,
        nesterovs_momentum=False,
        epsilon=1e-7,
    )


def fit(est: MLPClassifier | MLPRegressor, spec: Workload, X: np.ndarray, y: np.ndarray):
    """Fit on the rows before the validation tail; float32 input keeps float32 weights."""
    split = spec.split_index(len(X))
    with warnings.catch_warnings():
        # Reaching max_iter is the point here, not a convergence problem.
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:split], y[:split])
    return est


def predict(est: MLPClassifier | MLPRegressor, X: np.ndarray) -> np.ndarray:
    """`predict_proba` for classifiers (what Keras's `predict` returns), `predict` for regressors."""
    if isinstance(est, MLPRegressor):
        return est.predict(X)
    return est.predict_proba(X)


def build_and_fit(spec: Workload, X: np.ndarray, y: np.ndarray):
    """Build and fit on the training rows."""
    return fit(build(spec, X.shape[1]), spec, X, y)
