"""Callbacks in isolation: scripted logs fed through a stand-in model (Keras ``early_stopping_test``
style, plus Lightning's ``(values, patience, expected stop)`` table)."""

from __future__ import annotations

import io
import math
import re
import sys
from collections.abc import Mapping

import numpy as np
import pytest

from trainwell import callbacks as cb
from trainwell._errors import ConfigError, ConfigTypeError
from trainwell.callbacks import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    StopReason,
    TerminateOnNaN,
    overrides,
)

NAN = float("nan")


class DummyOptimizer:
    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate
        self.iterations = 0


class DummyModel:
    """The narrow model interface; its single "weight" is the number of the epoch that set it."""

    def __init__(self, learning_rate=0.01):
        self.stop_training = False
        self.weights = [np.array(-1.0)]
        self.optimizer = DummyOptimizer(learning_rate)
        self.saved = []

    def get_weights(self):
        # Live arrays, as tensor.numpy() gives on the CPU: a callback must copy what it keeps.
        return self.weights

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def set_weight_to_epoch(self, epoch):
        self.weights[0][...] = epoch  # in place, like an optimizer step

    def save(self, path):
        self.saved.append(("model", path))

    def save_weights(self, path):
        self.saved.append(("weights", path))


class LazyLogs(Mapping):
    """Per-batch logs that count reads (each read would sync the device)."""

    def __init__(self, values):
        self.values = dict(values)
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return self.values[key]

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def fit(callbacks, epoch_logs, model=None, steps=None):
    """Drive the hooks like the loop does, stopping when a callback sets stop_training."""
    model = model or DummyModel()
    model.stop_training = False
    cbs = CallbackList(
        callbacks, model=model, add_history=True, verbose=0, epochs=len(epoch_logs), steps=steps
    )
    cbs.on_train_begin()
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch)
        model.set_weight_to_epoch(epoch)
        cbs.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    cbs.on_train_end()
    return model, cbs.history


def monitored(values, key="val_loss"):
    return [{key: v} for v in values]


# ---------------------------------------------------------------------------------------------
# EarlyStopping


@pytest.mark.parametrize(
    "values, patience, min_delta, expected_stop, expected_epochs",
    [
        # Keras test_early_stopping_patience: stopped_epoch == max(patience, 1) + 2.
        ([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], 0, 0, 3, 4),
        ([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], 1, 0, 3, 4),
        ([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], 2, 0, 4, 5),
        ([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], 3, 0, 5, 6),
        # Lightning's table: equal values are not improvements.
        ([6, 5, 5, 5, 5, 5], 3, 0, 4, 5),
        ([6, 5, 6, 5, 5, 5], 3, 0, 4, 5),
        ([6, 5, 4, 4, 3, 3], 1, 0, 3, 4),
        ([6, 5, 6, 5, 4, 3], 3, 0, 0, 6),  # improves again in time: never stopped
        # min_delta: 0.87 is not 0.05 below 0.9; the sign of min_delta is ignored.
        ([1.0, 0.9, 0.87, 0.8, 0.78], 1, 0.05, 2, 3),
        ([1.0, 0.9, 0.87, 0.8, 0.78], 1, -0.05, 2, 3),
        ([1.0, 0.9, 0.87, 0.8, 0.78], 1, 0, 0, 5),
    ],
)
def test_early_stopping_table(values, patience, min_delta, expected_stop, expected_epochs):
    stopper = EarlyStopping(patience=patience, min_delta=min_delta)
    _, history = fit([stopper], monitored(values))
    assert stopper.stopped_epoch == expected_stop
    assert len(history.epoch) == expected_epochs
    assert stopper.stop_reason is (StopReason.PATIENCE_EXHAUSTED if expected_stop else StopReason.NOT_STOPPED)


def test_early_stopping_max_mode_for_accuracy():
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stopper.monitor_op is np.greater
    fit([stopper], monitored([0.5, 0.6, 0.6, 0.59], "val_accuracy"))
    assert (stopper.stopped_epoch, stopper.best, stopper.best_epoch) == (2, 0.6, 1)


