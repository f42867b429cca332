"""Tests for trainwell._container: the .tw container, atomic writes, plain safetensors files, errors.

The model glue on top of it (save_model, load_model, ...) is tested in test_saving_models.py.
"""

import ast
import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainwell import _container, _file_checks, _file_summary, saving
from trainwell._container import (
    FORMAT_VERSION,
    MAGIC,
    atomic_write_bytes,
    load_tensors,
    read_container,
    read_header,
    save_tensors,
    write_container,
)
from trainwell._errors import ConfigTypeError, ModelFileError, ModelFileNotFoundError

PREAMBLE = _container._PREAMBLE
HEADER = {
    "config": {"name": "sequential", "layers": [{"class_name": "Dense", "config": {"units": 3}}]},
    "history": {"loss": [0.75, 0.5, float("nan")], "val_loss": [1.0, 0.25, float("inf")]},
    "note": "café ∑",
}


def _tensors():
    """Small tensors of several dtypes, with awkward values (NaN, -0.0, inf, empty, 0-d)."""
    return {
        "dense/kernel": torch.tensor([[1.5, -0.0, float("nan")], [float("inf"), 2.0**-140, -3.25]]),
        "dense/bias": torch.arange(3, dtype=torch.float64) / 3,
        "optimizer/iterations": torch.tensor(12345678901, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "half": torch.tensor([0.1, 65504.0], dtype=torch.float16),
        "brain": torch.tensor([0.1, -2.5], dtype=torch.bfloat16),
        "empty": torch.zeros(0, 4),
    }


def _bits(t: torch.Tensor) -> bytes:
    return bytes(t.detach().contiguous().reshape(-1).view(torch.uint8).tolist())


def _assert_same_tensors(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert _bits(got[name]) == _bits(tensor), name


def _same_json(a, b) -> bool:
    """Equality that treats NaN as equal to NaN (the history of a diverged run holds NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    return a == b


def _craft(header_bytes: bytes, payload: bytes, *, version=FORMAT_VERSION, header_len=None, payload_len=None):
    """A container built by hand, with valid checksums unless told otherwise."""
    preamble = PREAMBLE.pack(
        MAGIC,
        version,
        len(header_bytes) if header_len is None else header_len,
        len(payload) if payload_len is None else payload_len,
        hashlib.sha256(header_bytes).digest(),
        hashlib.sha256(payload).digest(),
    )
    return preamble + header_bytes + payload


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.tw"
    write_container(path, HEADER, _tensors())
    return path


# ------------------------------------------------------------------------------------- round trip
def test_round_trip_is_bit_identical(model_file):
    header, tensors = read_container(model_file)
    _assert_same_tensors(tensors, _tensors())
    assert _same_json({k: header[k] for k in HEADER}, HEADER)
    assert header["format"] == "trainwell.model"
    assert header["format_version"] == FORMAT_VERSION
    assert isinstance(header["trainwell_version"], str) and header["trainwell_version"]
    assert list(tensors) == sorted(tensors)


def test_layout_matches_the_documented_spec(model_file):
    data = model_file.read_bytes()
    magic, version, header_len, payload_len, header_sha, payload_sha = PREAMBLE.unpack(data[:94])
    assert PREAMBLE.size == 94 and magic == b"TRAINWELL\x00" and version == 1
    assert len(data) == 94 + header_len + payload_len
    header_bytes, payload = data[94 : 94 + header_len], data[94 + header_len :]
    assert hashlib.sha256(header_bytes).digest() == header_sha
    assert hashlib.sha256(payload).digest() == payload_sha
    assert json.loads(header_bytes)["note"] == "café ∑"
    _assert_same_tensors(safetensors.torch.load(payload), _tensors())


def test_read_header_skips_the_tensors(model_file, monkeypatch):
    monkeypatch.setattr(safetensors.torch, "load", lambda data: pytest.fail("read_header parsed the tensors"))
    header = read_header(model_file)
    assert header["config"] == HEADER["config"] and header["format_version"] == FORMAT_VERSION


def test_tensors_are_moved_to_cpu_made_contiguous_and_unshared(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4).requires_grad_()
    tensors = {"transposed": base.t(), "row": base[1], "base": base, "again": base}
    write_container(tmp_path / "m.tw", {}, tensors)
    _, got = read_container(tmp_path / "m.tw")
    _assert_same_tensors(got, {k: v.detach() for k, v in tensors.items()})
    got["base"][0, 0] = 99.0  # loaded tensors own their memory
    assert got["again"][0, 0] == 0.0 and base[0, 0] == 0.0


def test_header_numpy_values_are_converted_and_reserved_keys_are_ours(tmp_path):
    header = {
        "loss": np.float32(0.5),
        "epochs": np.int64(3),
        "mean": np.array([1.0, 2.0]),
        "format_version": 99,
    }
    write_container(tmp_path / "m.tw", header, {})
    got = read_header(tmp_path / "m.tw")
    assert got["loss"] == 0.5 and got["epochs"] == 3 and got["mean"] == [1.0, 2.0]
    assert got["format_version"] == FORMAT_VERSION


def test_same_content_gives_the_same_bytes(tmp_path):
    write_container(tmp_path / "a.tw", HEADER, _tensors())
    write_container(tmp_path / "b.tw", HEADER, _tensors())
    assert (tmp_path / "a.tw").read_bytes() == (tmp_path / "b.tw").read_bytes()


def test_plain_safetensors_round_trip(tmp_path):
    save_tensors(tmp_path / "w.safetensors", _tensors(), metadata={"format": "trainwell.weights"})
    _assert_same_tensors(load_tensors(tmp_path / "w.safetensors"), _tensors())
    assert os.listdir(tmp_path) == ["w.safetensors"]


# ------------------------------------------------------------------------------------- no pickle
def test_file_holds_no_pickle(model_file):
    data = model_file.read_bytes()
    for marker in (
        b"\x80\x02",
        b"\x80\x03",
        b"\x80\x04\x95",
        b"\x80\x05\x95",
        b"_rebuild_tensor",
        b"torch._utils",
    ):
        assert marker not in data


def test_reading_and_writing_never_touch_pickle(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    for module, names in [
        (pickle, ["load", "loads", "Unpickler", "dump", "dumps", "Pickler"]),
        (torch, ["load", "save"]),
    ]:
        for name in names:
            monkeypatch.setattr(module, name, forbidden)
    write_container(tmp_path / "m.tw", HEADER, _tensors())
    save_tensors(tmp_path / "w.safetensors", _tensors())
    _assert_same_tensors(read_container(tmp_path / "m.tw")[1], _tensors())
    _assert_same_tensors(load_tensors(tmp_path / "w.safetensors"), _tensors())


@pytest.mark.parametrize("module", [_container, _file_checks, _file_summary, saving])
def test_module_imports_no_code_loading_serialiser(module):
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"pickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "torch.load" not in calls and "eval" not in calls and "exec" not in calls


# ------------------------------------------------------------------------------------- atomic writes
def test_failed_write_keeps_the_old_file_and_removes_the_temp_file(model_file, monkeypatch):
    before = model_file.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_container.os, "replace", broken_replace)
    with pytest.raises(ModelFileError, match="No space left on device"):
        write_container(model_file, {"other": 1}, {"w": torch.ones(2)})
    assert model_file.read_bytes() == before
    assert os.listdir(model_file.parent) == ["model.tw"]


def test_interrupted_write_removes_the_temp_file(model_file, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(_container.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(model_file, b"new")
    assert os.listdir(model_file.parent) == ["model.tw"]
    assert read_header(model_file)["note"] == HEADER["note"]


def test_written_file_gets_ordinary_permissions(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644


KILL_SCRIPT = r"""
import json, os, random, signal, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from trainwell._container import read_container, write_container

target, tries = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
random.seed(0)
# Two contents of about 2 MB each, random so that a torn mix of the two cannot pass for either.
contents = [
    ({"tag": tag, "history": {"loss": [float(tag)] * 100}},
     {"kernel": torch.from_numpy(rng.standard_normal((512, 1024)).astype(np.float32)),
      "step": torch.tensor([tag], dtype=torch.int64)})
    for tag in (0, 1)
]
write_container(target, *contents[0])
folder, prefix = os.path.dirname(target), "." + os.path.basename(target) + ".tmp"
report = {"tries": 0, "failures": [], "seen": [0, 0], "leftover_temp_files": 0}
for i in range(tries):
    pid = os.fork()
    if pid == 0:  # the writer: saves A, B, A, ... until killed
        try:
            k = i
            while True:
                k += 1
                write_container(target, *contents[k % 2])
        finally:
            os._exit(1)
    time.sleep(random.uniform(0.0, 0.06))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    report["tries"] += 1
    if not os.WIFSIGNALED(status):
        report["failures"].append(f"try {i}: the writer stopped by itself")
    try:
        header, tensors = read_container(target)
        tag = header["tag"]
        want_header, want = contents[tag]
        ok = all(header[k] == v for k, v in want_header.items()) and all(
            torch.equal(tensors[k], v) for k, v in want.items())
        report["seen"][tag] += 1
        if not ok:
            report["failures"].append(f"try {i}: content matches neither save")
    except Exception as exc:
        report["failures"].append(f"try {i}: {type(exc).__name__}: {exc}")
    leftovers = [n for n in os.listdir(folder) if n.startswith(prefix)]
    report["leftover_temp_files"] += len(leftovers)
    for name in leftovers:
        os.unlink(os.path.join(folder, name))
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL")
@pytest.mark.timeout(120)
def test_save_killed_at_random_moments_leaves_a_loadable_file(tmp_path):
    # One subprocess imports torch once, then forks a writer per try and SIGKILLs it after a
    # random delay: 30 kills cost about as much as one interpreter start.
    src = str(Path(_container.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    target = str(tmp_path / "model.tw")
    done = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, target, "30"],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"kill-during-save: {report['tries']} tries, {len(report['failures'])} failures, "
        f"contents seen {report['seen']}, {report['leftover_temp_files']} leftover temp files"
    )
    assert report["tries"] == 30
    assert report["failures"] == []
    assert sum(report["seen"]) == 30


# ------------------------------------------------------------------------------------- fuzzing
_ORIGINAL_HEADER = {"config": {"layers": [1, 2, 3]}, "history": {"loss": [0.5, 0.25]}}
_ORIGINAL_TENSORS = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor([7])}


_mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("splice"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("size"), st.sampled_from([14, 22]), st.integers(0, 2**64 - 1)),
)


