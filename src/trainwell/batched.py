"""Many models of one shape trained as one: stacked weights, one batched matmul per layer.

Candidates that differ only in optimizer settings, regularisation factors or seeds have the same
tensor shapes, so their weights stack along a leading candidate axis: a Dense kernel becomes
``(C, in, out)`` and each layer is one ``torch.baddbmm`` for all candidates. Since candidate c's
loss depends only on slice c of each stacked weight, every slice receives exactly its own gradient.

The step is chosen as ``training.select_step`` chooses for one model: ``fastpath.StackedDenseStep``
(forward and backward written out, no autograd, weights in one flat buffer) when it covers the
model, else the autograd step over ``_Stack`` (weight regularizers). Either way the update is
``optimizers.StackedOptimizer`` (per-candidate settings), and a candidate stopped by its own
EarlyStopping freezes while the others go on. The split, the loss, the epoch accumulator, the
validation and the divergence message are ``training``'s.

Each candidate sees what a lone ``fit`` with the same seed sees: the initial weights of its own
model (built after ``set_random_seed(seed)``), the batches of its own per-epoch permutation
(``training._epoch_order``) and its own callbacks. ``tests/test_experiments.py`` compares the
per-epoch losses and final weights with separate fits.
"""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import torch

from . import callbacks as callbacks_module
from . import fastpath, training
from . import losses as losses_module
from . import regularizers as regularizers_module
from .layers import Dense
from .optimizers import SGD, Adam, AdamW, LearningRateSchedule, StackedOptimizer

# fit() arguments the batched loop reproduces; any other one set to a non-default value means
# the run trains alone, through the ordinary loop.
_FIT_DEFAULTS = {
    "class_weight": None,
    "sample_weight": None,
    "initial_epoch": 0,
    "steps_per_epoch": None,
    "validation_steps": None,
    "validation_freq": 1,
    "device": None,
}
_FIT_HANDLED = {
    "x",
    "y",
    "batch_size",
    "epochs",
    "verbose",
    "callbacks",
    "validation_split",
    "validation_data",
    "shuffle",
    "validation_batch_size",
    "diagnostics",
}
_CALLBACKS = (callbacks_module.EarlyStopping, callbacks_module.History)
_REGULARIZERS = (regularizers_module.L1, regularizers_module.L2, regularizers_module.L1L2)


def batch_key(model, fit_kwargs: dict) -> str | None:
    """A key such that runs with equal keys can train together, or None when a run must train alone.

    Batched runs need a built model of ``Dense`` layers only (plain L1/L2 regularizers allowed),
    a built-in loss, SGD, Adam or AdamW with a float learning rate and no clipping or AMSGrad,
    EarlyStopping as the only callback, and no per-sample weights.

    Args:
        model: a compiled, built ``Sequential``.
        fit_kwargs: the keyword arguments its ``fit`` would receive.

    Returns:
        A string key, or None.
    """
    for name, value in fit_kwargs.items():
        if name not in _FIT_HANDLED and (name not in _FIT_DEFAULTS or value != _FIT_DEFAULTS[name]):
            return None
    if fit_kwargs.get("validation_data") is not None and len(fit_kwargs["validation_data"]) != 2:
        return None
    if fit_kwargs.get("diagnostics", "auto") == "full" or fit_kwargs.get("shuffle", True) == "batch":
        return None
    if any(type(cb) not in _CALLBACKS for cb in fit_kwargs.get("callbacks") or []):
        return None
    layers = model.layers
    if not model.built or not all(type(layer) is Dense and layer.trainable for layer in layers):
        return None
    if any(
        reg is not None and type(reg) not in _REGULARIZERS
        for layer in layers
        for reg in (layer.kernel_regularizer, layer.bias_regularizer)
    ):
        return None
    opt, loss = model.optimizer, model.compiled_loss
    if type(opt) not in (SGD, Adam, AdamW) or isinstance(opt._learning_rate, LearningRateSchedule):
        return None
    if opt.clipnorm or opt.clipvalue or opt.global_clipnorm or getattr(opt, "amsgrad", False):
        return None
    if not isinstance(loss, losses_module.LossFunctionWrapper):
        return None
    if loss.reduction not in ("sum_over_batch_size", "mean"):
        return None
    if any(not isinstance(layer.activation_name, str) for layer in layers):
        return None
    shapes = [[list(layer.kernel.shape), layer.use_bias, layer.activation_name] for layer in layers]
    kind = "adam" if isinstance(opt, Adam) else f"sgd{opt.nesterov}"
    key = {
        "shapes": shapes,
        "input": list(model.input_shape_hint),
        "optimizer": kind,
        "loss": losses_module.serialize(loss),
        "loss_weights": model.loss_weights,
        "metrics": [str(m) for m in model.metrics_identifiers],
        "fit": {
            k: fit_kwargs.get(k)
            for k in ("batch_size", "epochs", "validation_split", "shuffle", "validation_batch_size")
        },
        "validation_data": id(fit_kwargs.get("validation_data")),
    }
    return json.dumps(key, sort_keys=True, default=str)


