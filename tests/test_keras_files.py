"""Keras ``.keras`` and ``.h5`` files: read exactly, written so Keras reads them, never run.

The fixtures in ``tests/fixtures/keras/`` were made by real Keras 3 (torch backend) with
``tests/fixtures/keras/make_fixtures.py``; ``expected.json`` holds Keras's own predictions.
The round trip through Keras runs Keras in a subprocess (skipped when Keras is not installed).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainwell import keras_files
from trainwell._errors import ModelFileError
from trainwell.cli import main as cli_main
from trainwell.datasets import load_mnist, load_titanic, load_wages
from trainwell.layers import BatchNormalization, Dense, Dropout, Input, Normalization
from trainwell.models import Model, Sequential, load_model, model_from_json
from trainwell.optimizers import Adam

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
MARKER = "PWNED_BY_KERAS_FILE"
DATA = {"wages": load_wages, "titanic": load_titanic, "mnist": load_mnist, "layers": load_titanic}
OPTIMIZERS = {"wages": "Adam", "titanic": "SGD", "mnist": "SGD", "layers": "RMSprop"}


def _rows(name: str) -> np.ndarray:
    return DATA[name]()[0][: EXPECTED["rows"]]


def _keras_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("keras") is not None


# ------------------------------------------------------------------------------------------ reading
@pytest.mark.parametrize("suffix", ["keras", "h5"])
@pytest.mark.parametrize("name", ["wages", "titanic", "mnist", "layers"])
def test_course_models_predict_as_keras_did(name, suffix):
    model = load_model(FIXTURES / f"{name}.{suffix}")
    expected = np.array(EXPECTED["predictions"][name], dtype=np.float32)
    np.testing.assert_allclose(model.predict(_rows(name), verbose=0), expected, rtol=0, atol=1e-6)
    assert type(model.optimizer).__name__ == OPTIMIZERS[name]
    assert model.optimizer.iterations > 0  # the saved state came along, not a fresh optimizer


def test_compile_config_and_optimizer_state_are_carried_over():
    model = load_model(FIXTURES / "wages.keras")
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    assert type(model.loss).__name__ == "MeanSquaredError"
    with zipfile.ZipFile(FIXTURES / "wages.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        saved = [np.asarray(weights[f"optimizer/vars/{i}"]) for i in range(2 + 2 * 6)]
    tensors, meta = model.optimizer.export_state()
    assert meta["iterations"] == int(saved[0])
    for i in range(6):  # Keras keeps (momentum, velocity) per variable; torch's exp_avg, exp_avg_sq
        np.testing.assert_array_equal(tensors[f"param_{i}/exp_avg"].numpy(), saved[2 + 2 * i])
        np.testing.assert_array_equal(tensors[f"param_{i}/exp_avg_sq"].numpy(), saved[3 + 2 * i])
    x, y = load_wages()
    history = model.fit(x, y, epochs=1, verbose=0)  # and training continues
    assert np.isfinite(history.history["loss"][0])


def test_sgd_momentum_is_converted_between_the_two_conventions():
    model = load_model(FIXTURES / "titanic.h5")
    with h5py.File(FIXTURES / "titanic.h5", "r") as handle:
        group = handle["optimizer_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        keras_momentum = np.asarray(group[names[2]])
        lr = float(np.asarray(group[names[1]]))
    buffer = model.optimizer.export_state()[0]["param_0/momentum_buffer"].numpy()
    np.testing.assert_allclose(buffer, -keras_momentum / lr, rtol=1e-6)  # Keras's m = -lr * torch's b


def test_normalization_statistics_and_layer_settings_are_read():
    model = load_model(FIXTURES / "layers.keras")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Normalization", "Dense", "BatchNormalization", "Activation", "Dropout", "Dense"]
    norm, dense, batchnorm = model.layers[0], model.layers[1], model.layers[2]
    x = load_titanic()[0]
    np.testing.assert_allclose(norm.mean.numpy(), x.mean(0), rtol=1e-4)
    assert norm.adapted and not dense.use_bias and model.layers[4].rate == pytest.approx(0.3)
    assert batchnorm.moving_variance.shape == (16,)
    assert type(model.layers[5].kernel_regularizer).__name__ == "L2"


def test_a_keras_convnet_predicts_as_keras_did():
    model = load_model(FIXTURES / "convnet.keras")
    assert [type(layer).__name__ for layer in model.layers] == [
        "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    x = load_mnist()[0][: EXPECTED["rows"]].reshape(-1, 28, 28, 1)
    expected = np.array(EXPECTED["predictions"]["convnet"], dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=0, atol=1e-5)
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.iterations > 0


def test_functional_model_predicts_as_keras_did():
    # Keras compiled it without training: its optimizer holds no slots yet, so it starts fresh, silently.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_model(FIXTURES / "functional.keras")
    assert isinstance(model, Model) and type(model.optimizer).__name__ == "Adam"
    assert model.optimizer.iterations == 0
    expected = np.array(EXPECTED["predictions"]["functional"], dtype=np.float32)
    np.testing.assert_allclose(model.predict(_rows("wages"), verbose=0), expected, atol=1e-6)


def _keras2_functional_config() -> dict:
    """Keras 2's list form of a functional graph (``inbound_nodes`` as [layer, node, tensor, kwargs])."""
    dense = {"units": 1, "activation": "linear", "use_bias": True}
    return {"class_name": "Functional", "config": {
        "name": "k2", "layers": [
            {"class_name": "InputLayer", "name": "a",
             "config": {"batch_input_shape": [None, 2], "dtype": "float32", "name": "a"},
             "inbound_nodes": []},
            {"class_name": "InputLayer", "name": "b",
             "config": {"batch_input_shape": [None, 3], "dtype": "float32", "name": "b"},
             "inbound_nodes": []},
            {"class_name": "Concatenate", "name": "joined", "config": {"name": "joined", "axis": -1},
             "inbound_nodes": [[["a", 0, 0, {}], ["b", 0, 0, {}]]]},
            {"class_name": "Dense", "name": "out", "config": {"name": "out", **dense},
             "inbound_nodes": [[["joined", 0, 0, {}]]]}],
        "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": [["out", 0, 0]]}}


