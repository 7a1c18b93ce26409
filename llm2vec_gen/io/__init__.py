"""The I/O layer under ``train/``, ``integrations/`` and the CLI: one reader, one writer, one store.

- ``rows``: the one parser of record files (.jsonl/.ndjson/.csv/.tsv/.parquet/.json) with its checks
  (UTF-8, line length, JSON, column counts), errors ``InputError`` naming file and line;
- ``texts``: ``(ids, texts)`` of a texts file (also .txt), streamed in chunks (encode, decode, bench);
- ``records``: training records with required fields and unique ids (respond, teach, train);
- ``embeddings``: fp32 [N, D] embeddings with their ids, .npy/.npz/.safetensors/.parquet;
- ``chunks``: the append-only chunk store with its manifest that makes long runs resumable;
- ``stream``: ``encode_file``, a texts file encoded chunk by chunk into an embeddings file;
- ``atomic``: crash-safe writes (temporary file, fsync, rename).
"""

from llm2vec_gen.io.embeddings import (
    OUTPUT_SUFFIXES,
    read_embeddings,
    write_embeddings,
    write_embeddings_stream,
)
from llm2vec_gen.io.records import check_records, iter_records, read_records
from llm2vec_gen.io.rows import InputError, iter_rows
from llm2vec_gen.io.stream import StreamResult, encode_file
from llm2vec_gen.io.texts import INPUT_SUFFIXES, iter_texts, read_texts

__all__ = [
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "InputError",
    "StreamResult",
    "check_records",
    "encode_file",
    "iter_records",
    "iter_rows",
    "iter_texts",
    "read_embeddings",
    "read_records",
    "read_texts",
    "write_embeddings",
    "write_embeddings_stream",
]
