"""The per-layer pieces of the fused training step: forward and backward written out for each
layer kind, with the kernels autograd itself runs, into buffers reused for every batch.

``fastpath.FusedStep`` turns a chain of layers into a list of stages and runs them; a stage here
knows one layer kind:

- ``DenseStage``: one product forward, one for the kernel-and-bias gradient, one for the input
  gradient (the kernel (in, out) and bias (out,) are one (in + 1, out) matrix in the flat buffer,
  and the activations feeding a biased layer carry a last column of ones);
- ``ActivationStage``: every named activation, in place where its gradient can be taken from its
  output (relu, tanh, sigmoid, elu, selu, leaky_relu, relu6, exponential), else into a buffer
  of its own with the input kept for the backward (gelu, silu, softplus, ...);
- ``DropoutStage``: the mask of ``layers.Dropout`` (``dropout_mask``: the same draws from
  torch's global generator), so the same seed gives the same mask on both paths; forward and
  backward multiply by the mask times 1 / (1 - rate);
- ``BatchNormStage``: batch statistics and Keras's moving averages (biased variance, momentum
  the weight of the old average) as ``layers.BatchNormalization`` computes them, with torch's
  batch-norm kernels for the normalisation and its gradient;
- ``NormalizationStage``: the fixed affine map of ``layers.Normalization`` (its standard
  deviation computed once, again only when ``adapt`` changes the statistics).

Every stage has the same methods: ``bind`` (views of its weights and gradients in the flat
buffers), ``resize`` (scratch for a batch of n rows), ``forward(x, x_full, out)`` and
``backward(d, x, x_full_t, out, need_dx)``. ``x_full`` is the input with its ones column when it
has one; ``out`` is the stage's output view (its input itself for an in-place stage).
"""

from __future__ import annotations

import torch

from . import activations
from ._errors import ConfigError
from .layers.normalization import biased_variance

_aten = torch.ops.aten
# torch's selu constants (aten's selu is elu with these), for the backward from the output.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def activation_name(fn) -> str | None:
    """The Keras name of an activation function (torch builtins included), or None for a custom one."""
    try:
        return activations.serialize(fn)
    except (ConfigError, TypeError):
        return None


class Stage:
    """Base: no weights, no scratch, output width equal to the input's."""

    size = 0  # elements of trainable weights, in flat-buffer order
    inplace = False  # writes its output over its input
    reads_output = False  # its backward reads its own output (so nothing may overwrite it)

    def __init__(self, width: int):
        self.width = width

    def bind(self, flat: torch.Tensor, grad: torch.Tensor, offset: int) -> None:
        """Take views of this stage's weights and gradients at ``offset`` of the flat buffers."""

    def allocate(self, rows: int, like: torch.Tensor) -> None:
        """Scratch for batches of up to ``rows`` rows."""

    def resize(self, n: int) -> None:
        """Point the scratch views at the first ``n`` rows."""


class DenseStage(Stage):
    """``x @ kernel + bias``; ``raw`` when it reads the caller's batch (no ones column: ``addmm``)."""

    def __init__(self, layer, raw: bool):
        fan_in, units = layer.kernel.shape
        super().__init__(units)
        self.fan_in, self.biased, self.raw = fan_in, layer.bias is not None, raw
        self.size = (fan_in + self.biased) * units

    def bind(self, flat, grad, offset):
        rows = self.fan_in + self.biased
        both = flat[offset:offset + self.size].view(rows, self.width)
        gboth = grad[offset:offset + self.size].view(rows, self.width)
        self.kernel, self.both, self.kernel_t = both[:self.fan_in], both, both[:self.fan_in].t()
        self.bias = both[self.fan_in] if self.biased else None
        self.g_kernel, self.g_both = gboth[:self.fan_in], gboth
        self.g_bias = gboth[self.fan_in] if self.biased else None

    def allocate(self, rows, like):
        self.dx_full = like.new_empty((rows, self.fan_in))

    def resize(self, n):
        self.dx = self.dx_full[:n]

    def forward(self, x, x_full, out):
        if not self.raw:
            torch.mm(x_full, self.both, out=out)  # x_full has the ones column exactly when biased
        elif self.biased:
            torch.addmm(self.bias, x, self.kernel, out=out)
        else:
            torch.mm(x, self.kernel, out=out)

    def backward(self, d, x, x_full_t, out, need_dx):
        if not self.raw:
            torch.mm(x_full_t, d, out=self.g_both)
        else:
            torch.mm(x.t(), d, out=self.g_kernel)
            if self.biased:
                torch.sum(d, 0, out=self.g_bias)
        return torch.mm(d, self.kernel_t, out=self.dx) if need_dx else None