def test_keras_2_functional_configs_are_read():
    model = model_from_json(json.dumps(_keras2_functional_config()))
    assert isinstance(model, Model) and [t.shape for t in model.inputs] == [(None, 2), (None, 3)]
    assert model.predict([np.ones((4, 2)), np.ones((4, 3))], verbose=0).shape == (4, 1)


@pytest.mark.parametrize("edit, fragment", [
    (lambda c: c["layers"][3]["inbound_nodes"][0][0].__setitem__(2, 1), "trainwell layers have one output"),
    (lambda c: c["layers"][3]["inbound_nodes"][0][0].__setitem__(3, {"training": True}), "passes arguments"),
    (lambda c: c["layers"][3].__setitem__("inbound_nodes", [[["nowhere", 0, 0, {}]]]),
     "layer 'out' reads tensors that no layer makes"),
])
def test_bad_functional_graphs_are_refused_with_the_layer_named(edit, fragment):
    entry = _keras2_functional_config()
    edit(entry["config"])
    with pytest.raises(ModelFileError, match=fragment):
        model_from_json(json.dumps(entry))


def test_files_are_told_apart_by_content_not_suffix(tmp_path):
    renamed = tmp_path / "course_model.bin"
    renamed.write_bytes((FIXTURES / "wages.h5").read_bytes())
    assert keras_files.detect(renamed) == "h5"
    np.testing.assert_allclose(load_model(renamed).predict(_rows("wages"), verbose=0),
                               EXPECTED["predictions"]["wages"], atol=1e-6)


@pytest.mark.parametrize("name", ["wages.weights.h5", "wages_legacy_weights.h5", "wages.keras", "wages.h5"])
def test_keras_weight_files_load_into_a_trainwell_model(name):
    model = Sequential([Input(shape=(9,)), Dense(50, activation="relu"), Dense(32, activation="relu"),
                        Dense(1)])
    model.load_weights(FIXTURES / name)  # other layer names than Keras's: matched by position
    np.testing.assert_allclose(model.predict(_rows("wages"), verbose=0), EXPECTED["predictions"]["wages"],
                               atol=1e-6)


def test_weights_that_do_not_fit_are_named():
    model = Sequential([Input(shape=(9,)), Dense(5), Dense(1)])
    with pytest.raises(ModelFileError, match="3 layers"):
        model.load_weights(FIXTURES / "wages_legacy_weights.h5")


# ------------------------------------------------------------------------------------------ hostile files
@pytest.mark.parametrize("name, fragment", [
    ("lambda.keras", "Lambda layer holds Python code"),
    ("lambda.h5", "Lambda layer holds Python code"),
    ("custom_module.keras", "module 'evil_package.layers'"),
    ("registered.keras", "registered as 'evil_package>Dense'"),
    ("pickle_attr.h5", "never decodes objects"),
])
def test_hostile_files_are_refused_without_running_anything(tmp_path, monkeypatch, name, fragment):
    monkeypatch.chdir(tmp_path)  # the hostile code would write its marker here
    before = set(sys.modules)
    with pytest.raises(ModelFileError, match=fragment) as info:
        load_model(FIXTURES / name)
    assert name in str(info.value)
    assert not (tmp_path / MARKER).exists() and list(tmp_path.iterdir()) == []
    assert not [m for m in set(sys.modules) - before if m.split(".")[0] in ("keras", "pickle", "marshal")]


def test_the_lambda_error_names_the_layer_and_what_to_do():
    with pytest.raises(ModelFileError) as info:
        load_model(FIXTURES / "lambda.keras")
    message = str(info.value)
    assert "'lambda'" in message and "load_weights" in message and "Rebuild that layer" in message


