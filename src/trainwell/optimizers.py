"""Keras optimizers over ``torch.optim``: Keras names, arguments and defaults; torch does the math.

An ``Optimizer`` holds Keras's arguments, ``build(params)`` creates the torch optimizer, and
``step()`` runs Keras's order: clip gradients, decay weights, update. Where Keras and torch
compute different numbers, the mapping lives in one place with a comment saying why:

- Adam / AdamW epsilon placement: ``Adam._prepare_step``.
- Weight decay (decoupled, for every optimizer, as Keras does): ``Optimizer.step``.
- Adagrad epsilon inside the square root: ``Adagrad._make_torch_optimizer``.
- RMSprop epsilon inside the square root: ``_KerasRMSpropEngine`` (torch cannot express it).
- SGD momentum keeps ``lr`` outside the buffer: ``SGD`` (equal to Keras at constant lr).
- Nadam's momentum schedule ``0.96**t``: ``Nadam`` (torch's ``momentum_decay=1``).
- Adamax (eps outside the maximum), Lion and Ftrl (not in torch.optim): ``_KerasRule`` subclasses.

Learning-rate schedules are in ``trainwell.optimizers.schedules``.
"""

from __future__ import annotations

import math
import sys
import types
import warnings

import numpy as np
import torch

from trainwell import schedules
from trainwell._errors import (
    ConfigError,
    ConfigTypeError,
    ModelFileError,
    check_number,
    describe,
    unknown_name,
)

# Keras code imports `keras.optimizers.schedules.ExponentialDecay`; registering the module under
# this name makes `from trainwell.optimizers.schedules import ...` work too.
sys.modules[__name__ + ".schedules"] = schedules

LearningRateSchedule = schedules.LearningRateSchedule


def _check_positive(value, argument: str, where: str, example) -> float:
    return check_number(value, argument, where, low=0, low_open=True, example=example)


def _check_unit(value, argument: str, where: str, example) -> float:
    return check_number(value, argument, where, low=0, high=1, high_open=True, example=example)


def _check_learning_rate(value, where: str):
    """A LearningRateSchedule as is, or a number >= 0 as float (0 freezes the weights, as in Keras)."""
    if isinstance(value, LearningRateSchedule):
        return value
    try:
        return check_number(value, "learning_rate", where, low=0, example=0.001)
    except ConfigError:  # the same message, naming schedules too
        raise ConfigError(
            f"{where}: `learning_rate` expects a number >= 0 or a LearningRateSchedule, received "
            f"{describe(value)}. Pass for example learning_rate=0.001."
        ) from None


class LearningRate(float):
    """The float ``optimizer.learning_rate`` returns, with the two calls Keras code makes on it.

    Keras 3 keeps the rate in a Variable, so course code writes
    ``model.optimizer.learning_rate.assign(1e-4)`` and ``model.optimizer.learning_rate.numpy()``;
    here ``assign`` sets the optimizer's rate and ``numpy`` gives a float32 scalar.

    Example:
        >>> opt = SGD(0.1)
        >>> opt.learning_rate.assign(0.05)
        >>> opt.learning_rate, opt.learning_rate.numpy()
        (0.05, np.float32(0.05))
    """

    def __new__(cls, value: float, optimizer: Optimizer):
        rate = super().__new__(cls, value)
        rate._optimizer = optimizer
        return rate

    def assign(self, value) -> None:
        self._optimizer.learning_rate = value

    def numpy(self) -> np.float32:
        return np.float32(self)


