"""The fused training step for chains of layers: forward and backward written out, no autograd.

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

The layers it covers (Dense, Activation, Dropout, BatchNormalization, Normalization, with every
named activation and L1/L2 regularizers) are written out in ``fused_layers``; sample and class
weights, every trainwell optimizer and every built-in loss are covered here (``loss_kind``:
the common ones in closed form, the others differentiated by autograd on the outputs alone).
``training.select_step`` is the one place that chooses this step: ``unsupported`` says why a
model cannot use it (and the loop falls back to ``training.train_step``); ``FALLBACKS`` lists
what still does.
``tests/test_training_fastpath.py`` checks both paths give the same losses and weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import activations
from . import layers as layers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import regularizers as regularizers_module
from .fused_layers import (
    ACTIVATIONS,
    ActivationStage,
    BatchNormStage,
    DenseStage,
    DropoutMasks,
    DropoutStage,
    MovingAverages,
    NormalizationStage,
    RescalingStage,
    activation_kernels,
    activation_name,
)
from .layers import Activation, BatchNormalization, Dense, Dropout, InputLayer, Normalization
from .layers.normalization import inference_batch_norm

_LOSS_KINDS = {
    losses_module.MeanSquaredError: "mse",
    losses_module.MeanAbsoluteError: "mae",
    losses_module.CategoricalCrossentropy: "categorical",
    losses_module.SparseCategoricalCrossentropy: "sparse",
    losses_module.BinaryCrossentropy: "binary",
    losses_module.Huber: "huber",
    losses_module.LogCosh: "log_cosh",
}
# The closed forms ``StackedDenseStep`` writes out.
_STACKED_LOSSES = ("mse", "mae", "categorical", "sparse", "binary")
_CROSS_ENTROPIES = ("categorical", "sparse", "binary")


def loss_kind(ctx) -> str | None:
    """How the fused step takes the gradient of the fit's loss (``ctx.loss``).

    Returns:
        A closed form written out (``_LOSS_KINDS``: mse, mae, Huber, log-cosh, the cross-entropies
        on logits) with the default reduction and no label smoothing; ``'autograd'`` for any other
        built-in loss or option (the loss's own function on a leaf copy of the outputs, so autograd
        records the loss alone and the layers stay written out); None for a custom loss, which may
        read anything (the model's weights included): the plain path. (``training.StepContext``
        has already refused reduction ``'none'``.)
    """
    loss = ctx.loss
    kind = _LOSS_KINDS.get(type(loss))
    if (kind is not None and loss.reduction in ("sum_over_batch_size", "mean")
            and not getattr(loss, "_fn_kwargs", {}).get("label_smoothing")
            and (kind not in _CROSS_ENTROPIES or ctx.fused)):
        return kind
    return "autograd" if losses_module.is_builtin(loss) else None


# Optimizers whose update is written out on the flat buffers, with the name of their FusedUpdate
# method; any other optimizer runs its own step on the parameters, whose gradients are views of the
# flat gradient.
_FLAT_UPDATES = {optimizers_module.Adam: "adam", optimizers_module.SGD: "sgd",
                 optimizers_module.RMSprop: "rmsprop", optimizers_module.Adagrad: "adagrad",
                 optimizers_module.Adadelta: "adadelta", optimizers_module.Nadam: "nadam",
                 optimizers_module._RuleOptimizer: "rule"}
_REGULARIZERS = (regularizers_module.L1, regularizers_module.L2, regularizers_module.L1L2)
# Rescaling arrives with the layer families of the functional API; covered wherever it exists.
_RESCALING = getattr(layers_module, "Rescaling", None)
# Stages without weights that change the gradient elementwise on its way back.
_ELEMENTWISE = (ActivationStage, DropoutStage, NormalizationStage, RescalingStage)
_LAYERS = tuple(kind for kind in (Dense, Activation, Dropout, BatchNormalization, Normalization, InputLayer,
                                  _RESCALING) if kind is not None)

FALLBACKS = (
    "a layer other than Dense, Activation, Dropout, BatchNormalization, Normalization (or a graph "
    "that is not a chain)",
    "a frozen Dense or BatchNormalization layer (trainable=False)",
    "a custom (callable) activation or regularizer; an Activation layer first",
    "inputs of more than one feature axis",
    "a custom loss (a function or Loss subclass of your own)",
    "a device other than the CPU, DDP, mixed precision",
)
"""What still trains with autograd (``training.train_step``; on one CPU process with the flat
optimizer update, ``FlatUpdateStep``); the debug log names the layer or option each time."""


def layer_chain(model) -> list | None:
    """The model's layers in call order when its graph is one chain (each layer reading the one
    before, one input, one output), else None.

    A ``Sequential`` is a chain; a graph model says whether it is one with ``is_chain`` (and keeps
    its layers in call order), so a functional model of Dense-family layers in a chain takes the
    same fused step, stages and inference plan as the equivalent ``Sequential``.
    """
    return list(model.layers) if getattr(model, "is_chain", True) else None


def unsupported(ctx, optimizer, weighted: bool = False) -> str | None:
    """Why the fused step cannot train this model, or None when it can.

    Args:
        ctx: the fit's ``training.StepContext``.
        optimizer: the model's trainwell optimizer.
        weighted: whether batches carry sample or class weights (covered; kept for the callers).

    Returns:
        A short reason for the debug log, naming the layer or option, or None.
    """
    model = ctx.model
    chain = layer_chain(model)
    if chain is None:
        return "the model's layers do not form a chain"
    if len(model.input_shape_hint or ()) != 1:
        return f"inputs of shape {model.input_shape_hint} (the fused step takes one feature axis)"
    first = True
    for layer in chain:
        reason = _layer_unsupported(layer, first)
        if reason:
            return reason
        first = first and type(layer) is InputLayer
    if not model.trainable_parameters():
        return "the model has no trainable weights"
    if loss_kind(ctx) is None:
        name = getattr(ctx.loss, "name", ctx.loss)
        return f"loss {name!r} is a custom loss (it may read more than the outputs)"
    if not isinstance(optimizer, optimizers_module.Optimizer):
        return f"optimizer {type(optimizer).__name__} is not a trainwell optimizer"
    if model.device.type != "cpu":
        return f"device {model.device} (the fused step is written for the CPU)"
    return None


def _layer_unsupported(layer, first: bool) -> str | None:
    """Why one layer of the chain keeps the fused step away, or None."""
    where = f"layer {layer.name!r}"
    if type(layer) not in _LAYERS:
        return f"{where} is a {type(layer).__name__}, which the fused step does not cover"
    if not layer.trainable and type(layer) in (Dense, BatchNormalization):
        return f"{where} is frozen"
    if type(layer) in (Dense, Activation):
        name = activation_name(layer.activation)
        if name not in ACTIVATIONS:
            return f"{where} has a custom activation {getattr(layer.activation, '__name__', '')!r}"
        if type(layer) is Activation and first and name != "linear":
            return f"{where}: an activation as the first layer"
    if type(layer) is Dense:
        for kind in ("kernel", "bias"):
            reg = getattr(layer, f"{kind}_regularizer")
            if reg is not None and type(reg) not in _REGULARIZERS:
                return f"{where} has a custom {kind}_regularizer"
    return None


def build_stages(chain, width: int, fused_output: bool) -> list:
    """The fused step's stages for a chain of layers ``unsupported`` accepted.

    Args:
        chain: the layers in call order.
        width: the number of input features.
        fused_output: the loss takes the logits, so the last layer's activation is left out.
    """
    stages = []
    for i, layer in enumerate(chain):
        kind = type(layer)
        if kind is Dense:
            stages.append(DenseStage(layer))
            width = stages[-1].width
            name = activation_name(layer.activation)
            if fused_output and i == len(chain) - 1:
                name = "linear"
        elif kind is Activation:
            name = activation_name(layer.activation)
        elif kind is Dropout:
            if layer.rate:
                stages.append(DropoutStage(layer, width))
            name = "linear"
        elif kind is BatchNormalization:
            width = layer.moving_mean.shape[0]
            stages.append(BatchNormStage(layer, width))
            name = "linear"
        elif kind is Normalization:
            width = layer.mean.shape[0]
            stages.append(NormalizationStage(layer, width))
            name = "linear"
        elif kind is _RESCALING:
            stages.append(RescalingStage(layer, width))
            name = "linear"
        else:  # InputLayer
            continue
        if name != "linear":
            # In place unless the stage before reads its own output in its backward.
            inplace = bool(stages) and not stages[-1].reads_output
            stages.append(ActivationStage(name, width, inplace))
    return stages


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
        self.grads = self.views(self.grad)  # each parameter's .grad, these very objects
        for p, view in zip(params, self.grads):
            p.grad = view

    def bound(self) -> bool:
        """Whether the parameters still live in this buffer (a later FlatParameters moves them)."""
        return self.params[0].data_ptr() == self.data.data_ptr()

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views of a flat buffer of this layout."""
        return [flat[o:o + k].view_as(p) for p, (o, k) in zip(self.params, self.spans)]

    def slot(self, optimizer, name: str, fill: float = 0.0) -> torch.Tensor:
        """A flat optimizer slot; each parameter's slot ``name`` becomes a view of it (values kept,
        ``fill`` where the parameter has none yet)."""
        flat = torch.full_like(self.data, fill)
        for p, view in zip(self.params, self.views(flat)):
            state = optimizer.state_for(p)
            if state.get(name) is not None:
                view.copy_(state[name])
            state[name] = view
        return flat

    def step_counts(self, optimizer) -> torch.Tensor:
        """torch's per-parameter ``step`` (0-d float32 on the CPU) as views of one vector."""
        return self.scalar_slot(optimizer, "step", 0.0)

    def scalar_slot(self, optimizer, name: str, fill: float) -> torch.Tensor:
        """A per-parameter 0-d float32 slot of torch's (``step``, NAdam's ``mu_product``) as views of
        one vector (values kept, ``fill`` where the parameter has none yet)."""
        values = torch.full((len(self.params),), fill)
        for i, p in enumerate(self.params):
            state = optimizer.state_for(p)
            if name in state:
                values[i] = state[name]
            state[name] = values[i]
        return values