# ----------------------------------------------------------------------------------------------
# the stack (autograd path)


class _Stack:
    """Stacked weights of C models with the same layer shapes, as autograd leaves; biases (C, 1, out)."""

    def __init__(self, models):
        first = models[0].layers
        self.activations = [layer.activation for layer in first]
        self.kernels, self.biases = [], []
        for i, layer in enumerate(first):
            self.kernels.append(torch.stack([m.layers[i].kernel.detach() for m in models]).requires_grad_())
            bias = None
            if layer.bias is not None:
                bias = torch.stack([m.layers[i].bias.detach() for m in models]).unsqueeze(1).requires_grad_()
            self.biases.append(bias)
        # Keras's weight order, as Sequential.get_weights: kernel, bias, kernel, bias, ...
        self.params = [p for pair in zip(self.kernels, self.biases) for p in pair if p is not None]
        self.regularizers = [
            [(layer.kernel_regularizer, layer.bias_regularizer) for layer in m.layers] for m in models
        ]

    def forward(self, x: torch.Tensor, final_activation: bool = True) -> torch.Tensor:
        """Outputs of shape (C, batch, units) for inputs of shape (C, batch, features)."""
        last = len(self.kernels) - 1
        for i, (kernel, bias, act) in enumerate(zip(self.kernels, self.biases, self.activations)):
            x = torch.bmm(x, kernel) if bias is None else torch.baddbmm(bias, x, kernel)
            if i < last or final_activation:
                x = act(x)
        return x

    def penalties(self) -> torch.Tensor | None:
        """Per-candidate weight penalties of shape (C,), or None when no candidate has one."""
        factors = []  # per weight: (tensor, l1 per candidate, l2 per candidate)
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            for j, weight in enumerate((kernel, bias)):
                regs = [per_model[i][j] for per_model in self.regularizers]
                if weight is None or all(r is None for r in regs):
                    continue
                l1 = torch.tensor([float(getattr(r, "l1", 0.0) or 0.0) for r in regs])
                l2 = torch.tensor([float(getattr(r, "l2", 0.0) or 0.0) for r in regs])
                factors.append((weight, l1, l2))
        if not factors:
            return None
        total = 0.0
        for weight, l1, l2 in factors:
            flat = weight.flatten(1)
            total = total + l1 * flat.abs().sum(1) + l2 * flat.square().sum(1)
        return total

    def candidate_weights(self, c: int) -> list[np.ndarray]:
        """Candidate ``c``'s weights in Keras's order (kernel, bias, ...)."""
        return [p[c].detach().reshape(p.shape[2:] if p.shape[1] == 1 else p.shape[1:]).numpy().copy()
                for p in self.params]

    def set_candidate_weights(self, c: int, weights) -> None:
        with torch.no_grad():
            for p, w in zip(self.params, weights):
                p[c].copy_(torch.as_tensor(np.asarray(w), dtype=p.dtype).reshape(p[c].shape))


