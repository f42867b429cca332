"""Keras metrics on PyTorch: stateful, accumulated in device tensors.

A metric's ``update_state(y_true, y_pred, sample_weight=None)`` adds one batch into running
tensors (created lazily on the device of the first batch) without reading anything back to
the host, so the loop can update every batch and call ``.item()`` once per epoch on
``result()``. ``reset_state()`` starts over.

``get(identifier, loss=, output_shape=)`` resolves ``'accuracy'``/``'acc'`` from the loss and the
number of output units, and names each metric after the string the user passed, so
``metrics=['acc']`` logs ``acc`` and ``metrics=['mae']`` logs ``mae`` (Keras 3 does the same).

Example:
    >>> import torch
    >>> m = get("accuracy", loss="binary_crossentropy")
    >>> m.update_state(torch.tensor([[1.0], [0.0]]), torch.tensor([[0.9], [0.7]]))
    >>> m.name, float(m.result())
    ('accuracy', 0.5)
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable

import torch

from trainwell import losses
from trainwell._errors import ConfigError, ConfigTypeError, DataError, describe, unknown_name
from trainwell.losses import _align

# ---------------------------------------------------------------------------------------------
# Per-sample metric functions, shape (batch, ..., d) -> (batch, ...)
# ---------------------------------------------------------------------------------------------


def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> torch.Tensor:
    """Mean over the last axis of ``y_true == (y_pred > threshold)``."""
    y_true, y_pred = _align(y_true, y_pred)
    return (y_true == (y_pred > threshold).to(y_true.dtype)).float().mean(dim=-1)


def categorical_accuracy(y_true, y_pred) -> torch.Tensor:
    """1.0 where ``argmax(y_true) == argmax(y_pred)`` over the last axis (ties: first index)."""
    y_true, y_pred = losses._as_tensors(y_true, y_pred)
    return (y_true.argmax(dim=-1) == y_pred.argmax(dim=-1)).float()


def sparse_categorical_accuracy(y_true, y_pred) -> torch.Tensor:
    """1.0 where the integer label equals ``argmax(y_pred)``; labels of shape (batch,) or (batch, 1).

    Raises:
        DataError: if the labels do not give one class id per sample.
    """
    y_true, y_pred = losses._as_tensors(y_true, y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    if y_true.shape != y_pred.shape[:-1]:
        raise DataError(
            f"sparse_categorical_accuracy: y_true of shape {tuple(y_true.shape)} should hold one class "
            f"id per sample for y_pred of shape {tuple(y_pred.shape)}. For one-hot targets use "
            "'categorical_accuracy'."
        )
    return (y_true == y_pred.argmax(dim=-1).to(y_true.dtype)).float()


# ---------------------------------------------------------------------------------------------
# Base classes
# ---------------------------------------------------------------------------------------------


def _no_nan_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, 0 where the denominator is 0 (Keras's divide_no_nan)."""
    safe = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
    return torch.where(denominator == 0, torch.zeros_like(numerator), numerator / safe)


class Metric:
    """Base class of stateful metrics.

    ``weighted`` is True for a metric compiled through ``weighted_metrics``: as in Keras, only
    those see ``sample_weight`` (and ``class_weight``); the ``metrics`` are unweighted.

    Subclasses implement ``update_state`` and ``result`` and keep their running values with
    ``self._add(key, value, device)``, which sums into a float32 tensor created on the first
    call: no host sync, and the state lives wherever the data lives.

    Args:
        name: the key under which the metric is logged.
    """

    weighted = False

    def __init__(self, name: str | None = None):
        self.name = name or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", type(self).__name__).lower()
        self._state: dict[str, torch.Tensor] = {}

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update_state.")

    def result(self) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement result.")

    def reset_state(self) -> None:
        # Dropping the tensors (rather than zeroing them) lets the next fit run on another device.
        self._state = {}

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        """Update with one batch and return the running result, as Keras's ``Metric.__call__``."""
        self.update_state(*args, **kwargs)
        return self.result()

    def _add(self, key: str, value, device) -> None:
        current = self._state.get(key)
        if isinstance(value, torch.Tensor):
            value = value.detach().to(torch.float32)
            if current is None:
                self._state[key] = value.to(device).clone()
            else:
                current.add_(value.to(current.device))
        elif current is None:
            self._state[key] = torch.full((), float(value), dtype=torch.float32, device=device)
        else:
            current.add_(float(value))  # a Python number goes in as a kernel argument: no copy

    def _get(self, key: str, shape=()) -> torch.Tensor:
        value = self._state.get(key)
        return value if value is not None else torch.zeros(shape)

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> Metric:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _weight_like(sample_weight, values: torch.Tensor) -> torch.Tensor:
    """``sample_weight`` as a tensor on ``values``' device, broadcast to ``values``' shape.

    A weight of shape (batch,) or (batch, 1) is lined up with the first axis of ``values``.
    """
    weight = torch.as_tensor(sample_weight, dtype=torch.float32, device=values.device)
    if weight.ndim == values.ndim + 1 and weight.shape[-1] == 1:
        weight = weight.squeeze(-1)
    while weight.ndim < values.ndim:
        weight = weight.unsqueeze(-1)
    try:
        return weight.expand(values.shape)
    except RuntimeError:
        raise DataError(
            f"metrics: `sample_weight` of shape {tuple(weight.shape)} does not fit values of shape "
            f"{tuple(values.shape)}. Pass one weight per sample, shape (batch,)."
        ) from None