@pytest.mark.parametrize(
    "monitor, mode, expected",
    [
        ("val_loss", "auto", np.less),
        ("loss", "auto", np.less),
        ("val_mse", "auto", np.less),
        ("mean_absolute_error", "auto", np.less),
        ("hinge", "auto", np.less),
        ("acc", "auto", np.greater),
        ("val_accuracy", "auto", np.greater),
        ("val_binary_accuracy", "auto", np.greater),
        ("auc", "auto", np.greater),
        ("f1_score", "auto", np.greater),
        ("val_mse", "max", np.greater),
        ("val_accuracy", "min", np.less),
    ],
)
def test_mode_resolution(monitor, mode, expected):
    assert EarlyStopping(monitor=monitor, mode=mode).monitor_op is expected


def test_auto_mode_unknown_metric_raises_at_first_epoch():
    stopper = EarlyStopping(monitor="unknown")
    assert stopper.monitor_op is None
    with pytest.raises(ConfigError, match="mode='min'.*mode='max'"):
        fit([stopper], monitored([1.0], "unknown"))


def test_auto_mode_reads_direction_from_the_models_metrics():
    class Metric:
        name, direction = "my_score", "up"

    model = DummyModel()
    model.metrics = [Metric()]
    stopper = EarlyStopping(monitor="val_my_score", patience=0)
    fit([stopper], monitored([0.1, 0.2, 0.15], "val_my_score"), model=model)
    assert stopper.monitor_op is np.greater
    assert stopper.stopped_epoch == 2


def test_baseline_never_met_stops_after_patience_and_restores_best():
    # Keras: no epoch beats baseline=0.5, so training runs `patience` epochs and restores epoch 2.
    stopper = EarlyStopping(patience=5, baseline=0.5, restore_best_weights=True)
    model, history = fit([stopper], monitored([0.9, 0.8, 0.7, 0.71, 0.72, 0.73]))
    assert len(history.epoch) == 5
    assert model.get_weights()[0] == 2
    assert stopper.stop_reason is StopReason.BASELINE_NOT_MET
    assert "baseline 0.5" in stopper.stop_message


def test_baseline_improvements_above_it_do_not_reset_wait():
    # wait: 1, 2, 3 (improving, but above the baseline), then 4 >= patience at the first stall.
    stopper = EarlyStopping(patience=2, baseline=0.5)
    fit([stopper], monitored([0.9, 0.8, 0.7, 0.71, 0.6]))
    assert stopper.stopped_epoch == 3
    assert stopper.stop_reason is StopReason.BASELINE_NOT_MET


def test_baseline_met_then_patience_exhausted():
    # 0.7 beats baseline 0.75 at epoch 2, resetting wait; then two stalls stop at epoch 4.
    stopper = EarlyStopping(patience=2, baseline=0.75)
    fit([stopper], monitored([0.9, 0.8, 0.7, 0.71, 0.72, 0.73]))
    assert stopper.stopped_epoch == 4
    assert stopper.stop_reason is StopReason.PATIENCE_EXHAUSTED
    assert stopper.stop_message.startswith("Stopped at epoch 5: val_loss did not improve")


def test_start_from_epoch_ignores_warm_up_epochs():
    stopper = EarlyStopping(patience=1, start_from_epoch=2)
    fit([stopper], monitored([0.1, 0.2, 0.3, 0.25, 0.26]))
    # Epoch 0's 0.1 is ignored; the best is epoch 3, and epoch 4 exhausts patience.
    assert (stopper.stopped_epoch, stopper.best, stopper.best_epoch) == (4, 0.25, 3)

    without = EarlyStopping(patience=1)
    fit([without], monitored([0.1, 0.2, 0.3, 0.25, 0.26]))
    assert without.stopped_epoch == 1


def test_restore_best_weights_when_stopped():
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    model, _ = fit([stopper], monitored([0.2, 0.15, 0.1, 0.11, 0.12]))
    assert stopper.stopped_epoch == 4
    assert model.get_weights()[0] == 2  # copies were kept although the model updates in place


