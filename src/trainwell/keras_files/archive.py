"""Keras 3 ``.keras`` archives and ``.weights.h5`` files: reading and writing the bytes.

A ``.keras`` file is a zip holding ``config.json`` (the model as Keras's serialized objects),
``metadata.json`` (``keras_version``, ``date_saved``) and ``model.weights.h5``. In that HDF5 file
(and in a ``.weights.h5`` file, the same layout) each layer's variables sit under
``layers/<layer name>/vars/<i>`` and the optimizer's under ``optimizer/vars/<i>``, numbered in
creation order.

Reading refuses, before inflating anything: more than ``MAX_ENTRIES`` entries, an entry other than
those three, a declared size above the limits, a compression ratio only a zip bomb has (``MAX_RATIO``
beyond 64 MiB); every entry is then read with a bound, so a lying size cannot get past it, and its
CRC is checked by ``zipfile``. A truncated archive fails in ``zipfile`` and is reported as such.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile

import numpy as np

from .._errors import ModelFileError, describe
from . import hdf5

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
MAX_ENTRIES = 16
MAX_JSON_BYTES = 64 * 2**20
MAX_WEIGHTS_BYTES = 16 * 2**30
MAX_RATIO = 200  # uncompressed/compressed; model weights compress by 1-3x, a zip bomb by 1000x
KERAS_FORMAT_VERSION = "3.0.0"  # the Keras 3 archive layout these files follow


def read_archive(path: str) -> tuple[dict, bytes]:
    """The parsed ``config.json`` and the raw ``model.weights.h5`` bytes of a ``.keras`` file."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_entries(path, infos)
            names = {info.filename: info for info in infos}
            config = _json(path, CONFIG, _read(path, archive, names[CONFIG], MAX_JSON_BYTES))
            if METADATA in names:
                _json(path, METADATA, _read(path, archive, names[METADATA], MAX_JSON_BYTES))
            weights = _read(path, archive, names[WEIGHTS], MAX_WEIGHTS_BYTES) if WEIGHTS in names else b""
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: not a readable .keras archive ({exc}); it may be truncated or "
                             "damaged. Save it again with Keras.") from exc
    except (EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the .keras archive cannot be read ({exc}).") from exc
    return config, weights


def _check_entries(path: str, infos) -> None:
    if len(infos) > MAX_ENTRIES:
        raise ModelFileError(f"{path}: the archive holds {len(infos)} entries; a Keras model archive "
                             "holds 3.")
    names = [info.filename for info in infos]
    if any(name.endswith((".pkl", "/data.pkl")) for name in names):
        raise ModelFileError(f"{path}: this zip holds a pickle (a torch.save file?); trainwell never "
                             "unpickles, because loading a pickle can run code. Rebuild the model in "
                             "trainwell.")
    if len(set(names)) != len(names):
        raise ModelFileError(f"{path}: the archive names an entry twice; refused.")
    for info in infos:
        name = info.filename
        if name.endswith("/") and name in ("assets/",):
            continue
        if name not in (CONFIG, METADATA, WEIGHTS):
            hint = (" (a weights layout trainwell does not read; save with Keras's default .h5 weights)"
                    if name.endswith((".npz", ".json")) else "")
            raise ModelFileError(f"{path}: unexpected archive entry {name!r}{hint}. A Keras model archive "
                                 f"holds {CONFIG}, {METADATA} and {WEIGHTS} only; nothing else is read "
                                 "or run.")
        limit = MAX_JSON_BYTES if name.endswith(".json") else MAX_WEIGHTS_BYTES
        if info.file_size > limit:
            raise ModelFileError(f"{path}: archive entry {name!r} declares {info.file_size:,} bytes, "
                                 "above the "
                                 f"limit of {limit:,}; nothing was inflated.")
        if info.file_size > 64 * 2**20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ModelFileError(f"{path}: archive entry {name!r} would inflate {info.compress_size:,} bytes "
                                 f"into {info.file_size:,}: a zip bomb, refused before inflating.")
    if CONFIG not in names:
        raise ModelFileError(f"{path}: the archive has no {CONFIG}; it is not a Keras model archive.")


def _read(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    with archive.open(info) as handle:
        data = handle.read(min(limit, info.file_size) + 1)
    if len(data) > info.file_size or len(data) > limit:
        raise ModelFileError(f"{path}: archive entry {info.filename!r} inflates beyond its declared size; "
                             "refused.")
    return data


def _json(path: str, name: str, data: bytes) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: archive entry {name!r} is not valid JSON ({exc}).") from exc
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: archive entry {name!r} must hold a JSON object, "
                             f"found {describe(value)}.")
    return value


def read_variables(path: str, source) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray] | None]:
    """Each layer's variable list and the optimizer's (None when absent) from a Keras 3 weights file."""
    with hdf5.open_file(source, path) as handle:
        layers = hdf5.child(handle, "layers", path, "group")
        found = {}
        if layers is not None:
            for name in layers:
                found[name] = _vars(path, hdf5.child(layers, name, path, "group"))
        optimizer = hdf5.child(handle, "optimizer", path, "group")
        return found, None if optimizer is None else _vars(path, optimizer)


def is_variables_file(handle) -> bool:
    return "layers" in handle or "vars" in handle


def _vars(path: str, group) -> list[np.ndarray]:
    variables = hdf5.child(group, "vars", path, "group")
    if variables is None:
        return []
    keys = list(variables)
    if sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))]:
        raise ModelFileError(f"{path}: HDF5 group '{variables.name}' must hold datasets named 0, 1, 2, ...; "
                             f"found {keys[:8]}.")
    return [hdf5.read_dataset(hdf5.child(variables, str(i), path, "dataset"), path) for i in range(len(keys))]


# ------------------------------------------------------------------------------------------ writing
def variables_bytes(layers: dict[str, list[np.ndarray]], optimizer: list[np.ndarray] | None,
                    model_name: str) -> bytes:
    """A Keras 3 weights file (``model.weights.h5`` / ``.weights.h5``) as bytes."""
    h5py = hdf5.h5py_module()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        group = handle.create_group("layers")
        for name, values in layers.items():
            _write_vars(group.create_group(name), name, values)
        if optimizer is not None:
            _write_vars(handle.create_group("optimizer"), "optimizer", optimizer)
        _write_vars(handle, model_name, [])
    return buffer.getvalue()


def _write_vars(group, name: str, values: list[np.ndarray]) -> None:
    variables = group.create_group("vars")
    variables.attrs["name"] = name
    for i, value in enumerate(values):
        variables.create_dataset(str(i), data=value)


def archive_bytes(config: dict, weights: bytes, trainwell_version: str) -> bytes:
    metadata = {"keras_version": KERAS_FORMAT_VERSION, "trainwell_version": trainwell_version,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA, json.dumps(metadata))
        archive.writestr(CONFIG, json.dumps(config))
        archive.writestr(WEIGHTS, weights)
    return buffer.getvalue()
