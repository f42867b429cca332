"""Keras losses on PyTorch: per-sample functions, ``Loss`` objects, ``get`` and ``serialize``.

Each per-sample function takes ``(y_true, y_pred)`` of shape ``(batch, ..., d)`` and returns
losses of shape ``(batch, ...)``, reduced over the last axis as Keras does (a mean for the
element-wise losses, a sum over the class axis for the categorical ones). A ``Loss`` object
weights those values and reduces them to one number.

Keras-vs-torch differences mapped here, each once:

- Probabilities are clipped to ``[1e-7, 1 - 1e-7]`` (Keras's ``epsilon``) before a log, so a
  prediction of exactly 0 or 1 gives a large finite loss, never ``inf``.
- ``categorical_crossentropy`` takes probabilities (torch's ``cross_entropy`` takes logits) and
  first rescales them to sum to 1, as Keras does.
- ``from_logits=True`` switches to ``log_softmax`` / ``binary_cross_entropy_with_logits``:
  stable and unclipped. The training loop uses ``Loss.with_logits()`` to fuse a final
  softmax/sigmoid into the loss.

Example:
    >>> import torch
    >>> loss = get("mse")
    >>> float(loss(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [1.0]])))
    0.5
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainwell._errors import ConfigError, ConfigTypeError, DataError, check_fraction, describe, unknown_name

EPSILON = 1e-7  # Keras's backend.epsilon(): the clip bound for probabilities.
REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight", "sum", "none")


# ---------------------------------------------------------------------------------------------
# Input preparation
# ---------------------------------------------------------------------------------------------


def _as_tensors(y_true, y_pred, true_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors on y_pred's device; y_pred floating (float16/bfloat16 raised to float32)."""
    y_pred = torch.as_tensor(y_pred)
    # Why float32 for half inputs: Keras computes losses in float32, and 1 - 1e-7 rounds to
    # 1.0 in float16, which would turn the clipped log into -inf.
    if not y_pred.is_floating_point() or y_pred.dtype in (torch.float16, torch.bfloat16):
        y_pred = y_pred.float()
    y_true = torch.as_tensor(y_true, device=y_pred.device)
    return y_true.to(true_dtype or y_pred.dtype), y_pred