class Mean(Metric):
    """The weighted mean of the values seen so far: ``sum(w * v) / sum(w)``.

    ``update_state(values, sample_weight=None)`` takes values, not ``(y_true, y_pred)``. Values
    with more than one axis are first averaged per sample (axis 0 is the sample axis); the
    loop tracks its loss with ``update_state(batch_loss, sample_weight=batch_size)``.

    Example:
        >>> m = Mean()
        >>> m.update_state(torch.tensor([1.0, 3.0]))
        >>> m.update_state(torch.tensor(6.0), sample_weight=2)
        >>> float(m.result())
        4.0
    """

    def update_state(self, values, sample_weight=None) -> None:  # noqa: D417 - Keras's signature
        with torch.no_grad():
            self._accumulate(torch.as_tensor(values), sample_weight)

    def _accumulate(self, values: torch.Tensor, sample_weight) -> None:
        values = values if values.dtype == torch.float64 else values.float()
        device = values.device
        if values.numel() == 0:
            return
        if sample_weight is None:
            per_sample = values.mean(dim=tuple(range(1, values.ndim))) if values.ndim > 1 else values
            self._add("total", per_sample.sum(), device)
            self._add("count", per_sample.shape[0] if per_sample.ndim else 1, device)
            return
        if isinstance(sample_weight, numbers.Real) or getattr(sample_weight, "ndim", 1) == 0:
            # As Keras: a scalar weight counts the batch's mean once, with that weight. The loop
            # passes (batch loss, batch size), so the epoch value is the mean over samples.
            self._add("total", values.mean() * sample_weight, device)
            self._add("count", sample_weight, device)
            return
        weight = torch.as_tensor(sample_weight, dtype=torch.float32, device=device)
        if weight.ndim == values.ndim + 1 and weight.shape[-1] == 1:
            weight = weight.squeeze(-1)
        elif values.ndim == weight.ndim + 1 and values.shape[-1] == 1:
            values = values.squeeze(-1)
        if values.ndim > weight.ndim:  # as Keras: average values down to the weights' rank
            values = values.mean(dim=tuple(range(weight.ndim, values.ndim)))
        weight = _weight_like(weight, values)
        self._add("total", (values * weight).sum(), device)
        self._add("count", weight.sum(), device)

    def result(self) -> torch.Tensor:
        return _no_nan_divide(self._get("total"), self._get("count"))


class MeanMetricWrapper(Mean):
    """Averages a per-sample function ``fn(y_true, y_pred, **kwargs)`` over all samples seen.

    Args:
        fn: returns one value per sample (shape (batch,) or (batch, ...)).
        name: defaults to ``fn.__name__``.
        **kwargs: passed to ``fn`` on every update.

    Example:
        >>> m = MeanMetricWrapper(lambda t, p: (t - p).abs().mean(dim=-1), name="l1")
        >>> float(m(torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [0.0]]), sample_weight=[1.0, 3.0]))
        1.75
    """

    def __init__(self, fn: Callable, name: str | None = None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "metric"))
        self.fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        with torch.no_grad():
            self._accumulate(torch.as_tensor(self.fn(y_true, y_pred, **self._fn_kwargs)), sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), **self._fn_kwargs}

    def _add_hits(self, hits: torch.Tensor) -> None:
        """Unweighted update from a bool tensor of per-sample hits, shape (batch,).

        The same running sums as ``update_state`` when ``fn`` returns 1.0 for a hit and 0.0
        otherwise (the accuracies): a batch's float32 sum of 0/1 values is its integer count,
        exact below 2**24, so counting the bools as float32 gives identical numbers with three
        kernels instead of about eight (the fused training step calls this every batch).
        """
        total = self._state.get("total")
        if total is None:
            self._state["total"] = total = torch.zeros((), dtype=torch.float32, device=hits.device)
            self._state["count"] = torch.zeros((), dtype=torch.float32, device=hits.device)
        total.add_(torch.sum(hits, dtype=torch.float32))  # no int64 sum and cast: ~9 µs less
        self._state["count"].add_(hits.shape[0])


