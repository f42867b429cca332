"""Tests for trainwell.saving: model ↔ file round trips, exact resume, validation, callbacks.

The container underneath (checksums, atomic writes, truncation) is tested in test_saving.py.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainwell as tw
from trainwell import activations, initializers, layers, losses, optimizers, regularizers, saving
from trainwell._errors import ModelFileError
from trainwell.callbacks import BackupAndRestore, Callback, ModelCheckpoint
from trainwell.layers import Activation, BatchNormalization, Dense, Dropout, Input, Normalization
from trainwell.models import Sequential, load_model
from trainwell.optimizers import schedules

RNG = np.random.default_rng(0)
X = RNG.standard_normal((48, 4)).astype(np.float32) * [1.0, 10.0, 0.1, 3.0] + [0, 5, 0, -2]
Y = (X @ np.array([[0.5], [-0.1], [2.0], [0.3]], dtype=np.float32) + 0.1).astype(np.float32)
LABELS = (X[:, 0] > 0).astype(np.int64) + (X[:, 2] > 0.05)
ONE_HOT = np.eye(3, dtype=np.float32)[LABELS]


def full_model(optimizer="adam", seed=0) -> Sequential:
    """Every layer type, with non-default initializers and regularizers, compiled with metrics."""
    tw.set_random_seed(seed)
    norm = Normalization()
    norm.adapt(X)
    model = Sequential([
        Input(shape=(4,)),
        norm,
        Dense(6, activation="tanh", kernel_initializer=initializers.HeNormal(seed=3),
              bias_initializer=initializers.Constant(0.1), kernel_regularizer=regularizers.L1L2(1e-3, 1e-2),
              bias_regularizer="l2"),
        BatchNormalization(momentum=0.9),
        Activation("relu"),
        Dropout(0.25),
        Dense(1),
    ])
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def fit(model, epochs, **kwargs):
    return model.fit(X, Y, epochs=epochs, batch_size=8, verbose=0, validation_split=0.25, **kwargs)


def same_weights(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a.weights, b.weights)) and len(a.weights) == len(b.weights)


def reload(model, tmp_path, **kwargs):
    path = tmp_path / "model.tw"
    model.save(path)
    return load_model(path, **kwargs)


# ------------------------------------------------------------------------------------ round trips
def test_round_trip_keeps_everything(tmp_path):
    model = full_model()
    fit(model, 3)
    model.preprocessing = {"target": "wage", "columns": [{"name": "âge", "kind": "numeric", "mean": 1.5}]}
    loaded = reload(model, tmp_path)
    assert loaded.get_config() == model.get_config()
    assert [la.weight_names() for la in loaded.layers] == [la.weight_names() for la in model.layers]
    assert same_weights(model, loaded)
    assert np.array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))  # bit-identical
    assert loaded.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)
    assert optimizers.serialize(loaded.optimizer) == optimizers.serialize(model.optimizer)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 15
    assert losses.serialize(loaded.compiled_loss) == losses.serialize(model.compiled_loss)
    assert loaded.metrics_names == model.metrics_names == ["loss", "mae"]
    assert loaded.history.history == model.history.history and loaded.history.epoch == [0, 1, 2]
    assert (loaded.epochs_trained, loaded.shuffle_seed) == (3, model.shuffle_seed)
    assert loaded.preprocessing == model.preprocessing
    assert loaded.layers[0].adapted and loaded.layers[2].moving_mean.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(activations._BY_NAME))
def test_every_activation_round_trips(tmp_path, name):
    tw.set_random_seed(1)
    model = Sequential([Dense(3, activation=name, input_shape=(4,)), Dense(2, activation=name)])
    loaded = reload(model, tmp_path)
    assert loaded.layers[0].activation_name == model.layers[0].activation_name
    assert np.array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0), equal_nan=True)


@pytest.mark.parametrize("name", sorted(losses._CLASSES))
def test_every_loss_round_trips(tmp_path, name):
    tw.set_random_seed(2)
    model = Sequential([Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(optimizer="sgd", loss=name)
    y = LABELS if name == "SparseCategoricalCrossentropy" else ONE_HOT
    model.fit(X, y, epochs=1, verbose=0)
    loaded = reload(model, tmp_path)
    assert losses.serialize(loaded.compiled_loss) == losses.serialize(model.compiled_loss)
    assert loaded.evaluate(X, y, verbose=0) == model.evaluate(X, y, verbose=0)


OPTIMIZERS = [
    optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    optimizers.Adam(learning_rate=0.01, amsgrad=True, clipnorm=1.0),
    optimizers.AdamW(learning_rate=schedules.ExponentialDecay(0.01, decay_steps=3, decay_rate=0.5)),
    optimizers.RMSprop(centered=True, momentum=0.5, global_clipnorm=2.0),
    optimizers.Adagrad(learning_rate=0.1, weight_decay=0.01),
    optimizers.Nadam(learning_rate=0.01),
    optimizers.Adamax(learning_rate=0.01, clipvalue=0.5),
    optimizers.Adadelta(learning_rate=1.0),
    optimizers.Lion(learning_rate=0.001, weight_decay=0.01),
    optimizers.Ftrl(learning_rate=0.1, l1_regularization_strength=0.001),
]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: type(o).__name__)
def test_every_optimizer_continues_exactly(tmp_path, optimizer):
    whole = full_model(optimizers.get(optimizers.serialize(optimizer)))
    fit(whole, 6)
    half = full_model(optimizers.get(optimizers.serialize(optimizer)))
    fit(half, 3)
    resumed = reload(half, tmp_path)
    assert type(resumed.optimizer) is type(optimizer)
    fit(resumed, 3)
    assert resumed.optimizer.iterations == whole.optimizer.iterations
    assert same_weights(whole, resumed)


def test_ten_epochs_save_load_ten_more_equals_twenty(tmp_path):
    whole = full_model()
    fit(whole, 20)
    half = full_model()
    fit(half, 10)
    resumed = reload(half, tmp_path)
    torch.manual_seed(12345)  # the caller's stream does not matter: the saved one is restored
    history = fit(resumed, 10)
    assert same_weights(whole, resumed)
    assert history.history["loss"] == whole.history.history["loss"][10:]
    assert resumed.epochs_trained == 20


def test_load_model_leaves_the_callers_random_stream_alone(tmp_path):
    path = tmp_path / "m.tw"
    full_model().save(path)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_model(path)
    assert torch.equal(torch.rand(3), expected)


def test_compile_false_unbuilt_and_uncompiled_models(tmp_path):
    loaded = reload(full_model(), tmp_path, compile=False)
    assert loaded.optimizer is None and loaded.predict(X[:2], verbose=0).shape == (2, 1)
    unbuilt = Sequential([Dense(3), Dense(1)])
    loaded = reload(unbuilt, tmp_path)
    assert not loaded.built and [la.name for la in loaded.layers] == [la.name for la in unbuilt.layers]
    assert loaded.optimizer is None
    loaded.compile(optimizer="adam", loss="mse")
    assert len(loaded.fit(X, Y, epochs=2, verbose=0).history["loss"]) == 2


def test_custom_loss_saves_with_a_warning_and_loads_uncompiled(tmp_path):
    model = Sequential([Dense(1, input_shape=(4,))])
    model.compile(optimizer="adam", loss=lambda y_true, y_pred: ((y_true - y_pred) ** 2).mean(-1))
    with pytest.warns(UserWarning, match="compile settings are not stored"):
        model.save(tmp_path / "m.tw")
    loaded = load_model(tmp_path / "m.tw")
    assert loaded.optimizer is None
    assert np.array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


def test_overwrite_false_refuses_an_existing_file(tmp_path):
    model = full_model()
    model.save(tmp_path / "m.tw")
    with pytest.raises(ModelFileError, match="overwrite=False"):
        model.save(tmp_path / "m.tw", overwrite=False)
    with pytest.raises(ModelFileError, match="overwrite=False"):
        model.save_weights(tmp_path / "m.tw", overwrite=False)


# ------------------------------------------------------------------------------------ weights only
def test_weights_round_trip_by_name_and_by_position(tmp_path):
    model = full_model()
    fit(model, 2)
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    again = full_model(seed=5)  # same architecture, new auto names (dense_4 ...), other initial weights
    assert [la.name for la in again.layers] != [la.name for la in model.layers]
    again.load_weights(path)
    assert same_weights(model, again)
    model.save(tmp_path / "full.tw")
    third = full_model(seed=6)
    third.load_weights(tmp_path / "full.tw")  # the weights of a whole-model file
    assert same_weights(model, third)


def test_weights_mismatch_names_layers_and_shapes(tmp_path):
    model = Sequential([Dense(5, input_shape=(4,), name="hidden"), Dense(1, name="out")])
    model.save_weights(tmp_path / "w.safetensors")
    other = Sequential([Dense(7, input_shape=(4,), name="hidden"), Dense(1, name="out")])
    before = [w.clone() for w in other.weights]
    with pytest.raises(ModelFileError) as err:
        other.load_weights(tmp_path / "w.safetensors")
    msg = str(err.value)
    assert "'layers/hidden/kernel': the config expects shape (4, 7), the file holds (4, 5)" in msg
    assert "'layers/out/kernel'" in msg and "(7, 1)" in msg and "(5, 1)" in msg
    assert all(torch.equal(a, b) for a, b in zip(before, other.weights))  # nothing changed
    with pytest.raises(ModelFileError, match="not built"):
        Sequential([Dense(1)]).load_weights(tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        other.load_weights(tmp_path / "bad.safetensors")


# ------------------------------------------------------------------------------------ validation
def _state(model=None):
    model = model or Sequential([Dense(3, input_shape=(4,), name="a"), Dense(2, name="b")])
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, np.zeros((48, 2), np.float32), epochs=1, verbose=0)
    return saving.model_state(model)


def _load_crafted(tmp_path, header, tensors, **kwargs):
    path = tmp_path / "crafted.tw"
    saving.write_container(path, header, tensors)
    return load_model(path, **kwargs)


def test_unknown_layer_type_names_the_entry(tmp_path):
    header, tensors = _state()
    header["model"]["config"]["layers"][1]["class_name"] = "Conv9D"
    fragment = r"crafted.tw: header entry `model.config.layers\[1\]` \('Conv9D'\) cannot be built"
    with pytest.raises(ModelFileError, match=fragment):
        _load_crafted(tmp_path, header, tensors)


def test_config_shapes_disagreeing_with_weights(tmp_path):
    header, tensors = _state()
    header["model"]["config"]["layers"][1]["config"]["units"] = 5
    with pytest.raises(ModelFileError, match=r"'layers/b/kernel': the config expects shape \(3, 5\), "
                                             r"the file holds \(3, 2\)"):
        _load_crafted(tmp_path, header, tensors)


@pytest.mark.parametrize("change, fragment", [
    (lambda t: t.pop("layers/a/bias"), "missing weight 'layers/a/bias' of shape (3,)"),
    (lambda t: t.update({"layers/c/kernel": torch.zeros(2)}), "unexpected weight 'layers/c/kernel'"),
    (lambda t: t.update({"layers/a/bias": torch.zeros(3, dtype=torch.float64)}), "expected dtype float32"),
    (lambda t: t.update({"extra": torch.zeros(1)}), "unexpected tensor entry 'extra'"),
    (lambda t: t.update({"rng/torch_cpu": torch.zeros(3, dtype=torch.uint8)}), "not a torch CPU random"),
    (lambda t: t.update({"optimizer/param_9/exp_avg": torch.zeros(1)}), "param_9/exp_avg"),
])
def test_damaged_tensor_entries_name_the_entry(tmp_path, change, fragment):
    header, tensors = _state()
    change(tensors)
    with pytest.raises(ModelFileError) as err:
        _load_crafted(tmp_path, header, tensors)
    assert fragment in str(err.value) and "crafted.tw" in str(err.value)


def test_absurd_sizes_are_refused_before_allocating(tmp_path, monkeypatch):
    header, tensors = _state()
    header["model"]["config"]["layers"][0]["config"]["units"] = 10**12
    monkeypatch.setattr(Dense, "build", lambda *a: pytest.fail("allocated"))
    with pytest.raises(ModelFileError, match="above max_params=2,147,483,648.*nothing was allocated"):
        _load_crafted(tmp_path, header, tensors)
    header["model"]["config"]["layers"][0]["config"]["units"] = 3
    header["model"]["config"]["input_shape"] = [10**15]
    with pytest.raises(ModelFileError, match="input_shape"):
        _load_crafted(tmp_path, header, tensors)


@pytest.mark.parametrize("edit, fragment", [
    (lambda h: h.update(model={"class_name": "Functional", "config": {}}), "'Sequential'"),
    (lambda h: h["model"]["config"].update(layers="dense"), "model.config.layers"),
    (lambda h: h["model"]["config"]["layers"][1]["config"].update(name="a"), "more than once"),
    (lambda h: h.update(epochs_trained=-1), "epochs_trained"),
    (lambda h: h["compile"].update(loss="mean_squared_eror"), "Did you mean 'mean_squared_error'"),
    (lambda h: h["optimizer"].update(class_name="SGD"), "saved state is for 'SGD'"),
    (lambda h: h["model"]["config"]["layers"][0]["config"].update(activation="rleu"), "rleu"),
])
def test_damaged_header_entries_name_the_entry(tmp_path, edit, fragment):
    header, tensors = _state()
    edit(header)
    with pytest.raises(ModelFileError, match="crafted.tw") as err:
        _load_crafted(tmp_path, header, tensors)
    assert fragment in str(err.value)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle or torch.load was used")

    for module, names in [(pickle, ["load", "loads", "Unpickler"]), (torch, ["load"])]:
        for name in names:
            monkeypatch.setattr(module, name, forbidden)
    model = full_model()
    fit(model, 1)
    loaded = reload(model, tmp_path)
    model.save_weights(tmp_path / "w.safetensors")
    loaded.load_weights(tmp_path / "w.safetensors")
    assert same_weights(model, loaded)
    data = (tmp_path / "model.tw").read_bytes()
    assert b"\x80\x04\x95" not in data and b"torch._utils" not in data


# ------------------------------------------------------------------------------------ fuzzing
_BASE: dict = {}


def _base():
    if not _BASE:
        _BASE["state"] = _state()
    header, tensors = _BASE["state"]
    return json.loads(json.dumps(header)), dict(tensors)


def _paths(value, where=()):
    yield where
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _paths(sub, (*where, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _paths(sub, (*where, i))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_tensor_edits = st.sampled_from(["drop", "reshape", "float64", "empty", "none"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_raise_only_model_file_errors(tmp_path, data):
    header, tensors = _base()
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(header) if p and p[0] not in ("format_version", "trainwell_version")]
        where = data.draw(st.sampled_from(paths))
        parent = header
        for key in where[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(_json)
    name = data.draw(st.sampled_from(sorted(tensors)))
    edit = data.draw(_tensor_edits)
    if edit == "drop":
        del tensors[name]
    elif edit == "reshape":
        tensors[name] = tensors[name].reshape(-1)[:1].clone()
    elif edit == "float64":
        tensors[name] = tensors[name].double()
    elif edit == "empty":
        tensors[name] = torch.zeros(0)
    try:
        model = _load_crafted(tmp_path, header, tensors)
    except ModelFileError:
        return
    if model.built:  # a mutation the loader accepts must still give a working model
        assert model.predict(X[:2], verbose=0).shape[0] == 2


# ------------------------------------------------------------------------------------ callbacks
def test_model_checkpoint_best_only_with_formatted_names(tmp_path):
    model = full_model()
    pattern = str(tmp_path / "ckpt" / "{epoch:02d}-{val_loss:.3f}.tw")
    history = fit(model, 6, callbacks=[ModelCheckpoint(pattern, save_best_only=True)])
    val = history.history["val_loss"]
    improved = [i for i, v in enumerate(val) if v < min(val[:i], default=np.inf)]
    expected = sorted(f"{i + 1:02d}-{val[i]:.3f}.tw" for i in improved)
    assert sorted(os.listdir(tmp_path / "ckpt")) == expected
    last = load_model(tmp_path / "ckpt" / expected[-1])
    assert last.epochs_trained == improved[-1] + 1
    if improved[-1] == 5:
        assert same_weights(last, model)


def test_model_checkpoint_weights_only_every_n_batches(tmp_path):
    model = full_model()
    fit(model, 2, callbacks=[ModelCheckpoint(str(tmp_path / "w-{epoch}-{batch}.safetensors"),
                                             save_weights_only=True, save_freq=2)])
    # 36 training rows / 8 = 5 batches per epoch; every 2nd batch overall: global batches 2, 4, 6, 8, 10.
    expected = ["w-1-2", "w-1-4", "w-2-1", "w-2-3", "w-2-5"]
    assert sorted(os.listdir(tmp_path)) == [f"{name}.safetensors" for name in expected]
    again = full_model(seed=3)
    again.load_weights(tmp_path / "w-2-5.safetensors")
    assert same_weights(model, again)


class _Crash(Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resumes_exactly_after_a_crash(tmp_path):
    whole = full_model()
    fit(whole, 10)
    backup = tmp_path / "backup"
    crashed = full_model()
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(crashed, 10, callbacks=[BackupAndRestore(backup), _Crash(5)])
    assert os.listdir(backup) == ["latest.tw"]  # kept after the crash
    # The crash came in epoch 5's on_epoch_end, before the backup (which runs last, after the
    # callbacks whose state it saves): the backup is of 5 finished epochs and epoch 5 is redone.
    assert saving.read_header(backup / "latest.tw")["backup"] == {"epoch": 5}
    resumed = full_model()
    history = fit(resumed, 10, callbacks=[BackupAndRestore(backup)])
    assert same_weights(whole, resumed)
    assert history.history == whole.history.history and history.epoch == list(range(10))
    assert not backup.exists()  # deleted once the fit finished


def test_backup_and_restore_double_checkpoint_and_wrong_model(tmp_path):
    backup = tmp_path / "b"
    model = full_model()
    with pytest.raises(RuntimeError):
        fit(model, 4, callbacks=[BackupAndRestore(backup, double_checkpoint=True), _Crash(2)])
    assert sorted(os.listdir(backup)) == ["latest.tw", "previous.tw"]
    (backup / "latest.tw").write_bytes(b"garbage")
    other = full_model()
    fit(other, 4, callbacks=[BackupAndRestore(backup, double_checkpoint=True, delete_checkpoint=False)])
    assert saving.read_header(backup / "latest.tw")["backup"]["epoch"] == 4
    small = Sequential([Dense(1, input_shape=(4,))])
    small.compile(optimizer="adam", loss="mse")
    with pytest.raises(ModelFileError, match="missing weight"):
        small.fit(X, Y, epochs=1, verbose=0, callbacks=[BackupAndRestore(backup)])
    with pytest.raises(tw.ConfigError, match="save_freq"):
        BackupAndRestore(backup, save_freq=0)


def _in_child(work) -> int:
    """Run ``work()`` in a forked copy of this process (no interpreter start-up); return its wait status.

    The child never returns into pytest: it leaves through os._exit whatever happens.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12 warns about fork with threads
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


