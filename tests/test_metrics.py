"""Tests for trainwell.metrics: streaming values against numpy, 'accuracy' resolution, AUC,
names and serialisation."""

import json
import math

import numpy as np
import pytest
import torch

from trainwell import losses, metrics
from trainwell._errors import ConfigError, ConfigTypeError, DataError

RNG = np.random.default_rng(1)


def batches(*arrays, sizes=(5, 3, 8)):
    """Split equal-length arrays into consecutive batches of the given sizes."""
    start = 0
    for size in sizes:
        yield tuple(torch.tensor(a[start:start + size]) for a in arrays)
        start += size


def streamed(metric, y, p, w, sizes=(5, 3, 8)):
    metric.reset_state()
    for yb, pb, wb in batches(y, p, w, sizes=sizes):
        metric.update_state(yb, pb, sample_weight=wb)
    return metric.result().item()


def one_shot(metric, y, p, w):
    metric.reset_state()
    metric.update_state(torch.tensor(y), torch.tensor(p), sample_weight=torch.tensor(w))
    return metric.result().item()


def weighted_mean(values, w):
    return float((values * w).sum() / w.sum())


N = 16
WEIGHTS = RNG.uniform(0.0, 2.0, size=N).astype(np.float32)
Y_BIN = RNG.integers(0, 2, size=(N, 1)).astype(np.float32)
P_BIN = RNG.uniform(size=(N, 1)).astype(np.float32)
LABELS = RNG.integers(0, 4, size=N)
Y_ONE_HOT = np.eye(4, dtype=np.float32)[LABELS]
P_CAT = RNG.dirichlet(np.ones(4), size=N).astype(np.float32)
Y_REG = RNG.uniform(1.0, 3.0, size=(N, 2)).astype(np.float32)
P_REG = (Y_REG + RNG.normal(0, 0.5, size=(N, 2))).astype(np.float32)

