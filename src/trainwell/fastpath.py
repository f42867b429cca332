"""The fused training step for plain Dense stacks: forward and backward written out, no autograd.

For the course's small models a PyTorch step is mostly overhead: recording the autograd graph,
running the backward engine, and an optimizer step that loops over every tensor (about 0.5 ms
for torch.optim's Adam on six small tensors). This step computes the same numbers with fewer,
larger operations:

- the trainable tensors become views of one flat buffer, and so do their gradients and the
  optimizer's slots, so the update is one kernel (torch's fused Adam kernel on the CPU) or a
  few whole-buffer operations, whatever the number of layers;
- activations and gradients go into buffers allocated once per fit (``out=`` operations), and
  the backward uses the same kernels autograd would (``threshold_backward``, ...);
- no ``torch.optim`` object is created, so torch's compiler stack (about 1.5 s to import) is
  never loaded; the slots keep torch's names and layout, so the plain path, ``save`` and
  ``load_model`` continue from them.

``training.select_step`` is the one place that chooses this step: ``unsupported`` says why a
model cannot use it (and the loop falls back to ``training.train_step``).
``tests/test_training_fastpath.py`` checks both paths give the same losses and weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import activations
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .layers import Dense

_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")
_LOSS_KINDS = {
    losses_module.MeanSquaredError: "mse",
    losses_module.MeanAbsoluteError: "mae",
    losses_module.CategoricalCrossentropy: "categorical",
    losses_module.SparseCategoricalCrossentropy: "sparse",
    losses_module.BinaryCrossentropy: "binary",
}
_OPTIMIZERS = (optimizers_module.Adam, optimizers_module.SGD, optimizers_module.RMSprop)


def unsupported(ctx, optimizer, weighted: bool) -> str | None:
    """Why the fused step cannot train this model, or None when it can.

    Args:
        ctx: the fit's ``training.StepContext``.
        optimizer: the model's trainwell optimizer.
        weighted: whether batches carry sample or class weights.

    Returns:
        A short reason for the debug log, or None.
    """
    model = ctx.model
    if not _plain_chain(model):
        return "the model is not a chain of layers on one input of rank 2"
    for layer in model.layers:
        if type(layer) is not Dense:
            return f"layer {layer.name!r} is a {type(layer).__name__}, not a Dense"
        if not layer.trainable:
            return f"layer {layer.name!r} is frozen"
    if ctx.regularized:
        return "a layer has a weight regularizer"
    hidden = [_activation_name(layer) for layer in model.layers[:-1]]
    last = "linear" if ctx.fused else _activation_name(model.layers[-1])
    for name in hidden + [last]:
        if name not in _ACTIVATIONS:
            return f"activation {name!r} is not one of {_ACTIVATIONS}"
    loss_kind = _LOSS_KINDS.get(type(ctx.loss))
    if loss_kind is None:
        return f"loss {getattr(ctx.loss, 'name', ctx.loss)!r} has no fused gradient"
    if loss_kind in ("categorical", "sparse", "binary") and not ctx.fused:
        return "a cross-entropy without its softmax/sigmoid output layer"
    if ctx.loss.reduction not in ("sum_over_batch_size", "mean") or ctx.loss_weight != 1.0:
        return "a non-default loss reduction or loss_weights"
    if getattr(ctx.loss, "_fn_kwargs", {}).get("label_smoothing"):
        return "label_smoothing"
    if weighted:
        return "sample_weight or class_weight"
    if type(optimizer) not in _OPTIMIZERS:
        return f"optimizer {type(optimizer).__name__} has no fused update"
    if optimizer.weight_decay or optimizer.clipnorm or optimizer.clipvalue or optimizer.global_clipnorm:
        return "weight decay or gradient clipping"
    if model.device.type != "cpu":
        return f"device {model.device} (the fused step is written for the CPU)"
    return None


def _activation_name(layer) -> str:
    """The layer's activation name among ``_ACTIVATIONS``, or 'other'."""
    for name in _ACTIVATIONS:
        if layer.activation is activations.get(name):
            return name
    return "other"