def _broadcast_shape(a, b) -> tuple[int, ...] | None:
    """The broadcast of shapes ``a`` and ``b`` (numpy's rule), or None when they do not broadcast.

    Not ``torch.broadcast_shapes``: it imports sympy on first use (seconds at start-up) and costs
    more per call, and this runs on every batch.
    """
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _align(y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors with the same rank for an element-wise loss (Keras's squeeze-or-expand).

    ``(batch,)`` against ``(batch, 1)`` expands the 1-D side. When both are 1-D each entry is
    taken as one sample of one output, so the per-sample result keeps shape ``(batch,)``
    (Keras would reduce a 1-D pair to a scalar; the unweighted loss is the same).

    Raises:
        DataError: if the shapes cannot be broadcast together.
    """
    y_true, y_pred = _as_tensors(y_true, y_pred)
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_pred = y_pred.unsqueeze(-1) if y_pred.ndim == 1 else y_pred
        y_true = y_true if y_pred.ndim == y_true.ndim else y_true.squeeze(-1)
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_true = y_true.unsqueeze(-1) if y_true.ndim == 1 else y_true
        y_pred = y_pred if y_pred.ndim == y_true.ndim else y_pred.squeeze(-1)
    if y_true.ndim <= 1 and y_pred.ndim <= 1:
        y_true, y_pred = y_true.reshape(-1, 1), y_pred.reshape(-1, 1)
    if _broadcast_shape(y_true.shape, y_pred.shape) is None:
        raise DataError(
            f"loss: y_true of shape {tuple(y_true.shape)} does not match y_pred of shape "
            f"{tuple(y_pred.shape)}. Give targets one column per output unit (for one-hot "
            "targets use categorical_crossentropy; for integer labels sparse_categorical_crossentropy)."
        ) from None
    return y_true, y_pred


def _clip(p: torch.Tensor) -> torch.Tensor:
    return p.clamp(EPSILON, 1.0 - EPSILON)


# ---------------------------------------------------------------------------------------------
# Per-sample functions, shape (batch, ..., d) -> (batch, ...)
# ---------------------------------------------------------------------------------------------


def mean_squared_error(y_true, y_pred) -> torch.Tensor:
    """``mean((y_pred - y_true) ** 2, axis=-1)``."""
    y_true, y_pred = _align(y_true, y_pred)
    return (y_pred - y_true).square().mean(dim=-1)


def mean_absolute_error(y_true, y_pred) -> torch.Tensor:
    """``mean(|y_pred - y_true|, axis=-1)``."""
    y_true, y_pred = _align(y_true, y_pred)
    return (y_pred - y_true).abs().mean(dim=-1)


def mean_absolute_percentage_error(y_true, y_pred) -> torch.Tensor:
    """``100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7), axis=-1)``."""
    y_true, y_pred = _align(y_true, y_pred)
    return 100.0 * ((y_true - y_pred) / y_true.abs().clamp(min=EPSILON)).abs().mean(dim=-1)


def mean_squared_logarithmic_error(y_true, y_pred) -> torch.Tensor:
    """``mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1)) ** 2, axis=-1)``."""
    y_true, y_pred = _align(y_true, y_pred)
    diff = torch.log1p(y_pred.clamp(min=EPSILON)) - torch.log1p(y_true.clamp(min=EPSILON))
    return diff.square().mean(dim=-1)


def huber(y_true, y_pred, delta: float = 1.0) -> torch.Tensor:
    """Mean over the last axis of ``0.5 x**2`` if ``|x| <= delta`` else ``delta (|x| - delta / 2)``,
    with ``x = y_pred - y_true``."""
    y_true, y_pred = _align(y_true, y_pred)
    y_true, y_pred = torch.broadcast_tensors(y_true, y_pred)
    return F.huber_loss(y_pred, y_true, reduction="none", delta=float(delta)).mean(dim=-1)


def log_cosh(y_true, y_pred) -> torch.Tensor:
    """``mean(log(cosh(y_pred - y_true)), axis=-1)``, computed as ``x + softplus(-2x) - log 2``
    so that large errors do not overflow ``cosh``."""
    y_true, y_pred = _align(y_true, y_pred)
    x = y_pred - y_true
    return (x + F.softplus(-2.0 * x) - math.log(2.0)).mean(dim=-1)


def binary_crossentropy(
    y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean over the last axis of ``-(y log p + (1 - y) log(1 - p))``.

    Args:
        y_true: targets in [0, 1], shape (batch, d) or (batch,).
        y_pred: probabilities (clipped to [1e-7, 1 - 1e-7]) or, with ``from_logits``, logits.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: squeezes targets towards 0.5: ``y * (1 - s) + 0.5 * s``.

    Returns:
        Tensor of shape (batch,).
    """
    y_true, y_pred = _align(y_true, y_pred)
    y_true, y_pred = torch.broadcast_tensors(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none").mean(dim=-1)
    return F.binary_cross_entropy(_clip(y_pred), y_true, reduction="none").mean(dim=-1)


def categorical_crossentropy(
    y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0
) -> torch.Tensor:
    """``-sum(y_true * log(p), axis=-1)`` over one-hot (or soft) targets.

    Without ``from_logits``, ``y_pred`` is first divided by its sum over the last axis (Keras
    does this, so unnormalised scores still give a distribution), then clipped.

    Args:
        y_true: one-hot targets of shape (batch, num_classes).
        y_pred: probabilities or, with ``from_logits``, logits; shape (batch, num_classes).
        from_logits: whether ``y_pred`` holds logits (uses ``log_softmax``).
        label_smoothing: ``y * (1 - s) + s / num_classes``.

    Returns:
        Tensor of shape (batch,).
    """
    y_true, y_pred = _as_tensors(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]
    if from_logits:
        log_prob = F.log_softmax(y_pred, dim=-1)
    else:
        log_prob = torch.log(_clip(y_pred / y_pred.sum(dim=-1, keepdim=True)))
    return -(y_true * log_prob).sum(dim=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False) -> torch.Tensor:
    """``-log(p[label])`` for integer class labels.

    Args:
        y_true: class ids of shape (batch,) or (batch, 1); floats holding whole numbers are cast.
        y_pred: probabilities (rescaled to sum to 1, then clipped) or logits, shape (batch, C).
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Tensor of shape (batch,).

    Raises:
        DataError: if the label shape does not match ``y_pred`` without its class axis.
    """
    y_true, y_pred = _as_tensors(y_true, y_pred, true_dtype=torch.long)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    if y_true.shape != y_pred.shape[:-1]:
        raise DataError(
            f"sparse_categorical_crossentropy: y_true of shape {tuple(y_true.shape)} should hold one "
            f"class id per sample for y_pred of shape {tuple(y_pred.shape)}. For one-hot targets "
            "use loss='categorical_crossentropy'."
        )
    index = y_true.unsqueeze(-1)
    if from_logits:
        return -F.log_softmax(y_pred, dim=-1).gather(-1, index).squeeze(-1)
    # Only the label's probability enters the loss; normalising it alone equals Keras's
    # normalise-the-vector-then-one-hot and is cheaper.
    picked = y_pred.gather(-1, index).squeeze(-1) / y_pred.sum(dim=-1)
    return -torch.log(_clip(picked))


def hinge(y_true, y_pred) -> torch.Tensor:
    """``mean(max(1 - y_true * y_pred, 0), axis=-1)``; 0/1 targets are first mapped to -1/1."""
    y_true, y_pred = _align(y_true, y_pred)
    return (1.0 - _hinge_labels(y_true) * y_pred).clamp(min=0.0).mean(dim=-1)


def _hinge_labels(y_true: torch.Tensor) -> torch.Tensor:
    # Keras maps {0, 1} labels to {-1, 1} when every label is 0 or 1. torch.where on a 0-d
    # tensor keeps that decision on the device (no host sync).
    is_binary = ((y_true == 0) | (y_true == 1)).all()
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)


