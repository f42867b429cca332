"""Compile settings: Keras's ``compile_config`` (``training_config`` in legacy files) ↔ trainwell's.

Reading resolves every name through trainwell's own tables (``optimizers.get``, ``losses.get``,
``metrics.get``): a component trainwell does not have loads the model uncompiled with a warning, and
a custom one (a module outside the allow-list) is refused, as for layers.
"""

from __future__ import annotations

import warnings

from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from .._errors import ConfigError, ModelFileError, describe
from . import configs, state

# Keras optimizer settings without a trainwell counterpart that change nothing at their defaults.
_OPTIMIZER_IGNORED = ("ema_momentum", "ema_overwrite_frequency", "jit_compile", "is_legacy_optimizer",
                      "loss_scale_factor", "gradient_accumulation_steps", "use_ema", "decay")


def from_keras(path: str, compile_entry: dict, optimizer_entry, outputs: list[str]) -> dict | None:
    """trainwell's compile settings from Keras's, or None (with a warning) for a component trainwell
    does not have. Custom code (a module outside the allow-list) is refused outright.

    Args:
        outputs: the model's output names, in order: a setting given as a dict by output name
            (``loss={"price": "mse", ...}``) becomes one entry per output.
    """
    where = f"{path}: the compile config"
    try:
        compile_entry = _by_output_in_order(compile_entry, outputs)
    except ConfigError as exc:
        return _uncompiled(path, exc)
    name, config = configs.check_object(optimizer_entry, "optimizer", where)
    unsupported = [f"{k}={config[k]!r}" for k in ("use_ema", "gradient_accumulation_steps",
                                                  "loss_scale_factor", "decay")
                   if config.get(k) not in (None, False, 0)]
    config = {k: v for k, v in config.items() if k not in _OPTIMIZER_IGNORED}
    if isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = configs.plain(config["learning_rate"], "learning-rate schedule", where)
    raw_loss = compile_entry.get("loss")
    per_output = isinstance(raw_loss, list) and len(raw_loss) > 1  # a graph's loss for each output
    if per_output:
        loss = [None if each is None else configs.plain(each, "loss", where) for each in raw_loss]
        metrics = _per_output_metrics(compile_entry.get("metrics"), len(raw_loss), where)
        weighted = []  # not supported for several outputs yet
        if compile_entry.get("weighted_metrics"):
            warnings.warn(f"{path}: the weighted_metrics of a model with several outputs are not "
                          "supported yet; the model loads compiled without them.", UserWarning, stacklevel=4)
    else:
        single = raw_loss[0] if isinstance(raw_loss, list) and raw_loss else raw_loss
        loss = configs.plain(single, "loss", where)
        metrics, weighted = (_metric_list(compile_entry.get(key), where)
                             for key in ("metrics", "weighted_metrics"))
    loss_weights = compile_entry.get("loss_weights")
    try:
        if unsupported:
            raise ConfigError(f"optimizer {name} uses {', '.join(unsupported)}, "
                              "which trainwell does not have")
        optimizer_class = type(optimizers_module.get(name.lower()))
        optimizer = {"class_name": optimizer_class.__name__,
                     "config": configs.keep_known(optimizer_class, config, f"{where}: optimizer {name}")}
        optimizers_module.get(optimizer)
        for each in loss if per_output else [loss]:
            if each is not None:
                losses_module.get(each)
        for metric in [m for ms in metrics for m in ms] if per_output else metrics + weighted:
            metrics_module.get(metric, output_shape=(None, 2))
        if isinstance(loss_weights, list) and len(loss_weights) == 1:
            loss_weights = loss_weights[0]
        if per_output and loss_weights is not None and not (
                isinstance(loss_weights, list) and len(loss_weights) == len(loss)
                and all(isinstance(w, (int, float)) for w in loss_weights)):
            raise ConfigError(f"loss_weights {describe(loss_weights)} is not one number per output")
        if not per_output and loss_weights is not None and not isinstance(loss_weights, (int, float)):
            raise ConfigError(f"loss_weights {describe(loss_weights)} is not one number")
    except (ModelFileError, ConfigError, TypeError, ValueError) as exc:
        return _uncompiled(path, exc)
    return {"optimizer": optimizer, "loss": loss, "metrics": metrics, "weighted_metrics": weighted,
            "loss_weights": loss_weights, "precision": None}