class FlatParameters:
    """Trainable tensors rebound as views of one flat buffer, with a flat gradient of the same layout.

    Each ``Parameter`` object stays the same (callbacks, ``get_weights`` and the optimizer's
    slots keep working); only its storage moves. ``p.grad`` is the matching view of ``grad``.

    Args:
        params: the model's trainable parameters, in order.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.spans = []
        offset = 0
        for p in params:
            self.spans.append((offset, p.numel()))
            offset += p.numel()
        self.data = torch.empty(offset, dtype=params[0].dtype, device=params[0].device)
        self.grad = torch.zeros_like(self.data)
        for p, view in zip(params, self.views(self.data)):
            view.copy_(p.detach())
            p.data = view
        for p, view in zip(params, self.views(self.grad)):
            p.grad = view

    def bound(self) -> bool:
        """Whether the parameters still live in this buffer (a later FlatParameters moves them)."""
        return self.params[0].data_ptr() == self.data.data_ptr()

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views of a flat buffer of this layout."""
        return [flat[o:o + k].view_as(p) for p, (o, k) in zip(self.params, self.spans)]

    def slot(self, optimizer, name: str) -> torch.Tensor:
        """A flat optimizer slot; each parameter's slot ``name`` becomes a view of it (values kept)."""
        flat = torch.zeros_like(self.data)
        for p, view in zip(self.params, self.views(flat)):
            state = optimizer.state_for(p)
            if state.get(name) is not None:
                view.copy_(state[name])
            state[name] = view
        return flat

    def step_counts(self, optimizer) -> torch.Tensor:
        """torch's per-parameter ``step`` (0-d float32 on the CPU) as views of one vector."""
        steps = torch.zeros(len(self.params))
        for i, p in enumerate(self.params):
            state = optimizer.state_for(p)
            if "step" in state:
                steps[i] = state["step"]
            state["step"] = steps[i]
        return steps


class FusedUpdate:
    """The optimizer's update on flat buffers; the same numbers as its torch optimizer.

    Adam uses torch's fused CPU kernel (the one behind ``torch.optim.Adam(fused=True)``), with
    Keras's epsilon mapped as in ``optimizers.Adam``; SGD and RMSprop are written out on the
    flat buffers, in the order torch.optim's foreach code (SGD) and
    ``optimizers._KerasRMSpropEngine`` (RMSprop) run them.

    Args:
        optimizer: a built trainwell ``Adam``, ``SGD`` or ``RMSprop``.
        flat: the model's ``FlatParameters``.
    """

    def __init__(self, optimizer, flat: FlatParameters):
        self.optimizer, self.flat = optimizer, flat
        self.kind = type(optimizer).__name__
        if self.kind == "Adam":
            self.m, self.v = flat.slot(optimizer, "exp_avg"), flat.slot(optimizer, "exp_avg_sq")
            self.vmax = [flat.slot(optimizer, "max_exp_avg_sq")] if optimizer.amsgrad else []
            self.steps = flat.step_counts(optimizer)
        elif self.kind == "SGD":
            self.buf = flat.slot(optimizer, "momentum_buffer") if optimizer.momentum else None
        else:
            self.velocity = flat.slot(optimizer, "velocity")
            self.average = flat.slot(optimizer, "average_gradient") if optimizer.centered else None
            self.buf = flat.slot(optimizer, "momentum") if optimizer.momentum else None

    def __call__(self) -> None:
        """One update from ``flat.grad``; advances ``optimizer.iterations`` as ``Optimizer.step`` does."""
        opt = self.optimizer
        lr = opt.learning_rate
        getattr(self, "_" + self.kind.lower())(opt, lr, self.flat.data, self.flat.grad)
        opt.iterations += 1

    def _adam(self, opt, lr, w, g):
        self.steps.add_(1)
        torch._fused_adam_([w], [g], [self.m], [self.v], self.vmax, [self.steps[0]], lr=lr,
                           beta1=opt.beta_1, beta2=opt.beta_2, weight_decay=0.0,
                           eps=opt.torch_epsilon(opt.iterations + 1), amsgrad=opt.amsgrad, maximize=False)

    def _sgd(self, opt, lr, w, g):
        if self.buf is not None:
            self.buf.mul_(opt.momentum).add_(g)
            g = g.add(self.buf, alpha=opt.momentum) if opt.nesterov else self.buf
        w.add_(g, alpha=-lr)

    def _rmsprop(self, opt, lr, w, g):
        rho = opt.rho
        self.velocity.mul_(rho).addcmul_(g, g, value=1 - rho)
        if self.average is not None:
            self.average.mul_(rho).add_(g, alpha=1 - rho)
            denominator = torch.addcmul(self.velocity, self.average, self.average, value=-1)
            denominator.add_(opt.epsilon)
        else:
            denominator = torch.add(self.velocity, opt.epsilon)
        denominator.sqrt_()
        increment = torch.mul(g, lr).div_(denominator)
        if self.buf is not None:
            increment = self.buf.mul_(opt.momentum).add_(increment)
        w.sub_(increment)


