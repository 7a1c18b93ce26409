"""Reading texts and writing embeddings with their ids, for the CLI and distributed encoding.

Inputs (chosen by suffix), read as a stream (memory does not grow with the file):
  ``.txt``      one text per line (split on ``\\n``, a trailing ``\\r`` dropped); ids ``"0", "1", ...``
  ``.jsonl``    one object per line with a text field and an optional id field; blank lines skipped
  ``.csv/.tsv`` a header row naming the text and (optional) id columns
  ``.parquet``  columns named like the above (needs pyarrow), read batch by batch

Without an id field the ids are the record numbers ``"0", "1", ...``. Bad input raises
``InputError`` (a ValueError) naming the file and the line (parquet: the row): bytes that are not
UTF-8 (unless ``bad_bytes="replace"``, which swaps them for U+FFFD), a line longer than
``max_line_bytes`` (default 16 MiB), a JSON line that does not parse or is not an object, a record
without the text field, a text that is not a string, ids present on some records only.

Outputs (chosen by suffix), each keeping the ids in input order; all are written from a stream
of chunks, to a temporary file renamed into place:
  ``.npy``          the fp32 [N, D] matrix; ids in a sidecar ``<name>.ids.json``
  ``.npz``          arrays ``embeddings`` [N, D] and ``ids`` [N] (str)
  ``.safetensors``  tensor ``embeddings`` [N, D]; ids as JSON in the metadata key ``ids``
  ``.parquet``      columns ``id`` (string) and ``embedding`` (fixed-size list of float32)
"""

from __future__ import annotations

import csv
import json
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from llm2vec_gen._atomic import atomic_write

INPUT_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv", ".parquet")
OUTPUT_SUFFIXES = (".npy", ".npz", ".safetensors", ".parquet")
MAX_LINE_BYTES = 16 << 20
BAD_BYTES = ("error", "replace")

Chunk = tuple[list[str], list[str]]  # (ids, texts)


class InputError(ValueError):
    """A malformed input file; the message names the file and the line (or row)."""


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ImportError("parquet files need `pip install pyarrow`") from exc
    return pyarrow


