"""Careful HDF5 access for untrusted Keras files: hard links only, plain numeric data, bounded sizes.

HDF5 can point outside the file (external links, external raw storage, virtual datasets) and can
declare huge datasets and attributes that cost nothing to declare. Every read here checks the link
kind, the storage and the declared size first, so a crafted file can neither make trainwell read
another file on disk nor allocate more than the limits. h5py never unpickles anything; opaque and
compound types are refused as data.
"""

from __future__ import annotations

import math

import numpy as np

from .._errors import ModelFileError, describe

MAX_DATASET_ELEMENTS = 2**31  # one weight; a larger declared shape is refused before reading
MAX_ATTRIBUTE_BYTES = 64 * 2**20  # the JSON configs are attributes in the legacy format
MAX_NAMES = 100_000  # entries in a name list (layers, weights)
MAX_INFLATED_BYTES, MAX_RATIO = 64 * 2**20, 200  # beyond 64 MiB, weights do not compress 200-fold
_NUMERIC = "fiu"  # float, signed and unsigned integer kinds


def h5py_module():
    import h5py  # a core dependency; imported here so `import trainwell` stays light

    return h5py


def open_file(source, path: str):
    """``h5py.File`` for reading ``source`` (a path or a binary file object)."""
    h5py = h5py_module()
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({exc}); it may be truncated or "
                             "damaged.") from exc


def child(group, key: str, path: str, kind: str):
    """``group[key]``, a hard-linked ``kind`` ('group' or 'dataset'), or None when absent."""
    h5py = h5py_module()
    where = f"{path}: HDF5 entry '{group.name.rstrip('/')}/{key}'"
    link = group.get(key, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise ModelFileError(f"{where} is a {type(link).__name__}; Keras files hold plain entries only, and "
                             "trainwell never follows links that may point elsewhere.")
    obj = group[key]
    expected = h5py.Group if kind == "group" else h5py.Dataset
    if not isinstance(obj, expected):
        raise ModelFileError(f"{where} must be a {kind}, found {type(obj).__name__}.")
    return obj


def read_dataset(dataset, path: str) -> np.ndarray:
    """A numeric dataset as a numpy array, after checking its storage, type and size."""
    where = f"{path}: HDF5 dataset '{dataset.name}'"
    if dataset.is_virtual or dataset.external:
        raise ModelFileError(f"{where} takes its data from outside the file; refused.")
    if dataset.dtype.kind not in _NUMERIC or dataset.dtype.names is not None:
        raise ModelFileError(f"{where} has type {dataset.dtype}, not numbers: refused (weights are numbers; "
                             "trainwell never decodes objects from a file).")
    shape = dataset.shape
    if shape is None:
        raise ModelFileError(f"{where} holds no data (an empty dataspace).")
    count = math.prod(shape)
    if count > MAX_DATASET_ELEMENTS:
        raise ModelFileError(f"{where} declares shape {shape} ({count:,} elements), above the limit of "
                             f"{MAX_DATASET_ELEMENTS:,}; nothing was allocated. The file is probably "
                             "crafted.")
    declared, stored = count * dataset.dtype.itemsize, dataset.id.get_storage_size()
    if declared > MAX_INFLATED_BYTES and declared > MAX_RATIO * max(stored, 1):
        raise ModelFileError(f"{where} would inflate {stored:,} stored bytes into {declared:,}: a "
                             "decompression bomb, refused before reading.")
    try:
        return np.asarray(dataset[()])
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{where} cannot be read ({exc}); the file may be damaged.") from exc


def read_attribute(obj, key: str, path: str):
    """An attribute as text or a list of texts (or numbers), after checking its declared size and type."""
    h5py = h5py_module()
    where = f"{path}: HDF5 attribute '{key}' of '{obj.name}'"
    if key not in obj.attrs:
        return None
    attr_id = h5py.h5a.open(obj.id, key.encode())
    dtype, shape = attr_id.dtype, attr_id.shape
    count = math.prod(shape) if shape else 1
    if count > MAX_NAMES:
        raise ModelFileError(f"{where} declares {count:,} elements, above the limit of {MAX_NAMES:,}.")
    string = h5py.check_string_dtype(dtype)
    if string is None and (dtype.kind not in _NUMERIC + "S" or dtype.names is not None):
        raise ModelFileError(f"{where} has type {dtype}: refused (trainwell reads text and numbers only, "
                             "never decodes objects from a file).")
    if string is None and dtype.kind == "S" and dtype.itemsize * count > MAX_ATTRIBUTE_BYTES:
        raise ModelFileError(f"{where} is larger than {MAX_ATTRIBUTE_BYTES:,} bytes.")
    try:
        value = obj.attrs[key]
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{where} cannot be read ({exc}).") from exc
    return _decode(value, where)


def _decode(value, where: str):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return [_decode(v, where) for v in value.reshape(-1).tolist()]
    if isinstance(value, (int, float, np.number)):
        return value.item() if isinstance(value, np.number) else value
    raise ModelFileError(f"{where} holds {describe(value)}, expected text.")


def text_attribute(obj, key: str, path: str) -> str | None:
    value = read_attribute(obj, key, path)
    if value is not None and not isinstance(value, str):
        raise ModelFileError(f"{path}: HDF5 attribute '{key}' of '{obj.name}' must be text, found "
                             f"{describe(value)}.")
    if value is not None and len(value) > MAX_ATTRIBUTE_BYTES:
        raise ModelFileError(f"{path}: HDF5 attribute '{key}' is larger than {MAX_ATTRIBUTE_BYTES:,} bytes.")
    return value


def names_attribute(obj, key: str, path: str) -> list[str] | None:
    value = read_attribute(obj, key, path)
    if value is None:
        return None
    value = [value] if isinstance(value, str) else value
    if not all(isinstance(v, str) for v in value):
        raise ModelFileError(f"{path}: HDF5 attribute '{key}' of '{obj.name}' must list names, found "
                             f"{describe(value)}.")
    return value


def write_names(obj, key: str, names: list[str]) -> None:
    obj.attrs[key] = np.array([n.encode("utf-8") for n in names], dtype="S") if names else np.array([], "f8")