class FusedDenseStep:
    """``training.train_step`` for a plain Dense stack, without autograd; same call signature.

    A layer's kernel (in, out) and bias (out,) lie one after the other in the flat buffer, so
    together they are one (in + 1, out) matrix; the activations feeding a layer with a bias
    carry a last column of ones. Then one product gives a layer's output with its bias added,
    and one product gives the gradient of its kernel and bias together (``[h, 1]ᵀ d``): two
    fewer kernels per layer than ``addmm`` + ``sum``, which matters when each costs a few µs.
    The first layer reads the caller's batch, which has no such column: ``addmm`` and ``sum``.

    The flat buffers are set up at the first call, not here: ``select_step`` runs before the
    callbacks' ``on_train_begin``, which may restore weights and optimizer state.

    Args:
        ctx: the fit's ``training.StepContext`` (``unsupported(ctx, ...)`` returned None).
    """

    def __init__(self, ctx):
        layers = ctx.model.layers
        self.fan_in = [layer.kernel.shape[0] for layer in layers]
        self.units = [layer.kernel.shape[1] for layer in layers]
        self.biased = [layer.bias is not None for layer in layers]
        acts = [_activation_name(layer) for layer in layers]
        if ctx.fused:
            acts[-1] = "linear"  # the loss takes logits
        self.loss_kind = _LOSS_KINDS[type(ctx.loss)]
        # Per layer: the in-place activation (None for linear) and its backward, looked up once.
        self.act_inplace = [_INPLACE.get(act) for act in acts]
        self.act_backward = [_BACKWARD.get(act) for act in acts]
        self.update = None
        self.rows = 0
        self.metric_kinds = None

    def _setup(self, ctx, optimizer) -> None:
        self.flat = FlatParameters(ctx.model.trainable_parameters())
        self.update = FusedUpdate(optimizer, self.flat)
        # Views of the flat buffers (plain tensors: no autograd bookkeeping, no grad mode needed).
        self.weights = self._layer_views(self.flat.data)
        self.grads = self._layer_views(self.flat.grad)
        self.kernels_t = [kernel.t() for kernel, _, _ in self.weights]

    def _layer_views(self, flat: torch.Tensor) -> list[tuple]:
        """Per layer (kernel, bias or None, kernel-and-bias as one matrix or the kernel) of ``flat``."""
        views, offset = [], 0
        for fan_in, units, biased in zip(self.fan_in, self.units, self.biased):
            size = (fan_in + biased) * units
            both = flat[offset:offset + size].view(fan_in + biased, units)
            views.append((both[:fan_in], both[fan_in] if biased else None, both))
            offset += size
        return views

    def _allocate(self, rows: int, like: torch.Tensor) -> None:
        """Activation and gradient buffers for batches of up to ``rows`` rows."""
        self.rows = rows
        # A layer's output buffer has the ones column when the next layer has a bias.
        ones = self.biased[1:] + [False]
        self.full = [like.new_empty((rows, u + extra)) for u, extra in zip(self.units, ones)]
        for buffer, extra in zip(self.full, ones):
            if extra:
                buffer[:, -1] = 1.0
        self.views = self._batch_views(rows)

    def _batch_views(self, n: int) -> tuple[list, list, list, list]:
        """Per layer, for a batch of ``n`` rows: its output with the ones column (the next layer's
        input), that transposed, the output alone, and a buffer for the gradient w.r.t. it."""
        full = [b[:n] for b in self.full]
        outs = [b[:, :u] for b, u in zip(full, self.units)]
        dz = [b.new_empty((n, u)) for b, u in zip(full, self.units)]
        return full, [b.t() for b in full], outs, dz

    def __call__(self, ctx, optimizer, xb, yb, wb) -> torch.Tensor:
        if self.update is None or not self.flat.bound():  # first call, or another step rebound them
            self._setup(ctx, optimizer)
        n = xb.shape[0]
        if n > self.rows:
            self._allocate(n, xb)
        # Full batches use the views made once in _allocate; only a short last batch makes new ones.
        full, full_t, outs, dz = self.views if n == self.rows else self._batch_views(n)
        kernel, bias, _ = self.weights[0]
        if bias is not None:
            torch.addmm(bias, xb, kernel, out=outs[0])
        else:
            torch.mm(xb, kernel, out=outs[0])
        for i, act in enumerate(self.act_inplace):
            if i:
                torch.mm(full[i - 1], self.weights[i][2], out=outs[i])
            if act is not None:
                act(outs[i])
        h = outs[-1]
        loss, d = self._loss_and_grad(h, yb, n, dz[-1])
        for i in range(len(self.units) - 1, -1, -1):
            backward = self.act_backward[i]
            if backward is not None:
                d = backward(d, outs[i])
            grad_kernel, grad_bias, grad_both = self.grads[i]
            if i:
                torch.mm(full_t[i - 1], d, out=grad_both)
                d = torch.mm(d, self.kernels_t[i], out=dz[i - 1])
            else:
                torch.mm(xb.t(), d, out=grad_kernel)
                if grad_bias is not None:
                    torch.sum(d, 0, out=grad_bias)
        self.update()
        if ctx.metrics:
            self._update_metrics(ctx, h, yb, wb)
        return loss

    def _update_metrics(self, ctx, out, yb, wb) -> None:
        """The training metrics' per-batch update; the accuracies count hits directly (same sums)."""
        if self.metric_kinds is None:  # once per fit: ctx.metrics are fixed by then
            self.metric_kinds = [(metric, _hit_kind(metric, out)) for _, metric in ctx.metrics]
            self.predictions = _PREDICTIONS.get(ctx.output_activation, ctx.predictions)
        pred = self.predictions(out)
        for metric, kind in self.metric_kinds:
            if kind == "categorical":
                metric._add_hits(torch.eq(yb.argmax(-1), pred.argmax(-1)))
            elif kind == "sparse":
                metric._add_hits(torch.eq(yb, pred.argmax(-1)))
            elif kind == "binary":
                metric._add_hits(torch.eq(yb[:, 0], torch.gt(pred[:, 0], metric._fn_kwargs["threshold"])
                                          .to(yb.dtype)))
            else:
                metric.update_state(yb, pred, wb)

    def _loss_and_grad(self, out, y, n, d):
        """Batch loss (0-d) and its gradient w.r.t. ``out`` (written into ``d`` where it can), as the
        Keras loss and autograd give them."""
        kind = self.loss_kind
        if kind in ("mse", "mae"):
            torch.sub(out, y, out=d)
            if kind == "mse":
                loss = d.square().mean()
                return loss, d.mul_(2.0 / d.numel())
            loss = d.abs().mean()
            return loss, d.sign_().div_(d.numel())
        if kind == "binary":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, y)
            torch.sigmoid(out, out=d)
            return loss, d.sub_(y).div_(d.numel())
        log_prob = torch.log_softmax(out, 1)
        if kind == "categorical":
            loss = torch.dot(y.view(-1), log_prob.view(-1)).div_(-n)
            grad_log_prob = torch.mul(y, -1.0 / n)
        else:
            loss = log_prob.gather(1, y.unsqueeze(1)).sum().div_(-n)
            grad_log_prob = torch.zeros_like(log_prob).scatter_(1, y.unsqueeze(1), -1.0 / n)
        return loss, torch._log_softmax_backward_data(grad_log_prob, log_prob, 1, log_prob.dtype)