def test_restore_best_weights_when_all_epochs_ran():
    stopper = EarlyStopping(patience=10, restore_best_weights=True)
    model, history = fit([stopper], monitored([0.3, 0.1, 0.2, 0.25]))
    assert len(history.epoch) == 4 and stopper.stopped_epoch == 0
    assert model.get_weights()[0] == 1


def test_restore_best_weights_when_another_callback_stops():
    stopper = EarlyStopping(patience=5, baseline=0.5, restore_best_weights=True)
    halt = LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 3))
    model = DummyModel()
    _, history = fit([stopper, halt], monitored([0.9, 0.8, 0.7, 0.71, 0.72, 0.73]), model=model)
    assert len(history.epoch) == 4
    assert model.get_weights()[0] == 2
    assert stopper.stop_reason is StopReason.NOT_STOPPED


def test_early_stopping_reused_across_two_fits():
    stopper = EarlyStopping(monitor="loss", patience=1)
    fit([stopper], monitored([1.0, 2.0, 3.0], "loss"))
    assert stopper.stopped_epoch == 1
    # If best=1.0 survived, the second fit would stop at its epoch 1.
    _, history = fit([stopper], monitored([5.0, 4.0, 3.0, 2.0], "loss"))
    assert len(history.epoch) == 4
    assert (stopper.stopped_epoch, stopper.best, stopper.wait) == (0, 2.0, 0)
    assert stopper.stop_reason is StopReason.NOT_STOPPED


def test_nan_is_never_an_improvement():
    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    model, _ = fit([stopper], monitored([NAN, 1.0, 0.5, NAN, 0.4]))
    # epoch 0 (NaN) does not stop (first epoch) nor become the best; epoch 3 (NaN) is a stall.
    assert (stopper.stopped_epoch, stopper.best, stopper.best_epoch) == (3, 0.5, 2)
    assert model.get_weights()[0] == 2

    patient = EarlyStopping(patience=2)
    fit([patient], monitored([NAN, 1.0, 0.5, NAN, 0.4]))
    assert (patient.stopped_epoch, patient.best) == (0, 0.4)


def test_missing_monitor_warns_with_available_keys():
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(UserWarning, match="'val_loss' is not in the logs.*Available keys: loss, accuracy"):
        _, history = fit([stopper], [{"loss": 1.0, "accuracy": 0.5}, {"loss": 2.0, "accuracy": 0.4}])
    assert len(history.epoch) == 2
    assert (stopper.wait, stopper.best) == (0, None)


def test_early_stopping_verbose_messages(capsys):
    stopper = EarlyStopping(patience=1, verbose=1, restore_best_weights=True)
    fit([stopper], monitored([0.5, 0.4, 0.6]))
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 3: early stopping",
        "Restoring model weights from the end of the best epoch: 2.",
    ]


@pytest.mark.parametrize("bad", [-1, 2.5, "3", None, True])
def test_early_stopping_rejects_bad_patience(bad):
    with pytest.raises(ConfigError, match="EarlyStopping: `patience` expects a non-negative integer"):
        EarlyStopping(patience=bad)


def test_bad_arguments_name_what_to_do():
    with pytest.raises(ConfigError, match="unknown mode 'mx'.*Did you mean 'max'"):
        EarlyStopping(mode="mx")
    with pytest.raises(ConfigError, match="start_from_epoch"):
        EarlyStopping(start_from_epoch=-2)
    with pytest.raises(ConfigError, match="baseline"):
        EarlyStopping(baseline="0.5")
    with pytest.raises(ConfigTypeError, match="monitor"):
        EarlyStopping(monitor=3)
    with pytest.raises(ConfigError, match="verbose"):
        EarlyStopping(verbose=-1)


# ---------------------------------------------------------------------------------------------
# ReduceLROnPlateau


def lr_trace(callback, values, learning_rate=1.0, key="loss"):
    model = DummyModel(learning_rate)
    lrs = []
    lrs_logger = LambdaCallback(on_epoch_end=lambda epoch, logs: lrs.append(model.optimizer.learning_rate))
    fit([callback, lrs_logger], monitored(values, key), model=model)
    return lrs