def _uncompiled(path: str, exc: Exception) -> None:
    warnings.warn(f"{path}: the model loads uncompiled, because its compile settings cannot be "
                  f"restored ({exc}). Call model.compile(...) before training.", UserWarning, stacklevel=5)


def _by_name(value) -> bool:
    """Whether a compile setting is a dict by output name (a Keras object dict has a class_name)."""
    return isinstance(value, dict) and "class_name" not in value


def _by_output_in_order(entry: dict, outputs: list[str]) -> dict:
    """``entry`` with each setting given by output name as Keras's per-output list (one output:
    the value itself). An output left out gets no loss, no metrics and a loss weight of 1, as in
    Keras; a name that is not an output is an error."""
    entry = dict(entry)
    for key, missing in (("loss", None), ("metrics", []), ("weighted_metrics", []), ("loss_weights", 1.0)):
        value = entry.get(key)
        if not _by_name(value):
            continue
        unknown = [name for name in value if name not in outputs]
        if unknown:
            raise ConfigError(f"{key} names {unknown}, which are not outputs of the model "
                              f"(outputs: {outputs})")
        ordered = [value.get(name, missing) for name in outputs]
        if key in ("metrics", "weighted_metrics"):
            ordered = [m if isinstance(m, list) else [m] for m in ordered]
        entry[key] = ordered if len(outputs) > 1 else ordered[0] if ordered else None
    return entry


def _per_output_metrics(entry, outputs: int, where: str) -> list[list]:
    """A several-output graph's ``metrics``: one list per output (Keras writes them so)."""
    if not entry:
        return [[] for _ in range(outputs)]
    if not (isinstance(entry, list) and len(entry) == outputs and all(isinstance(ms, list) for ms in entry)):
        raise ModelFileError(f"{where}: metrics {describe(entry)} is not one list per output")
    return [[configs.plain(m, "metric", where) for m in ms] for ms in entry]


def _metric_list(entry, where: str) -> list:
    """A compile config's ``metrics`` or ``weighted_metrics`` as a flat list of plain identifiers."""
    metrics = entry or []
    if isinstance(metrics, list) and len(metrics) == 1 and isinstance(metrics[0], list):
        metrics = metrics[0]  # Keras 2 wrote one list per output
    if not isinstance(metrics, list):
        metrics = [metrics]
    return [configs.plain(m, "metric", where) for m in metrics]


def to_keras(header: dict, tensors: dict):
    """Keras's ``compile_config`` and the optimizer's variable list (None when not compiled or unbuilt)."""
    settings = header.get("compile")
    config = header["model"]["config"]
    if settings is None:
        return None, None
    optimizer = dict(settings["optimizer"])
    opt_config = dict(optimizer.get("config", {}))
    if isinstance(opt_config.get("learning_rate"), dict):
        opt_config["learning_rate"] = configs.keras_object(opt_config["learning_rate"],
                                                            "keras.optimizers.schedules")
    compile_config = {
        "optimizer": {"module": "keras.optimizers", "class_name": optimizer["class_name"],
                      "config": opt_config, "registered_name": None},
        "loss": _keras_objects(settings.get("loss"), "keras.losses"),
        "loss_weights": settings.get("loss_weights"),
        "metrics": _keras_objects(settings.get("metrics") or [], "keras.metrics") or None,
        "weighted_metrics": _keras_objects(settings.get("weighted_metrics") or [], "keras.metrics") or None,
        "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}
    values = None
    if "input_layers" in config or config.get("input_shape"):  # built: a graph always is
        params = [tensors[k] for k in state.trainable_keys(config["layers"], tensors)]
        if params:
            values = state.optimizer_to_keras(optimizer, header.get("optimizer"), tensors, params)
    return compile_config, values


def _keras_objects(value, module: str):
    """A compile setting as Keras writes it: each object (in a list per output too) with its module."""
    if isinstance(value, list):
        return [_keras_objects(v, module) for v in value]
    return configs.keras_object(value, module)
