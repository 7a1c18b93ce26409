"""Encoding a texts file of any size chunk by chunk into an embeddings file, resumable after a kill.

The input is read as a stream (``texts.iter_texts``, or chunks the caller gives), ``chunk_rows``
records at a time; each chunk is encoded and committed to the ``chunks.ChunkStore`` beside the
output. ``resume=True`` reads the store's manifest, checks that the input file and the settings are
unchanged, skips the committed records without encoding them and goes on. When the input is
exhausted the chunks are merged (streamed, one chunk in memory) into the output (``embeddings``),
written to a temporary name and renamed; the store is deleted last, so a kill during the merge is
resumed by merging again. Memory holds one chunk, never the file.

The encoder is any callable ``encode(texts: list[str])`` returning embeddings [n, D] (anything
``np.asarray`` reads: a numpy array, a CPU tensor; saved fp32) or, when a recon output is asked
for, the pair (embeddings [n, D], recon states [n, K, H]); this module knows nothing of the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm2vec_gen.io.chunks import ChunkStore, input_identity
from llm2vec_gen.io.embeddings import write_embeddings_stream
from llm2vec_gen.io.rows import MAX_LINE_BYTES, InputError
from llm2vec_gen.io.texts import Chunk, iter_texts

Encode = Callable[[list[str]], Any]


@dataclass(frozen=True)
class StreamResult:
    """What ``encode_file`` did: rows in the output, chunks, rows found committed on resume."""

    rows: int
    chunks: int
    resumed_rows: int
    output: Path


def _check_skipped(input_path: Path, skipped: int, committed_rows: int) -> None:
    if skipped != committed_rows:
        raise InputError(
            f"{input_path} now holds {skipped} records where {committed_rows} were committed; start over"
        )


def encode_file(
    encode: Encode,
    input_path: str | Path,
    output: str | Path,
    *,
    dim: int,
    text_field: str = "text",
    id_field: str = "id",
    chunk_rows: int = 4096,
    resume: bool = False,
    recon_output: str | Path | None = None,
    recon_shape: Sequence[int] | None = None,
    bad_bytes: str = "error",
    max_line_bytes: int = MAX_LINE_BYTES,
    settings: dict | None = None,
    progress: bool = False,
    chunks: Iterable[Chunk] | None = None,
    metadata: dict[str, str] | None = None,
    restart_on_change: bool = False,
) -> StreamResult:
    """Encodes every text of ``input_path`` into ``output`` (ids + fp32 [N, ``dim``], see ``embeddings``).

    ``encode`` runs on each chunk of ``chunk_rows`` records (see the module docstring); with
    ``recon_output`` (.npy) it returns the recon states too, of per-row shape ``recon_shape``
    ``[K, H]``, and they are saved as fp32 [N, K, H]. ``resume=True`` continues a killed run with the
    same input and options: ``settings`` (what else shapes the result, e.g. the checkpoint, dtype,
    batch size, instruction) must match too; with ``restart_on_change`` a store whose input or
    settings differ is discarded instead of refused. ``chunks``: the ``(ids, texts)`` chunks to encode
    instead of ``iter_texts(input_path, ...)`` (e.g. a record range, or records checked by another
    reader); ``input_path`` still identifies the input in the manifest. ``metadata``: extra entries
    of a .safetensors output header. Raises ``InputError`` naming the line of a malformed input.
    """
    input_path, output = Path(input_path), Path(output)
    if recon_output is not None and recon_shape is None:
        raise ValueError("recon_output needs recon_shape [K, H]")
    recon_shape = [int(n) for n in recon_shape] if recon_output is not None else None
    if chunks is None:
        chunks = iter_texts(input_path, text_field, id_field, chunk_rows, max_line_bytes, bad_bytes)
    full_settings = {
        **input_identity(input_path),
        "text_field": text_field,
        "id_field": id_field,
        "chunk_rows": chunk_rows,
        "bad_bytes": bad_bytes,
        "dim": int(dim),
        "recon_shape": recon_shape,
        **(settings or {}),
    }
    store = ChunkStore(output)
    manifest = store.open(json.loads(json.dumps(full_settings)), resume, restart_on_change)
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
            out = encode(texts)
            emb, recon = out if recon_output is not None else (out, None)
            store.commit(ids, emb, recon)
            if bar is not None:
                bar.update(len(ids))
        _check_skipped(input_path, skipped, resumed_rows)
        store.finish()
    if bar is not None:
        bar.close()
    extra = {"metadata": metadata} if metadata else {}
    write_embeddings_stream(output, store.parts, manifest["rows"], int(dim), **extra)
    if recon_output is not None:
        store.write_recon(recon_output, tuple(recon_shape))
    store.remove()
    return StreamResult(manifest["rows"], manifest["chunks"], resumed_rows, output)