@pytest.mark.parametrize(
    "cooldown, expected",
    [
        # patience 1, factor 0.5, min_lr 0.2: e1 stalls -> 0.5; cooldown 1 is spent at the start of
        # e2, which stalls again -> 0.25; e3 -> max(0.125, 0.2); then lr == min_lr stays.
        (0, [1.0, 0.5, 0.25, 0.2, 0.2, 0.2]),
        (1, [1.0, 0.5, 0.25, 0.2, 0.2, 0.2]),
        # cooldown 2: e2 is inside the cooldown, e3 counts again.
        (2, [1.0, 0.5, 0.5, 0.25, 0.25, 0.2]),
    ],
)
def test_reduce_lr_cooldown_and_min_lr(cooldown, expected):
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=cooldown, min_lr=0.2)
    assert lr_trace(reduce, [1.0] * 6) == expected


def test_reduce_lr_improvement_resets_wait():
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.1, patience=2)
    lrs = lr_trace(reduce, [3.0, 2.0, 2.5, 2.4, 1.0, 1.5])
    np.testing.assert_allclose(lrs, [1.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    assert (reduce.best, reduce.wait) == (1.0, 1)


def test_reduce_lr_min_delta_and_max_mode():
    # 0.99995 is within min_delta=1e-4 of 1.0: not an improvement.
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
    assert lr_trace(reduce, [1.0, 0.99995]) == [1.0, 0.5]
    reduce_max = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1)
    assert lr_trace(reduce_max, [0.5, 0.6, 0.55], key="val_accuracy") == [1.0, 1.0, 0.5]


def test_reduce_lr_verbose_and_reuse(capsys):
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, verbose=1)
    lr_trace(reduce, [1.0, 1.0])
    assert capsys.readouterr().out == "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.5.\n"
    assert lr_trace(reduce, [3.0, 2.0]) == [1.0, 1.0]  # best and wait were reset


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_reduce_lr_rejects_factor_of_one_or_more(factor):
    with pytest.raises(ConfigError, match="`factor` expects a number below 1"):
        ReduceLROnPlateau(factor=factor)


def test_reduce_lr_rejects_negative_arguments():
    for kwargs in ({"patience": -1}, {"cooldown": -1}, {"min_lr": -0.1}, {"factor": -0.5}):
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            ReduceLROnPlateau(**kwargs)


# ---------------------------------------------------------------------------------------------
# LearningRateScheduler


def test_learning_rate_scheduler_two_and_one_argument_forms():
    model = DummyModel(0.1)
    seen = []
    sched = LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5)
    record = LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(model.optimizer.learning_rate))
    fit([sched, record], monitored([1.0] * 4), model=model)
    np.testing.assert_allclose(seen, [0.1, 0.1, 0.05, 0.025])

    model = DummyModel(0.1)
    fit([LearningRateScheduler(lambda epoch: 1.0 / (epoch + 1))], monitored([1.0] * 4), model=model)
    assert model.optimizer.learning_rate == 0.25


def test_learning_rate_scheduler_checks_its_schedule():
    with pytest.raises(ConfigTypeError, match="schedule"):
        LearningRateScheduler(0.1)
    with pytest.raises(ConfigError, match="must return a float learning rate, returned 'fast'"):
        fit([LearningRateScheduler(lambda epoch, lr: "fast")], monitored([1.0]))
    model = DummyModel()
    fit([LearningRateScheduler(lambda epoch, lr: np.float32(0.5))], monitored([1.0]), model=model)
    assert model.optimizer.learning_rate == 0.5 and isinstance(model.optimizer.learning_rate, float)


def test_learning_rate_scheduler_does_not_hide_errors_inside_the_schedule():
    def schedule(epoch, lr):
        return lr + "oops"  # a TypeError inside: Keras would retry as schedule(epoch)

    with pytest.raises(TypeError, match="unsupported operand"):
        fit([LearningRateScheduler(schedule)], monitored([1.0]))


# ---------------------------------------------------------------------------------------------
# TerminateOnNaN