def _archive(tmp_path, edit_config=None, extra=None, weights=None, name="edited.keras"):
    with zipfile.ZipFile(FIXTURES / "wages.keras") as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    if edit_config is not None:
        config = json.loads(entries["config.json"])
        edit_config(config)
        entries["config.json"] = json.dumps(config).encode()
    if weights is not None:
        entries["model.weights.h5"] = weights
    entries.update(extra or {})
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for entry, data in entries.items():
            target.writestr(entry, data)
    return path


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", (FIXTURES / "expected.json").read_text())
        with archive.open("model.weights.h5", "w", force_zip64=True) as entry:
            block = bytes(2**20)
            for _ in range(200):  # 200 MiB of zeros deflate to about 200 KB
                entry.write(block)
    assert path.stat().st_size < 2**20
    with pytest.raises(ModelFileError, match="zip bomb"):
        load_model(path)


@pytest.mark.parametrize("suffix", ["keras", "h5"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_files_are_refused(tmp_path, suffix, keep):
    data = (FIXTURES / f"wages.{suffix}").read_bytes()
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError):
        load_model(path)


def test_a_shape_of_10_to_the_12_is_refused_before_allocating(tmp_path):
    def huge(config):
        config["config"]["layers"][1]["config"]["units"] = 10**12

    with pytest.raises(ModelFileError, match="max_params"):
        load_model(_archive(tmp_path, huge))


def test_a_dataset_declaring_10_to_the_12_elements_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.h5"
    path.write_bytes((FIXTURES / "wages.h5").read_bytes())
    with h5py.File(path, "a") as handle:
        group = handle["model_weights/dense"]
        name = group.attrs["weight_names"][0]
        name = name.decode() if isinstance(name, bytes) else name
        del group[name]
        group.create_dataset(name, shape=(10**6, 10**6), dtype="f4", chunks=(1, 1024))  # no data stored
    with pytest.raises(ModelFileError, match="declares shape"):
        load_model(path)


def test_links_out_of_the_file_are_refused(tmp_path):
    path = tmp_path / "linked.h5"
    path.write_bytes((FIXTURES / "wages.h5").read_bytes())
    with h5py.File(path, "a") as handle:
        del handle["model_weights/dense"]
        handle["model_weights/dense"] = h5py.ExternalLink("/etc/hostname", "/")
    with pytest.raises(ModelFileError, match="ExternalLink"):
        load_model(path)


@pytest.mark.parametrize("extra, fragment", [
    ({"payload.py": b"import os"}, "unexpected archive entry 'payload.py'"),
    ({"archive/data.pkl": b"\x80\x04N."}, "never unpickles"),
])
def test_unexpected_archive_entries_are_refused(tmp_path, extra, fragment):
    with pytest.raises(ModelFileError, match=fragment):
        load_model(_archive(tmp_path, extra=extra))


@pytest.mark.parametrize("edit, fragment", [
    (lambda c: c["config"]["layers"][1]["config"].update(kernel_constraint={"class_name": "MaxNorm"}),
     "kernel_constraint"),
    (lambda c: c["config"]["layers"][1].update(class_name="LSTM"), "'LSTM' is not supported"),
    (lambda c: c["config"]["layers"][1]["config"].update(dtype="float64"), "dtype 'float64'"),
    (lambda c: c["config"]["layers"][1]["config"].update(lora_rank=4), "lora_rank=4"),
    (lambda c: c.update(class_name="MyModel"), "'MyModel'"),
])
def test_unsupported_settings_are_refused_with_their_name(tmp_path, edit, fragment):
    with pytest.raises(ModelFileError, match=fragment):
        load_model(_archive(tmp_path, edit))


def test_an_unknown_optimizer_loads_uncompiled_with_a_warning(tmp_path):
    def edit(config):
        config["compile_config"]["optimizer"]["class_name"] = "Lion"
        config["compile_config"]["optimizer"]["registered_name"] = None

    with pytest.warns(UserWarning, match="loads uncompiled"):
        model = load_model(_archive(tmp_path, edit))
    assert model.optimizer is None
    np.testing.assert_allclose(model.predict(_rows("wages"), verbose=0), EXPECTED["predictions"]["wages"],
                               atol=1e-6)


_MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("splice"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
)


def _mutate(data: bytes, mutation) -> bytes:
    kind, offset, *args = mutation
    i = offset % (len(data) + 1)
    if kind == "truncate":
        return data[:i]
    if kind == "flip":
        return data if i == len(data) else data[:i] + bytes([data[i] ^ args[0]]) + data[i + 1:]
    return data[:i] + args[0] + data[i + len(args[0]):]


@pytest.mark.timeout(120)
@settings(deadline=None, max_examples=150, database=None)
@given(mutations=st.lists(_MUTATIONS, min_size=1, max_size=3))
def test_damaged_keras_archives_raise_only_model_file_errors(tmp_path_factory, mutations):
    # In-process: the zip's CRC-32 checks catch damage before any byte reaches the HDF5 library.
    name = "wages.keras"
    data = (FIXTURES / name).read_bytes()
    for mutation in mutations:
        data = _mutate(data, mutation)
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    try:
        model = load_model(path, compile=False)
    except ModelFileError:
        return
    assert model.predict(np.zeros((2, model.input_shape[1]), np.float32), verbose=0).shape[0] == 2


_HDF5_FUZZ = textwrap.dedent("""
    import random, sys, warnings
    from trainwell._errors import ModelFileError
    from trainwell.models import load_model
    warnings.simplefilter("ignore")
    source, target, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng, original = random.Random(seed), open(source, "rb").read()
    for _ in range(count):
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data) + 1)
            if rng.random() < 0.5 and i < len(data):
                data[i] ^= rng.randint(1, 255)
            else:
                n = rng.randint(1, 16)
                data[i:i + n] = bytes(rng.randrange(256) for _ in range(n))
        open(target, "wb").write(data)
        try:
            load_model(target, compile=False)
        except ModelFileError:
            pass
    print("ok")
""")


def _hdf5_subprocess(args, timeout):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", _HDF5_FUZZ, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow
def test_damaged_hdf5_files_raise_only_model_file_errors(tmp_path):
    # In a subprocess: the HDF5 C library can hang on some damaged files (next test), which no
    # Python timeout can interrupt. A fixed seed whose 300 damaged files do not hit that hang.
    proc = _hdf5_subprocess([FIXTURES / "titanic.h5", tmp_path / "fuzz.h5", 0, 300], timeout=240)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


_HDF5_HANG = ("known limitation: libhdf5 loops forever reading a variable-length string attribute whose "
              "global-heap reference is damaged (found by fuzzing); no Python timeout can interrupt it")
_LOAD_WHEN_READY = textwrap.dedent("""
    import sys
    from trainwell._errors import ModelFileError
    from trainwell.models import load_model
    print("ready", flush=True)
    try:
        load_model(sys.argv[1])
    except ModelFileError:
        pass
""")


@pytest.mark.slow
@pytest.mark.xfail(reason=_HDF5_HANG, raises=subprocess.TimeoutExpired, strict=True)
def test_a_damaged_hdf5_heap_does_not_hang_the_loader():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _LOAD_WHEN_READY, str(FIXTURES / "corrupt_heap_hang.h5")],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"  # imports done: the clock starts at the load
        proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# ------------------------------------------------------------------------------------------ writing