def _hit_kind(metric, out: torch.Tensor) -> str | None:
    """Which accuracy ``metric`` is, when its per-sample values are 0/1 hits the step can count.

    Only the exact built-in classes with their own functions qualify (a subclass may override
    anything); binary accuracy only for one output column, where its per-sample mean over the
    last axis is the single comparison itself.
    """
    kind = type(metric)
    fn = getattr(metric, "fn", None)
    if kind is metrics_module.CategoricalAccuracy and fn is metrics_module.categorical_accuracy:
        return "categorical"
    if kind is metrics_module.SparseCategoricalAccuracy and fn is metrics_module.sparse_categorical_accuracy:
        return "sparse"
    if (kind is metrics_module.BinaryAccuracy and fn is metrics_module.binary_accuracy and out.dim() == 2
            and out.shape[1] == 1 and set(metric._fn_kwargs) == {"threshold"}):
        return "binary"
    return None


# The in-place activations of the forward, and dL/dz from (dL/dh, h = act(z)) with the kernels
# autograd uses for them; linear is absent from both (nothing to do).
_INPLACE = {"relu": torch.Tensor.relu_, "tanh": torch.Tensor.tanh_, "sigmoid": torch.Tensor.sigmoid_}
# They write into ``grad`` (elementwise, so aliasing is safe): a fresh output of 1 MB per call
# costs its page faults, ~0.6 ms per layer and step on the `wide` benchmark. The overloads are
# called directly: the overload packet costs ~3 µs more per call.
_aten = torch.ops.aten
_BACKWARD = {
    "relu": lambda grad, out: _aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad),
    "tanh": lambda grad, out: _aten.tanh_backward.grad_input(grad, out, grad_input=grad),
    "sigmoid": lambda grad, out: _aten.sigmoid_backward.grad_input(grad, out, grad_input=grad),
}