def test_terminate_on_nan_reads_batch_loss_every_16_batches(capsys):
    model = DummyModel()
    nan_stop = TerminateOnNaN()
    cbs = CallbackList([nan_stop], model=model, verbose=0, epochs=1, steps=40)
    assert cbs.needs_batch_hooks
    logs = [LazyLogs({"loss": NAN if batch >= 5 else 1.0}) for batch in range(40)]
    stopped_at = None
    for batch in range(40):
        cbs.on_train_batch_end(batch, logs[batch])
        if model.stop_training:
            stopped_at = batch
            break
    assert stopped_at == 16
    assert [batch for batch in range(40) if logs[batch].reads] == [0, 16]
    assert capsys.readouterr().out == "Batch 16: Invalid loss, terminating training\n"


def test_terminate_on_nan_checks_epoch_loss_and_can_raise():
    model = DummyModel()
    fit([TerminateOnNaN()], monitored([1.0, math.inf, 1.0], "loss"), model=model)
    assert model.stop_training
    with pytest.raises(RuntimeError, match="loss is nan at epoch 1"):
        fit([TerminateOnNaN(raise_error=True)], monitored([NAN], "loss"))


# ---------------------------------------------------------------------------------------------
# CSVLogger


def test_csv_logger_columns_rows_and_append(tmp_path):
    path = tmp_path / "logs" / "train.csv"
    epochs = [{"loss": 0.5, "accuracy": 0.75, "val_loss": 0.625}, {"loss": 0.25, "accuracy": 0.875}]
    fit([CSVLogger(path)], epochs)
    assert path.read_text() == "epoch,accuracy,loss,val_loss\n0,0.75,0.5,0.625\n1,0.875,0.25,NA\n"

    fit([CSVLogger(path, separator=";", append=True)], [{"loss": 0.125}])
    assert path.read_text().splitlines()[-1] == "0;0.125"
    fit([CSVLogger(path)], [{"loss": 1.5}])
    assert path.read_text() == "epoch,loss\n0,1.5\n"


def test_csv_logger_adds_expected_validation_columns(tmp_path):
    model = DummyModel()
    model.metrics_names = ["loss", "val_loss"]
    path = tmp_path / "log.csv"
    fit([CSVLogger(path)], [{"loss": 0.5}], model=model)
    assert path.read_text() == "epoch,loss,val_loss\n0,0.5,NA\n"


def test_csv_logger_flushes_each_epoch(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    logger.set_model(DummyModel())
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5})
    assert path.read_text() == "epoch,loss\n0,0.5\n"  # readable before on_train_end
    logger.on_train_end()


# ---------------------------------------------------------------------------------------------
# ModelCheckpoint


def test_checkpoint_every_epoch_formats_epoch_from_one(tmp_path):
    model = DummyModel()
    pattern = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.3f}.tw")
    fit([ModelCheckpoint(pattern)], monitored([0.5, 0.4]), model=model)
    assert model.saved == [
        ("model", str(tmp_path / "ckpt" / "model-01-0.500.tw")),
        ("model", str(tmp_path / "ckpt" / "model-02-0.400.tw")),
    ]
    assert (tmp_path / "ckpt").is_dir()  # parent created before model.save


def test_checkpoint_save_best_only_and_threshold():
    model = DummyModel()
    fit(
        [ModelCheckpoint("m-{epoch}-{val_loss}.tw", save_best_only=True)],
        monitored([0.5, 0.4, 0.45, 0.3]),
        model=model,
    )
    assert [p for _, p in model.saved] == ["m-1-0.5.tw", "m-2-0.4.tw", "m-4-0.3.tw"]

    model = DummyModel()
    ckpt = ModelCheckpoint("w.tw", save_best_only=True, save_weights_only=True, initial_value_threshold=0.42)
    fit([ckpt], monitored([0.5, 0.4, 0.45, 0.3]), model=model)
    assert model.saved == [("weights", "w.tw"), ("weights", "w.tw")]
    assert ckpt.best == 0.3