# metric, y_true, y_pred, per-sample numpy values
CASES = {
    "binary_accuracy": (metrics.BinaryAccuracy(), Y_BIN, P_BIN, ((P_BIN > 0.5) == Y_BIN).mean(-1)),
    "binary_accuracy_threshold": (metrics.BinaryAccuracy(threshold=0.7), Y_BIN, P_BIN,
                                  ((P_BIN > 0.7) == Y_BIN).mean(-1)),
    "categorical_accuracy": (metrics.CategoricalAccuracy(), Y_ONE_HOT, P_CAT,
                             (P_CAT.argmax(-1) == LABELS).astype(float)),
    "sparse_categorical_accuracy": (metrics.SparseCategoricalAccuracy(), LABELS.astype(np.float32), P_CAT,
                                    (P_CAT.argmax(-1) == LABELS).astype(float)),
    "mae": (metrics.MeanAbsoluteError(), Y_REG, P_REG, np.abs(P_REG - Y_REG).mean(-1)),
    "mse": (metrics.MeanSquaredError(), Y_REG, P_REG, ((P_REG - Y_REG) ** 2).mean(-1)),
    "mape": (metrics.MeanAbsolutePercentageError(), Y_REG, P_REG,
             100 * np.abs((Y_REG - P_REG) / Y_REG).mean(-1)),
    "binary_crossentropy": (metrics.BinaryCrossentropy(), Y_BIN, P_BIN,
                            -(Y_BIN * np.log(P_BIN) + (1 - Y_BIN) * np.log(1 - P_BIN)).mean(-1)),
    "categorical_crossentropy": (metrics.CategoricalCrossentropy(), Y_ONE_HOT, P_CAT,
                                 -np.log(P_CAT[np.arange(N), LABELS])),
    "sparse_categorical_crossentropy": (metrics.SparseCategoricalCrossentropy(), LABELS, P_CAT,
                                        -np.log(P_CAT[np.arange(N), LABELS])),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_streaming_equals_one_shot_equals_numpy(case):
    metric, y, p, per_sample = CASES[case]
    expected = weighted_mean(per_sample, WEIGHTS)
    assert streamed(metric, y, p, WEIGHTS) == pytest.approx(expected, rel=1e-5)
    assert one_shot(metric, y, p, WEIGHTS) == pytest.approx(expected, rel=1e-5)
    metric.reset_state()
    for yb, pb in batches(y, p):
        metric.update_state(yb, pb)
    assert metric.result().item() == pytest.approx(float(per_sample.mean()), rel=1e-5)


def test_root_mean_squared_error_is_root_of_accumulated_mean():
    per_sample = ((P_REG - Y_REG) ** 2).mean(-1)
    rmse = metrics.RootMeanSquaredError()
    expected = math.sqrt(weighted_mean(per_sample, WEIGHTS))
    assert streamed(rmse, Y_REG, P_REG, WEIGHTS) == pytest.approx(expected, rel=1e-5)
    # Not the mean of per-batch roots: batches [0, 0] and [4] give sqrt(16 / 3), not (0 + 4) / 2.
    rmse.reset_state()
    rmse.update_state(torch.zeros(2, 1), torch.zeros(2, 1))
    rmse.update_state(torch.zeros(1, 1), torch.full((1, 1), 4.0))
    assert rmse.result().item() == pytest.approx(math.sqrt(16 / 3))


def test_binary_accuracy_hand_worked_and_column_shapes():
    acc = metrics.BinaryAccuracy()
    # Labels as (batch,), predictions as (batch, 1): 0.9 and 0.2 are right; 0.6 and 0.5 are wrong
    # (0.5 is not > 0.5).
    acc.update_state(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([[0.9], [0.2], [0.6], [0.5]]))
    assert acc.result().item() == 0.5


def test_sparse_accuracy_label_shape_error():
    with pytest.raises(DataError, match="categorical_accuracy"):
        metrics.SparseCategoricalAccuracy().update_state(torch.tensor(Y_ONE_HOT), torch.tensor(P_CAT))


def test_mean_tracks_loss_weighted_by_batch_size():
    mean = metrics.Mean()
    mean.update_state(torch.tensor(2.0), sample_weight=32)  # batch loss 2.0 over 32 samples
    mean.update_state(torch.tensor(5.0), sample_weight=8)
    assert mean.result().item() == pytest.approx((2.0 * 32 + 5.0 * 8) / 40)
    mean.update_state(torch.tensor([1.0, 3.0]), sample_weight=torch.tensor([1.0, 0.0]))
    assert mean.result().item() == pytest.approx((2.0 * 32 + 5.0 * 8 + 1.0) / 41)


def test_mean_of_per_sample_vectors_without_weights():
    mean = metrics.Mean(name="values")
    mean.update_state(torch.tensor([[1.0, 3.0], [5.0, 7.0]]))  # per-sample means 2 and 6
    mean.update_state(torch.tensor([10.0]))
    assert mean.result().item() == pytest.approx((2 + 6 + 10) / 3)
    assert mean.name == "values"


def test_result_before_update_and_after_reset_is_zero():
    y, p = torch.tensor([[1.0], [0.0]]), torch.tensor([[0.8], [0.3]])
    updates = [(metrics.Mean(), (torch.tensor([4.0]),))] + [
        (make(), (y, p)) for make in (metrics.BinaryAccuracy, metrics.AUC, metrics.Precision, metrics.Recall,
                                      metrics.RootMeanSquaredError)
    ]
    for metric, args in updates:
        assert metric.result().item() == 0.0
        metric.update_state(*args)
        assert metric.result().item() != 0.0
        metric.reset_state()
        assert metric.result().item() == 0.0


def test_update_keeps_no_autograd_graph_and_state_is_float32_on_input_device():
    p = torch.tensor([[0.2], [0.9]], requires_grad=True)
    metric = metrics.BinaryCrossentropy()
    metric.update_state(torch.tensor([[0.0], [1.0]]), p)
    result = metric.result()
    assert not result.requires_grad
    assert all(t.dtype == torch.float32 and t.device == p.device for t in metric._state.values())


def test_weighted_samples_equal_repeated_samples():
    y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float32)
    p = np.array([[0.7], [0.6], [0.2], [0.1]], dtype=np.float32)
    for make in (metrics.AUC, metrics.Precision, metrics.Recall, metrics.BinaryAccuracy):
        weighted = make()
        counts = [2, 1, 3, 1]
        weights = torch.tensor(counts, dtype=torch.float32)
        weighted.update_state(torch.tensor(y), torch.tensor(p), sample_weight=weights)
        repeated = make()
        y_rep, p_rep = (torch.tensor(np.repeat(a, counts, axis=0)) for a in (y, p))
        repeated.update_state(y_rep, p_rep)
        assert weighted.result().item() == pytest.approx(repeated.result().item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Precision, recall, AUC
# ---------------------------------------------------------------------------------------------


def test_precision_recall_against_numpy():
    y = RNG.integers(0, 2, size=(40, 1)).astype(np.float32)
    p = RNG.uniform(size=(40, 1)).astype(np.float32)
    w = RNG.uniform(0.1, 2.0, size=40).astype(np.float32)
    for threshold in (0.5, 0.3):
        pred, actual, ww = (p[:, 0] > threshold), y[:, 0] == 1, w
        tp, fp, fn = ww[pred & actual].sum(), ww[pred & ~actual].sum(), ww[~pred & actual].sum()
        precision = metrics.Precision(thresholds=threshold if threshold != 0.5 else None)
        recall = metrics.Recall(thresholds=threshold)
        assert streamed(precision, y, p, w, sizes=(10, 30)) == pytest.approx(tp / (tp + fp), rel=1e-5)
        assert streamed(recall, y, p, w, sizes=(25, 15)) == pytest.approx(tp / (tp + fn), rel=1e-5)


def test_precision_with_nothing_predicted_positive_is_zero():
    precision = metrics.Precision()
    precision.update_state(torch.tensor([1.0, 0.0]), torch.tensor([0.1, 0.2]))
    assert precision.result().item() == 0.0


def test_precision_rejects_lists_of_thresholds():
    with pytest.raises(ConfigError, match="thresholds"):
        metrics.Precision(thresholds=[0.3, 0.5])


def exact_roc_auc(y, p):
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def keras_threshold_roc_auc(y, p, num_thresholds=200):
    """Keras's definition with explicit thresholds (no buckets): counts of p > t, trapezoid rule."""
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thresholds = np.array([-1e-7, *inner, 1 + 1e-7])
    predicted = p[None, :] > thresholds[:, None]
    tp = (predicted & (y == 1)).sum(1)
    fp = (predicted & (y == 0)).sum(1)
    tpr, fpr = tp / (y == 1).sum(), fp / (y == 0).sum()
    return float(((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2).sum())


def test_auc_roc_against_exact_and_threshold_definitions():
    y = RNG.integers(0, 2, size=300)
    p = np.clip(0.5 * y + RNG.normal(0.25, 0.3, size=300), 0, 1).astype(np.float32)
    auc = metrics.AUC()
    value = streamed(auc, y.astype(np.float32), p, np.ones(300, np.float32), sizes=(100, 64, 136))
    assert value == pytest.approx(exact_roc_auc(y, p), abs=1e-2)
    assert value == pytest.approx(keras_threshold_roc_auc(y, p), abs=1e-5)
    assert 0.7 < value < 1.0


def test_auc_hand_worked_roc_and_pr():
    y, p = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.9, 0.6, 0.3])
    # ROC: one of the two (positive, negative) pairs is ordered right.
    assert metrics.AUC()(y, p).item() == pytest.approx(0.5)
    # PR with Davis-Goadrich interpolation: precision 1 up to recall 0.5, then from (tp=1, p=2)
    # to (tp=2, p=3) precision follows tp / p: area 0.5 + (1 - ln 1.5) / 2.
    assert metrics.AUC(curve="PR")(y, p).item() == pytest.approx(0.5 + (1 - math.log(1.5)) / 2, rel=1e-6)
    # PR as lower / upper Riemann sums over recall steps 1 -> 0.5 -> 0.
    assert metrics.AUC(curve="pr", summation_method="minoring")(y, p).item() == pytest.approx(0.25)
    assert metrics.AUC(curve="PR", summation_method="majoring")(y, p).item() == pytest.approx(0.5 / 1.5 + 0.5)