class _AutogradStep:
    """The stacked step with autograd: summed candidate losses, one ``backward``."""

    def __init__(self, stack: _Stack, ctx: training.StepContext):
        self.stack, self.ctx = stack, ctx

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for p in self.stack.params:
            p.grad = None
        out = self.stack.forward(xb, final_activation=not self.ctx.fused)
        per = self.ctx.stacked_loss(yb, out, self.stack.penalties())
        per.sum().backward()
        return per.detach(), out.detach()


class _CandidateView:
    """What a callback sees of candidate ``c``: ``stop_training`` and its slice of the weights."""

    def __init__(self, stack, c: int, model):
        self._stack, self._c = stack, c
        self.stop_training = False
        self.name = model.name
        self.optimizer = model.optimizer
        self.history = None

    def get_weights(self) -> list[np.ndarray]:
        return self._stack.candidate_weights(self._c)

    def set_weights(self, weights) -> None:
        self._stack.set_candidate_weights(self._c, weights)


# ----------------------------------------------------------------------------------------------
# the loop

_log = logging.getLogger("trainwell.batched")


def _select(models, ctx):
    """The stacked step, its weights (for views and validation) and its optimizer, chosen once."""
    optimizers = [m.optimizer for m in models]
    reason = fastpath.stacked_unsupported(ctx) if training.FUSED_STEP else "training.FUSED_STEP is False"
    if reason is None:
        _log.debug("fit_batched: stacked fused Dense step")
        step = fastpath.StackedDenseStep(models, ctx)
        step.data.grad = step.grad  # the optimizer reads .grad, as it does for autograd leaves
        return step, step, StackedOptimizer(optimizers, [step.data], owner=step.owner)
    _log.debug("fit_batched: stacked autograd step, because %s", reason)
    stack = _Stack(models)
    return _AutogradStep(stack, ctx), stack, StackedOptimizer(optimizers, stack.params)


def _metric_updater(models, active):
    def update(y, pred) -> None:
        for c, model in enumerate(models):
            if active[c]:
                for _, metric in model.compiled_metrics:
                    metric.update_state(y[c], pred[c])
    return update


