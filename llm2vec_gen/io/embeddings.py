"""Embedding files: fp32 [N, D] vectors with their ids, written from a stream of chunks.

Formats (chosen by suffix), each keeping the ids in input order; every file is written to a
temporary name, fsynced and renamed into place (``atomic``):
  ``.npy``          the fp32 [N, D] matrix; ids in a sidecar ``<name>.ids.json``
  ``.npz``          arrays ``embeddings`` [N, D] and ``ids`` [N] (str)
  ``.safetensors``  tensor ``embeddings`` [N, D]; ids as JSON in the metadata key ``ids``
  ``.parquet``      columns ``id`` (string) and ``embedding`` (fixed-size list of float32)
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from llm2vec_gen.io.atomic import atomic_write, atomic_write_file
from llm2vec_gen.io.rows import pyarrow

OUTPUT_SUFFIXES = (".npy", ".npz", ".safetensors", ".parquet")


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


def write_npy_stream(f: BinaryIO, blocks: Iterable[np.ndarray], shape: tuple[int, ...]) -> None:
    """A .npy file of fp32 ``shape`` into ``f``, from ``blocks`` that hold its rows in order."""
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
    for block in blocks:
        f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())


def _write_npy(f: BinaryIO, parts: Parts, rows: int, dim: int) -> None:
    write_npy_stream(f, (emb for _, emb in parts()), (rows, dim))


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
    pa = pyarrow()
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

        atomic_write_file(path, lambda f: _write_npy(f, checked, rows, dim))
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
        table = pyarrow().parquet.read_table(path)
        dim = table.schema.field("embedding").type.list_size
        flat = table.column("embedding").combine_chunks().flatten().to_numpy()
        return table.column("id").to_pylist(), flat.reshape(table.num_rows, dim).astype(np.float32)
    raise ValueError(
        f"{path}: unsupported embeddings file {suffix!r} (use one of {', '.join(OUTPUT_SUFFIXES)})"
    )