def test_auc_perfect_and_from_logits():
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert metrics.AUC()(y, torch.tensor([0.1, 0.2, 0.8, 0.95])).item() == pytest.approx(1.0)
    logits = torch.tensor([-3.0, -1.0, 0.5, 2.0])
    assert metrics.AUC(from_logits=True)(y, logits).item() == pytest.approx(1.0)
    # Keras clips nothing for probabilities in [0, 1]: 0.0 and 1.0 land in the end buckets.
    assert metrics.AUC()(y, torch.tensor([0.0, 0.0, 1.0, 1.0])).item() == pytest.approx(1.0)


def test_auc_survives_nan_predictions():
    auc = metrics.AUC()
    auc.update_state(torch.tensor([1.0, 0.0]), torch.tensor([float("nan"), 0.5]))
    assert auc.result().item() == pytest.approx(0.0)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"num_thresholds": 1}, "greater than 1"), ({"num_thresholds": 2.5}, "greater than 1"),
    ({"curve": "ROCC"}, "Did you mean 'ROC'"), ({"summation_method": "interpolate"}, "interpolation"),
])
def test_auc_bad_arguments(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        metrics.AUC(**kwargs)


# ---------------------------------------------------------------------------------------------
# get: 'accuracy' resolution, names, errors, serialisation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "output_shape", "expected"), [
    ("binary_crossentropy", (None, 1), metrics.BinaryAccuracy),
    ("binary_crossentropy", (None, 3), metrics.BinaryAccuracy),  # multi-label sigmoid outputs
    (losses.BinaryCrossentropy(from_logits=True), None, metrics.BinaryAccuracy),
    ("mse", (None, 1), metrics.BinaryAccuracy),
    ("mse", 1, metrics.BinaryAccuracy),
    ("sparse_categorical_crossentropy", (None, 10), metrics.SparseCategoricalAccuracy),
    (losses.SparseCategoricalCrossentropy(), None, metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", (None, 10), metrics.CategoricalAccuracy),
    ({"class_name": "CategoricalCrossentropy", "config": {}}, (None, 3), metrics.CategoricalAccuracy),
    ("mse", (None, 4), metrics.CategoricalAccuracy),
    (None, (None, 4), metrics.CategoricalAccuracy),
])
def test_accuracy_resolution(loss, output_shape, expected):
    for identifier in ("accuracy", "acc"):
        metric = metrics.get(identifier, loss=loss, output_shape=output_shape)
        assert type(metric) is expected
        assert metric.name == identifier