class FusedUpdate:
    """The optimizer's update on flat buffers; the same numbers as its torch optimizer.

    Adam (and AdamW) use torch's fused CPU kernel (the one behind ``torch.optim.Adam(fused=True)``),
    with Keras's epsilon mapped as in ``optimizers.Adam``; SGD, RMSprop, Adagrad, Adadelta and
    Nadam are written out on the flat buffers, in the order torch.optim's foreach code (SGD,
    Adagrad, Adadelta, NAdam) and ``optimizers._KerasRMSpropEngine`` (RMSprop) run them; Adamax,
    Lion and Ftrl run their Keras rule (``optimizers._KerasRule``) once on the flat buffers.
    Every one of these is elementwise, so the flat update gives the per-parameter update's
    numbers. Clipping and weight decay come first, as in ``Optimizer.step``. Any other optimizer
    (a subclass with its own update) runs its own ``step`` on the parameters, whose gradients are
    views of the flat gradient.

    Args:
        optimizer: a built trainwell optimizer.
        flat: the model's ``FlatParameters``.
    """

    def __init__(self, optimizer, flat: FlatParameters):
        self.optimizer, self.flat = optimizer, flat
        kind = next((k for k in _FLAT_UPDATES if isinstance(optimizer, k)), None)
        # A subclass that changes the update itself (not only defaults) keeps its own step.
        if kind is not None and type(optimizer)._make_torch_optimizer is not kind._make_torch_optimizer:
            kind = None
        self.kind = None if kind is None else _FLAT_UPDATES[kind]
        self.grads = flat.grads
        self.clips = bool(optimizer.clipnorm or optimizer.clipvalue or optimizer.global_clipnorm)
        if self.kind == "adam":
            self.m, self.v = flat.slot(optimizer, "exp_avg"), flat.slot(optimizer, "exp_avg_sq")
            self.vmax = [flat.slot(optimizer, "max_exp_avg_sq")] if optimizer.amsgrad else []
            self.steps = flat.step_counts(optimizer)
            # The kernel's arguments, built once: each list and view costs a few µs per step.
            self.ones = torch.ones_like(self.steps)
            self.adam_tensors = ([flat.data], [flat.grad], [self.m], [self.v], self.vmax, [self.steps[0]])
        elif self.kind == "sgd":
            self.buf = flat.slot(optimizer, "momentum_buffer") if optimizer.momentum else None
        elif self.kind == "rmsprop":
            self.velocity = flat.slot(optimizer, "velocity")
            self.average = flat.slot(optimizer, "average_gradient") if optimizer.centered else None
            self.buf = flat.slot(optimizer, "momentum") if optimizer.momentum else None
        elif self.kind == "adagrad":  # torch's Adagrad, its accumulator started at initial + epsilon
            self.sum = flat.slot(optimizer, "sum", optimizer.initial_accumulator_value + optimizer.epsilon)
            self.steps = flat.step_counts(optimizer)
            self.scratch = (torch.empty_like(flat.data), torch.empty_like(flat.data))
        elif self.kind == "adadelta":
            self.square_avg = flat.slot(optimizer, "square_avg")
            self.acc_delta = flat.slot(optimizer, "acc_delta")
            self.steps = flat.step_counts(optimizer)
            self.scratch = (torch.empty_like(flat.data), torch.empty_like(flat.data))
        elif self.kind == "nadam":
            self.m, self.v = flat.slot(optimizer, "exp_avg"), flat.slot(optimizer, "exp_avg_sq")
            self.steps = flat.step_counts(optimizer)
            self.mu_products = flat.scalar_slot(optimizer, "mu_product", 1.0)
            self.scratch = torch.empty_like(flat.data)
        elif self.kind == "rule":
            rule, hyper = type(optimizer)._rule, optimizer._hyper()
            self.rule_update, self.group = rule.update, dict(hyper)
            self.slots = {name: flat.slot(optimizer, name, rule.initial(fill, hyper))
                          for name, fill in rule.SLOTS}
        self._update = None if self.kind is None else getattr(self, "_" + self.kind)

    def __call__(self) -> None:
        """One update from ``flat.grad``; advances ``optimizer.iterations`` as ``Optimizer.step`` does."""
        opt = self.optimizer
        if self.kind is None:
            if opt._params[0].grad is not self.grads[0]:  # another step set its own gradients
                for p, g in zip(self.flat.params, self.grads):
                    p.grad = g
            opt.step()
            return
        lr = opt.learning_rate
        if self.clips:
            opt._clip(self.grads)
        if opt.weight_decay:
            self.flat.data.mul_(1.0 - lr * opt.weight_decay)
        self._update(opt, lr, self.flat.data, self.flat.grad)
        opt.iterations += 1

    # What ``training.train_step`` calls on its optimizer (``FlatUpdateStep``).
    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def step(self) -> None:
        self()

    def _adam(self, opt, lr, w, g):
        self.steps.add_(self.ones)
        torch._fused_adam_(*self.adam_tensors, lr=lr, beta1=opt.beta_1, beta2=opt.beta_2, weight_decay=0.0,
                           eps=opt.torch_epsilon(opt.iterations + 1), amsgrad=opt.amsgrad, maximize=False)

    def _sgd(self, opt, lr, w, g):
        if self.buf is not None:
            self.buf.mul_(opt.momentum).add_(g)
            g = g.add(self.buf, alpha=opt.momentum) if opt.nesterov else self.buf
        w.add_(g, alpha=-lr)

    def _adagrad(self, opt, lr, w, g):
        # torch.optim's foreach Adagrad with lr_decay 0 and eps 0 (optimizers.Adagrad moves Keras's
        # epsilon into the accumulator): sum += g², w += (g * -lr) / sqrt(sum).
        self.steps.add_(1.0)
        std, numerator = self.scratch
        self.sum.addcmul_(g, g)
        torch.sqrt(self.sum, out=std)
        torch.mul(g, -lr, out=numerator)
        w.addcdiv_(numerator, std)

    def _adadelta(self, opt, lr, w, g):
        # torch.optim's foreach Adadelta, in its order.
        rho, eps = opt.rho, opt.epsilon
        self.steps.add_(1.0)
        std, delta = self.scratch
        self.square_avg.mul_(rho).addcmul_(g, g, value=1 - rho)
        torch.add(self.square_avg, eps, out=std).sqrt_()
        torch.add(self.acc_delta, eps, out=delta).sqrt_().div_(std).mul_(g)
        self.acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        w.add_(delta, alpha=-lr)

    def _nadam(self, opt, lr, w, g):
        # torch.optim's foreach NAdam with momentum_decay 1 (Keras's schedule, see optimizers.Nadam),
        # its Python-float step sizes from the step count and the float32 momentum product.
        b1, b2 = opt.beta_1, opt.beta_2
        self.steps.add_(1.0)
        step = self.steps[0].item()
        self.m.lerp_(g, 1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = torch.sqrt(self.v, out=self.scratch)
        mu = b1 * (1.0 - 0.5 * 0.96 ** step)
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** (step + 1))
        self.mu_products.mul_(mu)
        mu_product = self.mu_products[0].item()
        denom.div_((1 - b2 ** step) ** 0.5).add_(opt.epsilon)
        w.addcdiv_(g, denom, value=(lr * (1.0 - mu) / (1.0 - mu_product)) * -1)
        w.addcdiv_(self.m, denom, value=(lr * mu_next / (1.0 - mu_product * mu_next)) * -1)

    def _rule(self, opt, lr, w, g):
        self.group["lr"], self.group["step"] = lr, opt.iterations + 1
        self.rule_update(w, g, self.group, self.slots)

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