def _trained_model():
    x, y = load_wages()
    norm = Normalization()
    norm.adapt(x)
    model = Sequential([Input(shape=(9,)), norm, Dense(16, activation="relu"), BatchNormalization(),
                        Dropout(0.2), Dense(1)])
    model.compile(optimizer=Adam(0.01), loss="mean_squared_error", metrics=["mae"])
    model.fit(x, y, epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_trainwell_writes_keras_files_it_reads_back_exactly(tmp_path, suffix):
    model = _trained_model()
    path = tmp_path / f"model{suffix}"
    model.save(path)
    assert keras_files.detect(path) == suffix.strip(".")
    loaded = load_model(path)
    x = load_wages()[0]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.optimizer.iterations == model.optimizer.iterations
    saved, meta = model.optimizer.export_state()
    again, meta_again = loaded.optimizer.export_state()
    assert meta_again["iterations"] == meta["iterations"]
    for key, value in saved.items():
        np.testing.assert_array_equal(again[key].numpy(), value.numpy())


def test_tw_stays_the_native_format(tmp_path):
    model = _trained_model()
    model.save(tmp_path / "model.tw")
    assert (tmp_path / "model.tw").read_bytes().startswith(b"TRAINWELL")
    assert load_model(tmp_path / "model.tw").history.history["loss"] == model.history.history["loss"]


@pytest.mark.parametrize("name", ["w.weights.h5", "w.h5"])
def test_save_weights_in_keras_layouts_round_trips(tmp_path, name):
    model = _trained_model()
    model.save_weights(tmp_path / name)
    other = Sequential([Input(shape=(9,)), Normalization(), Dense(16, activation="relu"),
                        BatchNormalization(),
                        Dropout(0.2), Dense(1)])
    other.load_weights(tmp_path / name)
    x = load_wages()[0]
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_to_json_and_model_from_json_round_trip_the_architecture():
    model = _trained_model()
    text = model.to_json()
    config = json.loads(text)
    assert config["class_name"] == "Sequential"
    assert config["config"]["layers"][0]["class_name"] == "InputLayer"
    rebuilt = model_from_json(text)
    assert [type(la).__name__ for la in rebuilt.layers] == [type(la).__name__ for la in model.layers]
    assert rebuilt.count_params() == model.count_params()
    with zipfile.ZipFile(FIXTURES / "titanic.keras") as archive:  # Keras's own JSON
        keras_json = archive.read("config.json").decode()
    assert model_from_json(keras_json).count_params() == load_model(FIXTURES / "titanic.keras").count_params()
    with pytest.raises(ModelFileError, match="Lambda"):
        model_from_json(json.dumps({"class_name": "Sequential", "config": {"layers": [
            {"class_name": "Lambda", "config": {"name": "l", "function": "x"}}]}}))


def test_cli_converts_in_every_direction_and_describes_keras_files(tmp_path, capsys):
    steps = [(FIXTURES / "titanic.h5", tmp_path / "a.tw"), (tmp_path / "a.tw", tmp_path / "b.keras"),
             (tmp_path / "b.keras", tmp_path / "c.h5"), (tmp_path / "c.h5", tmp_path / "d.tw")]
    for source, target in steps:
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["convert", str(source), "-o", str(target)])
        assert exit_info.value.code in (0, None)
    capsys.readouterr()
    np.testing.assert_allclose(load_model(tmp_path / "d.tw").predict(_rows("titanic"), verbose=0),
                               EXPECTED["predictions"]["titanic"], atol=1e-6)
    with pytest.raises(SystemExit):
        cli_main(["summary", str(FIXTURES / "layers.h5")])
    out = capsys.readouterr().out
    assert "Keras HDF5 file" in out and "batch_normalization (BatchNormalization)" in out
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", str(FIXTURES / "lambda.keras"), "-o", str(tmp_path / "x.tw")])
    assert exit_info.value.code == 1 and "Lambda" in capsys.readouterr().err
    assert not (tmp_path / "x.tw").exists()