def test_checkpoint_max_mode_and_verbose(capsys):
    model = DummyModel()
    ckpt = ModelCheckpoint("best.tw", monitor="val_accuracy", save_best_only=True, verbose=1)
    fit([ckpt], monitored([0.5, 0.75, 0.625], "val_accuracy"), model=model)
    assert len(model.saved) == 2
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 1: val_accuracy improved from None to 0.50000, saving model to best.tw",
        "Epoch 2: val_accuracy improved from 0.50000 to 0.75000, saving model to best.tw",
        "Epoch 3: val_accuracy did not improve from 0.75000",
    ]


def test_checkpoint_integer_save_freq_counts_batches_across_epochs():
    model = DummyModel()
    ckpt = ModelCheckpoint("b-{epoch}-{batch}.tw", save_freq=3)
    cbs = CallbackList([ckpt], model=model, verbose=0, epochs=2, steps=4)
    assert cbs.needs_batch_hooks
    cbs.on_train_begin()
    for epoch in range(2):
        cbs.on_epoch_begin(epoch)
        for batch in range(4):
            cbs.on_train_batch_end(batch, LazyLogs({"loss": 1.0}))
        cbs.on_epoch_end(epoch, {"loss": 1.0})
    # 3 batches, then 1 + 2 across the epoch boundary.
    assert [p for _, p in model.saved] == ["b-1-3.tw", "b-2-2.tw"]


def test_checkpoint_reads_only_the_fields_the_path_names():
    model = DummyModel()
    ckpt = ModelCheckpoint("b-{batch}-{loss:.1f}.tw", save_freq=1)
    ckpt.set_model(model)
    logs = LazyLogs({"loss": 0.5, "accuracy": 0.25, "mse": 0.125})
    ckpt.on_epoch_begin(0)
    ckpt.on_train_batch_end(0, logs)
    assert model.saved == [("model", "b-1-0.5.tw")]
    assert logs.reads == 1


def test_checkpoint_errors_and_warnings():
    with pytest.raises(ConfigError, match="names the field 'val_acc'.*Available: epoch, loss"):
        fit([ModelCheckpoint("m-{val_acc}.tw")], [{"loss": 1.0}])
    model = DummyModel()
    with pytest.warns(UserWarning, match="save_best_only needs monitor='val_loss'"):
        fit([ModelCheckpoint("m.tw", save_best_only=True)], [{"loss": 1.0}], model=model)
    assert model.saved == [("model", "m.tw")]  # Keras 3 saves anyway
    for bad in (0, -1, "batch", 2.5):
        with pytest.raises(ConfigError, match="save_freq"):
            ModelCheckpoint("m.tw", save_freq=bad)
    with pytest.raises(ConfigTypeError, match="filepath"):
        ModelCheckpoint(None)


# ---------------------------------------------------------------------------------------------
# ProgbarLogger and History


@pytest.fixture
def plain_stdout(monkeypatch):
    # rich treats these variables as "this is a terminal"; the tests choose for themselves.
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)


EPOCH_LOGS = [
    {"loss": 0.1234, "accuracy": 0.875, "val_loss": 0.2345, "val_accuracy": 0.8125, "learning_rate": 0.001},
    {"loss": 0.0005, "accuracy": 0.9, "val_loss": 0.25, "val_accuracy": 0.8, "learning_rate": 0.001},
]
LINES = [
    r"Epoch 1/2 - \d+\.\d\ds - loss: 0\.1234 - accuracy: 0\.8750 - val_loss: 0\.2345 "
    r"- val_accuracy: 0\.8125",
    r"Epoch 2/2 - \d+\.\d\ds - loss: 5\.0000e-04 - accuracy: 0\.9000 - val_loss: 0\.2500 "
    r"- val_accuracy: 0\.8000",
]


def run_progbar(bar, fit_verbose, steps=3):
    cbs = CallbackList([bar], model=DummyModel(), verbose=fit_verbose, epochs=2, steps=steps)
    cbs.on_train_begin()
    for epoch, logs in enumerate(EPOCH_LOGS):
        cbs.on_epoch_begin(epoch)
        for batch in range(steps):
            cbs.on_train_batch_end(batch, LazyLogs({"loss": 0.5}))
        cbs.on_test_begin()  # validation inside fit is silent
        cbs.on_test_end({"loss": 0.3})
        cbs.on_epoch_end(epoch, dict(logs))
    cbs.on_train_end()
    return cbs