def kl_divergence(y_true, y_pred) -> torch.Tensor:
    """``sum(t * log(t / p), axis=-1)`` with t, p clipped to [1e-7, 1]."""
    y_true, y_pred = _as_tensors(y_true, y_pred)
    y_true, y_pred = y_true.clamp(EPSILON, 1.0), y_pred.clamp(EPSILON, 1.0)
    return (y_true * torch.log(y_true / y_pred)).sum(dim=-1)


def poisson(y_true, y_pred) -> torch.Tensor:
    """``mean(y_pred - y_true * log(y_pred + 1e-7), axis=-1)``."""
    y_true, y_pred = _align(y_true, y_pred)
    return (y_pred - y_true * torch.log(y_pred + EPSILON)).mean(dim=-1)


def squared_hinge(y_true, y_pred) -> torch.Tensor:
    """``mean(max(1 - y_true * y_pred, 0) ** 2, axis=-1)``; 0/1 targets are first mapped to -1/1."""
    y_true, y_pred = _align(y_true, y_pred)
    return (1.0 - _hinge_labels(y_true) * y_pred).clamp(min=0.0).square().mean(dim=-1)


def categorical_hinge(y_true, y_pred) -> torch.Tensor:
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)`` over the last axis (one-hot)."""
    y_true, y_pred = _as_tensors(y_true, y_pred)
    positive = (y_true * y_pred).sum(dim=-1)
    negative = ((1.0 - y_true) * y_pred).amax(dim=-1)
    return (negative - positive + 1.0).clamp(min=0.0)


def _l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    # Keras's normalize: x / sqrt(max(sum(x**2), 1e-12)), so a zero vector stays zero.
    return x * torch.rsqrt(x.square().sum(dim=dim, keepdim=True).clamp(min=1e-12))


def cosine_similarity(y_true, y_pred, axis: int = -1) -> torch.Tensor:
    """``-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis)``: -1 for parallel vectors, 0 for
    orthogonal ones (Keras's loss sign: minimising it aligns the vectors)."""
    y_true, y_pred = _align(y_true, y_pred)
    return -(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis)).sum(dim=axis)


