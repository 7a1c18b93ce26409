"""Reading texts and writing embeddings with their ids, for the CLI and distributed encoding.

Inputs (chosen by suffix):
  ``.txt``      one text per line; ids are the line numbers ``"0", "1", ...``
  ``.jsonl``    one object per line with a text field and an optional id field
  ``.csv/.tsv`` a header row naming the text and (optional) id columns
  ``.parquet``  columns named like the above (needs pyarrow)

Outputs (chosen by suffix), each keeping the ids in input order:
  ``.npy``          the fp32 [N, D] matrix; ids in a sidecar ``<name>.ids.json``
  ``.npz``          arrays ``embeddings`` [N, D] and ``ids`` [N] (str)
  ``.safetensors``  tensor ``embeddings`` [N, D]; ids as JSON in the metadata key ``ids``
  ``.parquet``      columns ``id`` (string) and ``embedding`` (fixed-size list of float32)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

INPUT_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv", ".parquet")
OUTPUT_SUFFIXES = (".npy", ".npz", ".safetensors", ".parquet")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ImportError("parquet files need `pip install pyarrow`") from exc
    return pyarrow


def _pick(records: list[dict], path: Path, text_field: str, id_field: str) -> tuple[list[str], list[str]]:
    if records and text_field not in records[0]:
        raise ValueError(f"{path}: no field {text_field!r} (fields: {sorted(records[0])})")
    texts = [str(r[text_field]) for r in records]
    has_ids = bool(records) and id_field in records[0]
    ids = [str(r[id_field]) for r in records] if has_ids else [str(i) for i in range(len(records))]
    return ids, texts


def read_texts(
    path: str | Path, text_field: str = "text", id_field: str = "id"
) -> tuple[list[str], list[str]]:
    """Reads ``(ids, texts)`` from a .txt/.jsonl/.csv/.tsv/.parquet file (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported input type {suffix!r} (use one of {', '.join(INPUT_SUFFIXES)})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".txt":
        texts = path.read_text(encoding="utf-8").splitlines()
        return [str(i) for i in range(len(texts))], texts
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            records = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    else:
        records = _pyarrow().parquet.read_table(path).to_pylist()
    return _pick(records, path, text_field, id_field)


def _ids_sidecar(path: Path) -> Path:
    return path.with_name(path.name[: -len(path.suffix)] + ".ids.json")


def write_embeddings(path: str | Path, ids: list[str], embeddings: np.ndarray) -> None:
    """Writes fp32 ``embeddings`` [N, D] and their ``ids`` [N] to .npy/.npz/.safetensors/.parquet."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported output type {suffix!r} (use one of {', '.join(OUTPUT_SUFFIXES)})"
        )
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
        raise ValueError(f"embeddings must be [N, D] with N = len(ids) = {len(ids)}, got {embeddings.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [str(i) for i in ids]
    if suffix == ".npy":
        np.save(path, embeddings)
        _ids_sidecar(path).write_text(json.dumps(ids), encoding="utf-8")
    elif suffix == ".npz":
        np.savez(path, embeddings=embeddings, ids=np.array(ids, dtype=str))
    elif suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({"embeddings": embeddings}, str(path), metadata={"ids": json.dumps(ids)})
    else:
        pa = _pyarrow()
        dim = embeddings.shape[1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), dim)
        pa.parquet.write_table(pa.table({"id": pa.array(ids, pa.string()), "embedding": column}), path)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Reads back ``(ids, embeddings)`` written by :func:`write_embeddings`; embeddings fp32 [N, D]."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return json.loads(_ids_sidecar(path).read_text(encoding="utf-8")), np.load(path)
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