@pytest.mark.parametrize(
    "bar, fit_verbose",
    [(ProgbarLogger(verbose=2), 1), (ProgbarLogger(), 2), (ProgbarLogger(), 1), (ProgbarLogger(), "auto")],
)
def test_progbar_one_line_per_epoch_without_terminal(bar, fit_verbose, capsys, plain_stdout):
    cbs = run_progbar(bar, fit_verbose)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, expected in zip(lines, LINES):
        assert re.fullmatch(expected, line), line
    assert not cbs.needs_batch_hooks  # nothing to draw per batch, so no per-batch dispatch


@pytest.mark.parametrize("bar, fit_verbose", [(ProgbarLogger(verbose=0), 1), (ProgbarLogger(), 0)])
def test_progbar_silent_at_verbose_zero(bar, fit_verbose, capsys, plain_stdout):
    run_progbar(bar, fit_verbose)
    assert capsys.readouterr().out == ""


def test_progbar_evaluate_outside_fit_prints_one_line(capsys, plain_stdout):
    cbs = CallbackList([], add_progbar=True, verbose=1, steps=2)
    cbs.on_test_begin()
    cbs.on_test_batch_end(0, LazyLogs({"loss": 1.0}))
    cbs.on_test_end({"loss": 0.5, "accuracy": 0.75})
    expected = r"Evaluate - \d+\.\d\ds - loss: 0\.5000 - accuracy: 0\.7500\n"
    assert re.fullmatch(expected, capsys.readouterr().out)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progbar_live_in_terminal_throttles_loss_reads(monkeypatch, plain_stdout):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    bar = ProgbarLogger()
    now = [0.0]
    bar._clock = lambda: now[0]
    cbs = CallbackList([bar], model=DummyModel(), verbose=1, epochs=2, steps=12)
    assert bar.live and cbs.needs_batch_hooks
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    logs = [LazyLogs({"loss": 0.5}) for _ in range(12)]
    for batch in range(12):
        now[0] += 0.04  # a batch every 40 ms: the loss is read at most every 100 ms
        cbs.on_train_batch_end(batch, logs[batch])
    cbs.on_epoch_end(0, {"loss": 0.25})
    cbs.on_train_end()
    assert [batch for batch in range(12) if logs[batch].reads] == [0, 3, 6, 9]
    assert re.search(r"Epoch 1/2 - 0\.48s - loss: 0\.2500\n", terminal.getvalue())


def test_progbar_rejects_bad_verbose():
    with pytest.raises(ConfigError, match="verbose"):
        ProgbarLogger(verbose=-1)


def test_history_records_epochs_and_sets_model_history():
    model, history = fit([], [{"loss": 0.5, "val_loss": 0.6}, {"loss": 0.25, "val_loss": 0.3}])
    assert history.history == {"loss": [0.5, 0.25], "val_loss": [0.6, 0.3]}
    assert history.epoch == [0, 1]
    assert model.history is history

    reused = History()
    fit([reused], [{"loss": 1.0}])
    fit([reused], [{"loss": 2.0}])
    # As Keras 3: `epoch` restarts per fit, the `history` dict keeps appending.
    assert reused.epoch == [0] and reused.history == {"loss": [1.0, 2.0]}


# ---------------------------------------------------------------------------------------------
# CallbackList and override detection


class EpochOnly(Callback):
    def on_epoch_end(self, epoch, logs=None):
        pass