class FusedStep:
    """``training.train_step`` for a chain of layers, without autograd; same call signature.

    The chain becomes stages (``fused_layers``): each writes its output into a buffer allocated
    once per fit, or over its input when it can (activations whose gradient comes from their
    output). A buffer that feeds a biased Dense layer carries a last column of ones, so that
    layer's forward is one product and its kernel-and-bias gradient another. The loss gradient
    is written out for the losses in ``_LOSS_KINDS``, weighted per sample when the batch has
    weights, and taken by autograd on the outputs alone for the other built-in losses
    (``loss_kind``); L1/L2 penalties are added to the loss and the gradient before the update.

    The flat buffers are set up at the first call, not here: ``select_step`` runs before the
    callbacks' ``on_train_begin``, which may restore weights and optimizer state.

    Args:
        ctx: the fit's ``training.StepContext`` (``unsupported(ctx, ...)`` returned None).
    """

    def __init__(self, ctx):
        model = ctx.model
        self.chain = layer_chain(model)
        self.stages = build_stages(self.chain, model.input_shape_hint[-1], ctx.fused)
        self.first_trainable = next((i for i, st in enumerate(self.stages) if st.size), len(self.stages))
        # The stage owning each stage's output buffer (itself, or the one an in-place stage writes over).
        self.owner = []
        for i, stage in enumerate(self.stages):
            self.owner.append(self.owner[i - 1] if stage.inplace else i)
        # A buffer gets the ones column when a biased Dense stage reads it.
        self.extra = [0] * len(self.stages)
        for i, stage in enumerate(self.stages[1:], 1):
            if isinstance(stage, DenseStage) and stage.biased:
                self.extra[self.owner[i - 1]] = 1
        # The batch itself gets a ones column too when a biased Dense stage reads it: a copy costs
        # less than addmm's broadcast of the bias and a separate sum for its gradient.
        self.input_ones = isinstance(self.stages[0], DenseStage) and self.stages[0].biased
        self.moving = None
        drops = [stage for stage in self.stages if isinstance(stage, DropoutStage)]
        self.masks = DropoutMasks(drops) if drops else None
        self.loss_kind, self.loss = loss_kind(ctx), ctx.loss
        self.delta = float(getattr(ctx.loss, "_fn_kwargs", {}).get("delta", 1.0))  # Huber's
        self.loss_weight = ctx.loss_weight
        self.update = None
        self.rows = self.n = 0
        self.metric_kinds = None

    def _setup(self, ctx, optimizer) -> None:
        # The views kept per batch size hold the stages' weight views: remade, with the scratch.
        self.sized, self.rows, self.n = {}, 0, 0
        self.flat = FlatParameters(ctx.model.trainable_parameters())
        self.update = FusedUpdate(optimizer, self.flat)
        offset = 0
        for stage in self.stages:
            stage.bind(self.flat.data, self.flat.grad, offset)
            offset += stage.size
        norms = [stage for stage in self.stages if isinstance(stage, BatchNormStage)]
        self.moving = MovingAverages(norms) if norms else None
        # Each weight's L1 and L2 factors as vectors over the flat buffer (0 where unregularized), so
        # the penalties and their gradients are a few whole-buffer operations, however many layers.
        l1, l2 = torch.zeros_like(self.flat.data), torch.zeros_like(self.flat.data)
        views1, views2 = self.flat.views(l1), self.flat.views(l2)
        for layer in self.chain:
            for kind in ("kernel", "bias"):
                reg = getattr(layer, f"{kind}_regularizer", None)
                tensor = getattr(layer, kind, None)
                if reg is not None and tensor is not None:
                    i = next(i for i, p in enumerate(self.flat.params) if p is tensor)
                    views1[i].fill_(getattr(reg, "l1", 0.0))
                    views2[i].fill_(2.0 * getattr(reg, "l2", 0.0))
        self.l1 = l1 if bool(l1.any()) else None
        self.l2 = l2 if bool(l2.any()) else None
        self.penalties = self.l1 is not None or self.l2 is not None
        self.scratch = torch.empty_like(self.flat.data)

    def _allocate(self, rows: int, like: torch.Tensor) -> None:
        """Activation, gradient and scratch buffers for batches of up to ``rows`` rows."""
        self.rows, self.sized = rows, {}
        self.buffers = []
        for i, stage in enumerate(self.stages):
            buffer = None
            if self.owner[i] == i:
                buffer = like.new_empty((rows, stage.width + self.extra[i]))
                if self.extra[i]:
                    buffer[:, -1] = 1.0
            self.buffers.append(buffer)
            stage.allocate(rows, like)
        # A stage that wants its output's gradient in a buffer of its own gets it there from the
        # next Dense stage, through the elementwise stages between, whose backwards work in place
        # (one that does not, or no Dense stage, and the stage copies it in).
        for i, stage in enumerate(self.stages):
            if stage.grad_buffer is not None:
                after = next((s for s in self.stages[i + 1:] if not isinstance(s, _ELEMENTWISE)), None)
                if isinstance(after, DenseStage):
                    after.dx_full = stage.grad_buffer
        if self.masks is not None:
            self.masks.allocate(rows, like)
        if self.input_ones:
            self.input = like.new_empty((rows, self.stages[0].fan_in + 1))
            self.input[:, -1] = 1.0
        self.loss_grad = like.new_empty((rows, self.stages[-1].width))
        self.loss_grad_weighted = torch.empty_like(self.loss_grad)
        self.column_ones = like.new_ones(self.stages[-1].width)
        self._resize(rows)

    def _resize(self, n: int) -> None:
        """The views for a batch of ``n`` rows, made once per size: a fit switches between two
        sizes every epoch (full batches and the short last one), ~0.2 ms each time to remake."""
        kept = self.sized.get(n)
        if kept is None:
            self._make_views(n)
            parts = self.stages + ([self.masks] if self.masks is not None else [])
            kept = self.sized[n] = ({name: getattr(self, name) for name in self._SIZED},
                                    [(part, dict(vars(part))) for part in parts])
        else:
            self.__dict__.update(kept[0])
            for part, attrs in kept[1]:
                part.__dict__.update(attrs)

    # What ``_make_views`` sets on the step itself.
    _SIZED = ("n", "fulls", "fulls_t", "outs", "input_full", "input_x", "input_t", "d_last", "scales",
              "weighted")

    def _make_views(self, n: int) -> None:
        """Per stage, for a batch of ``n`` rows: its output with the ones column (the next stage's
        input), that transposed, and the output alone; the scratch of every stage."""
        self.n = n
        fulls = [self.buffers[o][:n] for o in self.owner]
        self.fulls = fulls
        self.fulls_t = [f.t() for f in fulls]
        self.outs = [f[:, :f.shape[1] - self.extra[o]] if self.extra[o] else f
                     for f, o in zip(fulls, self.owner)]
        self.input_full = self.input_x = self.input_t = None
        if self.input_ones:
            self.input_full = self.input[:n]
            self.input_x, self.input_t = self.input_full[:, :-1], self.input_full.t()
        self.d_last = self.loss_grad[:n]
        # The loss's constants as 0-d tensors (a Python float costs a conversion per operation):
        # 1 / values, the gradient's factor (2 / values for mse), -1 / n.
        count = n * self.stages[-1].width
        factor = 2.0 if self.loss_kind == "mse" else 1.0
        self.scales = tuple(torch.tensor(v) for v in (1.0 / count, factor / count, -1.0 / n))
        self.weighted = self.loss_grad_weighted[:n]  # scratch: the weighted gradient of mse
        for stage in self.stages:
            stage.resize(n)
        if self.masks is not None:
            self.masks.resize(n)

    def __call__(self, ctx, optimizer, xb, yb, wb) -> torch.Tensor:
        if (self.update is None or not self.flat.bound()
                or (self.moving is not None and not self.moving.bound())):
            # first call, or another step rebound them
            self._setup(ctx, optimizer)
        n = xb.shape[0]
        if n > self.rows:
            self._allocate(n, xb)
        elif n != self.n:  # a short last batch, or the first full one after it
            self._resize(n)
        stages, outs, fulls = self.stages, self.outs, self.fulls
        if self.masks is not None:
            self.masks.draw()
        if self.input_ones:
            x, x_full, x_full_t = self.input_x.copy_(xb), self.input_full, self.input_t
        else:
            x = x_full = xb
            x_full_t = xb.t() if self.first_trainable == 0 else None
        inputs = (x, x_full_t)
        for i, stage in enumerate(stages):
            stage.forward(x, x_full, outs[i])
            x, x_full = outs[i], fulls[i]
        if self.moving is not None:
            self.moving.update()
        loss, d = self._loss_and_grad(x, yb, wb, n, self.d_last)
        first = self.first_trainable
        for i in range(len(stages) - 1, first - 1, -1):
            x, x_full_t = (outs[i - 1], self.fulls_t[i - 1]) if i else inputs
            d = stages[i].backward(d, x, x_full_t, outs[i], i > first)
        if self.penalties:
            loss = self._add_penalties(loss)
        self.update()
        if ctx.metrics:
            self._update_metrics(ctx, outs[-1], yb, wb)
        return loss

    def _add_penalties(self, loss: torch.Tensor) -> torch.Tensor:
        """The L1/L2 penalties of the weights before the update, added to the loss and the gradient
        (``l1 * sum|w| + l2 * sum w²`` and ``l1 * sign(w) + 2 * l2 * w``, as autograd gives them)."""
        w, g, scratch = self.flat.data, self.flat.grad, self.scratch
        if self.l2 is not None:
            torch.mul(w, self.l2, out=scratch)  # 2 * l2 * w
            g.add_(scratch)
            loss = torch.add(loss, torch.dot(scratch, w), alpha=0.5)
        if self.l1 is not None:
            loss = torch.add(loss, torch.dot(torch.abs(w, out=scratch), self.l1))
            g.addcmul_(torch.sign(w, out=scratch), self.l1)
        return loss

    def _update_metrics(self, ctx, out, yb, wb) -> None:
        """The training metrics' per-batch update; the accuracies count hits directly (same sums)."""
        if self.metric_kinds is None:  # once per fit: ctx.metrics are fixed by then
            self.metric_kinds = [(metric, _hit_kind(metric, out)) for _, metric in ctx.metrics]
            self.predictions = _PREDICTIONS.get(ctx.output_activation, ctx.predictions)
        pred = self.predictions(out)
        for metric, kind in self.metric_kinds:
            if kind is None or (wb is not None and metric.weighted):  # the metric's own update
                metric.update_state(yb, pred, wb if metric.weighted else None)
            elif kind == "categorical":
                metric._add_hits(torch.eq(yb.argmax(-1), pred.argmax(-1)))
            elif kind == "sparse":
                metric._add_hits(torch.eq(yb, pred.argmax(-1)))
            else:
                metric._add_hits(torch.eq(yb[:, 0], torch.gt(pred[:, 0], metric._fn_kwargs["threshold"])
                                          .to(yb.dtype)))

    def _loss_and_grad(self, out, y, w, n, d):
        """Batch loss (0-d) and its gradient w.r.t. ``out`` (written into ``d`` where it can), as the
        Keras loss and autograd give them: per-sample losses times ``w``, summed, divided by n."""
        kind, (inv_count, grad_scale, minus_inv_n) = self.loss_kind, self.scales
        if kind == "autograd":
            # The loss's own function on a leaf sharing the outputs' memory: autograd records the
            # loss alone, and its gradient is the plain path's gradient at the outputs.
            leaf = out.detach().requires_grad_()
            with torch.enable_grad():
                loss = self.loss(y, leaf, w)
            (d,) = torch.autograd.grad(loss, leaf)
            loss = loss.detach()
        elif kind in ("binary", "mse", "mae", "huber", "log_cosh"):
            if kind == "binary":
                values = torch.nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none")
                torch.sigmoid(out, out=d).sub_(y)
            else:
                torch.sub(out, y, out=d)
                # mse needs no per-value losses: its (weighted) sum of squares is one dot product.
                values = None
                if kind == "mae":
                    values = d.abs()
                    d.sign_()
                elif kind == "huber":  # autograd's gradient: the error clamped to [-delta, delta]
                    values = torch.nn.functional.huber_loss(out, y, reduction="none", delta=self.delta)
                    d.clamp_(-self.delta, self.delta)
                elif kind == "log_cosh":  # x + softplus(-2x) - log 2, as losses.log_cosh; tanh(x)
                    values = torch.nn.functional.softplus(d * -2.0).add_(d).sub_(math.log(2.0))
                    d.tanh_()
            flat = d.view(-1)
            if w is None:
                loss = (torch.dot(flat, flat) if values is None else values.sum()).mul_(inv_count)
                d.mul_(grad_scale)
            elif values is None:  # sum_i w_i sum_j d_ij² / (n k), and its gradient 2 w_i d_ij / (n k)
                weighted = torch.mul(d, w.unsqueeze(1), out=self.weighted)
                loss = torch.dot(weighted.view(-1), flat).mul_(inv_count)
                d = torch.mul(weighted, grad_scale, out=d)
            else:  # per sample the mean over the outputs, times w, summed, divided by n
                loss = torch.dot(torch.mv(values, self.column_ones), w).mul_(inv_count)
                d.mul_(w.unsqueeze(1)).mul_(grad_scale)
        else:
            log_prob = torch.log_softmax(out, 1)
            per = minus_inv_n if w is None else (w * minus_inv_n).unsqueeze(1)
            if kind == "categorical":
                picked = torch.mul(y, per)
                loss = torch.dot(picked.view(-1), log_prob.view(-1))
                grad_log_prob = picked
            else:
                index = y.unsqueeze(1)
                grad_log_prob = torch.zeros_like(log_prob).scatter_(1, index, per.expand(index.shape))
                picked = log_prob.gather(1, index)
                loss = (picked.sum().mul_(minus_inv_n) if w is None
                        else torch.dot(picked.view(-1), grad_log_prob.gather(1, index).view(-1)))
            d = torch._log_softmax_backward_data(grad_log_prob, log_prob, 1, log_prob.dtype)
        if self.loss_weight != 1.0:
            loss = loss * self.loss_weight
            d = d.mul_(self.loss_weight)
        return loss, d


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