# ---------------------------------------------------------------------------------------------
# Built-in metrics
# ---------------------------------------------------------------------------------------------


class BinaryAccuracy(MeanMetricWrapper):
    """Share of predictions on the right side of ``threshold`` (default 0.5)."""

    def __init__(self, name="binary_accuracy", threshold=0.5):
        super().__init__(binary_accuracy, name=name, threshold=float(threshold))


class CategoricalAccuracy(MeanMetricWrapper):
    """Share of samples whose largest prediction is the one-hot target's class."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name=name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """Share of samples whose largest prediction is the integer label."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name=name)


class MeanAbsoluteError(MeanMetricWrapper):
    """Mean absolute error over all samples seen."""

    def __init__(self, name="mean_absolute_error"):
        super().__init__(losses.mean_absolute_error, name=name)


class MeanSquaredError(MeanMetricWrapper):
    """Mean squared error over all samples seen."""

    def __init__(self, name="mean_squared_error"):
        super().__init__(losses.mean_squared_error, name=name)


class RootMeanSquaredError(MeanMetricWrapper):
    """Square root of the accumulated mean squared error (not a mean of per-batch roots)."""

    def __init__(self, name="root_mean_squared_error"):
        super().__init__(losses.mean_squared_error, name=name)

    def result(self) -> torch.Tensor:
        return torch.sqrt(super().result())


class MeanAbsolutePercentageError(MeanMetricWrapper):
    """Mean absolute percentage error over all samples seen."""

    def __init__(self, name="mean_absolute_percentage_error"):
        super().__init__(losses.mean_absolute_percentage_error, name=name)


class BinaryCrossentropy(MeanMetricWrapper):
    """Mean binary cross-entropy; arguments as ``losses.BinaryCrossentropy``."""

    def __init__(self, name="binary_crossentropy", from_logits=False, label_smoothing=0.0):
        super().__init__(losses.binary_crossentropy, name=name, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing))


class CategoricalCrossentropy(MeanMetricWrapper):
    """Mean categorical cross-entropy; arguments as ``losses.CategoricalCrossentropy``."""

    def __init__(self, name="categorical_crossentropy", from_logits=False, label_smoothing=0.0):
        super().__init__(losses.categorical_crossentropy, name=name, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing))


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """Mean sparse categorical cross-entropy; arguments as ``losses.SparseCategoricalCrossentropy``."""

    def __init__(self, name="sparse_categorical_crossentropy", from_logits=False):
        super().__init__(losses.sparse_categorical_crossentropy, name=name, from_logits=bool(from_logits))


def _flat_pair(y_true, y_pred, sample_weight):
    """Flattened ``(y_true, y_pred, weight)``, float32, broadcast to one shape."""
    y_true, y_pred = _align(y_true, y_pred)
    y_true, y_pred = torch.broadcast_tensors(y_true.float(), y_pred.float())
    weight = torch.ones_like(y_pred) if sample_weight is None else _weight_like(sample_weight, y_pred)
    return y_true.reshape(-1), y_pred.reshape(-1), weight.reshape(-1)


class _ThresholdMetric(Metric):
    """Counts of true/false positives/negatives at one threshold (precision, recall, the counts).

    A prediction is positive when ``y_pred > thresholds`` (strictly, as Keras); a label is
    positive when non-zero.
    """

    def __init__(self, thresholds=None, name=None):
        super().__init__(name=name)
        if thresholds is None:
            thresholds = 0.5
        if isinstance(thresholds, bool) or not isinstance(thresholds, numbers.Real):
            raise ConfigError(
                f"{type(self).__name__}: `thresholds` expects one number in [0, 1], received "
                f"{describe(thresholds)}. Lists of thresholds are not supported; create one metric each."
            )
        self.thresholds = float(thresholds)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        with torch.no_grad():
            y_true, y_pred, weight = _flat_pair(y_true, y_pred, sample_weight)
            predicted, actual = y_pred > self.thresholds, y_true != 0
            self._add("tp", (weight * (predicted & actual)).sum(), y_pred.device)
            self._add("fp", (weight * (predicted & ~actual)).sum(), y_pred.device)
            self._add("fn", (weight * (~predicted & actual)).sum(), y_pred.device)
            self._add("tn", (weight * (~predicted & ~actual)).sum(), y_pred.device)

    def get_config(self) -> dict:
        return {**super().get_config(), "thresholds": self.thresholds}