class Optimizer:
    """Base class: Keras's optimizer arguments and step order around a ``torch.optim`` optimizer.

    Each step: clip the gradients (``clipvalue``, ``clipnorm`` per tensor, or ``global_clipnorm``),
    apply decoupled weight decay ``w -= lr * weight_decay * w``, update with the torch optimizer,
    then increment ``iterations``. A schedule is evaluated at ``iterations`` (0 for the first step).

    Args:
        learning_rate: a positive float or a ``schedules.LearningRateSchedule``.
        weight_decay: if set, decoupled weight decay as above. Defaults to None.
        clipnorm: if set, each gradient tensor is rescaled so its L2 norm is at most this value.
        clipvalue: if set, each gradient element is clipped to ``[-clipvalue, clipvalue]``.
        global_clipnorm: if set, all gradients are rescaled together so their joint norm is at most
            this value. At most one of the three clipping arguments may be set.
        name: a name for the optimizer. Defaults to the lowercase class name.

    Raises:
        ConfigError: for a non-positive or non-numeric argument, or more than one clipping argument.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> opt = SGD(learning_rate=0.5)
        >>> opt.build([w])
        >>> w.grad = torch.tensor([0.2, -0.4])
        >>> opt.step()
        >>> w.data, opt.iterations
        (tensor([0.9000, 2.2000]), 1)
    """

    def __init__(
        self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
        name=None, lr=None,
    ):
        where = type(self).__name__
        if lr is not None:
            # Keras 2 spelling, still written by course material (``SGD(lr=0.01)``); Keras 3 dropped it.
            learning_rate = lr
        self._learning_rate = _check_learning_rate(learning_rate, where)
        if self._learning_rate == 0:
            # Legal in Keras (course code uses it to freeze training or to test callbacks), but
            # easy to type by mistake, so say what it does.
            warnings.warn(f"{where}: learning_rate=0 leaves the weights unchanged by training. Pass a "
                          "positive rate such as 0.001 to train.", UserWarning, stacklevel=3)
        self.weight_decay = check_number(weight_decay, "weight_decay", where, low=0, allow_none=True,
                                         example=0.004)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        clips = {
            key: _check_positive(value, key, where, 1.0) for key, value in clips.items() if value is not None
        }
        if len(clips) > 1:
            raise ConfigError(
                f"{where}: only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set, received "
                f"{', '.join(f'{k}={v}' for k, v in clips.items())}. Keep one of them."
            )
        self.clipnorm = clips.get("clipnorm")
        self.clipvalue = clips.get("clipvalue")
        self.global_clipnorm = clips.get("global_clipnorm")
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self.built = False
        self._torch_optimizer: torch.optim.Optimizer | None = None
        # Per-parameter slots (torch's names: exp_avg, momentum_buffer, ...) before the torch
        # optimizer exists; the fused step in trainwell.fastpath reads and writes these dicts.
        self._slots: dict[torch.Tensor, dict] = {}
        self._params: list[torch.Tensor] = []

    # -- learning rate ---------------------------------------------------------------------------

    @property
    def learning_rate(self) -> LearningRate:
        """The learning rate of the next step (a schedule is evaluated at ``iterations``)."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return LearningRate(self._learning_rate(self.iterations), self)
        return LearningRate(self._learning_rate, self)

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        # Callbacks such as ReduceLROnPlateau set a float; as in Keras, that is refused when the
        # optimizer was created with a schedule (the schedule owns the rate).
        if isinstance(self._learning_rate, LearningRateSchedule) and not isinstance(
            value, LearningRateSchedule
        ):
            raise ConfigTypeError(
                f"{type(self).__name__}: the learning rate comes from a {type(self._learning_rate).__name__} "
                f"schedule and cannot be set to {describe(value)}. Create the optimizer with a float "
                "learning_rate if it must be settable."
            )
        self._learning_rate = _check_learning_rate(value, type(self).__name__)
        if self.built:
            self._write_lr(self.learning_rate)

    @property
    def lr(self) -> LearningRate:
        """Keras 2's name of ``learning_rate`` (readable and settable), still in course code."""
        return self.learning_rate

    @lr.setter
    def lr(self, value) -> None:
        self.learning_rate = value

    def _write_lr(self, lr: float) -> None:
        if self._torch_optimizer is None:
            return  # created later with the current rate
        for group in self._torch_optimizer.param_groups:
            group["lr"] = float(lr)

    # -- building and stepping -------------------------------------------------------------------

    def build(self, params) -> None:
        """Create ``torch_optimizer`` over ``params``; a no-op if already built on the same params.

        Args:
            params: the trainable parameters (``torch.nn.Parameter``s), e.g. ``model.parameters()``.

        Raises:
            ConfigError: if ``params`` is empty, or the optimizer was built on other parameters.
        """
        params = list(params)
        if self.built:
            if self.built_for(params):
                return
            raise ConfigError(
                f"{type(self).__name__}: already built for {len(self._params)} parameters, received "
                f"{len(params)} different ones. Create a new optimizer for another set of parameters."
            )
        if not params:
            raise ConfigError(
                f"{type(self).__name__}.build: received an empty parameter list. "
                "Pass the model's trainable parameters, e.g. optimizer.build(model.parameters())."
            )
        self._params = params
        self.built = True

    def built_for(self, params) -> bool:
        """Whether the optimizer was built on exactly these parameter objects, in this order."""
        params = list(params)
        return len(params) == len(self._params) and all(a is b for a, b in zip(params, self._params))

    @property
    def torch_optimizer(self) -> torch.optim.Optimizer | None:
        """The ``torch.optim`` optimizer, created on first use (None before ``build``).

        Created lazily because creating the first torch optimizer in a process imports torch's
        compiler stack (about 1.5 s), which a fit on the fused path (``trainwell.fastpath``)
        never needs. Slots that path filled are handed over, as the same dicts.
        """
        if self._torch_optimizer is None and self.built:
            self._torch_optimizer = self._make_torch_optimizer(self._params, float(self.learning_rate))
            self._torch_optimizer.state.update(self._slots)
            self._slots = self._torch_optimizer.state
        return self._torch_optimizer

    def state_for(self, param: torch.Tensor) -> dict:
        """The slot dict of ``param`` (torch's state names), shared with the torch optimizer."""
        return self._slots.setdefault(param, {})

    def _make_torch_optimizer(self, params: list, lr: float) -> torch.optim.Optimizer:
        raise NotImplementedError

    def _prepare_step(self, step: int) -> None:
        """Hook run just before the torch step; ``step`` is the 1-based number of that step."""

    def _require_built(self, method: str) -> None:
        if not self.built:
            raise ConfigError(
                f"{type(self).__name__}.{method}: the optimizer is not built yet. "
                "Call optimizer.build(model.parameters()) first."
            )

    def zero_grad(self) -> None:
        """Drop all gradients (``set_to_none=True``: no memset, and the next backward allocates)."""
        for p in self._params:  # what torch's zero_grad(set_to_none=True) does
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Apply one update from the parameters' ``.grad``, in Keras's order; increment ``iterations``.

        Raises:
            ConfigError: if the optimizer is not built, or no parameter has a gradient.
        """
        self._require_built("step")
        params = [p for p in self._params if p.grad is not None]
        if not params:
            raise ConfigError(
                f"{type(self).__name__}.step: no parameter has a gradient. "
                "Call loss.backward() before step()."
            )
        lr = self.learning_rate
        if isinstance(self._learning_rate, LearningRateSchedule):
            self._write_lr(lr)
        self._clip([p.grad for p in params])
        if self.weight_decay:
            # Keras decays every optimizer's weights decoupled from the gradient, before the update:
            # w -= lr * wd * w. torch's `weight_decay` (except AdamW's) adds wd * w to the gradient
            # instead, which Adam/RMSprop/Adagrad then rescale, so torch gets weight_decay=0 and the
            # decay happens here. torch.optim.AdamW's decay is this same formula.
            torch._foreach_mul_(params, 1.0 - lr * self.weight_decay)
        self._prepare_step(self.iterations + 1)
        self.torch_optimizer.step()
        self.iterations += 1

    def _clip(self, grads: list[torch.Tensor]) -> None:
        """Clip ``grads`` in place as Keras does: ``g * c / max(norm, c)`` for the norm variants.

        The norms stay on the device (no ``.item()``), so clipping adds no host sync.
        """
        if self.clipvalue is not None:
            torch._foreach_clamp_min_(grads, -self.clipvalue)
            torch._foreach_clamp_max_(grads, self.clipvalue)
        elif self.clipnorm is not None:
            norms = torch._foreach_clamp_min(torch._foreach_norm(grads), self.clipnorm)
            torch._foreach_mul_(grads, self.clipnorm)
            torch._foreach_div_(grads, norms)
        elif self.global_clipnorm is not None:
            # Not torch.nn.utils.clip_grad_norm_: it divides by (norm + 1e-6), a relative error of
            # 1e-6 / norm against Keras; the exact Keras scale costs the same foreach kernels.
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, self.global_clipnorm / total.clamp_min(self.global_clipnorm))

    # -- config and state ------------------------------------------------------------------------

    def get_config(self) -> dict:
        """Keras's config: the constructor arguments, JSON-serialisable (schedules as class_name/config)."""
        lr = self._learning_rate
        return {
            "name": self.name,
            "learning_rate": schedules.serialize(lr) if isinstance(lr, LearningRateSchedule) else lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
        }

    @classmethod
    def from_config(cls, config: dict) -> Optimizer:
        """Rebuild an optimizer (without state) from ``get_config()``'s output."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def export_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The optimizer's state as safetensors-ready tensors plus JSON-able metadata (no pickle).

        Returns:
            ``(tensors, meta)``: ``tensors`` maps ``"param_{i}/{slot}"`` (``i`` = position in the
            params given to ``build``, ``slot`` = torch's state name such as ``exp_avg``) to
            contiguous CPU copies; ``meta`` holds ``class_name``, ``iterations``, the float
            ``learning_rate`` (None with a schedule) and any non-tensor state ``values``.

        Raises:
            ConfigError: if the optimizer is not built.
        """
        self._require_built("export_state")
        tensors, values = {}, {}
        # The slots in torch's state_dict layout, read without creating the torch optimizer.
        indexed = [(i, self._slots[p]) for i, p in enumerate(self._params) if self._slots.get(p)]
        for index, slots in indexed:
            for slot, value in slots.items():
                key = f"param_{index}/{slot}"
                if isinstance(value, torch.Tensor):
                    tensors[key] = value.detach().to("cpu", copy=True).contiguous()
                else:
                    values[key] = value
        lr = None if isinstance(self._learning_rate, LearningRateSchedule) else self._learning_rate
        meta = {
            "class_name": type(self).__name__,
            "iterations": self.iterations,
            "learning_rate": lr,
            "values": values,
        }
        return tensors, meta

    def import_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Load ``export_state()``'s output so training continues exactly where it stopped.

        Args:
            tensors: the tensor dict from ``export_state``.
            meta: the metadata dict from ``export_state``.

        Raises:
            ConfigError: if the optimizer is not built.
            ModelFileError: if the state belongs to another optimizer class or other parameters.
        """
        self._require_built("import_state")
        where = f"{type(self).__name__}.import_state"
        if meta.get("class_name") != type(self).__name__:
            raise ModelFileError(
                f"{where}: the saved state is for {meta.get('class_name')!r}, not {type(self).__name__!r}. "
                "Load it into the optimizer class it was saved from."
            )
        state: dict[int, dict] = {}
        for key, value in [*tensors.items(), *meta.get("values", {}).items()]:
            index, slot = self._parse_state_key(key, where)
            if isinstance(value, torch.Tensor):
                if value.dim() > 0 and value.shape != self._params[index].shape:
                    raise ModelFileError(
                        f"{where}: entry {key!r} has shape {tuple(value.shape)}, but parameter {index} has "
                        f"shape {tuple(self._params[index].shape)}. The state was saved for another model."
                    )
                value = value.clone()  # torch keeps the given tensors; never share the caller's
            state.setdefault(index, {})[slot] = value
        groups = self.torch_optimizer.state_dict()["param_groups"]
        self.torch_optimizer.load_state_dict({"state": state, "param_groups": groups})
        self._slots = self.torch_optimizer.state  # load_state_dict replaced the state dict
        self.iterations = int(meta["iterations"])
        if meta.get("learning_rate") is not None and not isinstance(
            self._learning_rate, LearningRateSchedule
        ):
            self.learning_rate = meta["learning_rate"]

    def _parse_state_key(self, key: str, where: str) -> tuple[int, str]:
        head, _, slot = key.partition("/")
        index = head.removeprefix("param_")
        if not (head.startswith("param_") and index.isdigit() and slot and int(index) < len(self._params)):
            raise ModelFileError(
                f"{where}: entry {key!r} is not 'param_<i>/<slot>' with i < {len(self._params)} "
                "(the number of parameters this optimizer was built on). "
                "The state was saved for another model."
            )
        return int(index), slot


class SGD(Optimizer):
    """Gradient descent, optionally with (Nesterov) momentum.

    Keras: ``m = momentum * m - lr * g; w += m`` (Nesterov: ``w += momentum * m - lr * g``).
    torch: ``b = momentum * b + g; w -= lr * b`` (Nesterov: ``w -= lr * (g + momentum * b)``).
    Since Keras's ``m`` equals ``-lr * b``, the two agree exactly at a constant learning rate. When
    the rate changes (a schedule, ReduceLROnPlateau), torch applies the new rate to the whole
    buffer at once while Keras keeps the velocity earned at the old rate; the difference fades at
    the speed of the momentum.

    Args:
        learning_rate: float or schedule. Defaults to 0.01.
        momentum: in [0, 1). Defaults to 0.0.
        nesterov: use Nesterov momentum. Defaults to False.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``
            (see ``Optimizer``).

    Example:
        >>> SGD(learning_rate=0.1, momentum=0.9).get_config()["momentum"]
        0.9
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _check_unit(momentum, "momentum", "SGD", 0.9)
        self.nesterov = bool(nesterov)

    def _make_torch_optimizer(self, params, lr):
        # Keras ignores nesterov without momentum; torch refuses that combination.
        nesterov = self.nesterov and self.momentum > 0
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum, nesterov=nesterov, foreach=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba, https://arxiv.org/abs/1412.6980) with Keras's epsilon placement.

    Keras, at step t: ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g**2``,
    ``w -= lr * sqrt(1-b2**t) / (1-b1**t) * m / (sqrt(v) + epsilon)``
    (with ``amsgrad``, ``v`` is replaced by its running maximum).

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        beta_1: decay of the first moment, in [0, 1). Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.999.
        epsilon: positive. Defaults to 1e-7 (torch's default is 1e-8).
        amsgrad: use the AMSGrad variant. Defaults to False.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> Adam().get_config()["epsilon"]
        1e-07
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        where = type(self).__name__
        self.beta_1 = _check_unit(beta_1, "beta_1", where, 0.9)
        self.beta_2 = _check_unit(beta_2, "beta_2", where, 0.999)
        self.epsilon = _check_positive(epsilon, "epsilon", where, 1e-7)
        self.amsgrad = bool(amsgrad)

    def _make_torch_optimizer(self, params, lr):
        return torch.optim.Adam(
            params,
            lr=lr,
            betas=(self.beta_1, self.beta_2),
            eps=self.epsilon,
            amsgrad=self.amsgrad,
            foreach=True,
        )

    def _prepare_step(self, step: int) -> None:
        # torch divides sqrt(v) by sqrt(1-b2**t) and then adds eps; Keras folds that correction into
        # the step size and adds eps to sqrt(v) itself. Multiplying torch's denominator through by
        # sqrt(1-b2**t) shows the two are identical when torch's eps = epsilon / sqrt(1-b2**t).
        eps = self.torch_epsilon(step)
        for group in self.torch_optimizer.param_groups:
            group["eps"] = eps

    def torch_epsilon(self, step: int) -> float:
        """torch's ``eps`` that reproduces Keras's ``epsilon`` at the 1-based ``step`` (see above)."""
        return self.epsilon / math.sqrt(1.0 - self.beta_2**step)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, https://arxiv.org/abs/1711.05101).

    As in Keras, this is ``Adam`` with ``weight_decay`` defaulting to 0.004: each step first does
    ``w -= lr * weight_decay * w`` (the same formula as torch.optim.AdamW), then the Adam update.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        weight_decay: a number >= 0. Defaults to 0.004.
        beta_1, beta_2, epsilon, amsgrad: as in ``Adam``.
        **kwargs: ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Raises:
        ConfigError: if ``weight_decay`` is None or negative.

    Example:
        >>> AdamW().get_config()["weight_decay"]
        0.004
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        **kwargs,
    ):
        if weight_decay is None:
            raise ConfigError(
                "AdamW: `weight_decay` expects a number >= 0, received None. Pass weight_decay=0.004."
            )
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kwargs)


