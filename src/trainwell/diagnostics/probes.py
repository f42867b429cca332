"""Cheap measurements of a network: input and target statistics, one probe forward/backward,
weight snapshots for update-to-weight ratios.

Everything here runs on a fixed subset of rows (the probe set) under ``eval()``, so a
measurement neither consumes the global random generator, nor updates BatchNormalization
statistics, nor touches the parameters' ``.grad`` (gradients come from ``torch.autograd.grad``).
Each function gathers its numbers on the device and copies them to the host once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import activations, training
from .record import LayerInfo, Probe

PROBE_ROWS = 256
"""Rows of the probe set: enough to tell a dead unit from an unlucky batch, cheap to run."""

STATS_ROWS = 4096
"""Rows used for the input and target statistics."""

# Where the flat part of a saturating activation begins, on its output: the derivative there is
# below about 2% of its maximum (tanh: |a| > 0.99 ⇔ 1 - a² < 0.02; sigmoid: a(1-a) < 0.0099).
_SATURATION = {
    "tanh": lambda a: a.abs() > 0.99,
    "sigmoid": lambda a: (a < 0.01) | (a > 0.99),
    "hard_sigmoid": lambda a: (a <= 0.0) | (a >= 1.0),
    "softsign": lambda a: a.abs() > 0.9,
}


def activation_name(layer) -> str | None:
    """The layer's activation name ('relu', ...), or None (no activation, or a custom callable)."""
    if not hasattr(layer, "activation"):
        return None
    try:
        return layer.activation_name
    except Exception:  # a custom callable has no name; treat it as unknown
        return None


def describe_layers(model) -> list[LayerInfo]:
    """One ``LayerInfo`` per layer of ``model``."""
    layers = list(model.layers)
    infos = []
    for i, layer in enumerate(layers):
        init = getattr(layer, "kernel_initializer", None)
        infos.append(
            LayerInfo(
                name=layer.name,
                kind=type(layer).__name__,
                activation=activation_name(layer),
                units=getattr(layer, "units", None),
                is_output=(i == len(layers) - 1),
                initializer=type(init).__name__ if init is not None else None,
            )
        )
    return infos


def has_kernel(layer) -> bool:
    return hasattr(layer, "linear") and getattr(layer, "kernel", None) is not None


def loss_for_probe(model) -> tuple[object, bool]:
    """The loss the loop trains with and whether it takes logits: ``training.fused_loss``, so that
    probed gradients are the ones the optimizer sees."""
    return training.fused_loss(model)


def probe_rows(n: int, size: int = PROBE_ROWS, device=None) -> torch.Tensor:
    """A fixed subset of ``size`` row indices out of ``n``, drawn without touching the global generator."""
    if n <= size:
        return torch.arange(n, device=device)
    gen = torch.Generator().manual_seed(0)
    return torch.randperm(n, generator=gen)[:size].sort().values.to(device)