_KERAS_PREDICTS = textwrap.dedent("""
    import os, sys, json
    os.environ["KERAS_BACKEND"] = "torch"
    import numpy as np, keras
    folder, out = sys.argv[1], {}
    for name in sys.argv[2:]:
        model = keras.saving.load_model(os.path.join(folder, name + ".keras"))
        data = np.load(os.path.join(folder, name + ".npz"))
        x = [data[k] for k in sorted(data.files)]
        out[name] = model.predict(x[0] if len(x) == 1 else x, verbose=0).tolist()
        if getattr(model, "optimizer", None) is not None:
            out[name + ":iterations"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    print(json.dumps(out))
""")


def _keras_predictions(folder, models: dict) -> dict:
    """Each trainwell model of ``models`` (name -> (model, x)) saved as .keras and predicted by Keras."""
    for name, (model, x) in models.items():
        model.save(folder / f"{name}.keras")
        np.savez(folder / f"{name}.npz", *(x if isinstance(x, list) else [x]))
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _KERAS_PREDICTS, str(folder), *models], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not _keras_installed(), reason="keras is not installed (optional 'keras' extra)")
def test_trainwell_convnets_load_in_keras_with_the_same_predictions(tmp_path):
    from trainwell import layers

    rng = np.random.default_rng(0)
    image = Sequential([Input((12, 12, 3)), layers.Rescaling(0.5, offset=-1.0),
                        layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                        layers.Conv2D(6, 2, strides=2), layers.LayerNormalization(), layers.ReLU(),
                        layers.ZeroPadding2D(1), layers.AveragePooling2D(2), layers.Flatten(),
                        layers.Dense(3, activation="softmax")])
    image.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x_image = rng.normal(size=(16, 12, 12, 3)).astype("float32")
    image.fit(x_image, rng.integers(0, 3, 16), epochs=1, verbose=0)
    text = Sequential([Input((7,)), layers.Embedding(20, 4), layers.Conv1D(5, 3, activation="tanh"),
                       layers.GlobalMaxPooling1D(), layers.Dense(1)])
    x_text = rng.integers(0, 20, (16, 7)).astype("float32")
    text.predict(x_text, verbose=0)
    found = _keras_predictions(tmp_path, {"image": (image, x_image), "text": (text, x_text)})
    for name, model, x in [("image", image, x_image), ("text", text, x_text)]:
        np.testing.assert_allclose(np.array(found[name]), model.predict(x, verbose=0), atol=1e-5)
        back = load_model(tmp_path / f"{name}.keras")
        np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.slow
@pytest.mark.skipif(not _keras_installed(), reason="keras is not installed (optional 'keras' extra)")
@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_trainwell_functional_models_load_in_keras_with_the_same_predictions(tmp_path, suffix):
    from trainwell import layers

    rng = np.random.default_rng(0)
    a, b = Input((6,), name="a"), Input((4,), name="b")
    h1 = layers.Dense(5, activation="relu")(a)
    h2 = layers.Dense(3, activation="tanh")(b)
    h3 = layers.Dense(5)(layers.Concatenate()([h1, h2]))
    model = Model([a, b], layers.Dense(2)(layers.Add()([h1, h3])))
    model.compile(optimizer="adam", loss="mse")
    x = [rng.normal(size=(16, 6)).astype("float32"), rng.normal(size=(16, 4)).astype("float32")]
    model.fit(x, rng.normal(size=(16, 2)).astype("float32"), epochs=2, verbose=0)
    residual_in = Input((8,))
    hidden = layers.LayerNormalization()(layers.Dense(8, activation="relu")(residual_in))
    residual = Model(residual_in, layers.Dense(1)(layers.Add()([residual_in, hidden])))
    x_residual = rng.normal(size=(16, 8)).astype("float32")
    found = _keras_predictions(tmp_path, {"two_inputs": (model, x), "residual": (residual, x_residual)})
    np.testing.assert_allclose(np.array(found["two_inputs"]), model.predict(x, verbose=0), atol=1e-5)
    assert found["two_inputs:iterations"] == model.optimizer.iterations  # Adam's state went along
    np.testing.assert_allclose(np.array(found["residual"]), residual.predict(x_residual, verbose=0),
                               atol=1e-5)
    model.save(tmp_path / f"again.{suffix}")
    back = load_model(tmp_path / f"again.{suffix}")
    assert isinstance(back, Model) and back.optimizer.iterations == model.optimizer.iterations
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