# The fused output activations called directly (the same kernels as ``activations``, two Python
# layers fewer per batch).
_PREDICTIONS = {activations.get("softmax"): lambda out: torch.softmax(out, -1),
                activations.get("sigmoid"): torch.sigmoid}


# In-place forms for inference (under inference_mode nothing needs the pre-activation); any other
# activation runs as the layer's own function.
_INFERENCE_ACTIVATIONS = {"linear": None, "relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_,
                          "softmax": lambda h: torch.softmax(h, -1)}


def inference_forward(model, logits: bool = False):
    """A forward function for ``predict`` and validation on a chain of layers, or None for any other model.

    It calls ``addmm`` and the activation directly, skipping ``nn.Module.__call__`` and the
    layers' shape handling: about 10 µs per layer, most of a one-row predict. Dropout is left out
    and BatchNormalization uses its moving averages, as in inference mode, whatever the model's
    mode. The plan is cached on the model and rebuilt when the model's ``_version`` changes
    (layers added or removed, weights built, device moved).

    Args:
        model: a built ``Sequential``.
        logits: leave out the last layer's activation (fit's validation, where the loss takes
            the logits of a fused softmax or sigmoid).

    Returns:
        ``forward(x) -> outputs`` (the same numbers as ``model.call`` in inference mode), or None.
    """
    plan = _plan(model)
    return None if plan is None else plan[1][logits]


