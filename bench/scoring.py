"""Losses and accuracy computed by the suite itself, from each peer's predictions.

The suite never trusts a peer's own logs: a fast fit that trains badly must show a bad loss.
Formulas follow Keras: mean squared error; categorical cross-entropy on probabilities
clipped to [1e-7, 1 - 1e-7]; accuracy as argmax agreement.
"""

from __future__ import annotations

import numpy as np

from bench.workloads import Workload

EPSILON = 1e-7


def score(spec: Workload, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Loss (and accuracy for classification) of predictions against targets.

    Args:
        spec: the workload (says whether this is classification).
        y_true: int labels of shape (n,) or float targets of shape (n,).
        y_pred: class probabilities of shape (n, n_classes), or predictions of shape (n,) or (n, 1).

    Returns:
        {"loss": ...} for regression (MSE), {"loss": ..., "accuracy": ...} for classification.

    Example:
        >>> from bench.workloads import WORKLOADS
        >>> score(WORKLOADS["wages"], np.array([0.0, 2.0]), np.array([[1.0], [2.0]]))
        {'loss': 0.5}
    """
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if len(y_true) == 0:
        return {}
    if not spec.is_classification:
        err = y_pred.reshape(len(y_true)) - y_true
        return {"loss": float(np.mean(err * err))}
    probs = y_pred.reshape(len(y_true), -1)
    picked = np.clip(probs[np.arange(len(y_true)), y_true], EPSILON, 1.0 - EPSILON)
    return {
        "loss": float(-np.mean(np.log(picked))),
        "accuracy": float(np.mean(np.argmax(probs, axis=1) == y_true)),
    }


def score_split(spec: Workload, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Scores of the training rows and of the held-out tail, as `train_*` and `val_*`.

    Args:
        spec: the workload (its `validation_split` gives the split).
        y_true: targets of every row.
        y_pred: predictions of every row.

    Returns:
        A flat dict such as {"train_loss": ..., "val_loss": ..., "train_accuracy": ...};
        no `val_` keys when the workload has no validation split.
    """
    split = spec.split_index(len(y_true))
    out = {f"train_{k}": v for k, v in score(spec, y_true[:split], y_pred[:split]).items()}
    out.update({f"val_{k}": v for k, v in score(spec, y_true[split:], y_pred[split:]).items()})
    return out
