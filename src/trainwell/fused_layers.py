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
  torch's global generator, made by ``DropoutMasks`` for every layer at once), so the same seed
  gives the same mask on both paths; forward and backward multiply by the mask times
  1 / (1 - rate);
- ``BatchNormStage``: batch statistics and Keras's moving averages (biased variance, momentum
  the weight of the old average) as ``layers.BatchNormalization`` computes them, written out in
  products and elementwise kernels, or as two loops compiled by numba where it is installed
  (``numba_kernels``; ``MovingAverages`` moves every layer's averages at once);
- ``NormalizationStage``: the fixed affine map of ``layers.Normalization`` (its standard
  deviation computed once, again only when ``adapt`` changes the statistics).

Every stage has the same methods: ``bind`` (views of its weights and gradients in the flat
buffers), ``resize`` (scratch for a batch of n rows), ``forward(x, x_full, out)`` and
``backward(d, x, x_full_t, out, need_dx)``. ``x_full`` is the input with its ones column when it
has one; ``out`` is the stage's output view (its input itself for an in-place stage).
"""

from __future__ import annotations

import os

import torch

from . import activations
from ._errors import ConfigError
from .layers.regularization import repeated_thresholds

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
    grad_buffer = None  # (rows, width) where it wants its output's gradient, or None

    def __init__(self, width: int):
        self.width = width

    def bind(self, flat: torch.Tensor, grad: torch.Tensor, offset: int) -> None:
        """Take views of this stage's weights and gradients at ``offset`` of the flat buffers."""

    def allocate(self, rows: int, like: torch.Tensor) -> None:
        """Scratch for batches of up to ``rows`` rows."""

    def resize(self, n: int) -> None:
        """Point the scratch views at the first ``n`` rows."""


class DenseStage(Stage):
    """``x @ kernel + bias`` as one product: ``x_full`` carries a last column of ones when biased."""

    def __init__(self, layer):
        fan_in, units = layer.kernel.shape
        super().__init__(units)
        self.fan_in, self.biased = fan_in, layer.bias is not None
        self.size = (fan_in + self.biased) * units

    def bind(self, flat, grad, offset):
        rows = self.fan_in + self.biased
        both = flat[offset:offset + self.size].view(rows, self.width)
        self.both, self.kernel_t = both, both[:self.fan_in].t()
        self.g_both = grad[offset:offset + self.size].view(rows, self.width)

    def allocate(self, rows, like):
        self.dx_full = like.new_empty((rows, self.fan_in))

    def resize(self, n):
        self.dx = self.dx_full[:n]

    def forward(self, x, x_full, out):
        torch.mm(x_full, self.both, out=out)

    def backward(self, d, x, x_full_t, out, need_dx):
        torch.mm(x_full_t, d, out=self.g_both)
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
    """Keras's inverted dropout with the mask of ``layers.Dropout`` (drawn by ``DropoutMasks``).

    ``noise`` holds the mask times 1 / (1 - rate), so forward and backward are one product each:
    x * (mask * scale) is the plain path's (x * mask) * scale bit for bit (mask is 0 or 1).
    """

    def __init__(self, layer, width: int):
        super().__init__(width)
        self.rate, self.scale = layer.rate, 1.0 / (1.0 - layer.rate)
        self.noise = None  # this batch's scaled mask, a view of ``DropoutMasks``' buffer

    def forward(self, x, x_full, out):
        torch.mul(x, self.noise, out=out)

    def backward(self, d, x, x_full_t, out, need_dx):
        return d.mul_(self.noise)


class DropoutMasks:
    """The masks of every ``DropoutStage`` of a step, drawn at once before the forward.

    The plain path draws each layer's mask (``dropout_mask``: int16 halves of int32 draws) in
    call order with nothing drawn in between, and torch's CPU ``random_`` fills a buffer in order,
    so one draw over the layers' halves laid end to end (each layer's rounded up to whole draws)
    gives the same numbers for fewer calls.

    Args:
        stages: the step's ``DropoutStage`` objects, in order (at least one).
    """

    def __init__(self, stages):
        self.stages = stages

    def allocate(self, rows: int, like: torch.Tensor) -> None:
        total = sum(rows * stage.width + 1 for stage in self.stages)  # room for each layer's padding
        self.halves = torch.empty((total + 1) // 2, dtype=torch.int32).view(torch.int16)
        self.keep = like.new_empty(self.halves.shape)

    def resize(self, n: int) -> None:
        """Each stage's mask for a batch of ``n`` rows: (n, width) blocks, each starting a draw;
        the thresholds and scales laid out alike (tensors of their own per size)."""
        offset, thresholds, scales = 0, [], []
        for stage in self.stages:
            count = n * stage.width
            pairs = (count + 1) // 2
            thresholds.append(repeated_thresholds(stage.rate, 2 * pairs))
            scales.append(torch.full((2 * pairs,), stage.scale))
            stage.noise = self.keep[offset:offset + count].view(n, stage.width)
            offset += 2 * pairs
        self.draws = self.halves[:offset].view(torch.int32)
        self.span = (self.halves[:offset], torch.cat(thresholds), self.keep[:offset], torch.cat(scales))

    def draw(self) -> None:
        """Every layer's mask for this batch, times its 1 / (1 - rate)."""
        halves, thresholds, keep, scales = self.span
        self.draws.random_()
        torch.ge(halves, thresholds, out=keep).mul_(scales)


# Batch elements up to which numba's one-thread loops beat torch's kernels (~5x on a 32 x 50 batch,
# still 2x at 4096 x 128 on one thread, but behind torch's kernels on two threads from ~250k).
_COMPILED_ELEMENTS = 1 << 16
_compiled = None


def compiled_batch_norm():
    """``numba_kernels`` where numba is installed and not switched off (``TRAINWELL_NUMBA=0``), else None."""
    global _compiled
    if _compiled is None:
        _compiled = False
        if os.environ.get("TRAINWELL_NUMBA", "1") != "0":
            try:
                from . import numba_kernels
            except (ImportError, RuntimeError, OSError):  # no numba, or nowhere to keep its cache
                pass
            else:
                _compiled = numba_kernels
    return _compiled or None


class BatchNormStage(Stage):
    """Training-mode batch normalisation with Keras's moving averages (``layers.BatchNormalization``).

    Two ways, the same numbers to float32 rounding. Where numba is installed, float32 batches of
    up to ``_COMPILED_ELEMENTS`` elements (any size on one thread) run one compiled loop each
    way (``numba_kernels``: ~4 µs a step on a 32 x 50 batch against ~18). Otherwise small torch
    kernels rather than torch's batch-norm pair, which costs ~17 µs a call on that batch (its CPU
    kernels allocate and loop per channel) where a product or an elementwise op costs 1-2: the
    column sums are products with a row of ones, and the two parameter gradients come from one
    product over ``[g * xhat | g]`` side by side (the next Dense stage writes ``g`` straight into
    the right half, see ``grad_buffer``). Either way the batch mean and biased variance go into
    views of ``MovingAverages``' buffer, which updates every layer's moving averages at once
    after the forward.

    forward:  xhat = (x - mean) / sqrt(var + eps),  y = gamma * xhat + beta
    backward: dgamma = sum(g * xhat),  dbeta = sum(g),
              dx = gamma / sqrt(var + eps) * (g - (dbeta + xhat * dgamma) / n)
    """

    def __init__(self, layer, width: int):
        super().__init__(width)
        self.layer = layer
        self.size = width * ((layer.gamma is not None) + (layer.beta is not None))
        self.eps = layer.epsilon
        self.mean = self.var = None  # (1, width) views of ``MovingAverages``' statistics

    def bind(self, flat, grad, offset):
        c = self.width
        views, at = {}, offset
        for name in ("gamma", "beta"):
            if getattr(self.layer, name) is not None:
                views[name] = flat[at:at + c].view(1, c)
                at += c
        # Absent gamma: 1, absent beta: 0, fixed; their gradients go to scratch.
        self.gamma = views.get("gamma", torch.ones(1, c))
        self.beta = views.get("beta", torch.zeros(1, c))
        if at - offset == 2 * c:  # [dgamma | dbeta] are one (1, 2c) row of the flat gradient
            self.grads, self.copy_grad = grad[offset:offset + 2 * c].view(1, 2 * c), None
        else:
            self.grads = torch.empty(1, 2 * c)
            half = self.grads[:, :c] if self.layer.gamma is not None else self.grads[:, c:]
            self.copy_grad = (grad[offset:offset + c].view(1, c), half) if self.size else None
        self.invstd = torch.empty(1, c)
        self.eps_row = torch.full((1, c), float(self.eps))
        self.zero = torch.zeros(1, c)
        self.scale = torch.empty(1, c)  # -gamma / sqrt(var + eps) / n
        self.grads_rows = self.grads.view(2, c)
        self.coef = torch.empty(2, c)  # scale * [dgamma; dbeta]
        self.coef_gamma, self.coef_beta = self.coef[:1], self.coef[1:]

    def allocate(self, rows, like):
        c = self.width
        self.kernels = None
        if like.dtype == torch.float32 and (rows * c <= _COMPILED_ELEMENTS or torch.get_num_threads() == 1):
            self.kernels = compiled_batch_norm()
        self.xhat_full = like.new_empty((rows, c))
        self.dx_full = like.new_empty((rows, c))
        self.grad_buffer = None
        if self.kernels is None:
            self.square_full = like.new_empty((rows, c))
            self.pair_full = like.new_empty((rows, 2 * c))  # [g * xhat | g]
            self.grad_buffer = self.pair_full[:, c:]  # where the next Dense stage writes g

    def resize(self, n):
        self.n = n
        self.xhat, self.dx = self.xhat_full[:n], self.dx_full[:n]
        if self.kernels is not None:
            # numpy views of the buffers, made once per size; those of the input, output and
            # gradient once per tensor the step passes (the same views every batch of a size).
            self.arrays = {name: getattr(self, name).detach().numpy()
                           for name in ("gamma", "beta", "mean", "var", "xhat", "scale", "grads", "dx")}
            self.eps32 = self.arrays["gamma"].dtype.type(self.eps)
            self.seen = {"x": (None, None), "out": (None, None), "d": (None, None)}
            return
        self.square = self.square_full[:n]
        self.pair = self.pair_full[:n]
        self.g, self.g_xhat = self.pair[:, self.width:], self.pair[:, :self.width]
        self.sums = torch.ones(1, n)
        self.means = torch.full((1, n), 1.0 / n)
        self.minus_n, self.minus_inv_n = -float(n), -1.0 / n

    def _array(self, role: str, tensor):
        """A numpy view of ``tensor``, kept while the step passes the same one in ``role`` (it does
        batch after batch, except a gradient from a backward that makes a fresh tensor)."""
        kept = self.seen[role]
        if kept[0] is not tensor:
            kept = self.seen[role] = (tensor, tensor.detach().numpy())
        return kept[1]

    def forward(self, x, x_full, out):
        if self.kernels is not None:
            a = self.arrays
            self.kernels.batch_norm_forward(self._array("x", x), a["gamma"], a["beta"], self.eps32, a["mean"],
                                            a["var"], a["xhat"], self._array("out", out), a["scale"])
            return
        xhat = self.xhat
        torch.mm(self.means, x, out=self.mean)
        torch.sub(x, self.mean, out=xhat)
        torch.mm(self.means, torch.mul(xhat, xhat, out=self.square), out=self.var)
        torch.add(self.var, self.eps_row, out=self.invstd).rsqrt_()
        xhat.mul_(self.invstd)
        torch.addcmul(self.beta, xhat, self.gamma, out=out)
        torch.addcmul(self.zero, self.gamma, self.invstd, value=self.minus_inv_n, out=self.scale)

    def backward(self, d, x, x_full_t, out, need_dx):
        if self.kernels is not None:
            a = self.arrays
            self.kernels.batch_norm_backward(self._array("d", d), a["xhat"], a["scale"], a["grads"], a["dx"],
                                             need_dx)
            dx = self.dx if need_dx else None
        else:
            dx = self._torch_backward(d, need_dx)
        if self.copy_grad is not None:  # the one trainable half of [dgamma | dbeta], from scratch
            self.copy_grad[0].copy_(self.copy_grad[1])
        return dx

    def _torch_backward(self, d, need_dx):
        g = self.g
        if d.data_ptr() != g.data_ptr():
            g.copy_(d)
        torch.mul(g, self.xhat, out=self.g_xhat)
        torch.mm(self.sums, self.pair, out=self.grads)  # [dgamma | dbeta]
        if not need_dx:
            return None
        # With scale = -gamma / sqrt(var + eps) / n (the forward's) and coef = scale * [dgamma; dbeta]:
        # dx = coef_beta - n * scale * g + xhat * coef_gamma.
        torch.mul(self.grads_rows, self.scale, out=self.coef)
        dx = torch.addcmul(self.coef_beta, g, self.scale, value=self.minus_n, out=self.dx)
        return dx.addcmul_(self.xhat, self.coef_gamma)


class MovingAverages:
    """The moving mean and variance of every ``BatchNormStage`` of a step, updated at once.

    For the fit, every layer's ``moving_mean`` and ``moving_variance`` become views of one buffer
    (the tensors stay the same objects, as ``FlatParameters`` does for the weights), and each
    stage writes its batch mean and biased variance into the same places of a second buffer, so
    one ``lerp`` with a per-element weight (1 - momentum) moves them all, as
    ``layers.BatchNormalization`` does per layer.

    Args:
        stages: the step's ``BatchNormStage`` objects, in order (at least one).
    """

    def __init__(self, stages):
        sizes = [2 * stage.width for stage in stages]
        self.moving = torch.empty(sum(sizes))
        self.statistics = torch.zeros(sum(sizes))
        self.weight = torch.cat([torch.full((size,), 1.0 - stage.layer.momentum)
                                 for stage, size in zip(stages, sizes)])
        self.tensors = []
        offset = 0
        for stage in stages:
            c, layer = stage.width, stage.layer
            for i, name in enumerate(("moving_mean", "moving_variance")):
                view = self.moving[offset + i * c:offset + (i + 1) * c]
                tensor = getattr(layer, name)
                view.copy_(tensor)
                tensor.data = view
                self.tensors.append(tensor)
            stage.mean = self.statistics[offset:offset + c].view(1, c)
            stage.var = self.statistics[offset + c:offset + 2 * c].view(1, c)
            offset += 2 * c

    def bound(self) -> bool:
        """Whether the layers' averages still live in this buffer."""
        return self.tensors[0].data_ptr() == self.moving.data_ptr()

    def update(self) -> None:
        self.moving.lerp_(self.statistics, self.weight)


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