# Per activation: (in-place forward or None, out= forward or None, backward(grad, saved) -> grad,
# whether `saved` is the output (else the input)). The backward kernels are autograd's own, and
# write into `grad` where an overload allows it (elementwise, so aliasing is safe; a fresh tensor
# per call costs page faults on big batches). Overloads are called directly: ~3 µs less each.
_ACTIVATIONS = {
    "relu": (torch.Tensor.relu_, None,
             lambda g, o: _aten.threshold_backward.grad_input(g, o, 0, grad_input=g), True),
    "tanh": (torch.Tensor.tanh_, None, lambda g, o: _aten.tanh_backward.grad_input(g, o, grad_input=g), True),
    "sigmoid": (torch.Tensor.sigmoid_, None,
                lambda g, o: _aten.sigmoid_backward.grad_input(g, o, grad_input=g), True),
    # Keras's leaky_relu slope is 0.2; a positive slope keeps the sign, so the output tells the side.
    "leaky_relu": (lambda x: _aten.leaky_relu_(x, 0.2), None,
                   lambda g, o: _aten.leaky_relu_backward.grad_input(g, o, 0.2, True, grad_input=g), True),
    "elu": (lambda x: _aten.elu_(x, 1.0, 1.0, 1.0), None,
            lambda g, o: _aten.elu_backward.grad_input(g, 1.0, 1.0, 1.0, True, o, grad_input=g), True),
    "selu": (_aten.selu_, None,
             lambda g, o: _aten.elu_backward.grad_input(g, _SELU_ALPHA, _SELU_SCALE, 1.0, True, o,
                                                        grad_input=g), True),
    # relu6 is hardtanh(0, 6): the output is strictly inside (0, 6) exactly where the input is.
    "relu6": (lambda x: _aten.hardtanh_(x, 0.0, 6.0), None,
              lambda g, o: _aten.hardtanh_backward.grad_input(g, o, 0.0, 6.0, grad_input=g), True),
    "exponential": (torch.Tensor.exp_, None, lambda g, o: g.mul_(o), True),
    # gelu's and the softmaxes' out= overloads write wrong values into a strided output (a view
    # of a buffer with the ones column; torch 2.x): computed fresh, then copied.
    "softmax": (None, lambda x, out: out.copy_(_aten._softmax(x, 1, False)),
                lambda g, o: _aten._softmax_backward_data(g, o, 1, o.dtype), True),
    "log_softmax": (None, lambda x, out: out.copy_(_aten._log_softmax(x, 1, False)),
                    lambda g, o: _aten._log_softmax_backward_data(g, o, 1, o.dtype), True),
    "gelu": (None, lambda x, out: out.copy_(_aten.gelu(x, approximate="none")),
             lambda g, z: _aten.gelu_backward.grad_input(g, z, approximate="none", grad_input=g), False),
    "silu": (None, lambda x, out: _aten.silu.out(x, out=out),
             lambda g, z: _aten.silu_backward.grad_input(g, z, grad_input=g), False),
    "softplus": (None, lambda x, out: _aten.softplus.out(x, 1, 20, out=out),
                 lambda g, z: _aten.softplus_backward.grad_input(g, z, 1, 20, grad_input=g), False),
    "mish": (None, lambda x, out: _aten.mish.out(x, out=out), lambda g, z: _aten.mish_backward(g, z), False),
    "hard_silu": (None, lambda x, out: _aten.hardswish.out(x, out=out),
                  lambda g, z: _aten.hardswish_backward(g, z), False),
    "hard_sigmoid": (None, lambda x, out: _aten.hardsigmoid.out(x, out=out),
                     lambda g, z: _aten.hardsigmoid_backward.grad_input(g, z, grad_input=g), False),
    # d log(sigmoid(z)) / dz = sigmoid(-z), from the input: 1 - exp(output) loses digits for large z.
    "log_sigmoid": (None, lambda x, out: _aten.log_sigmoid.out(x, out=out),
                    lambda g, z: g.mul_(torch.neg(z).sigmoid_()), False),
    "softsign": (None, lambda x, out: torch.div(x, torch.abs(x, out=out).add_(1.0), out=out),
                 lambda g, z: g.div_(z.abs().add_(1.0).square_()), False),
}
ACTIVATIONS = frozenset(_ACTIVATIONS) | {"linear"}
"""The activation names the fused step computes (every name ``activations.get`` knows)."""


