"""The one parser of record files: ``(where, record)`` pairs from .jsonl/.ndjson/.csv/.tsv/.parquet/.json.

Every line-based format is read as a stream, one line in memory, and checked: bytes that are not
UTF-8 (unless ``bad_bytes="replace"``, which swaps them for U+FFFD), a line longer than
``max_line_bytes`` (default 16 MiB), a JSON line that does not parse or is not an object, a CSV row
whose column count differs from its header. Each failure raises ``InputError`` naming the file and
the line (parquet: the row). A UTF-8 byte-order mark is dropped; blank lines are skipped.

  ``.jsonl/.ndjson``  one JSON object per line
  ``.csv/.tsv``       a header row naming the columns (quoted fields may span lines)
  ``.parquet``        read batch by batch, only the columns asked for (needs pyarrow)
  ``.json``           one JSON list of objects, read whole
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

MAX_LINE_BYTES = 16 << 20
BAD_BYTES = ("error", "replace")
ROW_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".json")


class InputError(ValueError):
    """Bad input from the user: a malformed file (the message names the file and the line or row),
    or an option that does not fit it (e.g. a resume with changed settings). The CLI reports it as a
    usage error."""


def pyarrow():
    """The ``pyarrow`` module with ``pyarrow.parquet`` loaded; ImportError saying what to install."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ImportError("parquet files need `pip install pyarrow`") from exc
    return pyarrow


def checked_suffix(path: Path, suffixes: Sequence[str]) -> str:
    """The lower-case suffix of ``path`` if it is one of ``suffixes`` and the file exists.

    ValueError naming the suffixes, else FileNotFoundError naming the path.
    """
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise ValueError(f"{path}: unsupported input type {suffix!r} (use one of {', '.join(suffixes)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return suffix


def lines(
    path: Path, max_line_bytes: int = MAX_LINE_BYTES, bad_bytes: str = "error"
) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its end) for each line, one line in memory."""
    if bad_bytes not in BAD_BYTES:
        raise ValueError(f"bad_bytes must be one of {BAD_BYTES}, got {bad_bytes!r}")
    errors = "strict" if bad_bytes == "error" else "replace"
    with path.open("rb") as f:
        number = 0
        while raw := f.readline(max_line_bytes + 1):
            number += 1
            if len(raw) > max_line_bytes:
                raise InputError(f"{path}: line {number} is longer than {max_line_bytes} bytes")
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8", errors)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}: line {number} is not valid UTF-8 (byte {exc.start} of the line: "
                    f"{raw[exc.start : exc.start + 4]!r}); fix the file or pass --bad-bytes replace"
                ) from None
            yield number, text.removesuffix("\n").removesuffix("\r")


def _json_object(path: Path, where: str, record: object) -> dict:
    if not isinstance(record, dict):
        raise InputError(f"{path}: {where} is a JSON {type(record).__name__}, expected an object")
    return record


def _jsonl(path: Path, max_line_bytes: int, bad_bytes: str) -> Iterator[tuple[str, dict]]:
    for number, line in lines(path, max_line_bytes, bad_bytes):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        yield f"line {number}", _json_object(path, f"line {number}", record)


def _csv(path: Path, delimiter: str, max_line_bytes: int, bad_bytes: str) -> Iterator[tuple[str, dict]]:
    numbered = lines(path, max_line_bytes, bad_bytes)
    line = [0]

    def text_lines() -> Iterator[str]:
        for line[0], text in numbered:
            yield text + "\n"

    reader = csv.reader(text_lines(), delimiter=delimiter)
    try:
        header = next(reader, None)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{path}: line {line[0]} has {len(row)} columns, the header {len(header)}")
            yield f"line {line[0]}", dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise InputError(f"{path}: line {line[0]}: {exc}") from None


def _parquet(path: Path, required: Sequence[str], optional: Sequence[str]) -> Iterator[tuple[str, dict]]:
    parquet = pyarrow().parquet.ParquetFile(path)
    names = parquet.schema_arrow.names
    for field in required:
        if field not in names:
            raise InputError(f"{path}: no field {field!r} (fields: {sorted(names)})")
    columns = list(dict.fromkeys([*required, *(f for f in optional if f in names)]))
    row = 0
    for batch in parquet.iter_batches(batch_size=4096, columns=columns):
        for record in batch.to_pylist():
            yield f"row {row}", record
            row += 1


def _json_list(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        rows = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: byte {exc.start} is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno} is not valid JSON ({exc.msg})") from None
    if not isinstance(rows, list):
        raise InputError(f"{path}: a .json file must hold a list of objects, got {type(rows).__name__}")
    for n, record in enumerate(rows):
        yield f"row {n}", _json_object(path, f"row {n}", record)


def iter_rows(
    path: str | Path,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
    max_line_bytes: int = MAX_LINE_BYTES,
    bad_bytes: str = "error",
) -> Iterator[tuple[str, dict]]:
    """Streams ``(where, record)`` of a record file (see the module docstring), ``where`` naming the
    line (parquet, .json: the row) for error messages; one record in memory.

    Parquet reads only the columns ``required`` (InputError when one is missing) and ``optional``
    (when present); the other formats yield every field and leave the checks of the fields to the
    caller. FileNotFoundError / ValueError (unsupported suffix) are raised at once.
    """
    path = Path(path)
    suffix = checked_suffix(path, ROW_SUFFIXES)
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(path, max_line_bytes, bad_bytes)
    if suffix in (".csv", ".tsv"):
        return _csv(path, "\t" if suffix == ".tsv" else ",", max_line_bytes, bad_bytes)
    if suffix == ".parquet":
        return _parquet(path, required, optional)
    return _json_list(path)


def missing_field(path: Path | str, where: str, field: str, record: dict) -> InputError:
    """The error of a record without ``field``: names the file, the line and the fields it has."""
    return InputError(f"{path}: {where}: no field {field!r} (fields: {sorted(record)})")