@pytest.mark.parametrize(("identifier", "cls"), [
    ("binary_accuracy", metrics.BinaryAccuracy), ("categorical_accuracy", metrics.CategoricalAccuracy),
    ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
    ("mae", metrics.MeanAbsoluteError), ("mean_absolute_error", metrics.MeanAbsoluteError),
    ("mse", metrics.MeanSquaredError), ("mean_squared_error", metrics.MeanSquaredError),
    ("rmse", metrics.RootMeanSquaredError), ("root_mean_squared_error", metrics.RootMeanSquaredError),
    ("mape", metrics.MeanAbsolutePercentageError), ("auc", metrics.AUC), ("precision", metrics.Precision),
    ("recall", metrics.Recall), ("binary_crossentropy", metrics.BinaryCrossentropy), ("AUC", metrics.AUC),
])
def test_names_resolve_and_log_under_the_given_string(identifier, cls):
    metric = metrics.get(identifier)
    assert type(metric) is cls
    assert metric.name == identifier


def test_default_names_of_instances():
    assert metrics.AUC().name == "auc"
    assert metrics.RootMeanSquaredError().name == "root_mean_squared_error"
    assert metrics.Precision().name == "precision"
    instance = metrics.AUC(name="roc")
    assert metrics.get(instance) is instance and instance.name == "roc"


def test_functions_and_classes_as_identifiers():
    assert type(metrics.get(losses.mean_absolute_error)) is metrics.MeanAbsoluteError
    assert type(metrics.get(metrics.binary_accuracy)) is metrics.BinaryAccuracy
    assert type(metrics.get(metrics.Recall)) is metrics.Recall

    def max_error(y_true, y_pred):
        return (y_true - y_pred).abs().amax(dim=-1)

    custom = metrics.get(max_error)
    assert custom.name == "max_error"
    custom.update_state(torch.tensor([[1.0, 4.0], [0.0, 0.0]]), torch.zeros(2, 2))
    assert custom.result().item() == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="cannot be stored in a model file"):
        metrics.serialize(custom)


@pytest.mark.parametrize(("typo", "suggestion"), [
    ("acuracy", "accuracy"), ("mean_squared_eror", "mean_squared_error"), ("presicion", "precision"),
])
def test_unknown_metric_suggests_closest(typo, suggestion):
    with pytest.raises(ConfigError, match=f"Did you mean '{suggestion}'"):
        metrics.get(typo)


def test_bad_identifier_types():
    with pytest.raises(ConfigTypeError, match="metric names"):
        metrics.get(0.5)
    with pytest.raises(ConfigError, match="unknown metric"):
        metrics.get({"class_name": "Nope"})


@pytest.mark.parametrize("cls", list(metrics._CLASSES.values()), ids=list(metrics._CLASSES))
def test_config_round_trip(cls):
    metric = cls(name="logged")
    config = metrics.serialize(metric)
    json.dumps(config)
    restored = metrics.get(config)
    assert type(restored) is cls and restored.get_config() == metric.get_config()
    assert restored.name == "logged"