def binary_focal_crossentropy(
    y_true, y_pred, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
    from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
) -> torch.Tensor:
    """Binary cross-entropy scaled by ``(1 - p_t) ** gamma`` (Lin et al., https://arxiv.org/abs/1708.02002).

    ``p_t = y * p + (1 - y) * (1 - p)`` uses the unclipped probability, the cross-entropy the
    clipped one, as in Keras; with ``apply_class_balancing`` each term is also weighted by
    ``alpha`` (positives) or ``1 - alpha`` (negatives). Mean over ``axis``.
    """
    y_true, y_pred = _align(y_true, y_pred)
    y_true, y_pred = torch.broadcast_tensors(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = torch.sigmoid(y_pred)
    bce = F.binary_cross_entropy(_clip(y_pred), y_true, reduction="none")
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal = (1.0 - p_t).pow(gamma) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal
    return focal.mean(dim=axis)


def categorical_focal_crossentropy(
    y_true, y_pred, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
    label_smoothing: float = 0.0, axis: int = -1,
) -> torch.Tensor:
    """``sum(-alpha * (1 - p) ** gamma * y_true * log(p), axis)`` over one-hot targets, with ``p``
    rescaled to sum to 1 and clipped as in ``categorical_crossentropy``."""
    y_true, y_pred = _as_tensors(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]
    if from_logits:
        y_pred = torch.softmax(y_pred, dim=axis)
    p = _clip(y_pred / y_pred.sum(dim=axis, keepdim=True))
    return (alpha * (1.0 - p).pow(gamma) * -(y_true * torch.log(p))).sum(dim=axis)


# ---------------------------------------------------------------------------------------------
# Loss objects
# ---------------------------------------------------------------------------------------------


def _check_reduction(reduction):
    if reduction is None:
        return "none"
    if reduction not in REDUCTIONS:
        raise unknown_name("reduction", reduction, REDUCTIONS, argument="reduction")
    return reduction


def _weigh(values: torch.Tensor, sample_weight) -> tuple[torch.Tensor, torch.Tensor]:
    """``values * sample_weight`` with the weight squeezed or expanded to the values' rank."""
    weight = torch.as_tensor(sample_weight, dtype=values.dtype, device=values.device)
    if weight.ndim == values.ndim + 1 and weight.shape[-1] == 1:
        weight = weight.squeeze(-1)
    while weight.ndim < values.ndim:
        weight = weight.unsqueeze(-1)
    if _broadcast_shape(weight.shape, values.shape) != tuple(values.shape):
        raise DataError(
            f"loss: `sample_weight` of shape {tuple(weight.shape)} does not fit per-sample losses "
            f"of shape {tuple(values.shape)}. Pass one weight per sample, shape (batch,)."
        )
    return values * weight, weight.expand_as(values)


def _reduce(values: torch.Tensor, reduction: str, weight: torch.Tensor | None) -> torch.Tensor:
    if reduction == "none" or values.ndim == 0:
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weight is not None:
        divisor = weight.sum()
        # divide_no_nan: all-zero weights give 0, not nan, with no host sync.
        return torch.where(divisor == 0, torch.zeros_like(total), total / divisor)
    # 'sum_over_batch_size' / 'mean': divide by the number of loss values, weighted or not.
    return total / values.numel() if values.numel() else total


def _snake_case(class_name: str) -> str:
    """``'MyLoss'`` -> ``'my_loss'``, Keras's default name for a subclass without one."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


class Loss:
    """Base class: ``loss(y_true, y_pred, sample_weight=None)`` gives a 0-d tensor.

    Subclasses implement ``call(y_true, y_pred)`` returning per-sample losses. ``__call__``
    multiplies them by ``sample_weight`` (shape (batch,)) and reduces them:
    ``'sum_over_batch_size'`` (default; alias ``'mean'``) = weighted sum / number of values,
    ``'mean_with_sample_weight'`` = weighted sum / sum of weights, ``'sum'``, ``'none'``/None.

    Args:
        name: the loss's name.
        reduction: one of ``REDUCTIONS`` (or None, meaning ``'none'``).

    Example:
        >>> class Quartic(Loss):
        ...     def call(self, y_true, y_pred):
        ...         return ((y_pred - y_true) ** 4).mean(dim=-1)
        >>> float(Quartic()(torch.tensor([[0.0]]), torch.tensor([[2.0]])))
        16.0
    """

    fn: Callable | None = None

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size"):
        self.name = name or _snake_case(type(self).__name__)
        self.reduction = _check_reduction(reduction)

    @property
    def from_logits(self) -> bool:
        return False

    def call(self, y_true, y_pred) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred).")

    def __call__(self, y_true, y_pred, sample_weight=None) -> torch.Tensor:
        values = torch.as_tensor(self.call(y_true, y_pred))
        weight = None
        if sample_weight is not None:
            values, weight = _weigh(values, sample_weight)
        return _reduce(values, self.reduction, weight)

    def with_logits(self) -> Loss:
        """An equivalent loss that takes logits (only the three cross-entropies have one).

        Raises:
            ConfigError: for losses without a logits form.
        """
        raise ConfigError(
            f"loss {self.name!r} has no from_logits form; only binary_crossentropy, "
            "categorical_crossentropy and sparse_categorical_crossentropy do."
        )

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict) -> Loss:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __radd__(self, other):
        # Course code prints `"Loss function: " + model.loss`; model.loss is what compile was given
        # (as in Keras), and when that was a Loss object it joins as its name.
        if isinstance(other, str):
            return other + self.name
        return NotImplemented


class LossFunctionWrapper(Loss):
    """A ``Loss`` around a per-sample function ``fn(y_true, y_pred, **kwargs)``.

    Args:
        fn: the per-sample function; exposed as ``.fn``.
        reduction: see ``Loss``.
        name: defaults to ``fn.__name__``.
        **kwargs: passed to ``fn`` on each call (e.g. ``from_logits``).
    """

    def __init__(self, fn: Callable, reduction="sum_over_batch_size", name=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "loss"), reduction=reduction)
        self.fn = fn
        self._fn_kwargs = kwargs

    @property
    def from_logits(self) -> bool:
        return bool(self._fn_kwargs.get("from_logits", False))

    def call(self, y_true, y_pred) -> torch.Tensor:
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def with_logits(self) -> Loss:
        if "from_logits" not in self._fn_kwargs:
            return super().with_logits()
        if self.from_logits:
            return self
        return type(self).from_config({**self.get_config(), "from_logits": True})

    def get_config(self) -> dict:
        return {**super().get_config(), **self._fn_kwargs}


def _check_delta(delta) -> float:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
        raise ConfigError(
            f"Huber: `delta` expects a positive number, received {describe(delta)}. "
            "For example Huber(delta=1.0)."
        )
    return float(delta)


class MeanSquaredError(LossFunctionWrapper):
    """Mean of squared errors, ``mean((y_pred - y_true) ** 2)``.

    Example:
        >>> float(MeanSquaredError()(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])))
        0.5
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(mean_squared_error, reduction=reduction, name=name)