def activation_kernels(name: str) -> tuple:
    """(in-place forward or None, backward(grad, saved) -> grad, whether ``saved`` is the output)."""
    inplace, _, backward, from_output = _ACTIVATIONS[name]
    return inplace, backward, from_output


class ActivationStage(Stage):
    """One activation; in place over its input when ``inplace`` (decided by the step's planner)."""

    def __init__(self, name: str, width: int, inplace: bool):
        super().__init__(width)
        self.name = name
        self.act_, self.act_out, self.act_backward, from_output = _ACTIVATIONS[name]
        self.inplace = inplace and self.act_ is not None
        self.reads_output = from_output

    def forward(self, x, x_full, out):
        if self.inplace:
            self.act_(out)
        elif self.act_out is not None:
            self.act_out(x, out)
        else:
            self.act_(out.copy_(x))

    def backward(self, d, x, x_full_t, out, need_dx):
        return self.act_backward(d, out if self.reads_output else x)


class DropoutStage(Stage):
    """Keras's inverted dropout with the mask of ``layers.Dropout`` (drawn by ``DropoutMasks``)."""

    def __init__(self, layer, width: int):
        super().__init__(width)
        self.rate, self.scale = layer.rate, 1.0 / (1.0 - layer.rate)
        self.zero = torch.zeros(())
        self.noise = None  # this batch's mask, a view of ``DropoutMasks``' buffer

    def forward(self, x, x_full, out):
        # 0 + scale * x * mask: the plain path's x * mask * scale, bit for bit (mask is 0 or 1).
        torch.addcmul(self.zero, x, self.noise, value=self.scale, out=out)

    def backward(self, d, x, x_full_t, out, need_dx):
        return torch.addcmul(self.zero, d, self.noise, value=self.scale, out=d)


class DropoutMasks:
    """The masks of every ``DropoutStage`` of a step, drawn at once before the forward.

    The plain path draws each layer's mask (``dropout_mask``: uniform >= rate) in call order with
    nothing drawn in between, and torch's CPU ``uniform_`` fills a contiguous buffer in order, so
    one draw over the masks laid end to end gives the same numbers for two or three fewer calls.

    Args:
        stages: the step's ``DropoutStage`` objects, in order (at least one).
    """

    def __init__(self, stages):
        self.stages, self.total = stages, sum(stage.width for stage in stages)
        rates = {stage.rate for stage in stages}
        self.rate = rates.pop() if len(rates) == 1 else None  # one comparison when the rates agree

    def allocate(self, rows: int, like: torch.Tensor) -> None:
        self.buffer = like.new_empty(rows * self.total)

    def resize(self, n: int) -> None:
        """Each stage's mask for a batch of ``n`` rows: consecutive (n, width) blocks."""
        offset = 0
        for stage in self.stages:
            stage.noise = self.buffer[offset:offset + n * stage.width].view(n, stage.width)
            offset += n * stage.width
        self.span = self.buffer[:offset]

    def draw(self) -> None:
        self.span.uniform_()
        if self.rate is not None:
            self.span.ge_(self.rate)
        else:
            for stage in self.stages:
                stage.noise.ge_(stage.rate)