def _check_input(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported input type {suffix!r} (use one of {', '.join(INPUT_SUFFIXES)})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return suffix


def _lines(path: Path, max_line_bytes: int, bad_bytes: str) -> Iterator[tuple[int, str]]:
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


class _Records:
    """Turns (where, record dict) pairs into ids and texts, checking every record."""

    def __init__(self, path: Path, text_field: str, id_field: str):
        self.path, self.text_field, self.id_field = path, text_field, id_field
        self.count = 0
        self.has_ids: bool | None = None

    def take(self, where: str, record: dict) -> tuple[str, str]:
        if self.text_field not in record:
            raise InputError(f"{self.path}: {where}: no field {self.text_field!r} (fields: {sorted(record)})")
        text = record[self.text_field]
        if not isinstance(text, str):
            raise InputError(
                f"{self.path}: {where}: field {self.text_field!r} is {type(text).__name__}, expected a string"
            )
        has_id = self.id_field in record and record[self.id_field] is not None
        if self.has_ids is None:
            self.has_ids = has_id
        elif has_id != self.has_ids:
            state = "lacks" if self.has_ids else "has"
            raise InputError(
                f"{self.path}: {where} {state} the id field {self.id_field!r}, unlike the first record"
            )
        ident = str(record[self.id_field]) if has_id else str(self.count)
        self.count += 1
        return ident, text


def iter_rows(
    path: Path,
    suffix: str,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
    max_line_bytes: int = MAX_LINE_BYTES,
    bad_bytes: str = "error",
) -> Iterator[tuple[str, dict]]:
    """Streams ``(where, record)`` of a .jsonl/.csv/.tsv/.parquet file, ``where`` naming the line
    (parquet: the row) for error messages; one record in memory. Parquet reads only the columns
    ``required`` (InputError when one is missing) and ``optional`` (when present); the other
    formats yield every field and leave the checks of the fields to the caller."""
    if suffix == ".jsonl":
        for number, line in _lines(path, max_line_bytes, bad_bytes):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise InputError(
                    f"{path}: line {number} is a JSON {type(record).__name__}, expected an object"
                )
            yield f"line {number}", record
    elif suffix in (".csv", ".tsv"):
        numbered = _lines(path, max_line_bytes, bad_bytes)
        line = [0]

        def text_lines() -> Iterator[str]:
            for line[0], text in numbered:
                yield text + "\n"

        reader = csv.reader(text_lines(), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            header = next(reader, None)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise InputError(
                        f"{path}: line {line[0]} has {len(row)} columns, the header {len(header)}"
                    )
                yield f"line {line[0]}", dict(zip(header, row, strict=True))
        except csv.Error as exc:
            raise InputError(f"{path}: line {line[0]}: {exc}") from None
    elif suffix == ".parquet":
        parquet = _pyarrow().parquet.ParquetFile(path)
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
    else:
        raise ValueError(f"{path}: cannot read records from a {suffix!r} file")


def _iter_records(
    path: Path, suffix: str, text_field: str, id_field: str, max_line_bytes: int, bad_bytes: str
) -> Iterator[tuple[str, str]]:
    if suffix == ".txt":
        for number, line in _lines(path, max_line_bytes, bad_bytes):
            yield str(number - 1), line
        return
    records = _Records(path, text_field, id_field)
    optional = [id_field] if id_field != text_field else []
    for where, record in iter_rows(path, suffix, [text_field], optional, max_line_bytes, bad_bytes):
        yield records.take(where, record)


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
    """Streams ``(ids, texts)`` chunks of ``chunk_rows`` records (the last one shorter) from a
    .txt/.jsonl/.csv/.tsv/.parquet file; raises FileNotFoundError, ValueError or InputError.

    ``start``/``stop``: only records ``[start, stop)`` (the file is still read, and checked, from
    its first line up to ``stop``, so ids without an id field keep their global numbers)."""
    path = Path(path)
    suffix = _check_input(path)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    ids: list[str] = []
    texts: list[str] = []
    records = _iter_records(path, suffix, text_field, id_field, max_line_bytes, bad_bytes)
    for ident, text in islice(records, start, stop):
        ids.append(ident)
        texts.append(text)
        if len(ids) == chunk_rows:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts


def read_texts(
    path: str | Path, text_field: str = "text", id_field: str = "id", bad_bytes: str = "error"
) -> tuple[list[str], list[str]]:
    """All ``(ids, texts)`` of a .txt/.jsonl/.csv/.tsv/.parquet file (see the module docstring)."""
    ids: list[str] = []
    texts: list[str] = []
    for chunk_ids, chunk_texts in iter_texts(path, text_field, id_field, bad_bytes=bad_bytes):
        ids += chunk_ids
        texts += chunk_texts
    return ids, texts


# --------------------------------------------------------------------------------------- outputs


def ids_sidecar(path: Path) -> Path:
    """The ids file of a .npy output: ``<name>.ids.json`` beside it."""
    return path.with_name(path.name[: -len(path.suffix)] + ".ids.json")


def _check_output(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported output type {suffix!r} (use one of {', '.join(OUTPUT_SUFFIXES)})"
        )
    return suffix


Parts = Callable[[], Iterable[tuple[list[str], np.ndarray]]]


def _write_npy(f, parts: Parts, rows: int, dim: int) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
    for _, emb in parts():
        f.write(np.ascontiguousarray(emb, dtype="<f4").tobytes())


def _write_ids_json(path: Path, parts: Parts) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        first = True
        for ids, _ in parts():
            for ident in ids:
                f.write(("" if first else ", ") + json.dumps(str(ident)))
                first = False
        f.write("]")


def _write_npz(path: Path, parts: Parts, rows: int, dim: int) -> None:
    width = max((len(str(i)) for ids, _ in parts() for i in ids), default=1)
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        with archive.open("embeddings.npy", "w", force_zip64=True) as f:
            _write_npy(f, parts, rows, dim)
        with archive.open("ids.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": f"<U{width}", "fortran_order": False, "shape": (rows,)}
            )
            for ids, _ in parts():
                f.write(np.array([str(i) for i in ids], dtype=f"<U{width}").tobytes())


def _write_safetensors(path: Path, parts: Parts, rows: int, dim: int, metadata: dict[str, str]) -> None:
    ids = [str(i) for chunk, _ in parts() for i in chunk]  # the format keeps all ids in its header
    header = {
        "__metadata__": {**metadata, "ids": json.dumps(ids)},
        "embeddings": {"dtype": "F32", "shape": [rows, dim], "data_offsets": [0, rows * dim * 4]},
    }
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for _, emb in parts():
            f.write(np.ascontiguousarray(emb, dtype="<f4").tobytes())


def _write_parquet(path: Path, parts: Parts, dim: int) -> None:
    pa = _pyarrow()
    schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])
    with pa.parquet.ParquetWriter(path, schema) as writer:
        for ids, emb in parts():
            flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1))
            column = pa.FixedSizeListArray.from_arrays(flat, dim)
            writer.write_table(
                pa.table({"id": pa.array([str(i) for i in ids], pa.string()), "embedding": column})
            )


