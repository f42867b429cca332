"""Many models of one shape trained as one: stacked weights, one batched matmul per layer.

Candidates that differ only in optimizer settings, regularisation factors or seeds have the same
tensor shapes, so their weights stack along a leading candidate axis: a Dense kernel becomes
``(C, in, out)`` and each layer is one ``torch.baddbmm`` for all candidates. The candidates' losses
are summed before ``backward``; since candidate c's loss depends only on slice c of each stacked
weight, every slice receives exactly its own gradient. The optimizers are written with tensor ops
over the stacked weights and per-candidate hyperparameter tensors, with the formulas of
``trainwell.optimizers`` (Keras's), and a candidate stopped by its own EarlyStopping freezes while
the others go on.

Each candidate sees what a lone ``fit`` with the same seed sees: the initial weights of its own
model (built after ``set_random_seed(seed)``), the batches of its own per-epoch permutation
(``training._epoch_order``) and its own callbacks. ``tests/test_experiments.py`` compares the
per-epoch losses and final weights with separate fits.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import torch

from . import callbacks as callbacks_module
from . import losses as losses_module
from . import regularizers as regularizers_module
from . import training
from .data import check_lengths, validation_slice
from .layers import Dense
from .optimizers import SGD, Adam, AdamW, LearningRateSchedule

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
    if not getattr(model, "is_chain", True) or len(model.input_shape_hint) != 1:  # a graph, or images
        return None
    if any(
        reg is not None and type(reg) not in _REGULARIZERS
        for layer in layers
        for reg in (layer.kernel_regularizer, layer.bias_regularizer)
    ):
        return None
    opt, loss = model.optimizer, model.loss
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
# the stack


class _Stack:
    """Stacked weights of C models with the same layer shapes; biases are kept as (C, 1, out)."""

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


class _CandidateView:
    """What a callback sees of candidate ``c``: ``stop_training`` and its slice of the weights."""

    def __init__(self, stack: _Stack, c: int, model):
        self._stack, self._c, self._model = stack, c, model
        self.stop_training = False
        self.name = model.name
        self.optimizer = model.optimizer
        self.history = None

    def get_weights(self) -> list[np.ndarray]:
        shapes = [tuple(w.shape) for w in self._model.weights]
        params = self._stack.params
        return [p[self._c].detach().cpu().numpy().reshape(s).copy() for p, s in zip(params, shapes)]

    def set_weights(self, weights) -> None:
        with torch.no_grad():
            for p, w in zip(self._stack.params, weights):
                p[self._c].copy_(torch.as_tensor(np.asarray(w), dtype=p.dtype).reshape(p[self._c].shape))


# ----------------------------------------------------------------------------------------------
# the optimizers, on stacked weights


class _StackedOptimizer:
    """SGD (with momentum/Nesterov) or Adam/AdamW for C candidates at once, Keras's formulas.

    Every hyperparameter is a (C, 1, 1) tensor, so each candidate keeps its own settings; all
    active candidates step together, so one step counter serves them all. ``active`` masks the
    update: a stopped candidate's weights stay exactly as they were.
    """

    def __init__(self, optimizers, params):
        self.adam = isinstance(optimizers[0], Adam)
        self.nesterov = bool(getattr(optimizers[0], "nesterov", False))

        def column(name, default=0.0):
            values = [getattr(opt, name, default) for opt in optimizers]
            return torch.tensor([float(default if v is None else v) for v in values]).view(-1, 1, 1)

        self.lr = column("learning_rate")
        self.weight_decay = column("weight_decay")
        self.decay = bool((self.weight_decay != 0).any())
        if self.adam:
            self.beta_1, self.beta_2, self.epsilon = column("beta_1"), column("beta_2"), column("epsilon")
            self.v = [torch.zeros_like(p) for p in params]
        else:
            self.momentum = column("momentum")
        self.m = [torch.zeros_like(p) for p in params]
        self.params = params
        self.iterations = 0

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        self.iterations += 1
        t = self.iterations
        if self.adam:
            # Keras: w -= lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + epsilon); trainwell's
            # Adam gets the same numbers from torch through its epsilon mapping.
            alpha = self.lr * torch.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)
        for i, p in enumerate(self.params):
            g, m, mask = p.grad, self.m[i], active.view(-1, *([1] * (p.dim() - 1)))
            new = p * (1.0 - self.lr * self.weight_decay) if self.decay else p
            if self.adam:
                m.lerp_(g, 1.0 - self.beta_1)
                self.v[i].mul_(self.beta_2).add_((1.0 - self.beta_2) * g * g)
                new = new - alpha * m / (self.v[i].sqrt() + self.epsilon)
            else:
                # torch's SGD buffer b = momentum * b + g (Keras's velocity is -lr * b).
                m.mul_(self.momentum).add_(g)
                new = new - self.lr * (g + self.momentum * m if self.nesterov else m)
            p.copy_(torch.where(mask, new, p))


# ----------------------------------------------------------------------------------------------
# the loop


def _split(model, x, y, fit_kwargs, dev):
    """Training and validation tensors, exactly as ``training.fit`` splits them."""
    x_all = training.prepare_x(model, x, "x", dev)
    y_all = training.prepare_y(model, y, "y", dev)
    check_lengths(x_all, y_all)
    if fit_kwargs.get("validation_data") is not None:
        vx, vy, *_ = fit_kwargs["validation_data"]
        val = (
            training.prepare_x(model, vx, "validation_data x", dev),
            training.prepare_y(model, vy, "validation_data y", dev),
        )
        return x_all, y_all, val
    split = fit_kwargs.get("validation_split") or 0.0
    if split:
        at = validation_slice(x_all.shape[0], split)
        return x_all[:at], y_all[:at], (x_all[at:], y_all[at:])
    return x_all, y_all, None


class _Losses:
    """Per-candidate loss values (C,) as ``StepContext.total_loss`` computes them for one model."""

    def __init__(self, ctx: training.StepContext, stack: _Stack):
        self.ctx, self.stack = ctx, stack

    def __call__(self, y: torch.Tensor, out: torch.Tensor, with_penalty: bool = True) -> torch.Tensor:
        values = self.ctx.loss.call(y, out)  # (C, batch): per-sample losses
        per = values.flatten(1).sum(1) / values[0].numel()  # Keras's sum_over_batch_size, per candidate
        if self.ctx.loss_weight != 1.0:
            per = per * self.ctx.loss_weight
        if with_penalty:
            penalty = self.stack.penalties()
            if penalty is not None:
                per = per + penalty
        return per


def _update_metrics(models, active, y, pred) -> None:
    for c, model in enumerate(models):
        if active[c]:
            for _, metric in model.compiled_metrics:
                metric.update_state(y[c], pred[c])


def _results(models, loss_sum: torch.Tensor, count: int, prefix: str = "") -> list[dict]:
    """Per-candidate logs, with one host sync for the losses."""
    losses = (loss_sum / max(count, 1)).tolist()
    return [
        {
            prefix + "loss": losses[c],
            **{prefix + name: float(metric.result()) for name, metric in model.compiled_metrics},
        }
        for c, model in enumerate(models)
    ]


def _evaluate(models, ctx, stack, loss_fn, val, batch_size, active) -> list[dict]:
    x, y = val
    C = len(models)
    for model in models:
        for _, metric in model.compiled_metrics:
            metric.reset_state()
    loss_sum = torch.zeros(C)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            stop = min(start + batch_size, x.shape[0])
            xb = x[start:stop].expand(C, *x[start:stop].shape)
            yb = y[start:stop].expand(C, *y[start:stop].shape)
            out = stack.forward(xb, final_activation=not ctx.fused)
            loss_sum += loss_fn(yb, out) * (stop - start)
            if ctx.metrics:
                _update_metrics(models, active, yb, ctx.predictions(out))
    return _results(models, loss_sum, x.shape[0], "val_")


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
    for model in models:
        model.compile_metrics()
    x_tr, y_tr, val = _split(first, x, y, fit_kwargs, dev)
    n, C = x_tr.shape[0], len(models)
    batch_size = fit_kwargs.get("batch_size") or 32
    epochs = fit_kwargs.get("epochs", 1)
    shuffle = fit_kwargs.get("shuffle", True)
    ctx = training.StepContext(first)
    stack = _Stack(models)
    loss_fn = _Losses(ctx, stack)
    optimizer = _StackedOptimizer([m.optimizer for m in models], stack.params)
    views = [_CandidateView(stack, c, m) for c, m in enumerate(models)]
    histories = [callbacks_module.History() for _ in models]
    lists = [[*map(copy.copy, cbs), hist] for cbs, hist in zip(callbacks, histories)]
    steps = -(-n // batch_size)
    for view, cbs in zip(views, lists):
        for cb in cbs:
            cb.set_model(view)
            cb.set_params({"epochs": epochs, "steps": steps, "verbose": 0})
            cb.on_train_begin()
    active = [True] * C
    diverged: list[str | None] = [None] * C
    for epoch in range(epochs):
        if not any(active):
            break
        mask = torch.tensor(active)
        orders = [training._epoch_order(n, shuffle, m.shuffle_seed + m.epochs_trained, dev) for m in models]
        order = torch.arange(n).expand(C, n) if orders[0] is None else torch.stack(orders)
        for model in models:
            for _, metric in model.compiled_metrics:
                metric.reset_state()
        loss_sum = torch.zeros(C)
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]
            xb, yb = x_tr[idx], y_tr[idx]  # (C, batch, ...): each candidate its own rows
            for p in stack.params:
                p.grad = None
            out = stack.forward(xb, final_activation=not ctx.fused)
            per = loss_fn(yb, out)
            per.sum().backward()
            optimizer.step(mask)
            loss_sum += per.detach() * idx.shape[1]
            if ctx.metrics:
                with torch.no_grad():
                    _update_metrics(models, active, yb, ctx.predictions(out.detach()))
        logs = _results(models, loss_sum, n)
        if val is not None:
            vlogs = _evaluate(
                models,
                ctx,
                stack,
                loss_fn,
                val,
                fit_kwargs.get("validation_batch_size") or batch_size,
                active,
            )
            logs = [{**a, **b} for a, b in zip(logs, vlogs)]
        for c in range(C):
            if not active[c]:
                continue
            models[c].epochs_trained += 1
            models[c].optimizer.iterations += steps
            for cb in lists[c]:
                cb.on_epoch_end(epoch, logs[c])
            if not math.isfinite(logs[c]["loss"]):
                diverged[c] = (
                    f"diverged: the training loss became {logs[c]['loss']} at epoch {epoch + 1}. "
                    "Try a 10x smaller learning_rate or scale the inputs."
                )
            if diverged[c] or views[c].stop_training:
                active[c] = False
    for c, model in enumerate(models):
        for cb in lists[c]:
            cb.on_train_end()
        model.set_weights(views[c].get_weights())
        model.history = histories[c]
    return [{"history": h, "diverged": d} for h, d in zip(histories, diverged)]