class Precision(_ThresholdMetric):
    """``tp / (tp + fp)`` at ``thresholds`` (default 0.5); 0 when nothing was predicted positive."""

    def result(self) -> torch.Tensor:
        tp = self._get("tp")
        return _no_nan_divide(tp, tp + self._get("fp"))


class Recall(_ThresholdMetric):
    """``tp / (tp + fn)`` at ``thresholds`` (default 0.5); 0 when no label was positive."""

    def result(self) -> torch.Tensor:
        tp = self._get("tp")
        return _no_nan_divide(tp, tp + self._get("fn"))


class AUC(Metric):
    """Area under the ROC or precision-recall curve, by Keras's threshold buckets.

    Thresholds are ``[-1e-7, 1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7]`` for ``n = num_thresholds``.
    Each batch puts every prediction in the bucket of the thresholds it exceeds
    (``ceil(p * (n - 1)) - 1``), adds its weight there with ``index_add_`` and takes reverse
    cumulative sums: the true/false positive counts at all thresholds in O(batch + n), on the
    device. The area is a Riemann sum over the thresholds: with the default
    ``summation_method='interpolation'``, the trapezoid rule for ROC and Davis & Goadrich's
    interpolation for PR, both as Keras computes them.

    Args:
        num_thresholds: number of thresholds (> 1); more gives a finer curve.
        curve: ``'ROC'`` or ``'PR'``.
        summation_method: ``'interpolation'``, ``'minoring'`` (lower sum) or ``'majoring'``.
        name: the log key.
        from_logits: apply a sigmoid to predictions first.

    Predictions are clipped to [0, 1] (Keras expects probabilities there). Labels may be soft.

    Example:
        >>> m = AUC()
        >>> round(float(m(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0.1, 0.4, 0.35, 0.8]))), 4)
        0.75
    """

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None,
                 from_logits=False):
        super().__init__(name=name or "auc")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
                or num_thresholds < 2:
            raise ConfigError(
                f"AUC: `num_thresholds` expects an integer greater than 1, received "
                f"{describe(num_thresholds)}. The default is num_thresholds=200."
            )
        if str(curve).upper() not in ("ROC", "PR"):
            raise unknown_name("AUC curve", curve, ["ROC", "PR"], argument="curve")
        if str(summation_method).lower() not in ("interpolation", "minoring", "majoring"):
            raise unknown_name("summation method", summation_method,
                               ["interpolation", "minoring", "majoring"], argument="summation_method")
        self.num_thresholds = int(num_thresholds)
        self.curve = str(curve).upper()
        self.summation_method = str(summation_method).lower()
        self.from_logits = bool(from_logits)

    @property
    def thresholds(self) -> list[float]:
        inner = [(i + 1) / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
        return [-1e-7, *inner, 1.0 + 1e-7]

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        with torch.no_grad():
            y_true, y_pred, weight = _flat_pair(y_true, y_pred, sample_weight)
            if self.from_logits:
                y_pred = torch.sigmoid(y_pred)
            n = self.num_thresholds
            positive, negative = y_true * weight, (1.0 - y_true) * weight
            # Bucket b holds predictions in (b/(n-1), (b+1)/(n-1)]; 0.0 goes to bucket 0 since it
            # exceeds the first threshold, -1e-7.
            # NaN predictions (a diverged model) count as 0.0 instead of becoming an invalid index,
            # so the epoch ends normally and the NaN loss can stop training.
            y_pred = torch.nan_to_num(y_pred, nan=0.0).clamp(0.0, 1.0)
            bucket = (torch.ceil(y_pred * (n - 1)) - 1).clamp(min=0).long()
            zeros = torch.zeros(n, dtype=torch.float32, device=y_pred.device)
            tp = zeros.index_add(0, bucket, positive).flip(0).cumsum(0).flip(0)
            fp = zeros.index_add(0, bucket, negative).flip(0).cumsum(0).flip(0)
            device = y_pred.device
            self._add("tp", tp, device)
            self._add("fp", fp, device)
            self._add("fn", positive.sum() - tp, device)
            self._add("tn", negative.sum() - fp, device)

    def result(self) -> torch.Tensor:
        n = self.num_thresholds
        tp, fp = self._get("tp", (n,)), self._get("fp", (n,))
        fn, tn = self._get("fn", (n,)), self._get("tn", (n,))
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr_auc(tp, fp, fn)
        recall = _no_nan_divide(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _no_nan_divide(fp, fp + tn), recall
        else:
            x, y = recall, _no_nan_divide(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = torch.minimum(y[:-1], y[1:])
        else:
            heights = torch.maximum(y[:-1], y[1:])
        return ((x[:-1] - x[1:]) * heights).sum()

    @staticmethod
    def _interpolated_pr_auc(tp, fp, fn) -> torch.Tensor:
        """PR area with precision interpolated between thresholds (Davis & Goadrich, 2006):
        within a step, precision follows ``tp / p`` with ``tp`` linear in the predicted positives ``p``."""
        predicted = tp + fp
        d_tp, d_pred = tp[:-1] - tp[1:], predicted[:-1] - predicted[1:]
        slope = _no_nan_divide(d_tp, d_pred.clamp(min=0))
        intercept = tp[1:] - slope * predicted[1:]
        both_positive = (predicted[:-1] > 0) & (predicted[1:] > 0)
        ratio = torch.where(both_positive, _no_nan_divide(predicted[:-1], predicted[1:].clamp(min=0)),
                            torch.ones_like(predicted[1:]))
        area = slope * (d_pred + intercept * torch.log(ratio))
        return _no_nan_divide(area, (tp[1:] + fn[1:]).clamp(min=0)).sum()

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "from_logits": self.from_logits}


class TruePositives(_ThresholdMetric):
    """Weighted count of positive labels predicted positive (``y_pred > thresholds``, default 0.5)."""

    def result(self) -> torch.Tensor:
        return self._get("tp")


class FalsePositives(_ThresholdMetric):
    """Weighted count of negative labels predicted positive."""

    def result(self) -> torch.Tensor:
        return self._get("fp")


class TrueNegatives(_ThresholdMetric):
    """Weighted count of negative labels predicted negative."""

    def result(self) -> torch.Tensor:
        return self._get("tn")


class FalseNegatives(_ThresholdMetric):
    """Weighted count of positive labels predicted negative."""

    def result(self) -> torch.Tensor:
        return self._get("fn")


def _check_top_k(k, where: str) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"{where}: `k` expects a positive integer, received {describe(k)}. "
                          "Pass for example k=5.")
    return int(k)


def _in_top_k(labels: torch.Tensor, y_pred: torch.Tensor, k: int) -> torch.Tensor:
    """1.0 where the label's score is at least the k-th largest (ties count as in, as Keras)."""
    y_pred = y_pred.reshape(-1, y_pred.shape[-1])
    k = min(k, y_pred.shape[-1])
    kth = y_pred.topk(k, dim=-1).values[:, -1]
    return (y_pred.gather(-1, labels.reshape(-1, 1).long()).squeeze(-1) >= kth).float()


def top_k_categorical_accuracy(y_true, y_pred, k: int = 5) -> torch.Tensor:
    """1.0 where the one-hot target's class is among the ``k`` largest predictions."""
    y_true, y_pred = losses._as_tensors(y_true, y_pred)
    return _in_top_k(y_true.argmax(dim=-1), y_pred, k).reshape(y_true.shape[:-1])


def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5) -> torch.Tensor:
    """1.0 where the integer label is among the ``k`` largest predictions; labels (batch,) or (batch, 1)."""
    y_true, y_pred = losses._as_tensors(y_true, y_pred, true_dtype=torch.long)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    return _in_top_k(y_true, y_pred, k).reshape(y_true.shape)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """Share of samples whose one-hot target is among the ``k`` (default 5) largest predictions."""

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        super().__init__(top_k_categorical_accuracy, name=name, k=_check_top_k(k, "TopKCategoricalAccuracy"))


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """Share of samples whose integer label is among the ``k`` (default 5) largest predictions."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy"):
        super().__init__(sparse_top_k_categorical_accuracy, name=name,
                         k=_check_top_k(k, "SparseTopKCategoricalAccuracy"))


def cosine_similarity(y_true, y_pred, axis: int = -1) -> torch.Tensor:
    """Cosine of the angle between target and prediction vectors (the loss's value, negated)."""
    return -losses.cosine_similarity(y_true, y_pred, axis=axis)


class CosineSimilarity(MeanMetricWrapper):
    """Mean cosine similarity between targets and predictions along ``axis``: 1 when aligned."""

    def __init__(self, name="cosine_similarity", axis=-1):
        super().__init__(cosine_similarity, name=name, axis=int(axis))


def _two_dimensional(y_true, y_pred, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    y_true, y_pred = losses._as_tensors(y_true, y_pred)
    if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_true = y_true.unsqueeze(1)
    if y_pred.ndim != 2 or y_true.shape != y_pred.shape:
        raise DataError(
            f"{where} expects y_true and y_pred of one shape (batch_size, output_dim), received "
            f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}. For class labels pass one-hot targets "
            "(trainwell.utils.to_categorical)."
        )
    return y_true.float(), y_pred.float()


def _per_row_weight(sample_weight, y: torch.Tensor) -> torch.Tensor:
    if sample_weight is None:
        return torch.ones((y.shape[0], 1), device=y.device)
    return torch.as_tensor(sample_weight, dtype=torch.float32, device=y.device).reshape(-1, 1)


class FBetaScore(Metric):
    """F-beta score per class, or averaged: ``(1 + b**2) * p * r / (b**2 * p + r)``.

    A prediction counts as positive when above ``threshold``; with ``threshold=None`` only each
    row's largest prediction does (Keras's default). The counts accumulate per class.

    Args:
        average: None (one score per class), ``'micro'`` (counts pooled over classes),
            ``'macro'`` (mean of the class scores) or ``'weighted'`` (mean weighted by each class's
            number of true instances).
        beta: the weight of recall against precision, a positive number. Defaults to 1.0.
        threshold: a number in [0, 1], or None (argmax). Defaults to None.
        name: defaults to ``'fbeta_score'``.

    Example:
        >>> m = FBetaScore(beta=2.0, threshold=0.5)
        >>> m.update_state(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.9, 0.8], [0.2, 0.6]]))
        >>> [round(v, 4) for v in m.result().tolist()]
        [0.5556, 0.8333]
    """

    AVERAGES = (None, "micro", "macro", "weighted")

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score"):
        super().__init__(name=name)
        if average not in self.AVERAGES:
            raise unknown_name("average", average, ["micro", "macro", "weighted"], argument="average")
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not beta > 0:
            raise ConfigError(f"{type(self).__name__}: `beta` expects a positive number, received "
                              f"{describe(beta)}. Pass for example beta=1.0.")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                                      or not 0 <= threshold <= 1):
            raise ConfigError(f"{type(self).__name__}: `threshold` expects None or a number in [0, 1], "
                              "received "
                              f"{describe(threshold)}. Pass for example threshold=0.5.")
        self.average, self.beta = average, float(beta)
        self.threshold = None if threshold is None else float(threshold)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        with torch.no_grad():
            y_true, y_pred = _two_dimensional(y_true, y_pred, type(self).__name__)
            if self.threshold is None:
                # Only the row maximum is positive; an all-zero row predicts nothing (Keras's |x| > 1e-9).
                predicted = (y_pred >= y_pred.amax(dim=-1, keepdim=True)) & (y_pred.abs() > 1e-9)
            else:
                predicted = y_pred > self.threshold
            predicted = predicted.float()
            weight = _per_row_weight(sample_weight, y_true)
            axis = None if self.average == "micro" else 0

            def total(values):
                values = values * weight
                return values.sum() if axis is None else values.sum(dim=0)

            self._add("tp", total(predicted * y_true), y_pred.device)
            self._add("fp", total(predicted * (1 - y_true)), y_pred.device)
            self._add("fn", total((1 - predicted) * y_true), y_pred.device)
            self._add("support", total(y_true), y_pred.device)

    def result(self) -> torch.Tensor:
        eps = losses.EPSILON
        tp, fp, fn = self._get("tp"), self._get("fp"), self._get("fn")
        precision, recall = tp / (tp + fp + eps), tp / (tp + fn + eps)
        b2 = self.beta**2
        score = (1 + b2) * precision * recall / (b2 * precision + recall + eps)
        if self.average == "weighted":
            support = self._get("support")
            return (score * support / (support.sum() + eps)).sum()
        if self.average is not None:
            return score.mean()
        return score

    def get_config(self) -> dict:
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """F1 score, ``2 * p * r / (p + r)``: ``FBetaScore`` with ``beta=1``; same arguments otherwise."""

    def __init__(self, average=None, threshold=None, name="f1_score"):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["beta"]
        return config