def _inference_step(layer):
    """(kernel, bias, activation) for one layer in the plan, (None, None, None) to skip it, or None."""
    kind = type(layer)
    if kind is Dense:
        name = activation_name(layer.activation)
        return layer.kernel, layer.bias, _INFERENCE_ACTIVATIONS.get(name, layer.activation)
    if kind in (Dropout, InputLayer):
        return None, None, None
    if kind is Activation:
        return None, None, layer.activation
    if kind is Normalization or kind is _RESCALING:
        return None, None, layer.forward
    if kind is BatchNormalization:
        return None, None, _batch_norm_inference(layer)
    return None


def _batch_norm_inference(layer):
    """``layers.BatchNormalization`` in inference mode, the same kernel."""
    def forward(x):
        return inference_batch_norm(layer, x.to(layer.moving_mean.dtype))
    return forward


def _plan(model):
    """The model's cached ``(version, (forward, logits_forward), sample_shape, on_cpu)``; None if unbuilt."""
    cached = model.__dict__.get("_inference_plan")
    if cached is not None and cached[0] == model._version:
        return cached
    layers = layer_chain(model)
    if not layers or not all(layer.built for layer in layers) or len(model.input_shape_hint or ()) != 1:
        return None  # not built yet, not a chain, or samples of several axes: nothing to cache
    steps = [_inference_step(layer) for layer in layers]
    forwards = (None, None)
    if None not in steps:
        steps = [step for step in steps if step != (None, None, None)]
        kernel, bias, _ = steps[-1]
        logits = None if kernel is None else _plan_forward(steps[:-1] + [(kernel, bias, None)])
        forwards = (_plan_forward(steps), logits)
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
            if kernel is not None:
                x = torch.addmm(bias, x, kernel) if bias is not None else torch.mm(x, kernel)
            if act is not None:
                x = act(x)
        return x
    return forward