class MeanAbsoluteError(LossFunctionWrapper):
    """Mean of absolute errors, ``mean(|y_pred - y_true|)``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(mean_absolute_error, reduction=reduction, name=name)


class MeanAbsolutePercentageError(LossFunctionWrapper):
    """``100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_percentage_error"):
        super().__init__(mean_absolute_percentage_error, reduction=reduction, name=name)


class MeanSquaredLogarithmicError(LossFunctionWrapper):
    """Mean squared difference of ``log(1 + y)``; negative values are clipped to 1e-7 first."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_logarithmic_error"):
        super().__init__(mean_squared_logarithmic_error, reduction=reduction, name=name)


class Huber(LossFunctionWrapper):
    """Huber loss: quadratic for errors up to ``delta``, linear beyond.

    Args:
        delta: the error at which the loss turns linear (positive).
    """

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        super().__init__(huber, reduction=reduction, name=name, delta=_check_delta(delta))


class LogCosh(LossFunctionWrapper):
    """Mean of ``log(cosh(y_pred - y_true))``: about ``x**2 / 2`` near 0, ``|x| - log 2`` far out."""

    def __init__(self, reduction="sum_over_batch_size", name="log_cosh"):
        super().__init__(log_cosh, reduction=reduction, name=name)


class BinaryCrossentropy(LossFunctionWrapper):
    """Binary cross-entropy for 0/1 targets and one probability (or logit) per unit.

    Args:
        from_logits: whether predictions are logits (no final sigmoid).
        label_smoothing: in [0, 1]; targets become ``y * (1 - s) + 0.5 * s``.

    Example:
        >>> loss = BinaryCrossentropy()
        >>> round(float(loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]))), 4)
        0.6931
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="binary_crossentropy"):
        super().__init__(binary_crossentropy, reduction=reduction, name=name, from_logits=bool(from_logits),
                         label_smoothing=check_fraction(label_smoothing, "label_smoothing", allow_one=True))


