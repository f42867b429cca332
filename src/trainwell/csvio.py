"""Reading CSV files: ``read_csv`` detects the delimiter and the encoding and fails clearly.

A CSV file from a spreadsheet may use ``;`` or tab between fields and cp1252 instead of UTF-8;
``read_csv`` finds both from the first lines, and turns every problem pandas would report
deep in its parser (missing or empty file, one column only, ragged rows) into a ``DataError``
that names the file and what to do. ``chunksize`` streams a large file with bounded memory.

Example:
    >>> from trainwell.csvio import read_csv
    >>> df = read_csv("hourly_wages.csv")  # doctest: +SKIP
    >>> df.attrs["delimiter"], df.attrs["encoding"]  # doctest: +SKIP
    (',', 'utf-8')
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from pathlib import Path

import pandas as pd

from ._errors import DataError, DataFileNotFoundError, closest

__all__ = ["read_csv", "read_csv_text", "DELIMITERS"]

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# Encodings tried after UTF-8: cp1252 is what spreadsheet software on Windows writes; latin-1
# decodes any byte, so it is the last resort that never fails.
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 50


def read_csv(path, *, allow_single_column: bool = False, chunksize: int | None = None):
    """Read a CSV file into a DataFrame, detecting its delimiter and encoding.

    The delimiter is the first of ``,`` ``;`` tab ``|`` that splits the first lines into the
    same number (more than one) of fields, comma first. A file that is not valid UTF-8 is read
    as cp1252 (else latin-1) with a warning. ``df.attrs`` records ``"delimiter"``,
    ``"encoding"``, ``"path"`` and ``"notes"`` (e.g. which non-comma delimiter was found).

    Args:
        path: the CSV file (str or Path).
        allow_single_column: accept a file that parses as one column. Off by default because a
            single column nearly always means an undetected delimiter.
        chunksize: if given, return an iterator of DataFrames of this many rows (delimiter and
            encoding detected from the first 64 KiB) instead of one DataFrame.

    Returns:
        A ``pandas.DataFrame`` (or an iterator of them when ``chunksize`` is set).

    Raises:
        DataFileNotFoundError: no file at ``path`` (also a FileNotFoundError).
        DataError: the path is a folder, the file is empty or has no data rows, it parses as a
            single column, or its rows cannot be split into fields.

    Example:
        >>> df = read_csv("hourly_wages.csv")  # doctest: +SKIP
    """
    path = Path(path)
    _check_file(path)
    with path.open("rb") as handle:
        raw = handle.read(SNIFF_BYTES if chunksize else -1)
    complete = chunksize is None or len(raw) < SNIFF_BYTES
    encoding, text = _decode(raw, path, complete)
    if chunksize:
        delimiter, attrs = _sniff(text, path.name, str(path), encoding)
        options = {"sep": delimiter, "skipinitialspace": True, "encoding": encoding}
        return _read_chunks(path, options, chunksize, attrs, allow_single_column)
    return _parse_text(text, path, path.name, encoding, allow_single_column)


def read_csv_text(text: str, source: str = "the CSV text", *,
                  allow_single_column: bool = False) -> pd.DataFrame:
    """Parse CSV text already in memory (an HTTP request body, say) exactly as ``read_csv`` parses a file.

    Args:
        text: the whole CSV text, header line first.
        source: how error messages name the text (e.g. ``"the request body"``).
        allow_single_column: as for ``read_csv``.

    Raises:
        DataError: the text is empty or has no data rows, parses as a single column, or its rows
            cannot be split into fields.
    """
    return _parse_text(text, source, source, None, allow_single_column)


def _parse_text(text: str, where, name: str, encoding: str | None, allow_single_column: bool) -> pd.DataFrame:
    """The DataFrame of a whole CSV text; ``where`` names it in errors, ``name`` in notes."""
    delimiter, attrs = _sniff(text, where, name, encoding)
    try:
        df = pd.read_csv(io.StringIO(text), sep=delimiter, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise _parse_error(where, delimiter, exc) from exc
    _check_parsed(df, where, attrs, allow_single_column)
    df.attrs.update(attrs)
    return df


def _sniff(text: str, where, name: str, encoding: str | None) -> tuple[str, dict]:
    """The delimiter and the ``attrs`` of a CSV text; an empty text is a DataError."""
    if not text.strip():
        raise DataError(f"read_csv: {where} is empty. Expected a header line and data rows.")
    delimiter = _detect_delimiter(text[:SNIFF_BYTES], complete=len(text) <= SNIFF_BYTES)
    attrs = {"path": str(where), "delimiter": delimiter, "encoding": encoding, "notes": []}
    if delimiter != ",":
        attrs["notes"].append(f"{name}: detected the {DELIMITER_NAMES[delimiter]} delimiter {delimiter!r}")
    return delimiter, attrs


def _check_file(path: Path) -> None:
    """Raise a clear error when ``path`` is missing or is a folder."""
    if path.is_dir():
        raise DataError(f"read_csv: {path} is a folder; expected a CSV file. Pass the path of the file.")
    if path.exists():
        return
    msg = f"read_csv: no file at {path} (looked in {path.resolve().parent}). Check the path and its spelling."
    if path.parent.is_dir():
        guess = closest(path.name, [p.name for p in path.parent.iterdir()])
        if guess is not None:
            msg += f" Did you mean {guess!r}?"
    raise DataFileNotFoundError(msg)


def _decode(raw: bytes, path: Path, complete: bool) -> tuple[str, str]:
    """``(encoding, text)``: UTF-8 when the bytes are valid UTF-8, else a fallback with a warning."""
    encoding = "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8"
    try:
        # A sample cut mid-file may end inside a multi-byte character: final=False tolerates that.
        return encoding, codecs.getincrementaldecoder(encoding)().decode(raw, final=complete)
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        for fallback in FALLBACK_ENCODINGS:
            try:
                text = raw.decode(fallback)
            except UnicodeDecodeError:
                continue
            warnings.warn(
                f"read_csv: {path} is not valid UTF-8 (byte {raw[exc.start]:#04x} on line {bad_line}); "
                f"read it as {fallback}. Save the file as UTF-8 to be sure accents come out right.",
                stacklevel=3,
            )
            return fallback, text
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _detect_delimiter(sample: str, complete: bool) -> str:
    """The delimiter giving the same field count (> 1) on every sampled line; comma by default."""
    consistent = {}
    for delimiter in DELIMITERS:
        rows = [row for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if row]
        if not complete:
            rows = rows[:-1]  # the last sampled line may be cut short
        counts = {len(row) for row in rows[:SNIFF_LINES]}
        if len(counts) == 1 and counts.pop() > 1:
            consistent[delimiter] = len(rows[0])
    if "," in consistent or not consistent:
        return ","
    return max(consistent, key=consistent.get)


def _parse_error(path: Path | str, delimiter: str, exc: Exception) -> DataError:
    """A DataError for a file pandas could not split into rows of equal length."""
    return DataError(
        f"read_csv: cannot split {path} into columns with the {DELIMITER_NAMES[delimiter]} delimiter "
        f"{delimiter!r}: {exc}. Check that every row has as many fields as the header and that "
        f'text holding the delimiter is quoted ("a, b").'
    )


def _check_parsed(df: pd.DataFrame, path: Path | str, attrs: dict, allow_single_column: bool) -> None:
    """Reject a frame with one column (a missed delimiter) or no data rows."""
    if df.shape[1] == 1 and not allow_single_column:
        raise DataError(
            f"read_csv: {path} has a single column ({str(df.columns[0])[:60]!r}); expected several "
            f"columns. None of the delimiters {', '.join(map(repr, DELIMITERS))} split the first lines "
            f"evenly. Check the separator, or pass allow_single_column=True if one column is intended."
        )
    if df.empty:
        raise DataError(f"read_csv: {path} has a header line but no data rows. Expected at least one row.")


def _read_chunks(path: Path, options: dict, chunksize: int, attrs: dict, allow_single_column: bool):
    """Yield DataFrames of ``chunksize`` rows, each with ``attrs`` set."""
    try:
        with pd.read_csv(path, chunksize=chunksize, **options) as reader:
            for index, chunk in enumerate(reader):
                if index == 0:
                    _check_parsed(chunk, path, attrs, allow_single_column)
                chunk.attrs.update(attrs)
                yield chunk
    except pd.errors.ParserError as exc:
        raise _parse_error(path, options["sep"], exc) from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"read_csv: {path} is not valid {options['encoding']} after its first {SNIFF_BYTES} bytes "
            f"({exc.reason}). Save it as UTF-8, or read it whole with read_csv(path)."
        ) from exc