class FlatUpdateStep:
    """The plain autograd step with the gradients in one flat buffer and ``FusedUpdate``.

    For models the fused step does not cover, autograd still computes the gradients, but
    torch.optim's per-tensor update (about 0.5 ms per step for Adam on six small tensors) is
    replaced by the flat one (tens of µs), and ``zero_grad`` by one fill of the flat gradient:
    autograd adds each parameter's gradient into its existing ``.grad`` view in place.

    Args:
        step: ``training.train_step``; it sees an optimizer whose ``zero_grad`` and ``step`` are
            the flat ones.
    """

    def __init__(self, step):
        self.step = step
        self.update = None

    def __call__(self, ctx, optimizer, xb, yb, wb) -> torch.Tensor:
        update = self.update
        if update is None or not update.flat.bound() or update.flat.params[0].grad is not update.grads[0]:
            # First call, or another step rebound the parameters or dropped their gradients.
            self.update = update = FusedUpdate(optimizer, FlatParameters(ctx.model.trainable_parameters()))
        return self.step(ctx, update, xb, yb, wb)


# ----------------------------------------------------------------------------------------------
# the stacked step of batched training


# The activations the stacked step writes out: in place, with the gradient taken from the output.
_STACKED_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")
_INPLACE = {name: activation_kernels(name)[0] for name in _STACKED_ACTIVATIONS[1:]}
_BACKWARD = {name: activation_kernels(name)[1] for name in _STACKED_ACTIVATIONS[1:]}


