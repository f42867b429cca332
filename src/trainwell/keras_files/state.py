"""Weights and optimizer state: Keras's variable lists ↔ trainwell's named tensors.

Keras stores each layer's variables as a list in creation order (Dense: kernel, bias) and the
optimizer's as one list: ``iteration``, ``learning_rate`` (absent under a schedule), then its
slots in the order its ``build`` creates them. Dense kernels are (in, units) in both libraries, so
weights copy unchanged. Slots map one to one, except two where torch keeps another quantity:

- SGD momentum: Keras keeps ``m = -lr * b`` where torch keeps the buffer ``b`` (see ``SGD``).
- Adagrad: torch's accumulator starts at ``initial + epsilon`` (see ``Adagrad``), Keras's at ``initial``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._errors import ModelFileError, describe
from . import configs

LAYERS, OPTIMIZER = "layers/", "optimizer/"

# Keras slot name -> trainwell (torch) state name, per optimizer class.
_SLOT_NAMES = {
    "Adam": {"momentum": "exp_avg", "velocity": "exp_avg_sq", "velocity_hat": "max_exp_avg_sq"},
    "SGD": {"momentum": "momentum_buffer"},
    "RMSprop": {"velocity": "velocity", "momentum": "momentum", "average_gradient": "average_gradient"},
    "Adagrad": {"accumulator": "sum"},
}
_SLOT_NAMES["AdamW"] = _SLOT_NAMES["Adam"]
_STEP_COUNTED = ("Adam", "AdamW", "Adagrad")  # torch keeps a per-parameter `step` for these


def slot_order(kind: str, config: dict, n: int) -> list[tuple[str, int]] | None:
    """Keras's optimizer slots after ``iteration``/``learning_rate``: (slot, parameter index) pairs."""
    if kind in ("Adam", "AdamW"):
        order = [(slot, i) for i in range(n) for slot in ("momentum", "velocity")]
        return order + [("velocity_hat", i) for i in range(n)] * bool(config.get("amsgrad"))
    if kind == "SGD":
        return [("momentum", i) for i in range(n)] if config.get("momentum") else []
    if kind == "RMSprop":
        blocks = ["velocity"] + ["momentum"] * bool(config.get("momentum")) + \
            ["average_gradient"] * bool(config.get("centered"))
        return [(slot, i) for slot in blocks for i in range(n)]
    if kind == "Adagrad":
        return [("accumulator", i) for i in range(n)]
    return None


# ------------------------------------------------------------------------------------------ weights
def layer_tensors(path: str, layers: list[dict], found: dict[str, list[np.ndarray]]) -> dict:
    """``layers/<layer>/<weight>`` tensors from each layer's Keras variable list."""
    tensors = {}
    for entry in layers:
        name = entry["config"]["name"]
        names = configs.variable_names(entry)
        values = found.get(name, [])
        if len(values) != len(names):
            raise ModelFileError(f"{path}: layer '{name}' ({entry['class_name']}) should hold {len(names)} "
                                 f"weight arrays, the file holds {len(values)}.")
        for weight, value in zip(names, values):
            if weight is not None:
                tensors[f"{LAYERS}{name}/{weight}"] = _float32(path, f"{name}/{weight}", value)
    extra = sorted(set(found) - {e["config"]["name"] for e in layers})
    if any(found[name] for name in extra):
        raise ModelFileError(f"{path}: the file holds weights for layers {extra} that the model config "
                             "does not declare.")
    return tensors


