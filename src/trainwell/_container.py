"""The ``.tw`` model file: a JSON header and named tensors, checksummed, written atomically, no pickle.

This module is the container only: it stores a caller's JSON-ready dict (architecture, compile
config, optimizer meta, history, preprocessing) next to named tensors (weights, optimizer state).
The glue that turns a model into that dict and those tensors is ``trainwell.saving``, which also
re-exports the public names below.

File format, version 1 (integers are little-endian)::

    offset   size  field
    0        10    magic: b"TRAINWELL\\x00"
    10       4     format version, uint32 (1)
    14       8     H, length of the JSON header in bytes, uint64
    22       8     P, length of the tensor payload in bytes, uint64
    30       32    SHA-256 of the H header bytes
    62       32    SHA-256 of the P payload bytes
    94       H     header: one JSON object, UTF-8
    94 + H   P     payload: one safetensors blob (its own length, JSON index, raw tensor bytes)

The file ends exactly at byte 94 + H + P; anything after it is reported as corruption.
The header is the caller's dict plus three fields set on every write: ``"format":
"trainwell.model"``, ``"format_version"`` and ``"trainwell_version"`` (the library that wrote it).
Non-finite floats are written as ``NaN``/``Infinity``, as Python's ``json`` does, because the
history of a diverged run holds them.

Reading checks, in order, before parsing anything: the magic, the version, the declared sizes
against the limits (``max_header_bytes``, ``max_tensor_bytes``: refused before allocating) and
against the file size (truncation, trailing bytes), then the SHA-256 of the header and of the
payload. Only checked bytes reach the two parsers, ``json.loads`` and safetensors, and neither can
run code: a hostile file can make loading fail, never execute anything. Nothing here uses pickle.

Versioning: the magic and the version field never move. A reader accepts versions 1 to
``FORMAT_VERSION`` and refuses newer files with a message to upgrade; any layout change that an
older reader could misread increments ``FORMAT_VERSION``.

Atomic writes: the bytes go to a temporary file in the target's folder, named
``.<target name>.tmp-<pid>-<random>``, which is flushed and fsync'ed, then ``os.replace``'d over
the target, and the folder is fsync'ed. A save killed at any moment leaves the previous file whole.
A SIGKILL cannot run clean-up, so it may leave such a temporary file behind: readers never look at
it, and it is safe to delete.

Plain weights files (``save_weights``) are bare safetensors files written the same atomic way;
they carry no checksum of their own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import secrets
import stat
import struct
import zipfile
from collections.abc import Iterable

import numpy as np
import safetensors.torch
import torch

from trainwell._errors import ConfigError, ConfigTypeError, ModelFileError, ModelFileNotFoundError, closest

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_TENSOR_BYTES",
    "atomic_write_bytes",
    "load_tensors",
    "read_container",
    "read_header",
    "save_tensors",
    "write_container",
]

MAGIC = b"TRAINWELL\x00"
FORMAT_NAME = "trainwell.model"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 2**20
MAX_TENSOR_BYTES = 16 * 2**30

# magic, version, header length, payload length, header SHA-256, payload SHA-256: 94 bytes, no padding.
_PREAMBLE = struct.Struct("<10sIQQ32s32s")
_RESERVED = ("format", "format_version", "trainwell_version")
_NO_PICKLE = (
    "trainwell never unpickles, because loading a pickle can run arbitrary code; "
    "rebuild the model with trainwell and save it with model.save('model.tw')"
)
_SAFETENSORS_KIND = (
    "a plain safetensors weights file (as written by save_weights): load it with model.load_weights(path)"
)


# ----------------------------------------------------------------------------------------- writing
def write_container(path: str | os.PathLike, header: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write a model file atomically: a JSON header and named tensors.

    Args:
        path: where to write, usually ending in ``.tw``; its folder must exist.
        header: JSON-ready dict (numpy scalars and arrays are converted). The keys ``format``,
            ``format_version`` and ``trainwell_version`` are set by this function.
        tensors: name → tensor, on any device, any dtype safetensors stores.

    Raises:
        ConfigTypeError: ``header`` is not a dict, holds a value JSON cannot store (the error
            names its path, e.g. ``history.loss[3]``), or a tensor entry is not a tensor.
        ModelFileNotFoundError: the folder does not exist.
        ModelFileError: the file cannot be written (permissions, disk full); the previous file,
            if any, is left as it was.

    Example:
        >>> write_container("model.tw", {"config": {"layers": []}}, {"dense/kernel": torch.zeros(2, 3)})
    """
    path = os.fspath(path)
    header_bytes = _encode_header(header, path)
    payload = _encode_tensors(tensors, path)
    preamble = _PREAMBLE.pack(
        MAGIC,
        FORMAT_VERSION,
        len(header_bytes),
        len(payload),
        hashlib.sha256(header_bytes).digest(),
        hashlib.sha256(payload).digest(),
    )
    _atomic_write(path, (preamble, header_bytes, payload))


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write a plain ``.safetensors`` weights file atomically.

    Args:
        path: where to write; its folder must exist.
        tensors: name → tensor.
        metadata: optional string → string pairs stored in the safetensors header.

    Raises:
        ConfigTypeError: an entry is not a tensor. ModelFileError: the file cannot be written.

    Example:
        >>> save_tensors("model.weights.safetensors", {"dense/kernel": torch.zeros(2, 3)})
    """
    path = os.fspath(path)
    atomic_write_bytes(path, _encode_tensors(tensors, path, metadata))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old file or the new one.

    Args:
        path: the target file; its folder must exist.
        data: the complete new contents.

    Raises:
        ModelFileNotFoundError: the folder does not exist.
        ModelFileError: the file cannot be written; the previous file is left as it was.

    Example:
        >>> atomic_write_bytes("notes.txt", b"hello")
    """
    _atomic_write(os.fspath(path), (data,))