def _mutate(data: bytes, mutation) -> bytes:
    kind, *args = mutation
    n = len(data) + 1  # offsets run to the end inclusive, and stay valid once data is empty
    if kind == "flip":
        i = args[0] % n
        if i == len(data):
            return data
        return data[:i] + bytes([data[i] ^ args[1]]) + data[i + 1 :]
    if kind == "truncate":
        return data[: args[0] % n]
    if kind == "append":
        return data + args[0]
    if kind == "splice":
        i = args[0] % n
        return data[:i] + args[1] + data[i + len(args[1]) :]
    if kind == "insert":
        i = args[0] % n
        return data[:i] + args[1] + data[i:]
    offset, value = args
    return data[:offset] + value.to_bytes(8, "little") + data[offset + 8 :]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A small valid container, its bytes and its header, written once for all fuzz examples."""
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.tw"
    write_container(path, _ORIGINAL_HEADER, _ORIGINAL_TENSORS)
    return path, path.read_bytes(), read_header(path)


@pytest.mark.timeout(60)
@settings(deadline=None, max_examples=300, database=None)
@given(mutations=st.lists(_mutations, min_size=1, max_size=3))
def test_damaged_files_raise_only_model_file_errors(original, mutations):
    path, data, header = original
    for mutation in mutations:
        data = _mutate(data, mutation)
    path.write_bytes(data)
    if data == original[1]:
        _assert_same_tensors(read_container(path)[1], _ORIGINAL_TENSORS)
        return
    # Every byte is covered by a size check or a checksum: any change must be caught.
    with pytest.raises(ModelFileError):
        read_container(path)
    try:
        assert read_header(path) == header  # possible when only the tensor bytes changed
    except ModelFileError:
        pass


# ------------------------------------------------------------------------------------- errors
def test_missing_file_is_a_file_not_found_error_with_a_suggestion(model_file):
    with pytest.raises(ModelFileNotFoundError, match="no such model file") as info:
        read_container(model_file.parent / "modle.tw")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert (
        "modle.tw" in str(info.value) and "Did you mean" in str(info.value) and "model.tw" in str(info.value)
    )


def _keras_archive(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")


def _torch_zip(path):
    torch.save({"w": torch.ones(2)}, path)  # pickle inside: only written here, never read back


def _torch_legacy(path):
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"TRAIN"), "truncated"),
        (lambda p: p.write_bytes(MAGIC + b"\x01\x00"), "truncated"),
        (_keras_archive, "Keras .keras archive"),
        (_torch_zip, "torch.save"),
        (_torch_legacy, "pickle"),
        (lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=4)), "never unpickles"),
        (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100)), "HDF5"),
        (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00" + bytes(100)), "NumPy"),
        (lambda p: save_tensors(p, {"w": torch.ones(2)}), "load_weights"),
        (lambda p: p.write_text('{"class_name": "Sequential"}'), "JSON"),
        (lambda p: p.write_bytes(b"\x00\x01garbage" * 20), "expected it to start with"),
    ],
    ids=[
        "empty",
        "magic-prefix",
        "short-preamble",
        "keras",
        "torch-zip",
        "torch-legacy",
        "pickle",
        "hdf5",
        "npy",
        "safetensors",
        "json",
        "garbage",
    ],
)
def test_foreign_or_short_files_are_named(tmp_path, make, fragment):
    path = tmp_path / "model.tw"
    make(path)
    with pytest.raises(ModelFileError, match=fragment) as info:
        read_container(path)
    assert str(path) in str(info.value)
    with pytest.raises(ModelFileError, match=fragment):
        read_header(path)


def _corrupt(model_file, offset_from_end=None, offset=None):
    data = bytearray(model_file.read_bytes())
    i = len(data) - offset_from_end if offset is None else offset
    data[i] ^= 0xFF
    model_file.write_bytes(bytes(data))


def test_header_corruption_names_the_header(model_file):
    _corrupt(model_file, offset=PREAMBLE.size + 5)
    with pytest.raises(ModelFileError, match="JSON header fails its SHA-256 checksum"):
        read_container(model_file)


def test_payload_corruption_names_the_tensor_data(model_file):
    _corrupt(model_file, offset_from_end=3)
    with pytest.raises(ModelFileError, match="tensor data fails its SHA-256 checksum") as info:
        read_container(model_file)
    assert str(model_file) in str(info.value)
    assert read_header(model_file)["note"] == HEADER["note"]  # the header alone is still readable


@pytest.mark.parametrize("cut", [1, 100, 10_000])
def test_truncation_is_detected_before_parsing(model_file, cut):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: max(PREAMBLE.size, len(data) - cut)])
    with pytest.raises(ModelFileError, match="truncated"):
        read_container(model_file)
    with pytest.raises(ModelFileError, match="truncated"):
        read_header(model_file)


def test_trailing_bytes_are_corruption(model_file):
    model_file.write_bytes(model_file.read_bytes() + b"junk")
    with pytest.raises(ModelFileError, match="4 unexpected bytes after the end"):
        read_container(model_file)


def test_newer_format_version_says_upgrade(tmp_path):
    path = tmp_path / "future.tw"
    path.write_bytes(_craft(b"{}", b"", version=FORMAT_VERSION + 1))
    with pytest.raises(
        ModelFileError, match=f"newer trainwell \\(file format version {FORMAT_VERSION + 1}\\)"
    ) as e:
        read_container(path)
    assert f"reads format versions 1 to {FORMAT_VERSION}" in str(e.value) and "Upgrade trainwell" in str(
        e.value
    )


def test_version_zero_is_corruption(tmp_path):
    (tmp_path / "m.tw").write_bytes(_craft(b"{}", b"", version=0))
    with pytest.raises(ModelFileError, match="format version 0 does not exist"):
        read_header(tmp_path / "m.tw")


@pytest.mark.parametrize(
    "header_bytes, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # regression: RecursionError escaped json
        (b"[1, 2]", "must be a JSON object, found list"),
        (b'"text"', "must be a JSON object, found str"),
    ],
    ids=["syntax", "utf8", "deep-nesting", "list", "string"],
)
def test_bad_header_json(tmp_path, header_bytes, fragment):
    path = tmp_path / "m.tw"
    path.write_bytes(_craft(header_bytes, safetensors.torch.save({"w": torch.ones(1)})))
    with pytest.raises(ModelFileError, match=fragment):
        read_container(path)


def test_payload_that_is_not_safetensors(tmp_path):
    path = tmp_path / "m.tw"
    path.write_bytes(_craft(b"{}", b"\x05" * 40))
    with pytest.raises(ModelFileError, match="not a valid safetensors blob"):
        read_container(path)


@pytest.mark.parametrize(
    "field, argument", [("header_len", "max_header_bytes"), ("payload_len", "max_tensor_bytes")]
)
def test_absurd_sizes_are_refused_before_allocating(tmp_path, field, argument):
    path = tmp_path / "m.tw"
    path.write_bytes(_craft(b"{}", b"", **{field: 2**63}))
    with pytest.raises(ModelFileError, match=argument):
        read_container(path)


def test_limits_are_adjustable(model_file):
    with pytest.raises(ModelFileError, match="max_tensor_bytes=10"):
        read_container(model_file, max_tensor_bytes=10)
    with pytest.raises(ModelFileError, match="max_header_bytes=10"):
        read_header(model_file, max_header_bytes=10)
    save_tensors(model_file.with_suffix(".st"), {"w": torch.ones(10)})
    with pytest.raises(ModelFileError, match="max_tensor_bytes=10"):
        load_tensors(model_file.with_suffix(".st"), max_tensor_bytes=10)


def test_folder_and_pipe_are_refused_without_blocking(tmp_path):
    with pytest.raises(ModelFileError, match="folder"):
        read_container(tmp_path)
    if not hasattr(os, "mkfifo"):
        return
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_container(tmp_path / "pipe")


def test_load_tensors_errors(tmp_path, model_file):
    with pytest.raises(ModelFileNotFoundError, match="no such model file"):
        load_tensors(tmp_path / "missing.safetensors")
    with pytest.raises(ModelFileError, match="trainwell model file .* load_model"):
        load_tensors(model_file)
    _torch_legacy(tmp_path / "w.pt")
    with pytest.raises(ModelFileError, match="never unpickles"):
        load_tensors(tmp_path / "w.pt")
    save_tensors(tmp_path / "w.safetensors", {"w": torch.ones(100)})
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[:-7])
    with pytest.raises(ModelFileError, match="not a valid safetensors weights file"):
        load_tensors(tmp_path / "w.safetensors")


def test_write_errors(tmp_path):
    with pytest.raises(ModelFileNotFoundError, match="folder .* does not exist") as info:
        write_container(tmp_path / "no" / "model.tw", {}, {})
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(ModelFileError, match="this path is a folder"):
        write_container(tmp_path, {}, {})
    with pytest.raises(ConfigTypeError, match="must be a dict"):
        write_container(tmp_path / "m.tw", [1], {})
    with pytest.raises(ConfigTypeError, match=r"`history.loss\[1\]` cannot be stored as JSON"):
        write_container(tmp_path / "m.tw", {"history": {"loss": [0.5, object()]}}, {})
    with pytest.raises(ConfigTypeError, match="tensor 'w' must be a torch.Tensor, received ndarray"):
        write_container(tmp_path / "m.tw", {}, {"w": np.ones(2)})
    assert os.listdir(tmp_path) == []