class CategoricalCrossentropy(LossFunctionWrapper):
    """Cross-entropy for one-hot targets and a probability vector (or logits) per sample.

    Args:
        from_logits: whether predictions are logits (no final softmax).
        label_smoothing: in [0, 1]; targets become ``y * (1 - s) + s / num_classes``.
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="categorical_crossentropy"):
        super().__init__(categorical_crossentropy, reduction=reduction, name=name,
                         from_logits=bool(from_logits),
                         label_smoothing=check_fraction(label_smoothing, "label_smoothing", allow_one=True))


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """Cross-entropy for integer class ids and a probability vector (or logits) per sample.

    Args:
        from_logits: whether predictions are logits (no final softmax).
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy"):
        super().__init__(sparse_categorical_crossentropy, reduction=reduction, name=name,
                         from_logits=bool(from_logits))


class Hinge(LossFunctionWrapper):
    """Hinge loss ``max(1 - y_true * y_pred, 0)`` for -1/1 targets (0/1 targets are mapped)."""

    def __init__(self, reduction="sum_over_batch_size", name="hinge"):
        super().__init__(hinge, reduction=reduction, name=name)


class KLDivergence(LossFunctionWrapper):
    """Kullback-Leibler divergence ``sum(y_true * log(y_true / y_pred))``."""

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence"):
        super().__init__(kl_divergence, reduction=reduction, name=name)


class Poisson(LossFunctionWrapper):
    """Poisson loss ``mean(y_pred - y_true * log(y_pred + 1e-7))`` for count targets."""

    def __init__(self, reduction="sum_over_batch_size", name="poisson"):
        super().__init__(poisson, reduction=reduction, name=name)


class SquaredHinge(LossFunctionWrapper):
    """Squared hinge loss ``max(1 - y_true * y_pred, 0) ** 2`` for -1/1 targets (0/1 are mapped)."""

    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge"):
        super().__init__(squared_hinge, reduction=reduction, name=name)


class CategoricalHinge(LossFunctionWrapper):
    """Categorical hinge loss for one-hot targets: ``max(max_wrong - true + 1, 0)``."""

    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge"):
        super().__init__(categorical_hinge, reduction=reduction, name=name)


class CosineSimilarity(LossFunctionWrapper):
    """Negative cosine similarity between targets and predictions along ``axis`` (in [-1, 1]).

    Example:
        >>> float(CosineSimilarity()(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])))
        -1.0
    """

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity"):
        super().__init__(cosine_similarity, reduction=reduction, name=name, axis=int(axis))


