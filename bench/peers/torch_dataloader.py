"""An idiomatic PyTorch loop, as the tutorials write it.

`nn.Sequential` of `nn.Linear` + `nn.ReLU`, re-initialised like Keras (glorot uniform weights,
zero biases); `TensorDataset` + `DataLoader(shuffle=True)`; `CrossEntropyLoss` on logits
(softmax is applied in `predict`) or `MSELoss`; `torch.optim.Adam(eps=1e-7)` (Keras's
epsilon) or plain SGD; the running loss read with `.item()` every batch; a validation pass
over a `DataLoader` each epoch under `torch.no_grad()`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.workloads import MODEL_SEED, Workload

# Batch size of the DataLoader used for prediction.
PREDICT_BATCH = 1024


def prepare_targets(spec: Workload, y: np.ndarray) -> np.ndarray:
    """Class indices for CrossEntropyLoss; regression targets as a column for MSELoss."""
    return y if spec.is_classification else y.reshape(-1, 1)


def build(spec: Workload, n_features: int) -> nn.Sequential:
    """The Dense stack as `nn.Sequential`, with Keras's initialisation."""
    torch.manual_seed(MODEL_SEED)
    layers: list[nn.Module] = []
    fan_in = n_features
    for units in spec.hidden:
        layers += [nn.Linear(fan_in, units), nn.ReLU()]
        fan_in = units
    layers.append(nn.Linear(fan_in, spec.n_outputs))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def fit(model: nn.Sequential, spec: Workload, X: np.ndarray, y: np.ndarray) -> nn.Sequential:
    """The textbook loop: DataLoader batches, zero_grad/forward/loss/backward/step, `.item()` per batch."""
    split = spec.split_index(len(X))
    X_t, y_t = torch.tensor(X), torch.tensor(y)
    train_loader = DataLoader(
        TensorDataset(X_t[:split], y_t[:split]), batch_size=spec.batch_size, shuffle=True
    )
    val_loader = DataLoader(TensorDataset(X_t[split:], y_t[split:]), batch_size=spec.batch_size)
    loss_fn = nn.CrossEntropyLoss() if spec.is_classification else nn.MSELoss()
    if spec.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.learning_rate, eps=1e-7)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate)

    for _epoch in range(spec.epochs):
        model.train()
        running_loss = 0.0
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(xb)
        if split < len(X):
            model.eval()
            val_loss, correct = 0.0, 0
            with torch.no_grad():
                for xb, yb in val_loader:
                    out = model(xb)
                    val_loss += loss_fn(out, yb).item() * len(xb)
                    if spec.is_classification:
                        correct += (out.argmax(dim=1) == yb).sum().item()
    return model


def predict(model: nn.Sequential, X: np.ndarray) -> np.ndarray:
    """Batched forward passes under `no_grad`; softmax for classifiers."""
    model.eval()
    outputs = []
    with torch.no_grad():
        for (xb,) in DataLoader(TensorDataset(torch.tensor(X)), batch_size=PREDICT_BATCH):
            out = model(xb)
            outputs.append(out.softmax(dim=1) if out.shape[1] > 1 else out)
    return torch.cat(outputs).numpy()


def build_and_fit(spec: Workload, X: np.ndarray, y: np.ndarray) -> nn.Sequential:
    """Build and fit on already prepared targets."""
    return fit(build(spec, X.shape[1]), spec, X, y)