def leading_inputs(model, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """What reaches the first weight layer: ``x`` passed through leading Normalization layers.

    Returns:
        ``(inputs, normalized)``; ``normalized`` is True when a leading BatchNormalization
        standardises the inputs during training (their raw scale then does not matter).
    """
    a = x
    with torch.no_grad():
        for layer in model.layers:
            kind = type(layer).__name__
            if kind == "BatchNormalization":
                return a, True
            if kind not in ("Normalization", "InputLayer", "Dropout"):
                break
            if kind == "Normalization":
                a = layer(a)
    return a, False


def input_stats(model, x: torch.Tensor) -> tuple[list[float], list[float], bool]:
    """Per-feature mean and standard deviation of what enters the first Dense layer.

    Args:
        model: the model (its leading Normalization layers are applied).
        x: training inputs of shape (n_samples, n_features); at most ``STATS_ROWS`` rows are used.

    Returns:
        ``(means, stds, normalized_in_model)`` as Python lists.
    """
    rows = x[probe_rows(x.shape[0], STATS_ROWS, x.device)].reshape(-1, x.shape[-1]).float()
    a, normalized = leading_inputs(model, rows)
    both = torch.stack([a.mean(0), a.std(0, unbiased=False)]).cpu().tolist()
    return both[0], both[1], normalized


def input_range(x: torch.Tensor) -> dict:
    """The smallest and largest raw input and whether they are whole numbers (pixels are; 1% may not be)."""
    rows = x[probe_rows(x.shape[0], STATS_ROWS, x.device)].float()
    lo, hi, whole = torch.stack([rows.min(), rows.max(), (rows == rows.round()).float().mean()]).tolist()
    return {"x_min": lo, "x_max": hi, "x_integer": whole >= 0.99}


def target_stats(y: torch.Tensor) -> dict:
    """min, max, mean, std, number of distinct values, whether all are whole numbers, the column count."""
    rows = y[probe_rows(y.shape[0], STATS_ROWS, y.device)].float()
    whole = (rows == rows.round()).all().float()
    lo, hi, mean, std, whole = torch.stack(
        [rows.min(), rows.max(), rows.mean(), rows.std(unbiased=False), whole]
    ).tolist()
    return {
        "y_min": lo,
        "y_max": hi,
        "y_mean": mean,
        "y_std": std,
        "y_distinct": int(torch.unique(rows).numel()),
        "y_integer": whole == 1.0,
        "y_columns": 1 if rows.dim() == 1 else int(rows.shape[1]),
    }


def baseline_loss(model, y: torch.Tensor, kind: str) -> float:
    """The loss of the best constant prediction: the target mean, or the class frequencies.

    A trained model should beat this; a loss near it means the model learned (almost) nothing.
    """
    eps = 1e-7
    with torch.no_grad():
        if kind == "sparse":
            labels = y.long().reshape(-1)
            p = torch.bincount(labels).float().div(labels.numel()).clamp(eps, 1.0)
            return float(-p[labels].log().mean())
        yf = y.float()
        if kind == "categorical":
            p = yf.mean(0).clamp(eps, 1.0)
            return float(-(yf * p.log()).sum(1).mean())
        if kind == "binary":
            p = yf.mean(0).clamp(eps, 1 - eps)
            return float(-(yf * p.log() + (1 - yf) * (1 - p).log()).mean())
        pred = yf.mean(0, keepdim=True).expand_as(yf)
        return float(model.compiled_loss(yf, pred))


@dataclass
class ProbePlan:
    """What a probe needs to know about the model, worked out once per fit (not once per probe).

    Attributes:
        layers: the model's layers, in order.
        dense: for each layer, whether it has a kernel (a Dense layer).
        activations: for each layer, its activation name (or None).
        stateful: layers that behave differently in training (Dropout, BatchNormalization).
        loss_fn: the loss the loop trains with; ``fused``: it takes logits.
    """

    layers: list
    dense: list[bool]
    activations: list[str | None]
    stateful: list
    loss_fn: object
    fused: bool

    @property
    def kernel_layers(self) -> list:
        return [layer for layer, dense in zip(self.layers, self.dense) if dense]


def plan_probe(model) -> ProbePlan:
    """The ``ProbePlan`` of ``model`` (call again if layers are added or the loss changes)."""
    layers = list(model.layers)
    loss_fn, fused = loss_for_probe(model)
    return ProbePlan(
        layers=layers,
        dense=[has_kernel(layer) for layer in layers],
        activations=[activation_name(layer) for layer in layers],
        stateful=[layer for layer in layers if type(layer).__name__ in _STATEFUL],
        loss_fn=loss_fn,
        fused=fused,
    )


_STATEFUL = ("Dropout", "BatchNormalization")


def take_probe(model, x: torch.Tensor, y: torch.Tensor, epoch: int, plan: ProbePlan | None = None) -> Probe:
    """One forward and backward pass on the probe rows: dead units, saturation, gradient signal.

    Args:
        model: a built, compiled model.
        x: probe inputs of shape (n_rows, n_features), on the model's device.
        y: probe targets, prepared as the loop prepares them.
        epoch: -1 before training, else the epoch just finished (0-based).
        plan: the model's ``ProbePlan`` (worked out here when None).

    Returns:
        A ``Probe`` (numbers only).
    """
    plan = plan or plan_probe(model)
    modes = [layer.training for layer in plan.stateful]
    for layer in plan.stateful:  # as in eval(): no dropout noise, no BatchNormalization updates
        layer.training = False
    try:
        with torch.enable_grad():
            zs, kernels, names, dead, saturated = [], [], [], {}, {}
            a, last = x, len(plan.layers) - 1
            for i, (layer, dense, act) in enumerate(zip(plan.layers, plan.dense, plan.activations)):
                if dense:
                    z = layer.linear(a)
                    if z.requires_grad:
                        zs.append(z)
                        names.append(layer.name)
                        kernels.append(layer.kernel if layer.kernel.requires_grad else None)
                    a = z if (i == last and plan.fused) else layer.activation(z)
                else:
                    a = layer(a)
                if act in activations.RELU_FAMILY:
                    dead[layer.name] = (a.detach() <= 0).all(0)
                elif act in _SATURATION and i != last:
                    saturated[layer.name] = _SATURATION[act](a.detach()).float().mean()
            loss = plan.loss_fn(y, a)
            wanted = zs + [k for k in kernels if k is not None]
            grads = (
                torch.autograd.grad(loss, wanted, allow_unused=True)
                if wanted and loss.requires_grad
                else [None] * len(wanted)
            )
        return _summarise(
            epoch,
            loss,
            names,
            kernels,
            grads[: len(zs)],
            grads[len(zs) :],
            plan.kernel_layers,
            dead,
            saturated,
        )
    finally:
        for layer, mode in zip(plan.stateful, modes):
            layer.training = mode


def _summarise(
    epoch, loss, names, kernels, signal_grads, kernel_grads, kernel_layers, dead, saturated
) -> Probe:
    """Gather every probed number into one tensor and copy it to the host once."""
    zero = loss.detach().new_zeros(())
    signal = [g.pow(2).mean().sqrt() if g is not None else zero for g in signal_grads]
    all_kernels = [layer.kernel.detach() for layer in kernel_layers]
    grads = [g if g is not None else zero for g in kernel_grads]
    norms = torch._foreach_norm(grads + all_kernels)  # one call for all the norms
    sat_values = list(saturated.values())
    flat = torch.stack([loss.detach().float().reshape(()), *signal, *norms, *sat_values])
    values = flat.cpu().tolist()
    dead_host = {name: mask.cpu().tolist() for name, mask in dead.items()}
    n_sig, n_grad = len(signal), len(grads)
    signal_v = values[1 : 1 + n_sig]
    grad_v = values[1 + n_sig : 1 + n_sig + n_grad]
    weight_v = values[1 + n_sig + n_grad : 1 + n_sig + n_grad + len(all_kernels)]
    sat_v = values[1 + n_sig + n_grad + len(all_kernels) :]
    kept_names = [n for n, k in zip(names, kernels) if k is not None]
    kernel_names = [layer.name for layer in kernel_layers]
    return Probe(
        epoch=epoch,
        loss=values[0],
        dead=dead_host,
        saturated=dict(zip(saturated, sat_v)),
        signal=list(zip(names, signal_v)),
        grad_norms=dict(zip(kept_names, grad_v)),
        weight_norms=dict(zip(kernel_names, weight_v)),
        weights_finite=all(math.isfinite(v) for v in weight_v),
        grads_finite=all(math.isfinite(v) for v in signal_v + grad_v),
    )


def kernel_snapshot(model) -> dict[str, torch.Tensor]:
    """Copies of the Dense kernels (cheap: the course's models hold thousands of weights)."""
    return {layer.name: layer.kernel.detach().clone() for layer in model.layers if has_kernel(layer)}


def update_ratios(model, before: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
    """Mean per-step update-to-weight ratio of each kernel since ``before``.

    ``‖W_now - W_before‖ / ‖W_before‖ / steps``: the movement of one epoch spread over its steps.
    Steps that partly cancel make this a lower bound of the per-step ratio CS231n's rule of thumb
    (about 1e-3) refers to.
    """
    layers = [layer for layer in model.layers if has_kernel(layer) and layer.name in before]
    if not layers:
        return {}
    old = [before[layer.name] for layer in layers]
    moved = list(torch._foreach_sub([layer.kernel.detach() for layer in layers], old))
    norms = torch.stack(torch._foreach_norm(moved + old)).cpu().tolist()  # one host copy for all
    k = len(layers)
    return {layer.name: norms[i] / max(norms[k + i], 1e-12) / max(steps, 1) for i, layer in enumerate(layers)}