class BatchNormStage(Stage):
    """Training-mode batch normalisation with Keras's moving averages (``layers.BatchNormalization``).

    torch's batch-norm kernels write straight into the step's buffers (output, input gradient,
    gamma and beta gradients), with scratch standing in for an absent gamma or beta gradient.
    The batch statistics go into views of ``MovingAverages``' buffers, which updates every
    layer's moving averages at once after the forward.
    """

    def __init__(self, layer, width: int):
        super().__init__(width)
        self.layer = layer
        self.size = width * ((layer.gamma is not None) + (layer.beta is not None))
        self.eps = layer.epsilon

    def bind(self, flat, grad, offset):
        views = {}
        for name in ("gamma", "beta"):
            if getattr(self.layer, name) is not None:
                views[name] = (flat[offset:offset + self.width], grad[offset:offset + self.width])
                offset += self.width
        scratch = (None, flat.new_empty(self.width))
        self.gamma, g_gamma = views.get("gamma", scratch)
        self.beta, g_beta = views.get("beta", scratch)
        self.grads = [g_gamma, g_beta]

    def allocate(self, rows, like):
        self.dx_full = like.new_empty((rows, self.width))

    def resize(self, n):
        self.dx = self.dx_full[:n]

    def forward(self, x, x_full, out):
        _aten.native_batch_norm.out(x, self.gamma, self.beta, None, None, True, 0.0, self.eps,
                                    out=out, save_mean=self.mean, save_invstd=self.invstd)

    def backward(self, d, x, x_full_t, out, need_dx):
        _aten.native_batch_norm_backward.out(d, x, self.gamma, None, None, self.mean, self.invstd, True,
                                             self.eps, [True, True, True], out0=self.dx,
                                             out1=self.grads[0], out2=self.grads[1])
        return self.dx


class MovingAverages:
    """The moving mean and variance of every ``BatchNormStage`` of a step, updated at once.

    Each stage writes its batch mean and 1 / sqrt(var + eps) into views of two shared buffers;
    ``update`` recovers the biased variances (``biased_variance``) and moves every average towards
    its batch statistic with one ``lerp`` per momentum, as ``layers.BatchNormalization`` does per
    layer.

    Args:
        stages: the step's ``BatchNormStage`` objects, in order (at least one).
    """

    def __init__(self, stages):
        total = sum(stage.width for stage in stages)
        self.mean, self.invstd = torch.empty(total), torch.empty(total)
        self.var = torch.empty(total)
        self.eps = torch.cat([torch.full((stage.width,), stage.eps) for stage in stages])
        self.groups = {}  # lerp weight -> (averages, batch statistics)
        offset = 0
        for stage in stages:
            span = slice(offset, offset + stage.width)
            stage.mean, stage.invstd = self.mean[span], self.invstd[span]
            averages, statistics = self.groups.setdefault(1.0 - stage.layer.momentum, ([], []))
            averages += [stage.layer.moving_mean, stage.layer.moving_variance]
            statistics += [self.mean[span], self.var[span]]
            offset += stage.width

    def update(self) -> None:
        biased_variance(self.invstd, self.eps, out=self.var)
        for weight, (averages, statistics) in self.groups.items():
            torch._foreach_lerp_(averages, statistics, weight)


class NormalizationStage(Stage):
    """``(x - mean) / std`` (or its inverse) with the layer's stored statistics: no weights."""

    def __init__(self, layer, width: int):
        super().__init__(width)
        self.layer = layer
        self.key = None

    def _std(self) -> torch.Tensor:
        mean, variance = self.layer.mean, self.layer.variance
        key = (mean.data_ptr(), mean._version, variance.data_ptr(), variance._version)
        if key != self.key:  # adapt() or set_weights() changed the statistics
            self.key, self.std = key, torch.clamp(torch.sqrt(variance), min=1e-7)
        return self.std

    def forward(self, x, x_full, out):
        std = self._std()
        if self.layer.invert:
            torch.mul(x, std, out=out).add_(self.layer.mean)
        else:
            torch.sub(x, self.layer.mean, out=out).div_(std)

    def backward(self, d, x, x_full_t, out, need_dx):
        return d.mul_(self.std) if self.layer.invert else d.div_(self.std)


class RescalingStage(Stage):
    """``x * scale + offset`` with the layer's scalar ``scale`` and ``offset`` (Keras's Rescaling)."""

    def __init__(self, layer, width: int):
        super().__init__(width)
        self.scale, self.offset = float(layer.scale), float(layer.offset)

    def forward(self, x, x_full, out):
        torch.mul(x, self.scale, out=out).add_(self.offset)

    def backward(self, d, x, x_full_t, out, need_dx):
        return d.mul_(self.scale)