class R2Score(Metric):
    """Coefficient of determination ``1 - SS_res / SS_tot`` per output column, accumulated exactly.

    Args:
        class_aggregation: ``'uniform_average'`` (mean over columns, default),
            ``'variance_weighted_average'`` (weighted by each column's total variance) or None
            (one score per column).
        num_regressors: if > 0, the adjusted R2 ``1 - (1 - R2) (n - 1) / (n - p - 1)`` with
            ``n`` the number of target values seen (Keras counts every entry).
        name: defaults to ``'r2_score'``.

    Example:
        >>> m = R2Score()
        >>> m.update_state(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [2.0], [4.0]]))
        >>> float(m.result())
        0.5
    """

    AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score"):
        super().__init__(name=name)
        if class_aggregation not in self.AGGREGATIONS:
            raise unknown_name("class_aggregation", class_aggregation, ["uniform_average",
                               "variance_weighted_average"], argument="class_aggregation")
        integral = isinstance(num_regressors, numbers.Integral) and not isinstance(num_regressors, bool)
        if not integral or num_regressors < 0:
            raise ConfigError(f"R2Score: `num_regressors` expects an integer >= 0, received "
                              f"{describe(num_regressors)}.")
        self.class_aggregation, self.num_regressors = class_aggregation, int(num_regressors)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        with torch.no_grad():
            y_true, y_pred = _align(y_true, y_pred)
            y_true, y_pred = _two_dimensional(y_true, y_pred, "R2Score")
            weight = _per_row_weight(sample_weight, y_true).expand_as(y_true)
            device = y_pred.device
            self._add("sum", (y_true * weight).sum(dim=0), device)
            self._add("squared_sum", (y_true * y_true * weight).sum(dim=0), device)
            self._add("residual", ((y_true - y_pred).square() * weight).sum(dim=0), device)
            self._add("count", weight.sum(dim=0), device)
            self._add("entries", y_true.numel(), device)

    def result(self) -> torch.Tensor:
        total_sum, count = self._get("sum"), self._get("count")
        total = self._get("squared_sum") - total_sum * (total_sum / count)
        raw = 1 - self._get("residual") / total
        raw = torch.where(torch.isinf(raw), torch.zeros_like(raw), raw)  # constant targets: 0, as Keras
        if self.class_aggregation == "uniform_average":
            score = raw.mean()
        elif self.class_aggregation == "variance_weighted_average":
            score = (total * raw).sum() / total.sum()
        else:
            score = raw
        if self.num_regressors:
            n, p = self._get("entries"), self.num_regressors
            # Keras falls back to the plain score (with a warning) when n - p - 1 <= 0.
            adjusted = 1 - (1 - score) * (n - 1) / (n - p - 1)
            score = torch.where(n - p - 1 > 0, adjusted, score)
        return score

    def get_config(self) -> dict:
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