class _Killer(Callback):
    """SIGKILLs its own process in the middle of epoch ``epoch`` (a crash nothing can clean up)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL")
@pytest.mark.timeout(60)
def test_fit_killed_by_sigkill_then_rerun_matches_an_uninterrupted_fit(tmp_path):
    backup, out = tmp_path / "backup", tmp_path / "final.safetensors"

    def run(killer):
        model = full_model()
        fit(model, 10, callbacks=[BackupAndRestore(backup), *killer])
        model.save_weights(out)

    status = _in_child(lambda: run([_Killer(6)]))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert saving.read_header(backup / "latest.tw")["backup"]["epoch"] == 6 and not out.exists()
    assert os.WEXITSTATUS(_in_child(lambda: run([]))) == 0
    assert not backup.exists()  # the finished rerun deleted its backup
    whole = full_model()
    fit(whole, 10)
    resumed = full_model(seed=9)
    resumed.load_weights(out)
    assert same_weights(whole, resumed)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL")
@pytest.mark.timeout(60)
def test_model_save_killed_at_random_moments_leaves_a_loadable_model(tmp_path):
    target, tries, failures, seen = tmp_path / "m.tw", 20, [], [0, 0]
    models = []
    for tag in (0, 1):
        torch.manual_seed(tag)
        models.append(Sequential([Dense(256, input_shape=(512,)), Dense(8)]))
        models[-1].epochs_trained = tag
    models[0].save(target)
    delays = np.random.default_rng(1).uniform(0.0, 0.03, tries)

    def save_forever(start):
        while True:
            start += 1
            models[start % 2].save(target)

    for i, delay in enumerate(delays):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            try:
                save_forever(i)
            finally:
                os._exit(1)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            loaded = load_model(target)
            seen[loaded.epochs_trained] += 1
            if not same_weights(loaded, models[loaded.epochs_trained]):
                failures.append(f"try {i}: weights match neither save")
        except ModelFileError as exc:
            failures.append(f"try {i}: {exc}")
    print(f"kill-during-model.save: {tries} tries, {len(failures)} failures, contents seen {seen}")
    assert failures == [] and sum(seen) == tries


# ------------------------------------------------------------------------------------ summary
def test_summarize_reads_the_header_only(tmp_path, monkeypatch):
    model = full_model()
    fit(model, 3)
    columns = [{"name": "age", "kind": "numeric"}, {"name": "sex", "kind": "category"}]
    model.preprocessing = {"target": "wage", "task": "regression", "columns": columns}
    model.save(tmp_path / "m.tw")
    monkeypatch.setattr(saving, "read_container", lambda *a, **k: pytest.fail("tensors were read"))
    with warnings.catch_warnings():
        text = saving.summarize(tmp_path / "m.tw")
    assert f'Model "{model.name}"' in text and "file format 1" in text
    assert "Input shape: (None, 4)" in text
    assert f"Total params: {model.count_params():,}" in text
    dense = model.layers[1]
    assert f"{dense.name} (Dense)" in text and "(None, 6)" in text and " 30" in text
    assert "optimizer Adam(learning_rate=0.001), loss MeanSquaredError(), metrics: mae" in text
    assert "Optimizer state: 15 steps" in text and "Epochs trained: 3" in text
    best = min(model.history.history["val_loss"])
    assert f"val_loss: last {model.history.history['val_loss'][-1]:.4g}, best {best:.4g}" in text
    assert "Preprocessing: target 'wage', task 'regression', 2 columns: age (numeric), sex (category)" in text
    assert f"torch {torch.__version__}" in text


def test_summarize_refuses_non_model_files(tmp_path):
    (tmp_path / "x.tw").write_bytes(b"hello")
    with pytest.raises(ModelFileError, match="not a trainwell model file"):
        saving.summarize(tmp_path / "x.tw")


def test_layers_module_knows_every_saved_layer_type():
    # The loader computes weight shapes from the config (to refuse absurd sizes before allocating);
    # a layer type added to layers.LAYERS must be taught to _file_checks.weight_shapes too.
    from trainwell._file_checks import weight_shapes

    for name, cls in layers.LAYERS.items():
        if name == "InputLayer":
            continue
        layer = cls(**({"units": 2} if cls is Dense else {"activation": "relu"} if cls is Activation
                       else {"rate": 0.5} if cls is Dropout else {}))
        assert weight_shapes(layer, (3,)) is not None, name
        if cls in (BatchNormalization, Normalization, Dense):
            layer.build((3,))
            assert weight_shapes(layer, (3,)) == {n: tuple(w.shape) for n, w in
                                                 zip(layer.weight_names(), layer.weights)}


def test_keras_load_model_signature_and_resaving_a_loaded_model(tmp_path):
    model = full_model()
    fit(model, 2)
    model.save(tmp_path / "a.tw")
    loaded = load_model(tmp_path / "a.tw", None, False)  # Keras order: custom_objects, compile
    assert loaded.optimizer is None
    with pytest.raises(tw.ConfigError, match="custom_objects"):
        load_model(tmp_path / "a.tw", custom_objects={"f": print})
    again = load_model(tmp_path / "a.tw")
    torch.rand(5)  # the caller's stream moves on; the saved one must not be replaced by it
    again.save(tmp_path / "b.tw")
    first = saving.read_container(tmp_path / "a.tw")[1]
    second = saving.read_container(tmp_path / "b.tw")[1]
    assert sorted(first) == sorted(second)
    assert all(torch.equal(first[k], second[k]) for k in first)


def _stateful_callbacks():
    return [tw.callbacks.EarlyStopping(monitor="loss", patience=3, min_delta=0.01, restore_best_weights=True),
            tw.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5)]


def _fast_model():
    return full_model(optimizer=optimizers.Adam(learning_rate=0.01))


def test_backup_and_restore_carries_on_the_other_callbacks_state(tmp_path):
    """A run resumed after a crash stops at the same epoch, with the same best weights, learning
    rate and history, as one never interrupted: EarlyStopping's patience count, best value and best
    weights and ReduceLROnPlateau's counters are part of the backup."""
    whole = _fast_model()
    stops = _stateful_callbacks()
    fit(whole, 200, callbacks=[BackupAndRestore(tmp_path / "unused"), *stops])
    stopped = stops[0].stopped_epoch
    assert 4 < stopped < 199  # it stopped early, late enough to crash in between
    crash_at = stopped - 1  # EarlyStopping is waiting here: its count must survive the crash
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(_fast_model(), 200,
            callbacks=[_Crash(crash_at), BackupAndRestore(backup), *_stateful_callbacks()])
    saved = saving.read_header(backup / "latest.tw")["callbacks"]["EarlyStopping_0"]
    assert saved["wait"] >= 1 and saved["best_weights"]["__arrays__"] == len(whole.get_weights())
    resumed, again = _fast_model(), _stateful_callbacks()
    history = fit(resumed, 200, callbacks=[BackupAndRestore(backup), *again])
    assert again[0].stopped_epoch == stopped and history.history == whole.history.history
    assert float(resumed.optimizer.learning_rate) == float(whole.optimizer.learning_rate)
    assert same_weights(whole, resumed)  # both restored the same best epoch's weights


def test_backup_with_a_damaged_callback_state_starts_that_callback_afresh(tmp_path):
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError):
        fit(full_model(), 6, callbacks=[_Crash(2), BackupAndRestore(backup, delete_checkpoint=False),
                                        *_stateful_callbacks()])
    header, tensors = saving.read_container(backup / "latest.tw")
    header["callbacks"]["ReduceLROnPlateau_0"] = {"best": "not a number", "wait": None}
    saving.write_container(backup / "latest.tw", header, tensors)
    callbacks = _stateful_callbacks()
    with pytest.warns(RuntimeWarning, match="could not restore the state of ReduceLROnPlateau_0"):
        fit(full_model(), 6, callbacks=[BackupAndRestore(backup), *callbacks])
    assert callbacks[0].best is not None  # EarlyStopping's state came back


def test_precision_is_kept_in_the_model_file(tmp_path):
    model = full_model()
    model.compile(optimizer="adam", loss="mse", precision="bf16-mixed")
    fit(model, 1)
    assert reload(model, tmp_path).precision == "bf16-mixed"
    model.compile(optimizer="adam", loss="mse")  # compile without precision keeps it, as fit does
    assert model.precision == "bf16-mixed"