def _check_focal(gamma, alpha, where: str) -> tuple[float, float]:
    for argument, value in (("gamma", gamma), ("alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ConfigError(
                f"{where}: `{argument}` expects a number >= 0, received {describe(value)}. "
                f"Keras's default is {argument}={2.0 if argument == 'gamma' else 0.25}."
            )
    return float(gamma), float(alpha)


class BinaryFocalCrossentropy(LossFunctionWrapper):
    """Focal binary cross-entropy: easy examples count less (``gamma``), see ``binary_focal_crossentropy``.

    Args:
        apply_class_balancing: weight positives by ``alpha`` and negatives by ``1 - alpha``.
        alpha: the positive-class weight when balancing. Defaults to 0.25.
        gamma: the focusing exponent, >= 0 (0 gives plain binary cross-entropy). Defaults to 2.0.
        from_logits, label_smoothing: as in ``BinaryCrossentropy``.
        axis: the axis to average over. Defaults to -1.
    """

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                 label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size", name="binary_focal_crossentropy"):
        gamma, alpha = _check_focal(gamma, alpha, "BinaryFocalCrossentropy")
        super().__init__(binary_focal_crossentropy, reduction=reduction, name=name,
                         apply_class_balancing=bool(apply_class_balancing), alpha=alpha, gamma=gamma,
                         from_logits=bool(from_logits),
                         label_smoothing=check_fraction(label_smoothing, "label_smoothing", allow_one=True),
                         axis=int(axis))


class CategoricalFocalCrossentropy(LossFunctionWrapper):
    """Focal categorical cross-entropy for one-hot targets, see ``categorical_focal_crossentropy``.

    Args:
        alpha: weight of every class term. Defaults to 0.25.
        gamma: the focusing exponent, >= 0. Defaults to 2.0.
        from_logits, label_smoothing: as in ``CategoricalCrossentropy``.
        axis: the class axis. Defaults to -1.
    """

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal_crossentropy"):
        gamma, alpha = _check_focal(gamma, alpha, "CategoricalFocalCrossentropy")
        super().__init__(categorical_focal_crossentropy, reduction=reduction, name=name, alpha=alpha,
                         gamma=gamma,
                         from_logits=bool(from_logits),
                         label_smoothing=check_fraction(label_smoothing, "label_smoothing", allow_one=True),
                         axis=int(axis))


class Crossentropy(Loss):
    """``loss='crossentropy'`` (or ``'ce'``): Keras picks the cross-entropy from the data's shapes.

    With one output unit it is binary; with integer labels (targets of rank below the output's,
    or one column against several units) sparse categorical; otherwise categorical. The model
    calls ``resolve`` when it first sees targets and trains with the loss it returns.
    """

    def __init__(self, name="crossentropy", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def resolve(self, y_shape, output_shape) -> Loss:
        """The concrete cross-entropy for targets of ``y_shape`` and outputs of ``output_shape``."""
        y_shape, output_shape = tuple(y_shape), tuple(output_shape)
        if output_shape[-1] == 1:
            cls = BinaryCrossentropy
        elif len(y_shape) < len(output_shape) or (y_shape[-1] == 1 and output_shape[-1] > 1):
            cls = SparseCategoricalCrossentropy
        else:
            cls = CategoricalCrossentropy
        return cls(reduction=self.reduction)

    def call(self, y_true, y_pred) -> torch.Tensor:
        y_true, y_pred = torch.as_tensor(y_true), torch.as_tensor(y_pred)
        return self.resolve(y_true.shape, y_pred.shape).call(y_true, y_pred)


_CLASSES = {cls.__name__: cls for cls in (
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError,
    Huber, LogCosh, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    Hinge, KLDivergence, Poisson, SquaredHinge, CategoricalHinge, CosineSimilarity, BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy, Crossentropy,
)}
_NAMES = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError, "mape": MeanAbsolutePercentageError,
    "MAPE": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError, "msle": MeanSquaredLogarithmicError,
    "MSLE": MeanSquaredLogarithmicError,
    "huber": Huber, "huber_loss": Huber, "log_cosh": LogCosh, "logcosh": LogCosh,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "hinge": Hinge, "kl_divergence": KLDivergence, "kld": KLDivergence, "KLD": KLDivergence,
    "poisson": Poisson, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "cosine_similarity": CosineSimilarity, "binary_focal_crossentropy": BinaryFocalCrossentropy,
    "categorical_focal_crossentropy": CategoricalFocalCrossentropy,
    # Keras resolves these from the shapes of the targets and outputs (Crossentropy.resolve).
    "crossentropy": Crossentropy, "ce": Crossentropy,
}
# A per-sample function passed as a loss resolves to its class, so it stays serialisable.
_BY_FUNCTION = {
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError, huber: Huber, log_cosh: LogCosh,
    binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy, hinge: Hinge,
    kl_divergence: KLDivergence, poisson: Poisson, squared_hinge: SquaredHinge,
    categorical_hinge: CategoricalHinge, cosine_similarity: CosineSimilarity,
    binary_focal_crossentropy: BinaryFocalCrossentropy,
    categorical_focal_crossentropy: CategoricalFocalCrossentropy,
}
_KINDS = {BinaryCrossentropy: "binary", CategoricalCrossentropy: "categorical",
          SparseCategoricalCrossentropy: "sparse", BinaryFocalCrossentropy: "binary",
          CategoricalFocalCrossentropy: "categorical"}


def names() -> list[str]:
    """Every loss name, alias and class name ``get`` accepts, sorted.

    Example:
        >>> "mse" in names() and "MeanSquaredError" in names()
        True
    """
    return sorted({*_NAMES, *_CLASSES})


def get(identifier, argument: str = "loss") -> Loss | None:
    """Resolve a loss identifier to a ``Loss`` instance.

    Args:
        identifier: a name or alias (``'mse'``, ``'binary_crossentropy'``), a class name
            (``'MeanSquaredError'``), a config dict ``{"class_name": ..., "config": {...}}``, a
            ``Loss`` instance or class, or a callable ``fn(y_true, y_pred)`` (wrapped in a
            ``LossFunctionWrapper`` named after it). None gives None.
        argument: the argument name used in error messages.

    Returns:
        A ``Loss`` instance, or None.

    Raises:
        ConfigError: for an unknown name or class name (the message suggests the closest).
        ConfigTypeError: for anything else.

    Example:
        >>> get("mse").name
        'mean_squared_error'
    """
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier) or _CLASSES.get(identifier) or _NAMES.get(identifier.lower())
        if cls is None:
            raise unknown_name("loss", identifier, names(), argument, "trainwell.losses.names()")
        return cls()
    if isinstance(identifier, dict):
        return _from_dict(identifier, argument)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        cls = _BY_FUNCTION.get(identifier)
        return cls() if cls is not None else LossFunctionWrapper(identifier)
    raise ConfigTypeError(
        f"`{argument}` expects a loss name (e.g. 'mse'), a config dict, a Loss instance or a function "
        f"fn(y_true, y_pred), received {describe(identifier)}."
    )


