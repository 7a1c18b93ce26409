"""Training records: rows with required, non-empty fields and unique ids (respond, teach, train).

A record is a dict of logical ``fields`` (e.g. ``("id", "query", "answer")``) read from the columns
``names`` maps them to (by default the same names), every value a string. The file is parsed by
``rows`` (so its UTF-8, line-length and JSON checks apply); on top of them a record without a
field (absent, null or NaN), an empty non-id field, a repeated id and a file without records raise
``InputError`` (a ValueError) naming the file and the line (parquet, .json: the row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TypeVar

from llm2vec_gen.io.rows import InputError, iter_rows, missing_field

TRAINING_FIELDS = ("id", "query", "answer")
T = TypeVar("T")


def iter_records(
    path: str | Path, fields: Sequence[str] = TRAINING_FIELDS, names: dict[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """The checked records of ``path``, streamed: one row in memory, plus the set of ids seen so
    far (to refuse a repeated id: about 100 bytes per id, 100 MB for a million rows).

    FileNotFoundError and ValueError (unsupported suffix) are raised at once, InputError naming the
    line while reading.
    """
    columns = [(names or {}).get(f, f) for f in fields]
    return _checked(iter_rows(path, columns), fields, names, str(path))


def read_records(
    path: str | Path, fields: Sequence[str] = TRAINING_FIELDS, names: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """All records of ``iter_records`` as a list."""
    return list(iter_records(path, fields, names))


def check_records(
    rows: Sequence[dict], fields: Sequence[str] = TRAINING_FIELDS, names: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """The checks of ``iter_records`` on rows already in memory (errors name ``row <n>``, from 1)."""
    return list(_checked(((f"row {n}", row) for n, row in enumerate(rows, 1)), fields, names, "data"))


def _checked(
    rows: Iterable[tuple[str, object]], fields: Sequence[str], names: dict[str, str] | None, path: str
) -> Iterator[dict[str, str]]:
    """Each ``(where, row)`` as a record of ``fields`` (strings); InputError naming ``where``."""
    names = {f: (names or {}).get(f, f) for f in fields}
    seen: set[str] = set()
    empty = True
    for where, row in rows:
        empty = False
        if not isinstance(row, dict):
            raise InputError(f"{path}: {where} is not an object")
        record = {}
        for field, column in names.items():
            value = row.get(column)
            if value is None or (isinstance(value, float) and value != value):
                raise missing_field(path, where, column, row)
            value = str(value)
            if field != "id" and not value.strip():
                raise InputError(
                    f"{path}: {where} (id {row.get(names.get('id', 'id'))}) has an empty {column!r}"
                )
            record[field] = value
        if "id" in record:
            if record["id"] in seen:
                raise InputError(f"{path}: {where} repeats id {record['id']!r}")
            seen.add(record["id"])
        yield record
    if empty:
        raise InputError(f"{path}: no rows")


def windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter), read lazily from ``items``."""
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