def _activation_name(layer) -> str:
    """The layer's activation name among ``_STACKED_ACTIVATIONS``, or 'other'."""
    name = activation_name(layer.activation)
    return name if name in _STACKED_ACTIVATIONS else "other"


def stacked_unsupported(ctx) -> str | None:
    """Why ``StackedDenseStep`` cannot train candidates shaped like ``ctx.model``, or None when it can.

    It covers what it writes out: trainable Dense layers with linear/relu/tanh/sigmoid (and a final
    softmax/sigmoid fused into its cross-entropy), no weight regularizers, the closed forms of
    ``_STACKED_LOSSES`` (``loss_kind``: default reduction, no label smoothing) without
    ``loss_weights``, on the CPU. ``batched`` checks the optimizers.
    """
    model = ctx.model
    for layer in model.layers:
        if type(layer) is not Dense or not layer.trainable:
            return f"layer {layer.name!r} is not a trainable Dense"
    if ctx.regularized:
        return "a layer has a weight regularizer"
    names = [_activation_name(layer) for layer in model.layers]
    if ctx.fused:
        names[-1] = "linear"
    if any(name not in _STACKED_ACTIVATIONS for name in names):
        return f"an activation is not one of {_STACKED_ACTIVATIONS}"
    if loss_kind(ctx) not in _STACKED_LOSSES:
        return f"loss {getattr(ctx.loss, 'name', ctx.loss)!r} (or its options) has no fused gradient here"
    if ctx.loss_weight != 1.0:
        return "loss_weights"
    if model.device.type != "cpu":
        return f"device {model.device} (the fused step is written for the CPU)"
    return None


