"""``compare``: many configurations → one table and one picture of the curves.

The course ends on experimentation: more layers or fewer, more nodes or fewer, another learning
rate. ``compare`` runs every combination of candidates × grid × seeds and returns a table (one row
per configuration: validation metrics as mean and spread over seeds, best epoch, epochs run,
parameters, time, the doctor's findings), the histories, the best trained model and the
"model_1 versus model_2" plot.

Runs whose models have the same layer shapes (say, 16 learning rates of one network) train
together as one batched model (``trainwell.batched``), with the same numbers as separate fits.
Groups that cannot share a model run side by side in worker processes. With ``out_dir`` each
finished run is appended to ``results.jsonl`` at once, and a rerun skips the finished ones.

Example:
    >>> from trainwell.layers import Dense
    >>> wide = [Dense(100, activation="relu"), Dense(100, activation="relu"), Dense(1)]
    >>> result = compare({"model_1": [Dense(10, activation="relu"), Dense(1)], "model_2": wide},
    ...                  X, y, compile=dict(optimizer="adam", loss="mse"),
    ...                  fit=dict(epochs=20, validation_split=0.3), grid={"learning_rate": [0.001, 0.01]})
    >>> result.table
    >>> result.plot("val_loss", path="compare.png")
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._errors import ConfigError, describe

# Grid keys that are optimizer arguments (the rest go to compile, fit or the candidate builder).
OPTIMIZER_KEYS = {
    "optimizer",
    "learning_rate",
    "momentum",
    "nesterov",
    "beta_1",
    "beta_2",
    "epsilon",
    "amsgrad",
    "rho",
    "centered",
    "weight_decay",
    "initial_accumulator_value",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
}
COMPILE_KEYS = {"loss", "loss_weights", "metrics"}
FIT_KEYS = {"batch_size", "epochs", "validation_split", "shuffle", "validation_batch_size", "class_weight"}


@dataclass
class Run:
    """One training run: a candidate, one combination of the grid, one seed."""

    run_id: str
    config: str
    candidate: str
    params: dict
    seed: int
    fingerprint: str = ""


@dataclass
class CompareResult:
    """What ``compare`` returns.

    Attributes:
        table: pandas DataFrame, one row per configuration, best first (failed ones last).
        histories: run id → ``{metric: per-epoch list}``.
        records: run id → the full record written to ``results.jsonl``.
        best: the best configuration's trained ``Sequential`` (its best seed), or None if all failed.
        monitor: the quantity the configurations are ranked by ('val_loss' when there is validation).
    """

    table: object
    histories: dict
    records: dict
    best: object = None
    monitor: str = "val_loss"
    _seeds: dict = field(default_factory=dict)

    def plot(self, metric: str = "val_loss", path=None):
        """Overlay ``metric`` per epoch for every run (the notes' "model_1 vs model_2" picture).

        Args:
            metric: a logged quantity: 'val_loss', 'loss', 'val_accuracy', ...
            path: where to save a PNG; None only returns the figure.

        Returns:
            A matplotlib ``Figure`` (object API, no pyplot: works without a display).

        Raises:
            ConfigError: no run logged ``metric`` (the message lists what was logged).
        """
        from matplotlib.figure import Figure

        logged = sorted({k for h in self.histories.values() for k in h})
        if metric not in logged:
            raise ConfigError(
                f"plot: no run logged {metric!r}. Logged quantities: {', '.join(logged) or 'none'}."
            )
        fig = Figure(figsize=(7, 4.2))
        ax = fig.add_subplot()
        colors = {}
        for run_id, history in self.histories.items():
            config = self.records[run_id]["config"]
            color = colors.setdefault(config, f"C{len(colors) % 10}")
            label = config if config not in [ln.get_label() for ln in ax.lines] else None
            values = history.get(metric, [])
            ax.plot(range(1, len(values) + 1), values, color=color, label=label, alpha=0.9)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


# ----------------------------------------------------------------------------------------------
# the public function


def compare(
    candidates: dict,
    x,
    y,
    *,
    compile: dict | None = None,
    fit: dict | None = None,
    grid: dict | None = None,
    seeds=1,
    out_dir=None,
    workers: int | None = None,
    on_result=None,
) -> CompareResult:
    """Train every candidate × grid combination × seed and compare them in one table.

    Args:
        candidates: name → list of layers (cloned for every run), or name → function building a
            ``Sequential`` (or a list of layers) from grid values, e.g. ``def build(units, depth)``.
        x, y: the data, as for ``fit``.
        compile: ``Model.compile`` keyword arguments, e.g. ``dict(optimizer='adam', loss='mse')``.
        fit: ``Model.fit`` keyword arguments, e.g. ``dict(epochs=30, validation_split=0.3)``.
        grid: setting → list of values, crossed: optimizer arguments (``learning_rate``,
            ``optimizer``, ``momentum``, ...), ``batch_size``/``epochs``, ``loss``, or builder
            arguments (``units``, ``depth``, ...).
        seeds: how many seeds per configuration (0, 1, ...), or a list of seeds.
        out_dir: folder for ``results.jsonl`` (and weights); a rerun skips finished runs.
        workers: processes for groups that cannot train as one batched model; None = one per
            core, 1 = everything in this process.
        on_result: called with each run's record as it finishes (the CLI's live table).

    Returns:
        A ``CompareResult`` (``.table``, ``.histories``, ``.best``, ``.plot()``).

    Raises:
        ConfigError: no candidates, an empty grid, a grid key no candidate can take, or settings
            that do not fit together (e.g. ``beta_1`` for SGD).
    """
    compile_kw, fit_kw = dict(compile or {}), dict(fit or {})
    fit_kw["verbose"] = 0
    runs = plan_runs(candidates, compile_kw, grid, seeds)
    for run in runs:
        make_optimizer(run, compile_kw)  # incompatible settings fail here, before anything trains
        run.fingerprint = _fingerprint(run, candidates[run.candidate], compile_kw, fit_kw)
    records = _load_finished(out_dir, runs)
    todo = [run for run in runs if run.run_id not in records]
    tasks, failed = _group(todo, candidates, compile_kw, fit_kw, x)
    for record in failed:
        _finish(record, out_dir, records, on_result)
    for record in _execute(tasks, candidates, compile_kw, fit_kw, x, y, workers, out_dir):
        _finish(record, out_dir, records, on_result)
    ordered = {run.run_id: records[run.run_id] for run in runs}
    return _result(ordered, candidates, compile_kw, out_dir, int(np.shape(x)[-1]))


def plan_runs(candidates: dict, compile_kw: dict, grid: dict | None, seeds) -> list[Run]:
    """Every (candidate, grid combination, seed), checked before anything trains."""
    if not isinstance(candidates, dict) or not candidates:
        raise ConfigError(
            f"compare: `candidates` expects a non-empty dict name → list of layers (or builder "
            f"function), received {describe(candidates)}. For example "
            "{'model_1': [Dense(10, activation='relu'), Dense(1)]}."
        )
    if "loss" not in compile_kw:
        raise ConfigError("compare: `compile` needs a loss, e.g. compile=dict(optimizer='adam', loss='mse').")
    seed_list = _seed_list(seeds)
    grid = _check_grid(grid, candidates, compile_kw)
    keys = list(grid)
    runs = []
    for name in candidates:
        for values in itertools.product(*(grid[k] for k in keys)):
            params = dict(zip(keys, values))
            config = " ".join([str(name)] + [f"{k}={v}" for k, v in params.items()])
            for seed in seed_list:
                run_id = config if len(seed_list) == 1 else f"{config} seed={seed}"
                runs.append(Run(run_id, config, str(name), params, seed))
    return runs


def _seed_list(seeds) -> list[int]:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list, tuple, range)):
        raise ConfigError(
            f"compare: `seeds` expects a positive count or a list of seeds, received {describe(seeds)}."
        )
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seed_list):
        raise ConfigError(
            f"compare: `seeds` expects a count >= 1 or a list of non-negative integers, received "
            f"{describe(seeds)}. For example seeds=3."
        )
    return seed_list


def _check_grid(grid, candidates, compile_kw) -> dict:
    if grid is None:
        return {}
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(
            f"compare: `grid` expects a dict setting → list of values, received {describe(grid)}. "
            "For example grid={'learning_rate': [0.001, 0.01]}, or leave it out."
        )
    checked = {}
    for key, values in grid.items():
        values = list(values) if isinstance(values, (list, tuple, range)) else [values]
        if not values:
            raise ConfigError(
                f"compare: grid[{key!r}] is empty. Give at least one value, e.g. "
                f"grid={{{key!r}: [...]}}, or remove the key."
            )
        if key in OPTIMIZER_KEYS or key in COMPILE_KEYS or key in FIT_KEYS:
            checked[key] = values
            continue
        for name, entry in candidates.items():
            if not callable(entry):
                raise ConfigError(
                    f"compare: grid key {key!r} is not an optimizer, compile or fit setting, so it "
                    f"goes to candidate builders, but candidate {name!r} is a list of layers. Give "
                    f"a function instead, e.g. def build({key}): return [Dense({key}), ...]."
                )
            if not _accepts(entry, key):
                raise ConfigError(
                    f"compare: candidate {name!r} builds from a function that takes no argument "
                    f"{key!r} (it takes {', '.join(inspect.signature(entry).parameters) or 'none'})."
                )
        checked[key] = values
    return checked


def _accepts(fn, key: str) -> bool:
    params = inspect.signature(fn).parameters
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


# ----------------------------------------------------------------------------------------------
# building one run's model


def build_model(run: Run, entry, compile_kw: dict, n_features: int):
    """The run's compiled, built model, drawn after ``set_random_seed(run.seed)``.

    The order of random draws is that of ``set_random_seed(seed); model = Sequential([...]);
    model.compile(...); model.fit(...)``, so the same seed gives the same initial weights and
    shuffles as a lone fit.
    """
    from . import layers as layers_module
    from .models import Model, Sequential
    from .utils import set_random_seed

    set_random_seed(run.seed)
    builder_args = {k: v for k, v in run.params.items() if k not in OPTIMIZER_KEYS | COMPILE_KEYS | FIT_KEYS}
    if callable(entry):
        made = entry(**builder_args)
    else:
        made = [layers_module.deserialize(layers_module.serialize(layer)) for layer in entry]
    model = made if isinstance(made, Model) else Sequential(list(made))  # a Sequential or a graph Model
    if not model.built:
        model.build((n_features,))  # now, while the global generator is where a lone fit would have it
    opt = make_optimizer(run, compile_kw)
    kw = {**compile_kw, **{k: v for k, v in run.params.items() if k in COMPILE_KEYS}, "optimizer": opt}
    model.compile(**kw)
    return model


def make_optimizer(run: Run, compile_kw: dict):
    """A fresh optimizer for the run: compile's optimizer with the grid's arguments applied.

    Raises:
        ConfigError: the optimizer takes no such argument (e.g. ``beta_1`` for SGD).
    """
    from . import optimizers

    opt_args = {k: v for k, v in run.params.items() if k in OPTIMIZER_KEYS and k != "optimizer"}
    base = optimizers.get(run.params.get("optimizer", compile_kw.get("optimizer", "rmsprop")))
    bad = sorted(
        set(opt_args)
        - set(inspect.signature(type(base)).parameters)
        - {"weight_decay", "clipnorm", "clipvalue", "global_clipnorm"}
    )
    if bad:
        raise ConfigError(
            f"compare: {type(base).__name__} takes no argument {', '.join(map(repr, bad))} "
            f"(run {run.run_id!r}). Remove it from the grid, or choose an optimizer that has it."
        )
    return type(base).from_config({**base.get_config(), **opt_args})


def run_fit_kwargs(run: Run, fit_kw: dict) -> dict:
    return {**fit_kw, **{k: v for k, v in run.params.items() if k in FIT_KEYS}}


# ----------------------------------------------------------------------------------------------
# grouping and execution


def _group(runs, candidates, compile_kw, fit_kw, x):
    """Tasks (lists of runs; a list of 2+ runs trains as one batched model) and build failures."""
    from . import batched

    n_features = int(np.shape(x)[-1])
    groups: dict = {}
    failed = []
    for run in runs:
        try:
            model = build_model(run, candidates[run.candidate], compile_kw, n_features)
        except Exception as err:  # a candidate that fails to build is reported; the others go on
            failed.append(_failure(run, err))
            continue
        key = batched.batch_key(model, run_fit_kwargs(run, fit_kw))
        groups.setdefault(key if key is not None else ("alone", run.run_id), []).append(run)
    return list(groups.values()), failed


def _failure(run: Run, err) -> dict:
    message = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return {**_run_fields(run), "status": "failed", "error": message, "history": {}}


def _run_fields(run: Run) -> dict:
    return {
        "run_id": run.run_id,
        "config": run.config,
        "candidate": run.candidate,
        "params": {k: _jsonable(v) for k, v in run.params.items()},
        "seed": run.seed,
        "fingerprint": run.fingerprint,
    }


def _jsonable(value):
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _execute(tasks, candidates, compile_kw, fit_kw, x, y, workers, out_dir):
    """Yield records as tasks finish: serially, or in spawned worker processes."""
    n = min(workers or os.cpu_count() or 1, len(tasks))
    if n <= 1 or not _picklable(candidates, compile_kw, fit_kw):
        for task in tasks:
            yield from run_task(task, candidates, compile_kw, fit_kw, x, y, out_dir)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init) as pool:
        futures = [
            pool.submit(run_task, task, candidates, compile_kw, fit_kw, x, y, out_dir) for task in tasks
        ]
        for future in as_completed(futures):
            yield from future.result()


def _worker_init() -> None:
    # One thread per worker: the workers already fill the cores, and small models lose time to
    # thread hand-offs. This runs only in the spawned workers, never in the user's process.
    import torch

    torch.set_num_threads(1)


def _picklable(*objects) -> bool:
    import pickle

    try:
        pickle.dumps(objects)
    except Exception:  # lambdas, local functions: run in this process instead
        return False
    return True


def run_task(task: list[Run], candidates, compile_kw, fit_kw, x, y, out_dir=None) -> list[dict]:
    """Train a task's runs (together when there are several) and return their records."""
    import warnings

    from . import batched

    start = time.perf_counter()
    n_features = int(np.shape(x)[-1])
    models = [build_model(run, candidates[run.candidate], compile_kw, n_features) for run in task]
    kwargs = run_fit_kwargs(task[0], fit_kw)
    callbacks = kwargs.pop("callbacks", None) or []
    outcomes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # divergence is reported in the table instead
            if len(task) > 1:
                outcomes = batched.fit_batched(models, x, y, kwargs, [callbacks] * len(task))
            else:
                history = models[0].fit(x, y, callbacks=[_fresh(cb) for cb in callbacks], **kwargs)
                outcomes = [{"history": history, "diverged": None}]
    except Exception as err:
        return [_failure(run, err) for run in task]
    seconds = (time.perf_counter() - start) / len(task)
    return [
        _record(run, model, out["history"], out["diverged"], seconds, out_dir, len(task))
        for run, model, out in zip(task, models, outcomes)
    ]