_KERAS_ROUND_TRIP = textwrap.dedent("""
    import os, sys, json
    os.environ["KERAS_BACKEND"] = "torch"
    import numpy as np, keras, warnings
    folder = sys.argv[1]
    x = np.load(os.path.join(folder, "x.npy"))
    out = {}
    for name in ("tw.keras", "tw.h5"):
        model = keras.saving.load_model(os.path.join(folder, name))
        out[name] = model.predict(x, verbose=0).tolist()
        out[name + ":iterations"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model = keras.saving.load_model(os.path.join(folder, "tw.keras"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(os.path.join(folder, "tw.weights.h5"))
    out["load_weights_warnings"] = [str(w.message) for w in caught]
    out["weights"] = model.predict(x, verbose=0).tolist()
    model = keras.saving.load_model(os.path.join(folder, "tw.keras"))
    model.save(os.path.join(folder, "keras.keras"))
    arch = keras.models.model_from_json(open(os.path.join(folder, "tw.json")).read())
    out["json_params"] = arch.count_params()
    print(json.dumps(out))
""")


@pytest.mark.slow
@pytest.mark.skipif(not _keras_installed(), reason="keras is not installed (optional 'keras' extra)")
def test_round_trip_trainwell_keras_trainwell(tmp_path):
    model = _trained_model()
    x = load_wages()[0][:64]
    np.save(tmp_path / "x.npy", x)
    model.save(tmp_path / "tw.keras")
    model.save(tmp_path / "tw.h5")
    (tmp_path / "tw.json").write_text(model.to_json())
    model.save_weights(tmp_path / "tw.weights.h5")
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _KERAS_ROUND_TRIP, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = model.predict(x, verbose=0)
    for name in ("tw.keras", "tw.h5"):
        np.testing.assert_allclose(np.array(result[name]), ours, atol=1e-5, rtol=1e-6)
        assert result[name + ":iterations"] == model.optimizer.iterations
    np.testing.assert_allclose(np.array(result["weights"]), ours, atol=1e-5, rtol=1e-6)
    assert result["load_weights_warnings"] == []  # the optimizer's variables are in the weights file too
    assert result["json_params"] == model.count_params() + 1  # Keras counts Normalization's `count`
    back = load_model(tmp_path / "keras.keras")  # trainwell -> .keras -> Keras -> .keras -> trainwell
    np.testing.assert_array_equal(back.predict(x, verbose=0), ours)
    assert back.optimizer.iterations == model.optimizer.iterations


def test_cli_predict_takes_a_keras_file_and_the_features_as_they_are(tmp_path, capsys):
    import pandas as pd

    data = tmp_path / "rows.csv"
    pd.DataFrame(_rows("titanic"), columns=[f"f{i}" for i in range(10)]).to_csv(data, index=False)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", str(FIXTURES / "titanic.keras"), str(data), "-o", str(tmp_path / "out.csv")])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["prediction_0", "prediction_1"]
    np.testing.assert_allclose(out.to_numpy(), EXPECTED["predictions"]["titanic"], atol=1e-6)


def test_a_keras_2_course_file_opens_and_its_unknown_optimizer_layout_starts_fresh():
    # Standalone Keras 2.2's layout (the course's model_file.h5): no InputLayer, `lr`, `kernel:0`
    # names, and optimizer weights trainwell cannot attribute to parameters with certainty.
    with pytest.warns(UserWarning, match="optimizer starts fresh"):
        model = load_model(FIXTURES / "course_keras2.h5")
    np.testing.assert_allclose(model.predict(_rows("wages"), verbose=0), EXPECTED["predictions"]["wages"],
                               atol=1e-6)
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.learning_rate == 0.01
    assert model.optimizer.iterations == 0 and model.input_shape == (None, 9)