class StackedDenseStep:
    """``FusedStep`` for C Dense stacks of one shape trained as one (``batched``), without autograd.

    The weights live in one flat buffer, layer by layer: a contiguous ``(C, in, out)`` block of
    kernels, then a ``(C, 1, out)`` block of biases, so each layer's forward is one ``baddbmm`` over
    the candidate axis and its gradients one ``bmm`` and one ``sum``, written straight into the
    flat gradient buffer; the optimizer then updates the whole buffer at once
    (``optimizers.StackedOptimizer`` with ``owner``). Each candidate's loss depends only on its own
    slice, so its losses and gradients are those of its own ``FusedStep``.

    Args:
        models: the candidates: built Dense stacks of one shape (``stacked_unsupported`` returned None).
        ctx: the first candidate's ``training.StepContext`` (loss and fusion are the same for all).

    Attributes:
        data, grad: the flat weight and gradient buffers.
        owner: the candidate of each element of ``data``.
    """

    def __init__(self, models, ctx):
        layers = models[0].layers
        count = len(models)
        shapes = []
        for layer in layers:
            fan_in, units = layer.kernel.shape
            shapes.append(((count, fan_in, units), (count, 1, units) if layer.bias is not None else None))
        sizes = [math.prod(shape) for pair in shapes for shape in pair if shape is not None]
        self.data = torch.empty(sum(sizes))
        self.grad = torch.zeros_like(self.data)
        self.weights = self._views(self.data, shapes)
        self.grads = self._views(self.grad, shapes)
        self.owner = torch.cat([torch.arange(count).repeat_interleave(size // count) for size in sizes])
        acts = [_activation_name(layer) for layer in layers]
        self.final = layers[-1].activation
        if ctx.fused:
            acts[-1] = "linear"  # the loss takes logits
        self.act_inplace = [_INPLACE.get(act) for act in acts]
        self.act_backward = [_BACKWARD.get(act) for act in acts]
        self.loss_kind = loss_kind(ctx)
        for c, model in enumerate(models):
            self.set_candidate_weights(c, model.get_weights())
        self.rows, self.outs = 0, []

    @staticmethod
    def _views(flat: torch.Tensor, shapes) -> list[tuple]:
        views, offset = [], 0
        for pair in shapes:
            layer = []
            for shape in pair:
                size = 0 if shape is None else math.prod(shape)
                layer.append(None if shape is None else flat[offset:offset + size].view(shape))
                offset += size
            views.append(tuple(layer))
        return views

    def candidate_weights(self, c: int) -> list[np.ndarray]:
        """Candidate ``c``'s weights in Keras's order (kernel, bias, kernel, ...)."""
        out = []
        for kernel, bias in self.weights:
            out.append(kernel[c].numpy().copy())
            if bias is not None:
                out.append(bias[c, 0].numpy().copy())
        return out

    def set_candidate_weights(self, c: int, weights) -> None:
        parts = [w for pair in self.weights for w in pair if w is not None]
        with torch.no_grad():
            for part, value in zip(parts, weights):
                part[c].copy_(torch.as_tensor(np.asarray(value), dtype=part.dtype).reshape(part[c].shape))

    def forward(self, x: torch.Tensor, final_activation: bool = True) -> torch.Tensor:
        """Outputs (C, batch, units) for inputs (C, batch, features); for validation (no gradients)."""
        last = len(self.weights) - 1
        for i, (kernel, bias) in enumerate(self.weights):
            x = torch.bmm(x, kernel) if bias is None else torch.baddbmm(bias, x, kernel)
            if i == last and final_activation:
                x = self.final(x)
            elif self.act_inplace[i] is not None:
                self.act_inplace[i](x)
        return x

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of a stacked batch ``xb`` (C, n, features) against ``yb`` (C, n, ...).

        Returns:
            The per-candidate losses (C,) and the outputs (C, n, units) (logits when the loss is
            fused). The gradients are in ``grad``; the caller's ``StackedOptimizer`` applies them.
        """
        n = xb.shape[1]
        if n > self.rows:  # full batches write into buffers reused all fit (no fresh pages per step)
            self.rows = n
            self.outs = [xb.new_empty((xb.shape[0], n, kernel.shape[2])) for kernel, _ in self.weights]
        outs, h = [], xb
        for i, (kernel, bias) in enumerate(self.weights):
            out = self.outs[i] if n == self.rows else None
            if bias is None:
                h = torch.bmm(h, kernel, out=out)
            else:
                h = torch.baddbmm(bias, h, kernel, out=out)
            if self.act_inplace[i] is not None:
                self.act_inplace[i](h)
            outs.append(h)
        loss, d = _stacked_loss_and_grad(self.loss_kind, h, yb, n)
        for i in range(len(self.weights) - 1, -1, -1):
            if self.act_backward[i] is not None:
                d = self.act_backward[i](d, outs[i])
            grad_kernel, grad_bias = self.grads[i]
            torch.bmm((outs[i - 1] if i else xb).transpose(1, 2), d, out=grad_kernel)
            if grad_bias is not None:
                torch.sum(d, 1, keepdim=True, out=grad_bias)
            if i:
                d = torch.bmm(d, self.weights[i][0].transpose(1, 2))
        return loss, h


def _stacked_loss_and_grad(kind: str, out: torch.Tensor, y: torch.Tensor, n: int):
    """Per-candidate losses (C,) of stacked outputs and their gradient w.r.t. ``out``, as
    ``FusedStep._loss_and_grad`` computes them for one candidate."""
    per_candidate = out[0].numel()
    if kind in ("mse", "mae"):
        d = out - y
        if kind == "mse":
            return d.square().mean((1, 2)), d.mul_(2.0 / per_candidate)
        return d.abs().mean((1, 2)), d.sign_().div_(per_candidate)
    if kind == "binary":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none").mean((1, 2))
        return loss, torch.sigmoid(out).sub_(y).div_(per_candidate)
    log_prob = torch.log_softmax(out, 2)
    if kind == "categorical":
        loss = (y * log_prob).sum((1, 2)).div_(-n)
        grad_log_prob = torch.mul(y, -1.0 / n)
    else:
        picked = log_prob.gather(2, y.unsqueeze(2))
        loss = picked.sum((1, 2)).div_(-n)
        grad_log_prob = torch.zeros_like(log_prob).scatter_(2, y.unsqueeze(2), -1.0 / n)
    return loss, torch._log_softmax_backward_data(grad_log_prob, log_prob, 2, log_prob.dtype)
