"""Encoding a texts file of any size chunk by chunk, resumable after a crash or a kill.

The input is read as a stream (``files.iter_texts``), ``chunk_rows`` records at a time; each chunk
is encoded and committed to an append-only store beside the output, ``<output>.parts/``:

    chunk-000000.npy        fp32 [n, D] embeddings of chunk 0
    chunk-000000.ids.json   its n ids
    chunk-000000.recon.npy  fp32 [n, N, H] recon states (only with a recon output)
    manifest.json           the settings, the number of committed chunks and rows, whether the
                            input is exhausted (a few hundred bytes, however long the run)

A chunk's files are written to temporary names, fsynced and renamed; the manifest is rewritten the
same way (and the directory fsynced) only after them, so it counts only chunks that are complete on
disk. A kill at any point loses at most the chunk being encoded: ``resume=True`` reads the manifest,
checks that the input file and the settings are unchanged, skips the committed records without
encoding them and goes on; files of a chunk the manifest does not list are overwritten. When the
input is exhausted the chunks are merged (streamed, one chunk in memory) into the output, written
to a temporary name and renamed; the store is deleted last, so a kill during the merge is resumed
by merging again. Memory holds one chunk, never the file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm2vec_gen._atomic import atomic_write, fsync_dir
from llm2vec_gen.integrations import files

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class StreamResult:
    """What ``encode_file`` did: rows in the output, chunks, rows found committed on resume."""

    rows: int
    chunks: int
    resumed_rows: int
    output: Path


def parts_dir(output: str | Path) -> Path:
    """The chunk store of ``output``: ``<output>.parts`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def _commit(path: Path, write: Callable[[Any], None]) -> None:
    """``write(f)`` to a binary file committed atomically onto ``path``."""

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_write(path, to_file)


def _write_manifest(store: Path, manifest: dict) -> None:
    _commit(store / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    fsync_dir(store)


def input_identity(path: Path) -> dict:
    """What a resumed run checks to know the input is unchanged: its path, size and mtime."""
    stat = path.stat()
    return {"input": str(path.resolve()), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}


def _open_store(store: Path, settings: dict, resume: bool, restart_on_change: bool = False) -> dict:
    """The manifest to continue from (resume) or a fresh, empty store (also when the settings
    changed and ``restart_on_change``)."""
    manifest_path = store / MANIFEST
    if resume and manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{manifest_path}: unreadable ({exc}); delete {store} to start over") from exc
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT}")
        old = manifest.get("settings", {})
        changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
        if changed and not restart_on_change:
            details = "; ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise ValueError(
                f"cannot resume from {store}: {details}. Re-run with the same input and options, "
                f"or without --resume to start over"
            )
        if not changed:
            return manifest
    if store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True)
    manifest = {"format": FORMAT, "settings": settings, "chunks": 0, "rows": 0, "done": False}
    _write_manifest(store, manifest)
    return manifest


def chunk_file(store: Path, index: int, kind: str) -> Path:
    """File of chunk ``index``: kind "emb" (.npy), "ids" (.ids.json) or "recon" (.recon.npy)."""
    suffix = {"emb": ".npy", "ids": ".ids.json", "recon": ".recon.npy"}[kind]
    return store / f"chunk-{index:06d}{suffix}"


def _save_chunk(store: Path, index: int, ids: list[str], emb: np.ndarray, recon: np.ndarray | None) -> None:
    as_f32 = np.ascontiguousarray
    _commit(chunk_file(store, index, "emb"), lambda f: np.save(f, as_f32(emb, dtype=np.float32)))
    if recon is not None:
        _commit(chunk_file(store, index, "recon"), lambda f: np.save(f, as_f32(recon, dtype=np.float32)))
    _commit(chunk_file(store, index, "ids"), lambda f: f.write(json.dumps(ids).encode()))


def _check_skipped(input_path: Path, skipped: int, committed_rows: int) -> None:
    if skipped != committed_rows:
        raise ValueError(
            f"{input_path} now holds {skipped} records where {committed_rows} were committed; start over"
        )


def _merge(
    store: Path, manifest: dict, output: Path, recon_output: Path | None, dim: int, metadata: dict | None
) -> None:
    chunks = range(manifest["chunks"])

    def parts() -> Iterator[tuple[list[str], np.ndarray]]:
        for index in chunks:
            ids = json.loads(chunk_file(store, index, "ids").read_text(encoding="utf-8"))
            yield ids, np.load(chunk_file(store, index, "emb"), mmap_mode="r")

    extra = {"metadata": metadata} if metadata else {}
    files.write_embeddings_stream(output, parts, manifest["rows"], dim, **extra)
    if recon_output is not None:
        trailing = tuple(manifest["settings"]["recon_shape"])

        def write(f) -> None:
            shape = (manifest["rows"], *trailing)
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
            for index in chunks:
                recon = np.load(chunk_file(store, index, "recon"), mmap_mode="r")
                f.write(np.ascontiguousarray(recon, "<f4").tobytes())

        _commit(recon_output, write)


def encode_file(
    model: Any,
    input_path: str | Path,
    output: str | Path,
    *,
    text_field: str = "text",
    id_field: str = "id",
    chunk_rows: int = 4096,
    resume: bool = False,
    recon_output: str | Path | None = None,
    bad_bytes: str = "error",
    max_line_bytes: int = files.MAX_LINE_BYTES,
    settings: dict | None = None,
    progress: bool = False,
    chunks: Iterable[files.Chunk] | None = None,
    metadata: dict[str, str] | None = None,
    restart_on_change: bool = False,
    **encode_kwargs: Any,
) -> StreamResult:
    """Encodes every text of ``input_path`` into ``output`` (ids + fp32 [N, D], see ``files``).

    ``model.encode(texts, **encode_kwargs)`` runs on each chunk of ``chunk_rows`` records (so
    ``batch_size``, ``max_length``, ``instruction``, ``normalize`` pass through); with
    ``recon_output`` (.npy) the recon states [N, N_tok, H] are saved as well. ``resume=True``
    continues a killed run with the same input and options (``settings``, e.g. the checkpoint and
    dtype, must match too); with ``restart_on_change`` a store whose input or settings differ is
    discarded instead of refused. ``chunks``: the ``(ids, texts)`` chunks to encode instead of
    ``files.iter_texts(input_path, ...)`` (e.g. a record range, or records checked by another
    reader); ``input_path`` still identifies the input in the manifest. ``metadata``: extra
    entries of a .safetensors output header. Raises ``files.InputError`` naming the line of a
    malformed input.
    """
    input_path, output = Path(input_path), Path(output)
    recon_output = Path(recon_output) if recon_output is not None else None
    store = parts_dir(output)
    dim = int(model.embedding_dim)
    recon_shape = [int(model.num_encode_tokens), int(model.special_rows.shape[1])] if recon_output else None
    if chunks is None:
        chunks = files.iter_texts(input_path, text_field, id_field, chunk_rows, max_line_bytes, bad_bytes)
    full_settings = {
        **input_identity(input_path),
        "text_field": text_field,
        "id_field": id_field,
        "chunk_rows": chunk_rows,
        "bad_bytes": bad_bytes,
        "dim": dim,
        "recon_shape": recon_shape,
        **{k: encode_kwargs[k] for k in sorted(encode_kwargs)},
        **(settings or {}),
    }
    manifest = _open_store(store, json.loads(json.dumps(full_settings)), resume, restart_on_change)
    committed, resumed_rows = manifest["chunks"], manifest["rows"]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="Encoding", unit="text", initial=resumed_rows)
    if not manifest["done"]:
        skipped = 0
        for index, (ids, texts) in enumerate(chunks):
            if index < committed:
                skipped += len(ids)
                continue
            _check_skipped(input_path, skipped, resumed_rows)
            if recon_output is not None:
                emb, recon = model.encode(texts, return_recon_states=True, **encode_kwargs)
            else:
                emb, recon = model.encode(texts, **encode_kwargs), None
            _save_chunk(store, index, ids, emb, recon)
            manifest["chunks"] += 1
            manifest["rows"] += len(ids)
            _write_manifest(store, manifest)
            if bar is not None:
                bar.update(len(ids))
        _check_skipped(input_path, skipped, resumed_rows)
        manifest["done"] = True
        _write_manifest(store, manifest)
    if bar is not None:
        bar.close()
    _merge(store, manifest, output, recon_output, dim, metadata)
    shutil.rmtree(store)
    return StreamResult(manifest["rows"], manifest["chunks"], resumed_rows, output)


def check_input(
    input_path: str | Path, text_field: str = "text", id_field: str = "id", bad_bytes: str = "error"
) -> None:
    """Reads the first record only: FileNotFoundError / ValueError / InputError before any model loads."""
    next(files.iter_texts(input_path, text_field, id_field, chunk_rows=1, bad_bytes=bad_bytes), None)