def test_a_layer_without_a_keras_mapping_suggests_tw(tmp_path, monkeypatch):
    from trainwell.keras_files import configs

    monkeypatch.delitem(configs.LAYERS, "Dropout")  # as a layer added to trainwell before its mapping
    model = Sequential([Input(shape=(3,)), Dense(2), Dropout(0.1)])
    with pytest.raises(ModelFileError, match=r"no Keras file mapping yet; save the model as \.tw"):
        model.save(tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []


def test_schedules_function_losses_and_metric_objects_are_read():
    model = load_model(FIXTURES / "compile_variants.keras")
    config = model.optimizer.get_config()
    assert config["learning_rate"]["class_name"] == "ExponentialDecay"
    assert type(model.loss).__name__ == "MeanSquaredError" and model.optimizer.iterations == 1
    assert model.metrics_identifiers[1] == "mse"
    assert model.metrics_identifiers[0]["class_name"] == "MeanAbsoluteError"


def test_a_custom_loss_function_is_refused_and_compile_false_skips_it(tmp_path):
    def custom_loss(config):
        config["compile_config"]["loss"] = {"module": "__main__", "class_name": "function",
                                            "config": "mean_squared_error", "registered_name": "function"}

    path = _archive(tmp_path, custom_loss)
    with pytest.raises(ModelFileError, match=r"module '__main__'.*compile=False"):
        load_model(path)
    model = load_model(path, compile=False)
    assert model.optimizer is None
    np.testing.assert_allclose(model.predict(_rows("wages"), verbose=0), EXPECTED["predictions"]["wages"],
                               atol=1e-6)


def _json_values():
    words = st.sampled_from(["Lambda", "keras.layers", "function", "__main__"])
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**13), st.floats(allow_nan=True),
                       st.text(max_size=12), words)
    containers = lambda inner: st.one_of(  # noqa: E731
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3))
    return st.recursive(leaves, containers, max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


_WAGES_CONFIG = json.loads(zipfile.ZipFile(FIXTURES / "wages.keras").read("config.json"))
_CONFIG_PATHS = [p for p in _paths(_WAGES_CONFIG) if p]


@pytest.mark.timeout(120)
@settings(deadline=None, max_examples=200, database=None)
@given(edits=st.lists(st.tuples(st.sampled_from(_CONFIG_PATHS), _json_values()), min_size=1, max_size=3))
def test_configs_with_any_values_raise_only_model_file_errors(tmp_path_factory, edits):
    """The config, not the bytes: any field replaced by any JSON value loads or fails cleanly."""
    config = json.loads(json.dumps(_WAGES_CONFIG))
    for path, value in edits:
        node = config
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed that path
    folder = tmp_path_factory.mktemp("config-fuzz")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "loads uncompiled" is a fine outcome
            model = load_model(_archive(folder, lambda c: (c.clear(), c.update(config))))
    except ModelFileError:
        return
    if model.input_shape is not None:
        assert model.predict(np.zeros((2, *model.input_shape[1:]), np.float32), verbose=0).shape[0] == 2


def test_a_tf_keras_2_file_opens_with_its_compile_settings():
    model = load_model(FIXTURES / "tf_keras2.h5")  # Custom>SGD, jit_compile, [["accuracy"]], kernel:0 names
    np.testing.assert_allclose(model.predict(_rows("titanic"), verbose=0), EXPECTED["predictions"]["titanic"],
                               atol=1e-6)
    assert type(model.optimizer).__name__ == "SGD" and model.optimizer.momentum == 0.9
    assert model.metrics_identifiers == ["accuracy"] and model.optimizer.iterations == 0


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_frozen_uncompiled_and_unbuilt_models_round_trip(tmp_path, suffix):
    frozen = Sequential([Input(shape=(4,)), Dense(3, trainable=False), Dense(1)])
    frozen.compile(optimizer="adam", loss="mse")
    frozen.fit(np.ones((8, 4), np.float32), np.ones(8, np.float32), epochs=1, verbose=0)
    frozen.save(tmp_path / f"frozen{suffix}")
    back = load_model(tmp_path / f"frozen{suffix}")
    assert not back.layers[0].trainable and back.layers[1].trainable
    assert back.optimizer.iterations == 1 and len(back.optimizer.export_state()[0]) == 6  # 2 weights x 3
    plain = Sequential([Input(shape=(4,)), Dense(2)])
    plain.save(tmp_path / f"plain{suffix}")
    assert load_model(tmp_path / f"plain{suffix}").optimizer is None
    unbuilt = Sequential([Dense(2), Dense(1)])
    unbuilt.save(tmp_path / f"unbuilt{suffix}")
    again = load_model(tmp_path / f"unbuilt{suffix}")
    assert not again.built and [la.units for la in again.layers] == [2, 1]


def test_a_normalization_given_its_statistics_in_the_config_is_read():
    model = load_model(FIXTURES / "normalization_constants.keras")
    x = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, 4.0]], np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), [[0, 0, 0], [1, -1, 1]], atol=1e-7)
    assert model.layers[0].adapted