# The fused output activations called directly (the same kernels as ``activations``, two Python
# layers fewer per batch).
_PREDICTIONS = {activations.get("softmax"): lambda out: torch.softmax(out, -1),
                activations.get("sigmoid"): torch.sigmoid}


# In-place forms for inference (under inference_mode nothing needs the pre-activation).
_INFERENCE_ACTIVATIONS = {"linear": None, "relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_,
                          "softmax": lambda h: torch.softmax(h, -1)}


def _plain_chain(model) -> bool:
    """A graph model that is one chain of layers, fed samples of one axis (what the plans handle)."""
    return getattr(model, "is_chain", True) and len(model.input_shape_hint or ()) == 1


def inference_forward(model, logits: bool = False):
    """A forward function for ``predict`` on a Dense-only model, or None for any other model.

    It calls ``addmm`` and the activation directly, skipping ``nn.Module.__call__`` and the
    layers' shape handling: about 10 µs per layer, most of a one-row predict. The plan is cached
    on the model and rebuilt when the model's ``_version`` changes (layers added or removed,
    weights built, device moved).

    Args:
        model: a built ``Sequential``.
        logits: leave out the last layer's activation (fit's validation, where the loss takes
            the logits of a fused softmax or sigmoid).

    Returns:
        ``forward(x) -> outputs`` (the same numbers as ``model.call``), or None.
    """
    plan = _plan(model)
    return None if plan is None else plan[1][logits]


def _plan(model):
    """The model's cached ``(version, (forward, logits_forward), sample_shape, on_cpu)``; None if unbuilt."""
    cached = model.__dict__.get("_inference_plan")
    if cached is not None and cached[0] == model._version:
        return cached
    layers = list(model._stack)
    if not layers or any(getattr(layer, "kernel", 0) is None for layer in layers):
        return None  # not built yet: nothing to cache
    if not _plain_chain(model):
        return None
    steps = []
    for layer in layers:
        name = _activation_name(layer) if type(layer) is Dense else None
        if name == "other" and layer.activation is activations.get("softmax"):
            name = "softmax"
        if name not in _INFERENCE_ACTIVATIONS:
            steps = None
            break
        steps.append((layer.kernel, layer.bias, _INFERENCE_ACTIVATIONS[name]))
    forwards = (None, None)
    if steps is not None:
        kernel, bias, _ = steps[-1]
        forwards = (_plan_forward(steps), _plan_forward(steps[:-1] + [(kernel, bias, None)]))
    cached = (model._version, forwards, model.input_shape_hint, model.device.type == "cpu")
    model.__dict__["_inference_plan"] = cached
    return cached


def predict_array(model, x, max_rows: int):
    """``model.predict(x)`` for a numpy array that needs nothing but the forward pass, or None.

    That is a 2-D float32 or float64 array of the model's sample shape, of at most ``max_rows``
    rows, without NaN or inf, for a Dense-only model on the CPU. A C-ordered, writable float32
    array is shared, not copied; others are converted with numpy (float64 → float32 rounds as
    torch's conversion does; values beyond float32's range become inf, silently, and are then
    found with the NaN and inf). For anything else the caller takes the general path, which
    gives the same numbers and the descriptive errors.

    This is the whole of a one-row predict, so it is written for as few interpreter steps as
    possible: one cache lookup, a few attribute checks, autograd switched off by a function
    call rather than a context manager, and the finite check as a sum taken in torch with the
    forward (a finite sum means every value is finite; one that overflowed sends the input to
    the exact check). About 20 µs for the course's models where the general path costs ~100 µs.
    """
    plan = _plan(model)
    if plan is None or plan[1][0] is None or not plan[3]:
        return None
    if x.ndim != 2 or x.shape[1:] != plan[2] or not 0 < x.shape[0] <= max_rows:
        return None
    if x.dtype == np.float32 and x.flags.c_contiguous and x.flags.writeable:
        arr = x
    elif x.dtype in (np.float32, np.float64):
        with np.errstate(over="ignore"):  # a new, writable array: torch warns on read-only ones
            arr = np.array(x, dtype=np.float32, order="C")
    else:
        return None
    xt = torch.from_numpy(arr)
    enabled = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    try:
        total = xt.sum()
        out = plan[1][0](xt)
    finally:
        torch.set_grad_enabled(enabled)
    return out.numpy() if math.isfinite(total.item()) else None


def _plan_forward(plan):
    def forward(x: torch.Tensor) -> torch.Tensor:
        for kernel, bias, act in plan:
            x = torch.addmm(bias, x, kernel) if bias is not None else torch.mm(x, kernel)
            if act is not None:
                x = act(x)
        return x
    return forward