# ---------------------------------------------------------------------------------------------
# Resolution and serialisation
# ---------------------------------------------------------------------------------------------

_CLASSES = {cls.__name__: cls for cls in (
    Mean, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, MeanAbsoluteError,
    MeanSquaredError, RootMeanSquaredError, MeanAbsolutePercentageError, AUC, Precision, Recall,
    BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy, TruePositives, FalsePositives,
    TrueNegatives, FalseNegatives, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, CosineSimilarity,
    FBetaScore, F1Score, R2Score,
)}
_NAMES = {
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "MSE": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "rmse": RootMeanSquaredError, "root_mean_squared_error": RootMeanSquaredError,
    "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "auc": AUC, "precision": Precision, "recall": Recall,
    "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "cosine_similarity": CosineSimilarity, "f1_score": F1Score, "fbeta_score": FBetaScore,
    "r2_score": R2Score,
    "true_positives": TruePositives, "false_positives": FalsePositives, "true_negatives": TrueNegatives,
    "false_negatives": FalseNegatives,
}
# Functions passed as metrics resolve to their class so they stay serialisable.
_BY_FUNCTION = {
    binary_accuracy: BinaryAccuracy, categorical_accuracy: CategoricalAccuracy,
    sparse_categorical_accuracy: SparseCategoricalAccuracy,
    losses.mean_absolute_error: MeanAbsoluteError, losses.mean_squared_error: MeanSquaredError,
    losses.mean_absolute_percentage_error: MeanAbsolutePercentageError,
    losses.binary_crossentropy: BinaryCrossentropy, losses.categorical_crossentropy: CategoricalCrossentropy,
    losses.sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    top_k_categorical_accuracy: TopKCategoricalAccuracy,
    sparse_top_k_categorical_accuracy: SparseTopKCategoricalAccuracy, cosine_similarity: CosineSimilarity,
}


