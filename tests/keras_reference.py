"""Reference numbers from real Keras (torch backend), for ``test_keras_parity.py``.

Runs in its own process so that importing Keras cannot change torch's global state (default
device, dtype, thread count) for the rest of the test session. Reads one JSON object from stdin,
``{"cases": [{"id": ..., "kind": ..., ...}, ...]}``, and prints ``{id: result}`` as JSON on stdout.
Arrays travel as nested lists; every number is float32 on the Keras side.

Case kinds:

- ``fit``: build a Sequential model, compile, fit, evaluate, predict; returns the initial weights
  (so the test can copy them into trainwell), the history, the final weights and more.
- ``loss``: a ``keras.losses`` class on one batch (reduced value) and its per-sample function.
- ``metric``: a ``keras.metrics`` class updated over several batches (result after each).
- ``normalization``: ``Normalization.adapt`` statistics and the adapted layer's output.
- ``dropout``: ``Dropout`` output on ones in training mode (which values survive, and as what).
- ``initializer``: summary statistics of a large draw.
- ``layer``: one layer built on ``x`` (or a list of inputs), its weights set to seeded random
  values (variances positive), then its inference output; ``Normalization`` layers adapt first.

Usage: ``python tests/keras_reference.py < spec.json``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the reference runs on the CPU, as trainwell's tests do

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import keras  # noqa: E402


def _array(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def _to_list(value):
    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64).tolist()


def _layer(spec: dict):
    kind = spec["type"]
    args = {k: v for k, v in spec.items() if k != "type"}
    return getattr(keras.layers, kind)(**args)


def _callbacks(specs: list[dict]) -> list:
    return [getattr(keras.callbacks, s["type"])(**{k: v for k, v in s.items() if k != "type"}) for s in specs]


def run_fit(case: dict) -> dict:
    """Build, compile and fit one model; report everything the test compares."""
    keras.utils.set_random_seed(case.get("seed", 0))
    x, y = _array(case["x"]), _array(case["y"])
    if case.get("sparse"):
        y = y.astype(np.int64)
    x = x.reshape(len(x), *case.get("input_shape", x.shape[1:]))
    layers = [keras.Input(shape=x.shape[1:])] + [_layer(s) for s in case["layers"]]
    model = keras.Sequential(layers)
    for layer, spec in zip(model.layers, case["layers"]):
        if spec["type"] == "Normalization":
            layer.adapt(x)
    initial = [_to_list(w) for w in model.get_weights()]
    opt = keras.optimizers.get({"class_name": case["optimizer"], "config": case.get("optimizer_config", {})})
    model.compile(optimizer=opt, loss=case["loss"], metrics=case.get("metrics"),
                  weighted_metrics=case.get("weighted_metrics"))
    fit_args = dict(case.get("fit", {}))
    if "class_weight" in fit_args:  # JSON keys are strings
        fit_args["class_weight"] = {int(k): v for k, v in fit_args["class_weight"].items()}
    if "validation_data" in fit_args:
        vx, vy = fit_args["validation_data"]
        fit_args["validation_data"] = (_array(vx), _array(vy))
    callbacks = _callbacks(case.get("callbacks", []))
    result = {"initial_weights": initial}
    if "fit" in case:
        history = model.fit(x, y, verbose=0, shuffle=False, callbacks=callbacks, **fit_args)
        result["history"] = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        result["history_keys"] = list(history.history.keys())
        result["epoch"] = list(history.epoch)
    result["final_weights"] = [_to_list(w) for w in model.get_weights()]
    evaluated = model.evaluate(x, y, verbose=0)
    result["evaluate"] = evaluated if isinstance(evaluated, list) else float(evaluated)
    result["evaluate_is_list"] = isinstance(evaluated, list)
    prediction = model.predict(x, verbose=0)
    result["predict"] = _to_list(prediction)
    result["predict_shape"] = list(prediction.shape)
    result["stopped_epoch"] = [getattr(cb, "stopped_epoch", None) for cb in callbacks]
    if case.get("training_forward"):  # the layers in training mode (BatchNormalization on batch statistics)
        with torch.no_grad():
            result["training_forward"] = _to_list(model(x, training=True))
    return result


def run_loss(case: dict) -> dict:
    y_true, y_pred = _array(case["y_true"]), _array(case["y_pred"])
    if case.get("sparse"):
        y_true = y_true.astype(np.int64)
    kwargs = case.get("kwargs", {})
    value = getattr(keras.losses, case["class"])(**kwargs)(y_true, y_pred)
    per_sample = getattr(keras.losses, case["function"])(y_true, y_pred, **kwargs)
    return {"value": float(keras.ops.convert_to_numpy(value)), "per_sample": _to_list(per_sample)}


def run_metric(case: dict) -> dict:
    metric = getattr(keras.metrics, case["class"])(**case.get("kwargs", {}))
    results = []
    for y_true, y_pred in case["batches"]:
        y_true = _array(y_true)
        if case.get("sparse"):
            y_true = y_true.astype(np.int64)
        metric.update_state(y_true, _array(y_pred))
        results.append(_to_list(metric.result()))  # a number, or one per class
    return {"results": results}


def run_normalization(case: dict) -> dict:
    x = _array(case["x"])
    layer = keras.layers.Normalization()
    layer.adapt(x)
    return {"mean": _to_list(layer.mean), "variance": _to_list(layer.variance), "output": _to_list(layer(x))}


def run_dropout(case: dict) -> dict:
    keras.utils.set_random_seed(0)
    out = keras.ops.convert_to_numpy(keras.layers.Dropout(case["rate"])(np.ones((case["n"],), np.float32),
                                                                        training=True))
    inference = keras.ops.convert_to_numpy(keras.layers.Dropout(case["rate"])(np.ones((4,), np.float32)))
    kept = out[out != 0]
    return {"kept_fraction": float(kept.size / out.size), "kept_values": sorted({float(v) for v in kept}),
            "inference": inference.astype(np.float64).tolist()}


def run_initializer(case: dict) -> dict:
    keras.utils.set_random_seed(0)
    init = keras.initializers.get(case["name"])
    w = keras.ops.convert_to_numpy(init(tuple(case["shape"]))).astype(np.float64)
    return {"mean": float(w.mean()), "std": float(w.std()), "max_abs": float(np.abs(w).max()),
            "q9999_abs": float(np.quantile(np.abs(w), 0.9999))}


def run_layer(case: dict) -> dict:
    keras.utils.set_random_seed(0)
    multi = isinstance(case["x"], dict)
    inputs = [_array(v) for v in case["x"]["inputs"]] if multi else _array(case["x"])
    layer = getattr(keras.layers, case["class"])(**case.get("kwargs", {}))
    if case.get("adapt"):
        layer.adapt(inputs)
    layer(inputs)  # builds
    rng = np.random.default_rng(1)
    weights = [rng.uniform(0.5, 1.5, size=w.shape) if "variance" in w.name
               else rng.uniform(-1, 1, size=w.shape) for w in layer.weights]
    if weights and not case.get("adapt"):
        layer.set_weights([w.astype(np.float32) for w in weights])
    return {"weights": [_to_list(w) for w in layer.get_weights()], "output": _to_list(layer(inputs)),
            "weight_names": [w.name for w in layer.weights], "config_keys": sorted(layer.get_config())}


RUNNERS = {"fit": run_fit, "loss": run_loss, "metric": run_metric, "normalization": run_normalization,
           "dropout": run_dropout, "initializer": run_initializer, "layer": run_layer}


def main() -> None:
    spec = json.load(sys.stdin)
    out = {case["id"]: RUNNERS[case["kind"]](case) for case in spec["cases"]}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