def _atomic_write(path: str, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to a fresh temporary file beside ``path``, fsync it, and rename it over ``path``."""
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        # O_EXCL: never reuse another writer's temporary file; mode 0o666 lets the umask decide,
        # as for any file the user creates (mkstemp would force 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except FileNotFoundError as exc:
        raise ModelFileNotFoundError(
            f"{path}: cannot save, the folder {folder!r} does not exist. "
            "Create it first (os.makedirs) or pass a path in an existing folder."
        ) from exc
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())  # the data must be on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt included: never leave a half-written temp file
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    _fsync_folder(folder)


def _write_error(path: str, exc: OSError) -> ModelFileError:
    if os.path.isdir(path):
        return ModelFileError(
            f"{path}: cannot save, this path is a folder. Pass a file name such as model.tw."
        )
    return ModelFileError(
        f"{path}: cannot save ({exc.strerror or exc}). Check that the folder is writable and the disk "
        "has space; the previous file, if any, is unchanged."
    )


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable; skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode_header(header: dict, path: str) -> bytes:
    if not isinstance(header, dict):
        raise ConfigTypeError(
            f"{path}: the model file header must be a dict, received {type(header).__name__}."
        )
    version = _trainwell_version()
    full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "trainwell_version": version}
    full.update({k: v for k, v in header.items() if k not in _RESERVED})
    try:
        return json.dumps(full, separators=(",", ":"), default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as exc:
        where = _unserialisable_path(header) or "?"
        raise ConfigTypeError(
            f"{path}: the model file header entry `{where}` cannot be stored as JSON ({exc}). "
            "Store numbers, strings, booleans, None, lists and dicts only."
        ) from exc


def _json_default(value):
    """numpy scalars and arrays become Python numbers and lists; anything else is refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _unserialisable_path(value, where: str = "") -> str | None:
    """The path (``a.b[2]``) of the first entry json cannot store, or None."""
    if isinstance(value, dict):
        items = [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        try:
            json.dumps(value, default=_json_default)
        except (TypeError, ValueError):
            return where or "<header>"
        return None
    for sub_where, sub in items:
        found = _unserialisable_path(sub, sub_where)
        if found is not None:
            return found
    return None


def _encode_tensors(tensors: dict, path: str, metadata: dict[str, str] | None = None) -> bytes:
    if not isinstance(tensors, dict):
        raise ConfigTypeError(
            f"{path}: tensors must be a dict of name → torch.Tensor, received {type(tensors).__name__}."
        )
    prepared, seen = {}, set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ConfigTypeError(
                f"{path}: tensor names must be non-empty strings other than '__metadata__', got {name!r}."
            )
        if not isinstance(tensor, torch.Tensor):
            raise ConfigTypeError(
                f"{path}: tensor {name!r} must be a torch.Tensor, received {type(tensor).__name__}."
            )
        tensor = tensor.detach().to("cpu").contiguous()
        # safetensors refuses tensors that share memory (views, tied weights): store a copy instead.
        ptr = tensor.untyped_storage().data_ptr()
        if ptr and ptr in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        prepared[name] = tensor
    try:
        return safetensors.torch.save(prepared, metadata)
    except Exception as exc:  # sparse layouts, unsupported dtypes: safetensors raises several types
        raise ConfigError(f"{path}: cannot store the tensors as safetensors: {exc}") from exc


def _trainwell_version() -> str:
    try:
        from trainwell import __version__

        return str(__version__)
    except ImportError:
        pass
    try:
        return importlib.metadata.version("trainwell")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------------------- reading
def read_container(
    path: str | os.PathLike,
    *,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_tensor_bytes: int = MAX_TENSOR_BYTES,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and verify a model file.

    Args:
        path: a file written by ``write_container``.
        max_header_bytes: refuse files that declare a larger JSON header (default 64 MiB).
        max_tensor_bytes: refuse files that declare a larger tensor payload (default 16 GiB).

    Returns:
        ``(header, tensors)``: the header dict (with ``format``, ``format_version`` and
        ``trainwell_version``) and name → CPU tensor, in name order.

    Raises:
        ModelFileNotFoundError: no such file.
        ModelFileError: not a trainwell file, truncated, corrupted (checksum), written by a newer
            format version, oversized, or with a header that is not a JSON object.

    Example:
        >>> header, tensors = read_container("model.tw")
    """
    path = os.fspath(path)
    with _open(path) as f:
        header, payload_len, payload_sha = _read_checked_header(f, path, max_header_bytes, max_tensor_bytes)
        payload = f.read(payload_len)
    if len(payload) != payload_len:
        raise ModelFileError(f"{path}: the file is truncated: its tensor data ends early. Save it again.")
    _check_sha(payload, payload_sha, "tensor data", path)
    try:
        tensors = safetensors.torch.load(payload)
    except Exception as exc:  # the parser raises several types on malformed input; all mean the same
        raise ModelFileError(f"{path}: the tensor data is not a valid safetensors blob ({exc}).") from exc
    return header, {name: tensors[name] for name in sorted(tensors)}


def read_header(path: str | os.PathLike, *, max_header_bytes: int = MAX_HEADER_BYTES) -> dict:
    """Read and verify only the JSON header of a model file, without loading the tensors.

    The file size is still checked against the declared sizes, so truncation is reported; the
    tensor checksum is not (``read_container`` checks it).

    Args:
        path: a file written by ``write_container``.
        max_header_bytes: refuse files that declare a larger JSON header (default 64 MiB).

    Returns:
        The header dict.

    Raises:
        ModelFileNotFoundError, ModelFileError: as ``read_container``.

    Example:
        >>> read_header("model.tw")["format_version"]
        1
    """
    path = os.fspath(path)
    with _open(path) as f:
        return _read_checked_header(f, path, max_header_bytes, None)[0]


def load_tensors(
    path: str | os.PathLike, *, max_tensor_bytes: int = MAX_TENSOR_BYTES
) -> dict[str, torch.Tensor]:
    """Read a plain ``.safetensors`` weights file.

    Args:
        path: a file written by ``save_tensors`` (or any safetensors file).
        max_tensor_bytes: refuse larger files (default 16 GiB).

    Returns:
        name → CPU tensor, in name order.

    Raises:
        ModelFileNotFoundError: no such file.
        ModelFileError: not a safetensors file (the message says what it looks like), truncated,
            malformed or too large.

    Example:
        >>> tensors = load_tensors("model.weights.safetensors")
    """
    path = os.fspath(path)
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_tensor_bytes:
            raise _limit_error(path, "has", size, "max_tensor_bytes", max_tensor_bytes)
        data = f.read()
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # the parser raises several types on malformed input; all mean the same
        kind = _looks_like(path, data[:64])
        if kind is not None and kind != _SAFETENSORS_KIND:
            raise ModelFileError(f"{path}: not a safetensors weights file: it looks like {kind}.") from exc
        raise ModelFileError(
            f"{path}: not a valid safetensors weights file, it may be truncated or corrupted ({exc}). "
            "Save the weights again with model.save_weights(path)."
        ) from exc
    return {name: tensors[name] for name in sorted(tensors)}


def _open(path: str):
    """Open ``path`` for reading, refusing folders, pipes and devices (which could block or never end)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore the flag.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as exc:
        raise _not_found(path) from exc
    except OSError as exc:
        if os.path.isdir(path):
            raise ModelFileError(f"{path}: this path is a folder; pass the model file inside it.") from exc
        raise ModelFileError(f"{path}: cannot read the file ({exc.strerror or exc}).") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a folder; pass the model file inside it" if stat.S_ISDIR(mode) else "not a regular file"
        raise ModelFileError(f"{path}: this path is {what}.")
    return os.fdopen(fd, "rb")


def _not_found(path: str) -> ModelFileNotFoundError:
    folder = os.path.dirname(path) or "."
    msg = f"{path}: no such model file. Check the path and the current folder ({os.getcwd()})."
    try:
        guess = closest(os.path.basename(path), [n for n in os.listdir(folder) if not n.startswith(".")])
    except OSError:
        guess = None
    if guess is not None:
        msg += f" Did you mean {os.path.join(folder, guess)!r}?"
    return ModelFileNotFoundError(msg)


def _read_checked_header(f, path: str, max_header: int, max_payload: int | None) -> tuple[dict, int, bytes]:
    """Check the preamble, sizes and header checksum; return (header, payload length, payload sha)."""
    size = os.fstat(f.fileno()).st_size
    raw = f.read(_PREAMBLE.size)
    if not raw or not raw.startswith(MAGIC[: len(raw)]):  # a short prefix of MAGIC is a truncation
        raise _not_trainwell(path, raw)
    if len(raw) < _PREAMBLE.size:
        raise ModelFileError(
            f"{path}: the file is truncated: {size} bytes, shorter than the {_PREAMBLE.size}-byte preamble "
            "of a trainwell model file. The save or copy was cut short; save the model again."
        )
    _, version, header_len, payload_len, header_sha, payload_sha = _PREAMBLE.unpack(raw)
    _check_version(version, path)
    if header_len > max_header:
        raise _limit_error(path, "declares a JSON header of", header_len, "max_header_bytes", max_header)
    if max_payload is not None and payload_len > max_payload:
        raise _limit_error(path, "declares tensor data of", payload_len, "max_tensor_bytes", max_payload)
    expected = _PREAMBLE.size + header_len + payload_len
    if size < expected:
        raise ModelFileError(
            f"{path}: the file is truncated: it has {size:,} bytes but declares {expected:,}. "
            "The save or copy was cut short (or its size fields are damaged); save the model again."
        )
    if size > expected:
        raise ModelFileError(
            f"{path}: the file is corrupted: {size - expected:,} unexpected bytes after the end of the model "
            f"(it declares {expected:,} bytes, has {size:,}). Save the model again or restore a backup."
        )
    header_bytes = f.read(header_len)
    _check_sha(header_bytes, header_sha, "JSON header", path)
    return _decode_header(header_bytes, path), payload_len, payload_sha


def _check_version(version: int, path: str) -> None:
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written by a newer trainwell (file format version {version}); this trainwell "
            f"({_trainwell_version()}) reads format versions 1 to {FORMAT_VERSION}. "
            "Upgrade trainwell (pip install --upgrade trainwell) to load it."
        )
    if version < 1:
        raise ModelFileError(f"{path}: the file is corrupted: format version {version} does not exist.")


def _limit_error(path: str, what: str, size: int, argument: str, limit: int) -> ModelFileError:
    return ModelFileError(
        f"{path}: the file {what} {size:,} bytes, above {argument}={limit:,}. "
        f"The file is probably corrupted; if you trust it and it really is that large, pass a larger "
        f"{argument}."
    )


def _check_sha(data: bytes, expected: bytes, section: str, path: str) -> None:
    actual = hashlib.sha256(data).digest()
    if actual != expected:
        raise ModelFileError(
            f"{path}: the file is corrupted: the {section} fails its SHA-256 checksum "
            f"(stored {expected.hex()[:16]}..., computed {actual.hex()[:16]}...). "
            "Save the model again or restore a backup."
        )


def _decode_header(header_bytes: bytes, path: str) -> dict:
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFileError(f"{path}: the header is not valid JSON ({exc}).") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: the header must be a JSON object, found {type(header).__name__}.")
    return header


def _not_trainwell(path: str, head: bytes) -> ModelFileError:
    if not head:
        return ModelFileError(
            f"{path}: the file is empty (0 bytes); the save or copy was cut short. Save the model again."
        )
    kind = _looks_like(path, head)
    if kind is not None:
        return ModelFileError(f"{path}: not a trainwell model file: it looks like {kind}.")
    return ModelFileError(
        f"{path}: not a trainwell model file: expected it to start with {MAGIC!r}, found {head[:16]!r}. "
        "Pass a file written by model.save('model.tw')."
    )


def _looks_like(path: str, head: bytes) -> str | None:
    """Name a known foreign format from the first bytes (and a zip's file list), with advice; else None."""
    if head.startswith(MAGIC):
        return "a trainwell model file (.tw), not a plain weights file: load it with load_model(path)"
    if head.startswith(b"PK\x03\x04"):
        names = _zip_names(path)
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a PyTorch torch.save() file (a zip of pickles). " + _NO_PICKLE
        if "config.json" in names and any(n.endswith(".h5") for n in names):
            return (
                "a Keras .keras archive. trainwell does not read Keras files: rebuild the model with "
                "trainwell and copy the weights with model.set_weights(...)"
            )
        return "a zip archive"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (an older torch.save() .pt/.pth file, or a pickle/joblib dump). " + _NO_PICKLE
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return (
            "an HDF5 file (a Keras .h5 model or .weights.h5 weights). trainwell does not read HDF5: rebuild "
            "the model with trainwell and copy the weights with model.set_weights(...)"
        )
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array; set weights from arrays with model.set_weights(...)"
    if head[8:9] == b"{":
        return _SAFETENSORS_KIND
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON or text file (a model.to_json() config holds no weights); load a file from model.save"
    return None


def _zip_names(path: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:  # reads the file list only, never the members' contents
            return archive.namelist()
    except Exception:  # a damaged zip is still "a zip archive" for the message; never let it escape
        return []