def test_config_keeps_arguments():
    assert metrics.serialize(metrics.BinaryAccuracy(name="accuracy", threshold=0.3)) == {
        "class_name": "BinaryAccuracy", "config": {"name": "accuracy", "threshold": 0.3}}
    auc = metrics.get(metrics.serialize(metrics.AUC(num_thresholds=50, curve="PR", from_logits=True)))
    assert (auc.num_thresholds, auc.curve, auc.from_logits) == (50, "PR", True)
    assert metrics.serialize("acc") == "acc"
    with pytest.raises(ConfigError):
        metrics.serialize("acurracy")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_updates_do_not_sync_the_device():
    device = torch.device("cuda")
    y = torch.tensor([[1.0], [0.0], [1.0]], device=device)
    p = torch.tensor([[0.8], [0.4], [0.3]], device=device)
    w = torch.tensor([1.0, 2.0, 0.5], device=device)
    all_metrics = [metrics.get(n, loss="binary_crossentropy") for n in
                   ("accuracy", "mae", "mse", "rmse", "auc", "precision", "recall", "binary_crossentropy")]
    loss_mean = metrics.Mean()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):  # the first update creates the state, the second adds into it
            for metric in all_metrics:
                metric.update_state(y, p, sample_weight=w)
            loss_mean.update_state(p.sum(), sample_weight=3)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(t.device.type == "cuda" for m in all_metrics for t in m._state.values())


# --------------------------------------------------------------------------------------------------
# The metrics of issue 20 (their values against Keras are in test_keras_parity.py).


@pytest.mark.parametrize("name, cls", [
    ("r2_score", metrics.R2Score), ("f1_score", metrics.F1Score), ("fbeta_score", metrics.FBetaScore),
    ("true_positives", metrics.TruePositives), ("false_positives", metrics.FalsePositives),
    ("true_negatives", metrics.TrueNegatives), ("false_negatives", metrics.FalseNegatives),
    ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
    ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
    ("cosine_similarity", metrics.CosineSimilarity),
])
def test_new_metrics_by_name_and_config_round_trip(name, cls):
    metric = metrics.get(name)
    assert type(metric) is cls and metric.name == name and name in metrics.names()
    rebuilt = metrics.get(metrics.serialize(cls()))
    assert type(rebuilt) is cls and rebuilt.get_config() == cls().get_config()


def test_confusion_counts_add_up_with_weights():
    y, p = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0]), torch.tensor([0.9, 0.2, 0.7, 0.1, 0.6])
    w = [1, 2, 3, 4, 5]
    counts = {}
    for cls in (metrics.TruePositives, metrics.FalsePositives, metrics.TrueNegatives, metrics.FalseNegatives):
        m = cls()
        m.update_state(y, p, sample_weight=w)
        counts[cls.__name__] = float(m.result())
    assert counts == {"TruePositives": 6.0, "FalsePositives": 3.0, "TrueNegatives": 4.0,
                      "FalseNegatives": 2.0}


def test_top_k_counts_ties_as_in():
    m = metrics.SparseTopKCategoricalAccuracy(k=1)
    m.update_state(torch.tensor([1, 0]), torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]]))
    assert float(m.result()) == 0.5


def test_r2_matches_sklearn_formula_over_batches():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    m = metrics.R2Score(class_aggregation=None)
    for start in range(0, 40, 16):
        m.update_state(torch.tensor(y[start:start + 16]), torch.tensor(p[start:start + 16]))
    expected = 1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(m.result().numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("make, error, fragment", [
    (lambda: metrics.F1Score(average="mean"), ConfigError, "unknown average 'mean'"),
    (lambda: metrics.FBetaScore(beta=0), ConfigError, "`beta` expects a positive number, received 0"),
    (lambda: metrics.F1Score(threshold=2), ConfigError, "`threshold` expects None or a number in \\[0, 1\\]"),
    (lambda: metrics.R2Score(class_aggregation="avg"), ConfigError, "Valid class_aggregation names: uniform"),
    (lambda: metrics.R2Score(num_regressors=-1), ConfigError, "`num_regressors` expects an integer >= 0"),
    (lambda: metrics.TopKCategoricalAccuracy(k=0), ConfigError, "`k` expects a positive integer"),
    (lambda: metrics.F1Score()(torch.tensor([0, 1]), torch.tensor([[0.2, 0.8], [0.6, 0.4]])), DataError,
     "F1Score expects y_true and y_pred of one shape .*to_categorical"),
])
def test_new_metrics_check_arguments(make, error, fragment):
    with pytest.raises(error, match=fragment):
        make()