def _fresh(callback):
    import copy

    return copy.copy(callback)


def _record(run, model, history, diverged, seconds, out_dir, group_size) -> dict:
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    losses = hist.get("loss", [])
    if diverged is None:
        from .training import divergence_message  # one wording for fit, batched and compare

        diverged = divergence_message(losses)
    findings = [getattr(f, "code", None) or str(f) for f in getattr(history, "diagnosis", None) or []]
    record = {
        **_run_fields(run),
        "status": "failed" if diverged else "ok",
        "error": diverged,
        "history": hist,
        "epochs_run": len(losses),
        "params_count": model.count_params(),
        "time_s": round(seconds, 4),
        "findings": findings,
        "group_size": group_size,
    }
    if out_dir is not None:
        import torch

        from . import saving

        folder = Path(out_dir) / "weights"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha1(run.run_id.encode()).hexdigest()[:16]}.safetensors"
        saving.save_tensors(path, {f"{i:03d}": torch.as_tensor(w) for i, w in enumerate(model.get_weights())})
        record["weights_file"] = str(path.name)
    record["_weights"] = model.get_weights()
    return record


# ----------------------------------------------------------------------------------------------
# results: written as they finish, read back on a rerun


def _finish(record: dict, out_dir, records: dict, on_result) -> None:
    records[record["run_id"]] = record
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, default=str)
        with open(folder / "results.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
    if on_result is not None:
        on_result(record)


def _fingerprint(run: Run, entry, compile_kw: dict, fit_kw: dict) -> str:
    """A digest of everything that decides a run's numbers: a changed setting means a new run."""
    from . import layers as layers_module

    def describe_value(value):
        if hasattr(value, "get_config"):
            return [type(value).__name__, value.get_config()]
        if isinstance(value, (list, tuple)):
            return [describe_value(v) for v in value]
        if isinstance(value, dict):
            return {str(k): describe_value(v) for k, v in value.items()}
        if callable(value):
            return getattr(value, "__qualname__", type(value).__name__)
        if hasattr(value, "__dict__"):  # callbacks: their simple settings
            return [
                type(value).__name__,
                {k: v for k, v in vars(value).items() if isinstance(v, (int, float, str, bool, type(None)))},
            ]
        return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)

    # Layer names are left out: auto names ('dense_7') change from one session to the next.
    layers = (
        getattr(entry, "__qualname__", "builder")
        if callable(entry)
        else [
            {**config, "config": {k: v for k, v in config["config"].items() if k != "name"}}
            for config in map(layers_module.serialize, entry)
        ]
    )
    fit_part = {k: v for k, v in fit_kw.items() if k not in ("validation_data",)}
    text = json.dumps(
        [layers, describe_value(compile_kw), describe_value(fit_part), describe_value(run.params), run.seed],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(text.encode()).hexdigest()


def _load_finished(out_dir, runs: list[Run]) -> dict:
    """Records of ``runs`` already in ``out_dir/results.jsonl`` with the same settings."""
    if out_dir is None:
        return {}
    path = Path(out_dir) / "results.jsonl"
    if not path.exists():
        return {}
    wanted = {run.run_id: run.fingerprint for run in runs}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash: that run trains again
            continue
        if wanted.get(record.get("run_id")) == record.get("fingerprint"):
            found[record["run_id"]] = record
    return found


# ----------------------------------------------------------------------------------------------
# the table


def _best_epoch(history: dict, monitor: str) -> int | None:
    from .callbacks import direction_from_name

    values = np.asarray(history.get(monitor, []), dtype=float)
    if values.size == 0 or not np.isfinite(values).any():
        return None
    values = np.where(
        np.isfinite(values), values, np.inf if direction_from_name(monitor) != "max" else -np.inf
    )
    return int(np.argmax(values) if direction_from_name(monitor) == "max" else np.argmin(values))


def _row(config: str, recs: list[dict], monitor: str) -> dict:
    """One configuration's row: metrics at each seed's best epoch, as mean and std over seeds."""
    first = recs[0]
    row = {"config": config, "candidate": first["candidate"], **first["params"], "seeds": len(recs)}
    ok = [r for r in recs if r["status"] == "ok"]
    row["status"] = "ok" if len(ok) == len(recs) else ("failed" if not ok else f"{len(ok)}/{len(recs)} ok")
    prefix = "val_" if monitor.startswith("val_") else ""
    per_seed: dict[str, list] = {}
    best_epochs = []
    for r in ok:
        best = _best_epoch(r["history"], monitor)
        if best is None:
            continue
        best_epochs.append(best + 1)
        for key, values in r["history"].items():
            if key.startswith(prefix) and (prefix or not key.startswith("val_")):
                per_seed.setdefault(key, []).append(values[best])
    for key, values in per_seed.items():
        row[key] = float(np.mean(values))
        row[f"{key}_std"] = float(np.std(values)) if len(values) > 1 else 0.0
    row["best_epoch"] = float(np.mean(best_epochs)) if best_epochs else None
    row["epochs_run"] = float(np.mean([r.get("epochs_run", 0) for r in ok])) if ok else None
    row["params"] = next((r.get("params_count") for r in recs if r.get("params_count") is not None), None)
    row["time_s"] = float(np.sum([r.get("time_s") or 0.0 for r in recs]))
    row["findings"] = ", ".join(sorted({f for r in recs for f in r.get("findings") or []}))
    row["error"] = next((r["error"] for r in recs if r.get("error")), None)
    return row


def _result(records: dict, candidates, compile_kw, out_dir, n_features: int) -> CompareResult:
    import pandas as pd

    histories = {rid: r["history"] for rid, r in records.items() if r.get("history")}
    monitor = "val_loss" if any("val_loss" in h for h in histories.values()) else "loss"
    by_config: dict[str, list] = {}
    for record in records.values():
        by_config.setdefault(record["config"], []).append(record)
    rows = [_row(config, recs, monitor) for config, recs in by_config.items()]
    table = pd.DataFrame(rows)
    from .callbacks import direction_from_name

    if monitor in table:
        ascending = direction_from_name(monitor) != "max"
        table = table.sort_values(monitor, ascending=ascending, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    result = CompareResult(table=table, histories=histories, records=records, monitor=monitor)
    if monitor in table and table[monitor].notna().any():
        result.best = _best_model(
            by_config[table.loc[0, "config"]], monitor, candidates, compile_kw, out_dir, n_features
        )
    return result


def _best_model(recs: list[dict], monitor: str, candidates, compile_kw, out_dir, n_features: int):
    """The best seed's trained model, from memory or from the weights written to ``out_dir``."""
    from . import saving
    from .callbacks import History

    ok = [r for r in recs if r["status"] == "ok" and _best_epoch(r["history"], monitor) is not None]
    sign = -1.0 if monitor.endswith("accuracy") else 1.0
    record = min(ok, key=lambda r: sign * r["history"][monitor][_best_epoch(r["history"], monitor)])
    weights = record.get("_weights")
    if weights is None and out_dir is not None and record.get("weights_file"):
        tensors = saving.load_tensors(Path(out_dir) / "weights" / record["weights_file"])
        weights = [t.numpy() for _, t in sorted(tensors.items())]
    if weights is None:
        return None
    run = Run(record["run_id"], record["config"], record["candidate"], record["params"], record["seed"])
    model = build_model(run, candidates[run.candidate], compile_kw, n_features)
    model.set_weights(weights)
    history = History()
    history.history = {k: list(v) for k, v in record["history"].items()}
    history.epoch = list(range(len(history.history.get("loss", []))))
    model.history = history
    model.epochs_trained = len(history.epoch)
    return model
