"""Tests for trainwell.experiments (compare) and trainwell.batched (many models trained as one)."""

import json

import numpy as np
import pytest

from trainwell import ConfigError, Sequential, set_random_seed
from trainwell.callbacks import EarlyStopping
from trainwell.experiments import compare
from trainwell.layers import Dense
from trainwell.regularizers import L2

RNG = np.random.default_rng(7)
X = RNG.normal(size=(60, 4)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * RNG.normal(size=(60, 1))).astype("float32")
FIT = dict(batch_size=16, epochs=6, validation_split=0.25)


def small(reg=None):
    return [Dense(8, activation="relu", kernel_regularizer=reg), Dense(1)]


def alone(optimizer, lr, seed, callbacks=(), reg=None, **opt_args):
    """The reference: one model trained by itself, the way a user would write it."""
    from trainwell import optimizers

    set_random_seed(seed)
    model = Sequential(small(reg))
    model.compile(
        optimizer=optimizers.get(optimizer).from_config(
            {**optimizers.get(optimizer).get_config(), "learning_rate": lr, **opt_args}
        ),
        loss="mse",
        metrics=["mae"],
    )
    history = model.fit(X, Y, verbose=0, callbacks=[EarlyStopping(**cb) for cb in callbacks], **FIT)
    return history.history, model.get_weights()