def _float32(path: str, where: str, value: np.ndarray) -> torch.Tensor:
    if value.dtype not in (np.float32, np.float16):  # float16 widens exactly; anything else is not a weight
        raise ModelFileError(f"{path}: weight '{where}' has dtype {value.dtype}, expected float32.")
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def keras_variables(layer: dict, tensors: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """A trainwell layer's weights as Keras's variable list (Normalization's count written as 0)."""
    name = layer["config"]["name"]
    out = []
    for weight in configs.variable_names(layer):
        key = f"{LAYERS}{name}/{weight}"
        out.append(np.array(0, dtype=np.int32) if weight is None else tensors[key].detach().cpu().numpy())
    return out


def trainable_keys(layers: list[dict], tensors: dict) -> list[str]:
    """The trainable weights in trainwell's (and Keras's) optimizer order."""
    keys = []
    for entry in layers:
        if not entry["config"].get("trainable", True):
            continue
        spec = configs.LAYERS.get(configs.keras_class_name(entry["class_name"]))
        if spec is None:  # an input layer
            continue
        name = entry["config"]["name"]
        keys += [f"{LAYERS}{name}/{w}" for w in spec.variables(entry["config"])
                 if w in spec.trainable and f"{LAYERS}{name}/{w}" in tensors]
    return keys


# ------------------------------------------------------------------------------------------ optimizer
def optimizer_from_keras(path: str, optimizer: dict, values: list[np.ndarray], params: list[torch.Tensor]):
    """trainwell's optimizer tensors and meta from Keras's variable list, or None (with a warning)
    when the layout is not one trainwell knows (the optimizer then starts fresh)."""
    kind, config = optimizer["class_name"], optimizer.get("config", {})
    schedule = isinstance(config.get("learning_rate"), dict)
    order = slot_order(kind, config, len(params))
    head = 1 if schedule else 2
    if order and len(values) == head and _scalar(path, "optimizer iteration", values[0]) == 0:
        return None  # compiled, never built: Keras holds no slots, so nothing is lost by starting fresh
    if order is None or config.get("use_ema") or config.get("gradient_accumulation_steps") \
            or len(values) != head + len(order):
        warnings.warn(f"{path}: the {kind} optimizer's saved state ({len(values)} arrays) is not in a layout "
                      "trainwell reads; the compile settings are restored and the optimizer starts fresh.",
                      UserWarning, stacklevel=2)
        return None
    iterations = _scalar(path, "optimizer iteration", values[0])
    if not (float(iterations).is_integer() and 0 <= iterations < 2**53):
        raise ModelFileError(f"{path}: the optimizer iteration count is {describe(iterations)}.")
    lr = None if schedule else float(_scalar(path, "optimizer learning_rate", values[1]))
    tensors = {}
    for (slot, i), value in zip(order, values[head:]):
        tensor = _float32(path, f"optimizer {slot} of parameter {i}", value)
        if tuple(tensor.shape) != tuple(params[i].shape):
            raise ModelFileError(f"{path}: optimizer slot {slot} of parameter {i} has shape "
                                 f"{tuple(tensor.shape)}, the parameter {tuple(params[i].shape)}.")
        if kind == "SGD":
            tensor = -tensor / lr if lr else torch.zeros_like(tensor)
        elif kind == "Adagrad":
            tensor = tensor + float(config.get("epsilon", 1e-7))
        tensors[f"param_{i}/{_SLOT_NAMES[kind][slot]}"] = tensor
    if kind in _STEP_COUNTED and iterations > 0:
        for i in range(len(params)):
            tensors[f"param_{i}/step"] = torch.tensor(float(iterations))
    if iterations == 0:
        tensors = {}  # a built but never stepped optimizer: torch starts from nothing
    meta = {"class_name": kind, "iterations": int(iterations), "learning_rate": lr, "values": {}}
    return tensors, meta


def _scalar(path: str, where: str, value: np.ndarray) -> float:
    if value.shape != () or value.dtype.kind not in "fiu":
        raise ModelFileError(f"{path}: {where} must be one number, found shape {value.shape} {value.dtype}.")
    return value.item()


def optimizer_to_keras(optimizer: dict, meta: dict | None, tensors: dict, params: list[torch.Tensor]):
    """Keras's optimizer variable list from trainwell's state (zeros for a fresh optimizer), or None
    when the optimizer has no Keras layout here."""
    kind, config = optimizer["class_name"], optimizer.get("config", {})
    order = slot_order(kind, config, len(params))
    if order is None:
        return None
    meta = meta or {"iterations": 0, "learning_rate": None}
    lr = meta.get("learning_rate")
    if lr is None and not isinstance(config.get("learning_rate"), dict):
        lr = config.get("learning_rate")
    values = [np.array(meta["iterations"], dtype=np.int64)]
    if not isinstance(config.get("learning_rate"), dict):
        values.append(np.array(lr, dtype=np.float32))
    for slot, i in order:
        key = f"{OPTIMIZER}param_{i}/{_SLOT_NAMES[kind][slot]}"
        value = tensors.get(key)
        if value is None:
            value = torch.full_like(params[i], float(config.get("initial_accumulator_value", 0.0))
                                    if kind == "Adagrad" else 0.0)
        elif kind == "SGD":
            value = -value * lr
        elif kind == "Adagrad":
            value = value - float(config.get("epsilon", 1e-7))
        values.append(value.detach().cpu().numpy().astype(np.float32))
    return values