def fit_batched(models, x, y, fit_kwargs: dict, callbacks: list[list]) -> list[dict]:
    """Train ``models`` (equal ``batch_key``) together, as if each ran ``fit(x, y, **fit_kwargs)``.

    Args:
        models: compiled, built ``Sequential`` models of the same layer shapes.
        x, y: the training data, as for ``fit``.
        fit_kwargs: ``fit``'s keyword arguments (callbacks excepted).
        callbacks: one list of callbacks per model (EarlyStopping instances), not shared.

    Returns:
        One dict per model: ``history`` (a ``History``) and ``diverged`` (an error message or None).
        Each model ends with its trained weights, ``history`` and ``epochs_trained`` set.
    """
    first = models[0]
    dev = first.device
    for model in models[1:]:
        model.compile_metrics()
    validation_data = fit_kwargs.get("validation_data")
    x_tr, y_tr, _, val = training.split_data(
        first, x, y, dev, validation_data=None if validation_data is None else tuple(validation_data[:2]),
        validation_split=fit_kwargs.get("validation_split") or 0.0)
    n, C = x_tr.shape[0], len(models)
    batch_size = fit_kwargs.get("batch_size") or 32
    epochs = fit_kwargs.get("epochs", 1)
    shuffle = fit_kwargs.get("shuffle", True)
    ctx = training.StepContext(first)
    step, stack, optimizer = _select(models, ctx)
    views = [_CandidateView(stack, c, m) for c, m in enumerate(models)]
    steps = -(-n // batch_size)
    lists = []
    for view, cbs in zip(views, callbacks):  # each candidate's own copies, History added as in fit
        cb_list = callbacks_module.CallbackList([*map(copy.copy, cbs)], model=view, add_history=True,
                                                verbose=0, epochs=epochs, steps=steps)
        cb_list.on_train_begin()
        lists.append(cb_list)
    doctors = _doctors(models, fit_kwargs, (x_tr, y_tr, val), epochs, steps)
    active = [True] * C
    diverged: list[str | None] = [None] * C
    metric_lists = [m.compiled_metrics for m in models]
    for epoch in range(epochs):
        if not any(active):
            break
        mask = torch.tensor(active)
        update_metrics = _metric_updater(models, active)
        xs, ys, order = _epoch_data(models, x_tr, y_tr, shuffle)
        acc = training.EpochAccumulator(metric_lists, dev, candidates=C)
        for start in range(0, n, batch_size):
            if order is None:
                xb, yb = xs[:, start:start + batch_size], ys[:, start:start + batch_size]
            else:
                idx = order[:, start:start + batch_size]
                xb, yb = x_tr[idx], y_tr[idx]  # (C, batch, ...): each candidate its own rows
            per, out = step(xb, yb)
            optimizer.step(mask)
            acc.add(per, xb.shape[1])
            if ctx.metrics:
                with torch.no_grad():
                    update_metrics(yb, ctx.predictions(out))
        logs = acc.results()
        if val is not None:
            val_acc = training.EpochAccumulator(metric_lists, dev, candidates=C)
            penalty = stack.penalties() if isinstance(stack, _Stack) else None
            rows = fit_kwargs.get("validation_batch_size") or max(batch_size, training.VALIDATION_ROWS)
            training.validate(ctx, lambda xb: stack.forward(xb, final_activation=not ctx.fused), val_acc,
                              *val, rows, stacked=(C, penalty, update_metrics))
            logs = [{**a, **b} for a, b in zip(logs, val_acc.results("val_"))]
        for c in range(C):
            if not active[c]:
                continue
            models[c].epochs_trained += 1
            models[c].optimizer.iterations += steps
            lists[c].on_epoch_end(epoch, logs[c])
            if doctors:
                doctors[c].on_epoch_begin(epoch)
                doctors[c].on_epoch_end(epoch, logs[c])
            diverged[c] = training.divergence_message(lists[c].history.history["loss"])
            if diverged[c] or views[c].stop_training:
                active[c] = False
    for c, model in enumerate(models):
        lists[c].on_train_end()
        model.set_weights(views[c].get_weights())
        model.history = lists[c].history
        if doctors:
            model.stop_training = views[c].stop_training
            doctors[c].peers = list(lists[c])  # an EarlyStopping that restored the best weights
            doctors[c].on_train_end()  # probes the trained weights, now back in the model
            lists[c].history.diagnosis = doctors[c].findings()
    return [{"history": cbs.history, "diverged": d} for cbs, d in zip(lists, diverged)]


def _epoch_data(models, x, y, shuffle):
    """Each candidate's rows of this epoch: ``(xs, ys, None)`` as (C, n, ...) tensors gathered once
    (small data), or ``(None, None, order)`` with the (C, n) row order to gather per batch."""
    n, C = x.shape[0], len(models)
    orders = [training._epoch_order(n, shuffle, m.shuffle_seed + m.epochs_trained, x.device) for m in models]
    if orders[0] is None:
        return x.expand(C, *x.shape), y.expand(C, *y.shape), None
    order = torch.stack(orders)
    if C * x.numel() <= training.EPOCH_GATHER_ELEMENTS:
        return x[order], y[order], None
    return None, None, order


def _doctors(models, fit_kwargs: dict, data, epochs: int, steps: int) -> list:
    """One training doctor per candidate, probing before and after training only: while the stack
    trains, the candidates' weights are not in their models. Empty when diagnostics are off."""
    if fit_kwargs.get("diagnostics", "auto") in (None, False, "off"):
        return []
    from .diagnostics import TrainingMonitor

    doctors = []
    for model in models:
        doctor = TrainingMonitor("ends", data)
        doctor.set_model(model)
        doctor.set_params({"epochs": epochs, "steps": steps, "verbose": 0})
        doctor.on_train_begin()
        doctors.append(doctor)
    return doctors