def _units(output_shape) -> int | None:
    if output_shape is None or isinstance(output_shape, numbers.Integral):
        return output_shape
    output_shape = tuple(output_shape)
    return output_shape[-1] if output_shape else None


def accuracy_class(loss=None, output_shape=None) -> type:
    """The accuracy class that ``'accuracy'`` means for a loss and an output shape.

    ``BinaryAccuracy`` for binary_crossentropy or a single output unit;
    ``SparseCategoricalAccuracy`` for sparse_categorical_crossentropy; otherwise
    ``CategoricalAccuracy``.

    Example:
        >>> accuracy_class("sparse_categorical_crossentropy", (None, 10)).__name__
        'SparseCategoricalAccuracy'
    """
    kind = losses.kind(loss) if loss is not None else None
    if kind == "binary" or _units(output_shape) == 1:
        return BinaryAccuracy
    if kind == "sparse":
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


def names() -> list[str]:
    """Every metric name and class name ``get`` accepts, sorted.

    Example:
        >>> "auc" in names() and "AUC" in names()
        True
    """
    return sorted({*_NAMES, *_CLASSES, "accuracy", "acc"})


def get(identifier, loss=None, output_shape=None) -> Metric | None:
    """Resolve a metric identifier to a ``Metric`` instance.

    Args:
        identifier: a name or alias (``'accuracy'``, ``'mae'``, ``'auc'``), a class name, a config
            dict ``{"class_name": ..., "config": {...}}``, a ``Metric`` instance or class, or a
            function ``fn(y_true, y_pred)`` returning per-sample values (averaged by
            ``MeanMetricWrapper``). A string becomes the metric's ``name`` (its log key).
        loss: the compiled loss (name, config or ``Loss``), used to resolve ``'accuracy'``.
        output_shape: the model's output shape or number of units, used the same way.

    Returns:
        A ``Metric``, or None for None.

    Raises:
        ConfigError: for an unknown name (the message suggests the closest).
        ConfigTypeError: for anything else.

    Example:
        >>> get("acc", loss="categorical_crossentropy")
        CategoricalAccuracy(name='acc')
    """
    if identifier is None or isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return accuracy_class(loss, output_shape)(name=identifier)
        cls = _NAMES.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise unknown_name("metric", identifier, names(), "metrics", "trainwell.metrics.names()")
        return cls(name=identifier)
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise unknown_name("metric", identifier.get("class_name"), _CLASSES, "metrics",
                               "trainwell.metrics.names()")
        return cls.from_config(dict(identifier.get("config") or {}))
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        cls = _BY_FUNCTION.get(identifier)
        return cls() if cls is not None else MeanMetricWrapper(identifier)
    raise ConfigTypeError(
        f"`metrics` expects metric names (e.g. 'accuracy'), config dicts, Metric instances or "
        f"functions fn(y_true, y_pred), received {describe(identifier)}."
    )


def serialize(metric) -> str | dict:
    """``{"class_name": ..., "config": {...}}`` for a built-in metric; a valid name string is
    returned unchanged, since ``'accuracy'`` can only be resolved next to its loss.

    Raises:
        ConfigError: for a custom function or ``Metric`` subclass, which a model file cannot hold.

    Example:
        >>> serialize(AUC(name="auc"))["config"]["num_thresholds"]
        200
    """
    if isinstance(metric, str):
        get(metric)  # validates the name
        return metric
    metric = get(metric)
    if _CLASSES.get(type(metric).__name__) is not type(metric):
        raise ConfigError(
            f"metric {metric.name!r} is custom Python code and cannot be stored in a model file (model "
            "files hold no code). Use built-in metric names to save the whole model, or rebuild the "
            "model in code and load only its weights."
        )
    return {"class_name": type(metric).__name__, "config": metric.get_config()}