def test_normalization_constants_for_10_to_the_12_features_are_refused(tmp_path):
    with zipfile.ZipFile(FIXTURES / "normalization_constants.keras") as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    config = json.loads(entries["config.json"])
    config["config"]["layers"][0]["config"]["batch_shape"] = [None, 10**12]
    config["config"]["layers"][1]["config"]["mean"] = 0.0
    entries["config.json"] = json.dumps(config).encode()
    path = tmp_path / "huge.keras"
    with zipfile.ZipFile(path, "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)
    with pytest.raises(ModelFileError, match="nothing was allocated"):
        load_model(path)


def test_a_compressed_hdf5_dataset_that_would_inflate_hugely_is_refused(tmp_path):
    path = tmp_path / "bomb.h5"
    path.write_bytes((FIXTURES / "wages.h5").read_bytes())
    with h5py.File(path, "a") as handle:
        group = handle["model_weights/dense"]
        name = group.attrs["weight_names"][0]
        name = name.decode() if isinstance(name, bytes) else name
        del group[name]
        group.create_dataset(name, shape=(2**21, 10), dtype="f4", chunks=(2**16, 10), compression="gzip",
                             data=np.zeros((2**21, 10), np.float32))  # 80 MiB of zeros, stored in ~100 KB
    assert path.stat().st_size < 2**21
    with pytest.raises(ModelFileError, match="decompression bomb"):
        load_model(path)


def test_weighted_metrics_round_trip_and_a_several_output_file_loads_without_them(tmp_path):
    from trainwell import layers

    single = Sequential([Input((3,)), layers.Dense(1)])
    single.compile(optimizer="adam", loss="mse", metrics=["mae"], weighted_metrics=["mae"])
    single.save(tmp_path / "single.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "single.keras").read("config.json"))
    assert config["compile_config"]["weighted_metrics"]
    back = load_model(tmp_path / "single.keras")
    assert back.weighted_metrics_identifiers and back.metrics_identifiers

    a = Input((3,), name="a")
    h = layers.Dense(4, activation="relu")(a)
    two = Model(a, [layers.Dense(1, name="p")(h), layers.Dense(1, name="q")(h)])
    two.compile(optimizer="adam", loss=["mse", "mse"])
    two.save(tmp_path / "two.keras")
    with zipfile.ZipFile(tmp_path / "two.keras") as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    config = json.loads(entries["config.json"])
    config["compile_config"]["weighted_metrics"] = ["mae"]  # as a Keras user may have compiled it
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "edited.keras", "w") as target:
        for entry, data in entries.items():
            target.writestr(entry, data)
    with pytest.warns(UserWarning, match="weighted_metrics of a model with several outputs"):
        loaded = load_model(tmp_path / "edited.keras")
    assert loaded.optimizer is not None and loaded.weighted_metrics_identifiers == []
    # trainwell reads back its own several-output file compiled: a loss per output (it once refused).
    again = load_model(tmp_path / "two.keras")
    assert again.metrics_names == ["loss", "p_loss", "q_loss"]
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    np.testing.assert_array_equal(again.predict(x, verbose=0)[0], two.predict(x, verbose=0)[0])


def _with_compile_config(source, target, **changes):
    """A copy of the .keras file ``source`` with keys of its compile config replaced."""
    with zipfile.ZipFile(source) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    config = json.loads(entries["config.json"])
    config["compile_config"].update(changes)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return target


def test_compile_settings_by_output_name_load_in_output_order(tmp_path):
    from trainwell import layers

    a = Input((3,), name="a")
    h = layers.Dense(4, activation="relu")(a)
    two = Model(a, [layers.Dense(1, name="p")(h), layers.Dense(2, activation="softmax", name="q")(h)])
    two.compile(optimizer="adam", loss=["mse", "categorical_crossentropy"], metrics=[["mae"], ["accuracy"]],
                loss_weights=[1.0, 0.5])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = [x[:, :1], np.eye(2, dtype="float32")[np.arange(16) % 2]]
    two.save(tmp_path / "two.keras")
    # Keras writes a compile(loss={...}) dict as it was given: by output name, in any order.
    mse = {"module": "keras.losses", "class_name": "MeanSquaredError",
           "config": {"name": "mean_squared_error", "reduction": "sum_over_batch_size"},
           "registered_name": None}
    edited = _with_compile_config(tmp_path / "two.keras", tmp_path / "by_name.keras",
                                  loss={"q": "categorical_crossentropy", "p": mse},
                                  metrics={"q": "accuracy", "p": ["mae"]}, loss_weights={"q": 0.5, "p": 1.0})
    loaded = load_model(edited)
    assert loaded.metrics_names == ["loss", "p_loss", "q_loss", "p_mae", "q_accuracy"]
    expected = two.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert got == pytest.approx(expected, rel=1e-6)
    assert expected["loss"] == pytest.approx(expected["p_loss"] + 0.5 * expected["q_loss"], rel=1e-5)
    # An output left out of the dicts has no loss there; a name that is no output loads uncompiled.
    partial = load_model(_with_compile_config(tmp_path / "two.keras", tmp_path / "partial.keras",
                                              loss={"p": "mse"}, metrics=None, loss_weights=None))
    assert partial.metrics_names == ["loss", "p_loss"]
    with pytest.warns(UserWarning, match=r"loads uncompiled.*\['price'\], which are not outputs"):
        wrong = load_model(_with_compile_config(tmp_path / "two.keras", tmp_path / "wrong.keras",
                                                loss={"price": "mse"}))
    assert wrong.optimizer is None
    # One output: the dict's one entry is the setting itself.
    single = Sequential([Input((3,)), layers.Dense(1, name="price")])
    single.compile(optimizer="adam", loss="mse")
    single.save(tmp_path / "single.keras")
    one = load_model(_with_compile_config(tmp_path / "single.keras", tmp_path / "one.keras",
                                          loss={"price": "mae"}, metrics={"price": ["mse"]}))
    assert one.compiled_loss.name == "mean_absolute_error" and one.metrics_identifiers == ["mse"]