class AliasBatch(Callback):
    """Overrides Keras's alias `on_batch_end` only."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_batch_end(self, batch, logs=None):
        self.batches.append(batch)


class NoSuperInit(Callback):
    def __init__(self):  # forgets super().__init__(), as course code sometimes does
        self.seen = []

    def on_test_batch_end(self, batch, logs=None):
        self.seen.append(batch)


def test_overrides_detects_real_hooks_only():
    assert not overrides(Callback(), "on_train_batch_end")
    assert overrides(EpochOnly(), "on_epoch_end") and not overrides(EpochOnly(), "on_train_batch_end")
    assert overrides(AliasBatch(), "on_train_batch_end")
    assert not overrides(AliasBatch(), "on_train_batch_begin")
    assert overrides(LambdaCallback(on_train_batch_begin=lambda b, logs: None), "on_train_batch_begin")
    assert not overrides(ModelCheckpoint("m.tw"), "on_train_batch_end")
    assert overrides(ModelCheckpoint("m.tw", save_freq=5), "on_train_batch_end")
    assert overrides(TerminateOnNaN(), "on_train_batch_end")
    with pytest.raises(ConfigError, match="hook 'on_epoch_ends'.*Did you mean 'on_epoch_end'"):
        overrides(Callback(), "on_epoch_ends")


def test_callback_list_plans_batch_dispatch():
    quiet = CallbackList([EpochOnly(), EarlyStopping(), ReduceLROnPlateau(), History()], verbose=0)
    assert (quiet.needs_batch_hooks, quiet.needs_test_batch_hooks, quiet.needs_predict_batch_hooks) == (
        False,
        False,
        False,
    )

    alias, tester = AliasBatch(), NoSuperInit()
    cbs = CallbackList([EpochOnly(), alias, tester], model=DummyModel(), verbose=0)
    assert cbs.needs_batch_hooks and cbs.needs_test_batch_hooks and not cbs.needs_predict_batch_hooks
    cbs.on_train_batch_begin(0)
    cbs.on_train_batch_end(7, {"loss": 1.0})
    cbs.on_test_batch_end(3, {"loss": 1.0})
    assert alias.batches == [7] and tester.seen == [3]
    assert tester.model is cbs.model and tester.params["verbose"] == 0


def test_callback_list_order_defaults_and_params():
    calls = []
    first = LambdaCallback(on_train_begin=lambda logs: calls.append("first"))
    second = LambdaCallback(on_train_begin=lambda logs: calls.append("second"))
    history = History()
    model = DummyModel()
    cbs = CallbackList(
        [first, history, second],
        model=model,
        add_history=True,
        add_progbar=True,
        verbose=2,
        epochs=3,
        steps=7,
    )
    assert [type(c).__name__ for c in cbs] == ["LambdaCallback", "History", "LambdaCallback", "ProgbarLogger"]
    assert cbs.history is history and model.history is history
    assert first.params == {"verbose": 2, "epochs": 3, "steps": 7} and first.model is model
    cbs.on_train_begin()
    assert calls == ["first", "second"]
    cbs.append(EpochOnly())
    assert len(cbs) == 5 and cbs.callbacks[-1].model is model


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(ConfigTypeError, match=r"callbacks\[1\] expects a trainwell.callbacks.Callback"):
        CallbackList([History(), lambda logs: None])


def test_lambda_callback_validates_hooks():
    with pytest.raises(ConfigError, match="unknown callback hook 'on_epoch_finish'"):
        LambdaCallback(on_epoch_finish=print)
    with pytest.raises(ConfigTypeError, match="on_epoch_end"):
        LambdaCallback(on_epoch_end=3)
    seen = []
    cbs = CallbackList([LambdaCallback(on_predict_batch_end=lambda batch, logs: seen.append(batch))])
    assert cbs.needs_predict_batch_hooks
    cbs.on_predict_batch_end(4)
    assert seen == [4]


def test_public_names_are_exported():
    # Derived, not copied: every Callback subclass defined in the package's modules (and the
    # Callback base itself) is public, listed in __all__ and reachable as trainwell.callbacks.<name>.
    import importlib
    import inspect
    import pkgutil

    classes = set()
    for info in pkgutil.iter_modules(cb.__path__):
        module = importlib.import_module(f"{cb.__name__}.{info.name}")
        classes |= {name for name, obj in vars(module).items()
                    if inspect.isclass(obj) and issubclass(obj, Callback)
                    and obj.__module__ == module.__name__ and not name.startswith("_")}
    assert {"Callback", "EarlyStopping", "ModelCheckpoint", "BackupAndRestore"} <= classes
    missing = sorted(name for name in classes if name not in cb.__all__ or getattr(cb, name, None) is None)
    assert missing == []
    assert all(hasattr(cb, name) for name in cb.__all__)
