"""Texts with their ids, for encode, decode and bench: ``(ids, texts)`` chunks of a record file.

Inputs: ``.txt`` (one text per line, split on ``\\n``, a trailing ``\\r`` dropped; ids ``"0", "1",
...``) or any record file of ``rows`` (.jsonl/.ndjson/.csv/.tsv/.parquet/.json) with a text field
and an optional id field. Without an id field the ids are the record numbers ``"0", "1", ...``.
Beyond the checks of ``rows`` (UTF-8, line length, JSON), ``InputError`` names the line of a record
without the text field, a text that is not a string, and ids present on some records only.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from llm2vec_gen.io.records import windows
from llm2vec_gen.io.rows import (
    MAX_LINE_BYTES,
    ROW_SUFFIXES,
    InputError,
    checked_suffix,
    iter_rows,
    missing_field,
)
from llm2vec_gen.io.rows import lines as read_lines

INPUT_SUFFIXES = (".txt", *ROW_SUFFIXES)
Chunk = tuple[list[str], list[str]]  # (ids, texts)


def _texts(
    path: Path, text_field: str, id_field: str, max_line_bytes: int, bad_bytes: str
) -> Iterator[tuple[str, str]]:
    """``(id, text)`` of every record, checked (see the module docstring)."""
    if path.suffix.lower() == ".txt":
        for number, line in read_lines(path, max_line_bytes, bad_bytes):
            yield str(number - 1), line
        return
    optional = [id_field] if id_field != text_field else []
    has_ids: bool | None = None
    rows = iter_rows(path, [text_field], optional, max_line_bytes, bad_bytes)
    for count, (where, record) in enumerate(rows):
        if text_field not in record:
            raise missing_field(path, where, text_field, record)
        text = record[text_field]
        if not isinstance(text, str):
            raise InputError(
                f"{path}: {where}: field {text_field!r} is {type(text).__name__}, expected a string"
            )
        has_id = record.get(id_field) is not None
        if has_ids is None:
            has_ids = has_id
        elif has_id != has_ids:
            state = "lacks" if has_ids else "has"
            raise InputError(f"{path}: {where} {state} the id field {id_field!r}, unlike the first record")
        yield (str(record[id_field]) if has_id else str(count)), text


def iter_texts(
    path: str | Path,
    text_field: str = "text",
    id_field: str = "id",
    chunk_rows: int = 4096,
    max_line_bytes: int = MAX_LINE_BYTES,
    bad_bytes: str = "error",
    start: int = 0,
    stop: int | None = None,
) -> Iterator[Chunk]:
    """Streams ``(ids, texts)`` chunks of ``chunk_rows`` records (the last one shorter); raises
    FileNotFoundError or ValueError at once, InputError naming the line while reading.

    ``start``/``stop``: only records ``[start, stop)`` (the file is still read, and checked, from
    its first line up to ``stop``, so ids without an id field keep their global numbers)."""
    path = Path(path)
    checked_suffix(path, INPUT_SUFFIXES)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    records = islice(_texts(path, text_field, id_field, max_line_bytes, bad_bytes), start, stop)
    return (([i for i, _ in w], [t for _, t in w]) for w in windows(records, chunk_rows))


def read_texts(
    path: str | Path, text_field: str = "text", id_field: str = "id", bad_bytes: str = "error"
) -> Chunk:
    """All ``(ids, texts)`` of a texts file (see the module docstring)."""
    ids: list[str] = []
    texts: list[str] = []
    for chunk_ids, chunk_texts in iter_texts(path, text_field, id_field, bad_bytes=bad_bytes):
        ids += chunk_ids
        texts += chunk_texts
    return ids, texts


def check_texts(
    path: str | Path, text_field: str = "text", id_field: str = "id", bad_bytes: str = "error"
) -> None:
    """Reads the first record only: FileNotFoundError / ValueError / InputError before a model loads."""
    next(iter_texts(path, text_field, id_field, chunk_rows=1, bad_bytes=bad_bytes), None)