def write_embeddings_stream(
    path: str | Path, parts: Parts, rows: int, dim: int, metadata: dict[str, str] | None = None
) -> None:
    """Writes ``rows`` fp32 embeddings of width ``dim`` with their ids, one chunk in memory at a time.

    ``parts()`` yields ``(ids [n], embeddings [n, D])`` chunks in order; it may be called more than
    once (npz and safetensors read the ids first). Each file goes to a temporary name, is fsynced
    and renamed into place (.npy: the ids sidecar first). ``metadata``: extra string entries of a
    .safetensors header (beside ``ids``); other formats have no place for them (ValueError).
    """
    path = Path(path)
    suffix = _check_output(path)
    if metadata and suffix != ".safetensors":
        raise ValueError(f"{path}: only a .safetensors output carries metadata")
    path.parent.mkdir(parents=True, exist_ok=True)

    def checked() -> Iterator[tuple[list[str], np.ndarray]]:
        seen = 0
        for ids, emb in parts():
            if emb.ndim != 2 or emb.shape != (len(ids), dim):
                raise ValueError(
                    f"a chunk of {len(ids)} ids holds embeddings of shape {emb.shape}, want [n, {dim}]"
                )
            seen += len(ids)
            yield ids, emb
        if seen != rows:
            raise ValueError(f"the chunks hold {seen} rows, expected {rows}")

    if suffix == ".npy":
        atomic_write(ids_sidecar(path), lambda tmp: _write_ids_json(tmp, checked))

        def npy(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                _write_npy(f, checked, rows, dim)

        atomic_write(path, npy)
    elif suffix == ".npz":
        atomic_write(path, lambda tmp: _write_npz(tmp, checked, rows, dim))
    elif suffix == ".safetensors":
        atomic_write(path, lambda tmp: _write_safetensors(tmp, checked, rows, dim, metadata or {}))
    else:
        atomic_write(path, lambda tmp: _write_parquet(tmp, checked, dim))


def write_embeddings(path: str | Path, ids: list[str], embeddings: np.ndarray) -> None:
    """Writes fp32 ``embeddings`` [N, D] and their ``ids`` [N] to .npy/.npz/.safetensors/.parquet."""
    _check_output(Path(path))
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
        raise ValueError(f"embeddings must be [N, D] with N = len(ids) = {len(ids)}, got {embeddings.shape}")
    ids = [str(i) for i in ids]
    write_embeddings_stream(path, lambda: [(ids, embeddings)], len(ids), embeddings.shape[1])


def read_embeddings(path: str | Path, mmap: bool = False) -> tuple[list[str], np.ndarray]:
    """Reads back ``(ids, embeddings)`` written by :func:`write_embeddings`; embeddings fp32 [N, D]
    (``mmap``: a .npy is memory-mapped read-only instead of loaded)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        emb = np.load(path, mmap_mode="r" if mmap else None)
        return json.loads(ids_sidecar(path).read_text(encoding="utf-8")), emb
    if suffix == ".npz":
        with np.load(path) as data:
            return [str(i) for i in data["ids"]], data["embeddings"]
    if suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            return json.loads(f.metadata()["ids"]), f.get_tensor("embeddings")
    if suffix == ".parquet":
        table = _pyarrow().parquet.read_table(path)
        dim = table.schema.field("embedding").type.list_size
        flat = table.column("embedding").combine_chunks().flatten().to_numpy()
        return table.column("id").to_pylist(), flat.reshape(table.num_rows, dim).astype(np.float32)
    raise ValueError(
        f"{path}: unsupported embeddings file {suffix!r} (use one of {', '.join(OUTPUT_SUFFIXES)})"
    )
