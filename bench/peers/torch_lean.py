"""The leanest hand-written PyTorch loop: what a careful engineer writes when speed matters.

- the weights are plain leaf tensors, kernel of shape (in, out) as Keras stores it, and the
  forward pass is `torch.addmm` + in-place relu: no `nn.Module` dispatch per layer;
- the data stays as two tensors; each epoch draws `randperm` and gathers batches by index;
- `zero_grad(set_to_none=True)`; the loss is accumulated on a tensor and never read per batch;
- logits with `F.cross_entropy` (fused log-softmax + NLL) for classification, `F.mse_loss` otherwise;
- Adam with Keras's epsilon (1e-7), in PyTorch's fused CPU kernel when it is available;
- validation and prediction under `torch.inference_mode()`, one forward pass each.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bench.workloads import MODEL_SEED, Workload


class LeanModel:
    """Dense stack as a list of (kernel, bias) leaf tensors.

    Args:
        params: [(kernel of shape (in, out), bias of shape (out,)), ...], input layer first.
        classifier: True to return softmax probabilities from `predict`.
    """

    def __init__(self, params: list[tuple[torch.Tensor, torch.Tensor]], classifier: bool):
        self.params = params
        self.classifier = classifier

    def parameters(self) -> list[torch.Tensor]:
        """Flat list of every trainable tensor."""
        return [t for pair in self.params for t in pair]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (or regression outputs) of shape (n, out)."""
        for kernel, bias in self.params[:-1]:
            # relu_ may run in place: addmm's backward needs its inputs, not its output.
            x = torch.addmm(bias, x, kernel).relu_()
        kernel, bias = self.params[-1]
        return torch.addmm(bias, x, kernel)


def prepare_targets(spec: Workload, y: np.ndarray) -> np.ndarray:
    """Class indices for cross-entropy; regression targets as a column."""
    return y if spec.is_classification else y.reshape(-1, 1)


def build(spec: Workload, n_features: int) -> LeanModel:
    """Glorot-uniform kernels and zero biases, as Keras's Dense."""
    torch.manual_seed(MODEL_SEED)
    params = []
    widths = [n_features, *spec.hidden, spec.n_outputs]
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        kernel = torch.empty(fan_in, fan_out).uniform_(-limit, limit).requires_grad_()
        bias = torch.zeros(fan_out, requires_grad=True)
        params.append((kernel, bias))
    return LeanModel(params, spec.is_classification)


def _optimizer(model: LeanModel, spec: Workload) -> torch.optim.Optimizer:
    """Adam (fused kernel where this torch has it for the CPU) or plain SGD."""
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec.learning_rate, foreach=True)
    try:
        return torch.optim.Adam(model.parameters(), lr=spec.learning_rate, eps=1e-7, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=spec.learning_rate, eps=1e-7, foreach=True)


def fit(model: LeanModel, spec: Workload, X: np.ndarray, y: np.ndarray) -> LeanModel:
    """randperm + index gathering, no per-batch host reads, one validation forward per epoch."""
    split = spec.split_index(len(X))
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    X_train, y_train, X_val, y_val = X_t[:split], y_t[:split], X_t[split:], y_t[split:]
    loss_fn = F.cross_entropy if spec.is_classification else F.mse_loss
    optimizer = _optimizer(model, spec)
    history = []
    for _epoch in range(spec.epochs):
        perm = torch.randperm(split)
        total = torch.zeros(())
        for start in range(0, split, spec.batch_size):
            idx = perm[start : start + spec.batch_size]
            loss = loss_fn(model(X_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        val_loss = torch.zeros(())
        if split < len(X):
            with torch.inference_mode():
                val_loss = loss_fn(model(X_val), y_val)
        history.append((total / split, val_loss))
    return model


def predict(model: LeanModel, X: np.ndarray) -> np.ndarray:
    """One forward pass under `inference_mode`; softmax for classifiers."""
    with torch.inference_mode():
        out = model(torch.from_numpy(X))
        return (out.softmax(dim=1) if model.classifier else out).numpy()


def build_and_fit(spec: Workload, X: np.ndarray, y: np.ndarray) -> LeanModel:
    """Build and fit on already prepared targets."""
    return fit(build(spec, X.shape[1]), spec, X, y)