CASES = {
    "sgd_momentum": dict(optimizer="sgd", extra={"momentum": 0.9, "nesterov": True}, callbacks=()),
    "adam": dict(optimizer="adam", extra={}, callbacks=()),
    "adam_early_stopping": dict(
        optimizer="adam",
        extra={},
        callbacks=({"patience": 0, "min_delta": 0.1, "restore_best_weights": True},),
    ),
    "sgd_early_stopping_l2": dict(
        optimizer="sgd", extra={}, callbacks=({"monitor": "loss", "patience": 0, "min_delta": 0.3},), reg=0.01
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_batched_runs_equal_lone_fits(case):
    # Four runs (2 learning rates x 2 seeds) share one batched model; each must match a lone fit
    # with the same seed: per-epoch logs (loss, mae, val_loss, val_mae) and final weights.
    spec = CASES[case]
    reg = L2(spec["reg"]) if spec.get("reg") else None
    lrs = [0.05, 0.01] if spec["optimizer"] == "sgd" else [0.05, 0.002]
    opt_args = {k: v for k, v in spec["extra"].items() if k != "nesterov"}
    compile_kw = {"optimizer": spec["optimizer"], "loss": "mse", "metrics": ["mae"]}
    grid = {"learning_rate": lrs, **({"momentum": [0.9], "nesterov": [True]} if opt_args else {})}
    callbacks = [EarlyStopping(**cb) for cb in spec["callbacks"]]
    result = compare(
        {"net": small(reg)},
        X,
        Y,
        compile=compile_kw,
        fit={**FIT, "callbacks": callbacks},
        grid=grid,
        seeds=[3, 11],
        workers=1,
    )
    stopped_early = False
    for record in result.records.values():
        assert record["status"] == "ok" and record["group_size"] == 4
        hist, weights = alone(
            spec["optimizer"],
            record["params"]["learning_rate"],
            record["seed"],
            spec["callbacks"],
            reg,
            **spec["extra"],
        )
        assert set(record["history"]) == set(hist) == {"loss", "mae", "val_loss", "val_mae"}
        for key in hist:
            np.testing.assert_allclose(record["history"][key], hist[key], rtol=2e-5, atol=1e-6)
        for got, want in zip(record["_weights"], weights):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
        stopped_early |= len(hist["loss"]) < FIT["epochs"]
    assert stopped_early == bool(spec["callbacks"])  # the early-stopping cases do stop some runs early


def test_table_histories_best_and_plot(tmp_path):
    result = compare(
        {"model_1": [Dense(2, activation="relu"), Dense(1)], "model_2": small()},
        X,
        Y,
        compile=dict(optimizer="adam", loss="mse"),
        fit=FIT,
        grid={"learning_rate": [0.01, 0.05]},
        seeds=2,
        workers=1,
    )
    table = result.table
    assert list(table["config"]) == sorted(
        table["config"], key=lambda c: table.set_index("config").loc[c, "val_loss"]
    )
    assert len(table) == 4 and set(table["seeds"]) == {2} and set(table["status"]) == {"ok"}
    assert {"val_loss", "val_loss_std", "best_epoch", "epochs_run", "params", "time_s", "findings"} <= set(
        table
    )
    assert table.set_index("candidate").loc["model_1", "params"].tolist() == [4 * 2 + 2 + 2 + 1] * 2
    # Mean and spread over the two seeds, at each seed's best epoch, by hand:
    row = table.iloc[0]
    best = [min(result.histories[f"{row['config']} seed={s}"]["val_loss"]) for s in (0, 1)]
    assert row["val_loss"] == pytest.approx(np.mean(best)) and row["val_loss_std"] == pytest.approx(
        np.std(best)
    )
    assert result.best.evaluate(X[45:], Y[45:], verbose=0) == pytest.approx(min(best), rel=1e-4)
    fig = result.plot("val_loss", path=tmp_path / "curves.png")
    assert len(fig.axes[0].lines) == 8 and (tmp_path / "curves.png").stat().st_size > 0
    with pytest.raises(ConfigError, match="no run logged 'val_acc'"):
        result.plot("val_acc")


def test_failed_candidates_are_reported_and_others_go_on():
    def broken():
        raise ValueError("no such architecture")

    result = compare(
        {"good": small(), "broken": broken},
        X,
        Y * 1e6,
        compile=dict(optimizer="sgd", loss="mse"),
        fit=FIT,
        grid={"learning_rate": [1e-9, 50.0]},
        workers=1,
    )
    rows = result.table.set_index("config")
    assert rows.loc["good learning_rate=1e-09", "status"] == "ok"
    assert "diverged" in rows.loc["good learning_rate=50.0", "error"]
    assert rows.loc["broken learning_rate=50.0", "error"] == "ValueError: no such architecture"
    assert result.best is not None and result.table.iloc[0]["config"] == "good learning_rate=1e-09"


def test_results_are_written_as_json_lines_and_a_rerun_skips_them(tmp_path):
    seen = []
    kwargs = dict(
        compile=dict(optimizer="adam", loss="mse"),
        fit=FIT,
        grid={"learning_rate": [0.01, 0.02]},
        seeds=[5],
        workers=1,
        out_dir=tmp_path,
        on_result=seen.append,
    )
    first = compare({"net": small()}, X, Y, **kwargs)
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [line["seed"] for line in lines] == [5, 5] and len(seen) == 2
    second = compare({"net": small()}, X, Y, **kwargs)
    assert len(seen) == 2  # nothing trained again
    assert second.table["val_loss"].tolist() == first.table["val_loss"].tolist()
    for a, b in zip(second.best.get_weights(), first.best.get_weights()):
        np.testing.assert_array_equal(a, b)
    compare({"net": small()}, X, Y, **{**kwargs, "fit": {**FIT, "epochs": 2}})  # changed settings: new runs
    assert len(seen) == 4


def test_builder_functions_take_grid_values():
    def build(units):
        return [Dense(units, activation="relu"), Dense(1)]

    result = compare(
        {"mlp": build},
        X,
        Y,
        compile=dict(optimizer="adam", loss="mse"),
        fit=FIT,
        grid={"units": [1, 3]},
        workers=1,
    )
    assert sorted(result.table["params"]) == [4 + 1 + 1 + 1, 12 + 3 + 3 + 1]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(candidates={}), "non-empty dict"),
        (dict(grid={}), "`grid` expects a dict"),
        (dict(grid={"learning_rate": []}), r"grid\['learning_rate'\] is empty"),
        (dict(grid={"units": [3]}), "is a list of layers"),
        (dict(grid={"beta_1": [0.8]}), "SGD takes no argument 'beta_1'"),
        (dict(seeds=0), "`seeds` expects"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, fragment):
    args = {"candidates": {"net": small()}, **kwargs}
    with pytest.raises(ConfigError, match=fragment):
        compare(
            args.pop("candidates"),
            X,
            Y,
            compile=dict(optimizer="sgd", loss="mse"),
            fit=FIT,
            workers=1,
            **args,
        )


def test_process_pool_gives_the_serial_results():
    """Different shapes cannot share a batched model: with workers=2 they train in two spawned
    processes, and each run must give exactly what it gives in this process."""
    from trainwell import experiments

    candidates = {"narrow": [Dense(4, activation="relu"), Dense(1)],
                  "deep": [Dense(8, activation="tanh"), Dense(8, activation="relu"), Dense(1)]}
    compile_kw = {"optimizer": "adam", "loss": "mse", "metrics": ["mae"]}
    assert experiments._picklable(candidates, compile_kw, FIT)  # so workers=2 takes the pool
    results = [compare(candidates, X, Y, compile=compile_kw, fit=FIT, seeds=[5], workers=w) for w in (1, 2)]
    serial, pooled = (sorted(r.records.values(), key=lambda rec: rec["candidate"]) for r in results)
    assert [r["status"] for r in pooled] == ["ok", "ok"]
    for a, b in zip(serial, pooled):
        assert a["candidate"] == b["candidate"]
        for key in a["history"]:
            np.testing.assert_allclose(a["history"][key], b["history"][key], rtol=1e-6, atol=1e-7)


def test_batched_runs_carry_the_doctors_findings():
    # Issue 18: runs trained together as one batched model used to carry no findings.
    from trainwell.datasets import load_titanic

    x, y = load_titanic()
    result = compare(
        {"m": [Dense(32, activation="relu"), Dense(32, activation="relu"), Dense(1, activation="sigmoid")]},
        x, y, compile=dict(optimizer="sgd", loss="binary_crossentropy"),
        fit=dict(epochs=10, validation_split=0.3), grid={"learning_rate": [0.5, 0.01]},
    )
    high, low = (result.records[f"m learning_rate={lr}"] for lr in (0.5, 0.01))
    assert high["group_size"] == 2  # trained together
    assert high["findings"][0] == "unscaled_inputs" and "dead_units" in high["findings"]
    assert low["findings"] == ["unscaled_inputs"]  # the raw fare column, at any rate
    off = compare({"m": [Dense(4), Dense(1, activation="sigmoid")]}, x, y,
                  compile=dict(optimizer="sgd", loss="binary_crossentropy"),
                  fit=dict(epochs=2, diagnostics="off"), grid={"learning_rate": [0.5, 0.01]})
    assert all(record["findings"] == [] for record in off.records.values())