class _KerasRMSpropEngine(torch.optim.Optimizer):
    """RMSprop as Keras computes it, with foreach kernels (see ``RMSprop`` for why it exists).

    State per parameter: ``velocity``, plus ``average_gradient`` (centered) and ``momentum``.
    """

    def __init__(self, params, lr: float, rho: float, momentum: float, epsilon: float, centered: bool):
        defaults = {"lr": lr, "rho": rho, "momentum": momentum, "epsilon": epsilon, "centered": centered}
        super().__init__(params, defaults)

    def _slots(self, params: list, name: str) -> list[torch.Tensor]:
        slots = []
        for p in params:
            state = self.state[p]
            if name not in state:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
            slots.append(state[name])
        return slots

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            rho, lr = group["rho"], group["lr"]
            velocity = self._slots(params, "velocity")
            torch._foreach_mul_(velocity, rho)
            torch._foreach_addcmul_(velocity, grads, grads, value=1 - rho)
            if group["centered"]:
                average = self._slots(params, "average_gradient")
                torch._foreach_mul_(average, rho)
                torch._foreach_add_(average, grads, alpha=1 - rho)
                denominator = torch._foreach_addcmul(velocity, average, average, value=-1)
                torch._foreach_add_(denominator, group["epsilon"])
            else:
                denominator = torch._foreach_add(velocity, group["epsilon"])
            torch._foreach_sqrt_(denominator)
            increment = torch._foreach_mul(grads, lr)
            torch._foreach_div_(increment, denominator)
            if group["momentum"] > 0:
                buffers = self._slots(params, "momentum")
                torch._foreach_mul_(buffers, group["momentum"])
                torch._foreach_add_(buffers, increment)
                increment = buffers
            torch._foreach_sub_(params, increment)


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012), plain (not Nesterov) momentum, optionally centered.

    Keras: ``v = rho*v + (1-rho)*g**2``; centered: ``a = rho*a + (1-rho)*g``, ``d = v - a**2 + eps``,
    else ``d = v + eps``; ``inc = lr * g / sqrt(d)``; with momentum ``m = momentum*m + inc; w -= m``,
    else ``w -= inc``.

    torch.optim.RMSprop adds eps *outside* the square root (``sqrt(v) + eps``), and no choice of
    its arguments reproduces ``sqrt(v + eps)``: early in training, or for small gradients, ``v``
    is near ``eps = 1e-7`` and the two differ several-fold. So this one optimizer runs the Keras
    formula itself (``_KerasRMSpropEngine``, foreach kernels); Keras's ``rho`` (0.9) is torch's
    ``alpha`` (0.99 by default there).

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        rho: discount of the squared-gradient average, in [0, 1). Defaults to 0.9.
        momentum: in [0, 1). Defaults to 0.0.
        epsilon: positive. Defaults to 1e-7.
        centered: normalise by the estimated variance instead of the second moment. Defaults to False.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor(10.0))
        >>> opt = RMSprop(learning_rate=0.1)
        >>> opt.build([w])
        >>> w.grad = w.detach().clone()  # loss = w**2 / 2
        >>> opt.step()
        >>> round(w.item(), 5)
        9.68377
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = _check_unit(rho, "rho", "RMSprop", 0.9)
        self.momentum = _check_unit(momentum, "momentum", "RMSprop", 0.9)
        self.epsilon = _check_positive(epsilon, "epsilon", "RMSprop", 1e-7)
        self.centered = bool(centered)

    def _make_torch_optimizer(self, params, lr):
        return _KerasRMSpropEngine(params, lr, self.rho, self.momentum, self.epsilon, self.centered)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011): per-parameter rates shrinking with the summed squared gradients.

    Keras: ``acc += g**2; w -= lr * g / sqrt(acc + epsilon)``, with ``acc`` starting at
    ``initial_accumulator_value``.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        initial_accumulator_value: starting value of the accumulators, >= 0. Defaults to 0.1
            (torch's default is 0).
        epsilon: positive. Defaults to 1e-7.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> Adagrad().get_config()["initial_accumulator_value"]
        0.1
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = check_number(initial_accumulator_value, "initial_accumulator_value",
                                                      "Adagrad", low=0, example=0.1)
        self.epsilon = _check_positive(epsilon, "epsilon", "Adagrad", 1e-7)

    def _make_torch_optimizer(self, params, lr):
        # Keras adds eps inside the square root, torch outside it. Since the accumulator only ever
        # grows by g**2, starting torch's accumulator at initial + eps (and torch's eps at 0) makes
        # torch's sqrt(acc) exactly Keras's sqrt(acc + eps). The saved "sum" state includes eps.
        return torch.optim.Adagrad(
            params,
            lr=lr,
            initial_accumulator_value=self.initial_accumulator_value + self.epsilon,
            eps=0.0,
            foreach=True,
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


class StackedOptimizer:
    """SGD (momentum, Nesterov), Adam or AdamW for C models at once, on weights stacked along axis 0.

    ``batched`` trains models of one shape as one: each weight is a tensor whose leading axis is
    the candidate (``(C, in, out)``, or one flat ``(C, P)`` buffer). Every hyperparameter is a
    per-candidate column (a Python float when all candidates agree, which saves kernels), so each
    candidate keeps its own settings. The formulas and their order are torch.optim's (which
    ``optimizers.SGD``/``Adam`` run, with Keras's epsilon mapped as in ``Adam.torch_epsilon``),
    so a candidate's weights follow a lone fit's to float32 rounding (``tests/test_optimizers.py``
    compares stacked, fused and torch.optim updates). All active candidates step together, so one
    step counter serves them; ``active`` masks the update: a stopped candidate stays as it was.

    Args:
        optimizers: one built or unbuilt ``SGD``, ``Adam`` or ``AdamW`` per candidate, all of one class
            family (all SGD, or all Adam/AdamW) and the same ``nesterov``.
        params: the stacked weights; their ``.grad`` is read at each step.
        owner: for weights kept in one flat buffer (``fastpath.StackedDenseStep``), the candidate of
            each element (int64, the buffer's shape): per-candidate settings are spread over it
            once, so the update is a few whole-buffer operations whatever the number of layers.
    """

    def __init__(self, optimizers, params, owner: torch.Tensor | None = None):
        self.adam = isinstance(optimizers[0], Adam)
        self.nesterov = bool(getattr(optimizers[0], "nesterov", False))
        self.count = len(optimizers)

        self.owner = owner

        def column(name, default=0.0):
            values = [getattr(opt, name, default) for opt in optimizers]
            values = [float(default if v is None else v) for v in values]
            if len(set(values)) == 1:
                return values[0]
            values = torch.tensor(values)
            return values if owner is None else values[owner]

        self.lr = column("learning_rate")
        self.weight_decay = column("weight_decay")
        if self.adam:
            self.beta_1, self.beta_2, self.epsilon = column("beta_1"), column("beta_2"), column("epsilon")
            self.v = [torch.zeros_like(p) for p in params]
        else:
            self.momentum = column("momentum")
        self.m = [torch.zeros_like(p) for p in params]
        self.params = params
        self.iterations = 0
        self._steps = [torch.zeros(()) for _ in params]  # the fused Adam kernel's step counts
        self._scratch = [None] * len(params)

    def _per(self, value, p: torch.Tensor):
        """A column shaped to broadcast over ``p``'s candidate axis (floats, spread columns: as they are)."""
        if isinstance(value, float) or self.owner is not None:
            return value
        return value.view(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One update of every candidate's weights from ``p.grad``; ``active`` (bool, (C,)) masks it."""
        self.iterations += 1
        masked = active is not None and not bool(active.all())
        for i, p in enumerate(self.params):
            old = p.clone() if masked else None
            lr, wd = self._per(self.lr, p), self._per(self.weight_decay, p)
            if not (isinstance(wd, float) and wd == 0.0):
                p.mul_(1.0 - lr * wd)  # decoupled weight decay, as Keras (and torch's AdamW) apply it
            (self._adam if self.adam else self._sgd)(i, p, p.grad, lr)
            if masked:
                keep = active[self.owner] if self.owner is not None else self._per(active, p)
                p.copy_(torch.where(keep, p, old))

    def _adam(self, i: int, p: torch.Tensor, g: torch.Tensor, lr) -> None:
        # torch.optim.Adam's single-tensor formula with eps' = eps / sqrt(1 - b2^t) (optimizers.Adam),
        # which is Keras's: w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps).
        t = self.iterations
        b1, b2, eps = (self._per(v, p) for v in (self.beta_1, self.beta_2, self.epsilon))
        m, v = self.m[i], self.v[i]
        if all(isinstance(h, float) for h in (b1, b2, eps)):
            self._fused_adam(i, p, g, lr, b1, b2, eps / (1.0 - b2**t) ** 0.5)
            return
        m.lerp_(g, 1.0 - b1)
        if isinstance(b2, float):
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        else:
            v.mul_(b2).add_(g.square().mul_(1.0 - b2))
        correction = (1.0 - b2**t) ** 0.5
        denominator = (v.sqrt() / correction).add_(eps / correction)
        step_size = lr / (1.0 - b1**t)
        if isinstance(step_size, float):
            p.addcdiv_(m, denominator, value=-step_size)
        else:
            p.sub_(m.div(denominator).mul_(step_size))

    def _fused_adam(self, i: int, p, g, lr, b1: float, b2: float, eps: float) -> None:
        # torch's fused CPU Adam kernel (fastpath.FusedUpdate's): one kernel for m, v and the update.
        # With per-candidate rates it runs at lr=1 on a zeroed scratch buffer, which then holds
        # minus the update direction, and each candidate's rate scales it into the weights.
        self._steps[i].add_(1)
        target = p
        if not isinstance(lr, float):
            if self._scratch[i] is None:
                self._scratch[i] = torch.zeros_like(p)
            target = self._scratch[i].zero_()
        torch._fused_adam_([target], [g], [self.m[i]], [self.v[i]], [], [self._steps[i]],
                           lr=lr if isinstance(lr, float) else 1.0, beta1=b1, beta2=b2, weight_decay=0.0,
                           eps=eps, amsgrad=False, maximize=False)
        if target is not p:
            p.addcmul_(target, lr)

    def _sgd(self, i: int, p: torch.Tensor, g: torch.Tensor, lr) -> None:
        # torch.optim.SGD: b = momentum * b + g (Keras's velocity is -lr * b); from b = 0 the first
        # step gives b = g exactly, as torch's clone of the first gradient does.
        momentum, b = self._per(self.momentum, p), self.m[i]
        b.mul_(momentum).add_(g)
        if self.nesterov:
            d = g.add(b, alpha=momentum) if isinstance(momentum, float) else g.add(b * momentum)
        else:
            d = b
        if isinstance(lr, float):
            p.add_(d, alpha=-lr)
        else:
            p.sub_(d * lr)


_OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}
class Nadam(Optimizer):
    """Nadam: Adam with Nesterov momentum (Dozat, 2016, https://cs229.stanford.edu/proj2015/054_report.pdf).

    Keras, at step t, with ``u_t = b1 * (1 - 0.5 * 0.96**t)`` and ``U_t = u_1 * ... * u_t``:
    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g**2``,
    ``m_hat = u_{t+1} * m / (1 - U_{t+1}) + (1 - u_t) * g / (1 - U_t)``, ``v_hat = v / (1 - b2**t)``,
    ``w -= lr * m_hat / (sqrt(v_hat) + epsilon)``.
    torch.optim.NAdam computes the same with ``0.96**(t * momentum_decay)``, so it runs with
    ``momentum_decay=1`` (torch's default, 0.004, is a different schedule).

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        beta_1, beta_2: in [0, 1). Default to 0.9 and 0.999.
        epsilon: positive. Defaults to 1e-7.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> Nadam().get_config()["beta_2"]
        0.999
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check_unit(beta_1, "beta_1", "Nadam", 0.9)
        self.beta_2 = _check_unit(beta_2, "beta_2", "Nadam", 0.999)
        self.epsilon = _check_positive(epsilon, "epsilon", "Nadam", 1e-7)

    def _make_torch_optimizer(self, params, lr):
        return torch.optim.NAdam(
            params, lr=lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon, momentum_decay=1.0,
            foreach=True,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012, https://arxiv.org/abs/1212.5701).

    Keras: ``a = rho*a + (1-rho)*g**2``, ``d = -sqrt(D + eps) / sqrt(a + eps) * g``,
    ``D = rho*D + (1-rho)*d**2``, ``w += lr * d``: torch.optim.Adadelta's formula, with Keras's
    defaults (torch's are lr=1.0, rho=0.9, eps=1e-6).

    Args:
        learning_rate: float or schedule. Defaults to 0.001 (Keras's; the paper uses 1.0).
        rho: decay rate, in [0, 1). Defaults to 0.95.
        epsilon: positive. Defaults to 1e-7.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> Adadelta().get_config()["rho"]
        0.95
    """

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = _check_unit(rho, "rho", "Adadelta", 0.95)
        self.epsilon = _check_positive(epsilon, "epsilon", "Adadelta", 1e-7)

    def _make_torch_optimizer(self, params, lr):
        return torch.optim.Adadelta(params, lr=lr, rho=self.rho, eps=self.epsilon, foreach=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class _KerasRule(torch.optim.Optimizer):
    """A torch optimizer that runs a Keras update rule torch.optim lacks or computes differently.

    Subclasses declare their ``SLOTS`` and write ``update(param, grad, group, slots)`` for one
    tensor, elementwise, so the fused step runs the same function once on its flat buffers
    (``fastpath.FusedUpdate``); ``group["step"]`` is the 1-based step number, set by the
    trainwell optimizer before each step. Slots are created on first use under Keras's names, so
    ``export_state`` saves them like torch's own.
    """

    # (name, initial value): a number, or the name of the hyper-parameter that holds it.
    SLOTS: tuple = ()

    def __init__(self, params, **hyper):
        super().__init__(params, {"step": 0, **hyper})

    @staticmethod
    def initial(fill, hyper: dict) -> float:
        """A slot's initial value: ``fill``, or the hyper-parameter it names."""
        return hyper[fill] if isinstance(fill, str) else fill

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, group: dict, slots: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    state = self.state[param]
                    for name, fill in self.SLOTS:
                        if name not in state:
                            state[name] = torch.full_like(param, self.initial(fill, group),
                                                          memory_format=torch.preserve_format)
                    self.update(param, param.grad, group, state)


class _RuleOptimizer(Optimizer):
    """A trainwell optimizer whose update is a ``_KerasRule`` (``_rule``) with the hyper-parameters
    ``_hyper()`` gives."""

    _rule: type = _KerasRule

    def _hyper(self) -> dict:
        raise NotImplementedError

    def _make_torch_optimizer(self, params, lr):
        return self._rule(params, lr=lr, **self._hyper())

    def _prepare_step(self, step: int) -> None:
        for group in self.torch_optimizer.param_groups:
            group["step"] = step


class _AdamaxRule(_KerasRule):
    SLOTS = (("momentum", 0.0), ("norm", 0.0))

    @staticmethod
    def update(param, grad, group, slots):
        m, u = slots["momentum"], slots["norm"]
        m.lerp_(grad, 1 - group["beta_1"])
        torch.maximum(u * group["beta_2"], grad.abs(), out=u)
        step_size = group["lr"] / (1 - group["beta_1"] ** group["step"])
        param.addcdiv_(m, u + group["epsilon"], value=-step_size)


class Adamax(_RuleOptimizer):
    """Adamax, Adam's infinity-norm variant (Kingma & Ba, https://arxiv.org/abs/1412.6980, section 7).

    Keras: ``m = b1*m + (1-b1)*g``, ``u = max(b2*u, |g|)``, ``w -= lr * m / ((1 - b1**t) * (u + eps))``.
    torch.optim.Adamax puts eps inside the maximum (``max(b2*u, |g| + eps)``), which no choice of
    its arguments turns into Keras's numbers, so this optimizer runs the Keras rule (``_AdamaxRule``).

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        beta_1, beta_2: in [0, 1). Default to 0.9 and 0.999.
        epsilon: positive. Defaults to 1e-7.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = Adamax(learning_rate=0.1)
        >>> opt.build([w])
        >>> w.grad = torch.tensor([0.5])
        >>> opt.step()
        >>> round(w.item(), 5)  # 1 - 0.1 * 0.05 / (0.1 * (0.5 + 1e-7))
        0.9
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check_unit(beta_1, "beta_1", "Adamax", 0.9)
        self.beta_2 = _check_unit(beta_2, "beta_2", "Adamax", 0.999)
        self.epsilon = _check_positive(epsilon, "epsilon", "Adamax", 1e-7)

    _rule = _AdamaxRule

    def _hyper(self) -> dict:
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class _LionRule(_KerasRule):
    SLOTS = (("momentum", 0.0),)

    @staticmethod
    def update(param, grad, group, slots):
        m = slots["momentum"]
        param.add_(torch.sign(m * group["beta_1"] + grad * (1 - group["beta_1"])), alpha=-group["lr"])
        m.mul_(group["beta_2"]).add_(grad, alpha=1 - group["beta_2"])


class Lion(_RuleOptimizer):
    """Lion, sign momentum (Chen et al., 2023, https://arxiv.org/abs/2302.06675).

    Keras: ``w -= lr * sign(b1*m + (1-b1)*g)``, then ``m = b2*m + (1-b2)*g``. torch.optim has no
    Lion, so this optimizer runs the Keras rule (``_LionRule``). Every weight moves by exactly
    ``lr`` per step, so Lion wants a rate 3-10 times smaller than Adam's.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        beta_1: in (0, 1] (0 would make it signSGD). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.99.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
        >>> opt = Lion(learning_rate=0.1)
        >>> opt.build([w])
        >>> w.grad = torch.tensor([3.0, -1e-6])
        >>> opt.step()
        >>> w.data
        tensor([0.9000, 1.1000])
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if check_number(beta_1, "beta_1", "Lion", example=0.9) is None or not 0 < beta_1 <= 1:
            raise ConfigError(
                f"Lion: `beta_1` expects a number in (0, 1] (0 would make it signSGD), received "
                f"{describe(beta_1)}. Pass for example beta_1=0.9."
            )
        self.beta_1 = float(beta_1)
        self.beta_2 = _check_unit(beta_2, "beta_2", "Lion", 0.99)

    _rule = _LionRule

    def _hyper(self) -> dict:
        return {"beta_1": self.beta_1, "beta_2": self.beta_2}

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


class _FtrlRule(_KerasRule):
    SLOTS = (("accumulator", "initial_accumulator_value"), ("linear", 0.0))

    @staticmethod
    def update(param, grad, group, slots):
        lr, power = group["lr"], -group["learning_rate_power"]
        accumulator, linear = slots["accumulator"], slots["linear"]
        new_accumulator = accumulator + grad * grad
        sigma = (new_accumulator.pow(power) - accumulator.pow(power)) / lr
        linear.add_(grad + 2 * group["l2_shrinkage_regularization_strength"] * param - sigma * param)
        l2 = group["l2_regularization_strength"] + group["beta"] / (2 * lr)
        quadratic = new_accumulator.pow(power) / lr + 2 * l2
        l1 = group["l1_regularization_strength"]
        param.copy_((linear.clamp(-l1, l1) - linear) / quadratic)
        accumulator.copy_(new_accumulator)


class Ftrl(_RuleOptimizer):
    """FTRL-Proximal (McMahan et al., 2013, https://research.google.com/pubs/archive/41159.pdf).

    Keras, per weight, with ``p = -learning_rate_power``:
    ``n' = n + g**2``; ``z += g + 2*l2_shrinkage*w - (n'**p - n**p) / lr * w``;
    ``w = (clip(z, -l1, l1) - z) / (n'**p / lr + 2*(l2 + beta / (2*lr)))``; ``n = n'``.
    torch.optim has no FTRL, so this optimizer runs the Keras rule (``_FtrlRule``).

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        learning_rate_power: <= 0. Defaults to -0.5.
        initial_accumulator_value: >= 0. Defaults to 0.1.
        l1_regularization_strength, l2_regularization_strength,
        l2_shrinkage_regularization_strength, beta: >= 0. Default to 0.0.
        **kwargs: ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``name``.

    Example:
        >>> Ftrl().get_config()["learning_rate_power"]
        -0.5
    """

    _NON_NEGATIVE = (
        "initial_accumulator_value", "l1_regularization_strength", "l2_regularization_strength",
        "l2_shrinkage_regularization_strength", "beta",
    )

    def __init__(
        self, learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
        l1_regularization_strength=0.0, l2_regularization_strength=0.0,
        l2_shrinkage_regularization_strength=0.0, beta=0.0, **kwargs,
    ):
        super().__init__(learning_rate, **kwargs)
        if self._learning_rate == 0:
            raise ConfigError("Ftrl: `learning_rate` expects a positive number (FTRL divides by it), "
                              "received 0. Pass for example learning_rate=0.001.")
        self.learning_rate_power = check_number(learning_rate_power, "learning_rate_power", "Ftrl",
                                                high=0, example=-0.5)
        values = locals()
        for argument in self._NON_NEGATIVE:
            value = values[argument]
            check_number(value, argument, "Ftrl", low=0, example=0.1)
            setattr(self, argument, float(value))

    _rule = _FtrlRule

    def _hyper(self) -> dict:
        return {key: getattr(self, key) for key in ("learning_rate_power", *self._NON_NEGATIVE)}

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            **{key: getattr(self, key) for key in ("learning_rate_power", *self._NON_NEGATIVE)},
        }


_OPTIMIZERS = {
    cls.__name__.lower(): cls
    for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, Nadam, Adamax, Adadelta, Lion, Ftrl)
}


def _legacy(cls: type[Optimizer]) -> type[Optimizer]:
    """Keras 2's ``optimizers.legacy.<cls>``: the same optimizer, also taking ``decay``.

    Keras 2 divided the rate by ``1 + decay * iterations``; that is ``InverseTimeDecay(lr, 1, decay)``,
    so the legacy class builds that schedule and saves as the modern class with it.
    """

    def __init__(self, *args, decay=0.0, **kwargs):
        cls.__init__(self, *args, **kwargs)
        if decay:
            rate = _check_positive(decay, "decay", cls.__name__, 1e-6)
            self._learning_rate = schedules.InverseTimeDecay(self._learning_rate, 1, rate)

    doc = _legacy.__doc__.replace("<cls>", cls.__name__)
    return type(cls.__name__, (cls,), {"__init__": __init__, "__doc__": doc})


# Course solutions written for Keras 2.11-2.15 import `keras.optimizers.legacy.SGD` and friends.
legacy = types.ModuleType(__name__ + ".legacy", "Keras 2's optimizer names: ``optimizers.legacy.Adam`` etc.")
legacy.Optimizer = Optimizer
for _cls in (SGD, Adam, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Ftrl):
    setattr(legacy, _cls.__name__, _legacy(_cls))
sys.modules[legacy.__name__] = legacy


def _lookup(name) -> type[Optimizer]:
    cls = _OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise unknown_name("optimizer", name, _OPTIMIZERS, "optimizer", "trainwell.optimizers.names()")
    return cls


def names() -> list[str]:
    """Every optimizer name ``get`` accepts (case-insensitive), sorted.

    Example:
        >>> names()[:3]
        ['adadelta', 'adagrad', 'adam']
    """
    return sorted(_OPTIMIZERS)


def get(identifier) -> Optimizer:
    """Resolve an optimizer from a name, a config dict, or an instance.

    Args:
        identifier: a name (``'adam'``, ``'SGD'``, ...; case-insensitive, Keras defaults), a dict
            ``{"class_name": ..., "config": {...}}``, or an ``Optimizer`` (returned as is).

    Returns:
        An ``Optimizer`` (not yet built).

    Raises:
        ConfigError: for an unknown name (the message suggests the closest one).
        ConfigTypeError: for any other kind of identifier.

    Example:
        >>> get("adam").learning_rate
        0.001
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return _lookup(identifier["class_name"]).from_config(identifier.get("config", {}))
    raise ConfigTypeError(
        f"`optimizer`: expected a name such as 'adam', a config dict or a trainwell optimizer, received "
        f"{describe(identifier)}. Pass for example optimizer='adam' or optimizers.Adam(learning_rate=0.01)."
    )


def deserialize(config: dict) -> Optimizer:
    """Rebuild an optimizer from ``serialize``'s output (same as ``get`` for a dict)."""
    return get(config)


def serialize(optimizer: Optimizer) -> dict:
    """``{"class_name": ..., "config": ...}`` for an optimizer (JSON-serialisable).

    Example:
        >>> serialize(SGD())["class_name"]
        'SGD'
    """
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