def _from_dict(config: dict, argument: str) -> Loss:
    if "class_name" not in config:
        raise ConfigError(
            f"`{argument}`: a loss config dict needs a 'class_name' key, received keys {sorted(config)}. "
            'Use the form {"class_name": "MeanSquaredError", "config": {}}.'
        )
    cls = _CLASSES.get(config["class_name"]) or _NAMES.get(config["class_name"])
    if cls is None:
        raise unknown_name("loss", config["class_name"], _CLASSES, argument, "trainwell.losses.names()")
    return cls.from_config(dict(config.get("config") or {}))


def serialize(loss) -> dict:
    """``{"class_name": ..., "config": {...}}`` for a built-in loss (or a name of one).

    Raises:
        ConfigError: for a custom function or ``Loss`` subclass, which a model file cannot hold.

    Example:
        >>> config = serialize(BinaryCrossentropy(from_logits=True))
        >>> config["class_name"], config["config"]["from_logits"]
        ('BinaryCrossentropy', True)
    """
    loss = get(loss)
    if _CLASSES.get(type(loss).__name__) is not type(loss):
        raise ConfigError(
            f"loss {loss.name!r} is custom Python code and cannot be stored in a model file (model "
            "files hold no code). Compile with a built-in loss name such as 'mse' to save the whole "
            "model, or rebuild the model in code and load only its weights."
        )
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def kind(loss) -> str:
    """The target format a loss expects: ``'binary'`` (0/1 targets, probability per unit),
    ``'categorical'`` (one-hot targets), ``'sparse'`` (integer class ids) or ``'regression'``
    (everything else, including hinge's ±1 margins and custom functions).

    Example:
        >>> kind("sparse_categorical_crossentropy")
        'sparse'
    """
    return _KINDS.get(type(get(loss)), "regression")


def is_builtin(loss) -> bool:
    """Whether ``loss`` is one of trainwell's own loss classes running its own function: then its
    value depends on nothing but the targets, the outputs and the sample weights (a custom loss
    may read anything, the model's weights included).

    Example:
        >>> is_builtin(get("huber")), is_builtin(LossFunctionWrapper(lambda y, p: (p - y) ** 4))
        (True, False)
    """
    cls = type(loss)
    return cls is Crossentropy or (cls in _CLASSES.values() and _BY_FUNCTION.get(loss.fn) is cls)


def is_classification(loss) -> bool:
    """Whether ``loss`` is one of the three cross-entropies (see ``kind``)."""
    return kind(loss) != "regression"
