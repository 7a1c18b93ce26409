"""Encoding one corpus across processes and hosts with ``torch.distributed`` (torchrun).

Every rank encodes only its contiguous shard ``[N*r//W, N*(r+1)//W)`` of the N records and writes
``shard-<r>-of-<W>.npy`` into a shard directory; after a barrier rank 0 reads the shards in rank
order, so rows come back in input order, and writes the merged file. ``encode_file_distributed``
(the CLI's path) streams a texts file: each rank counts the records in one streaming pass, then
reads its own range chunk by chunk through ``llm2vec_gen.io.stream.encode_file``, and rank 0 merges the
shards slice by slice, so no rank holds the corpus. ``encode_distributed`` takes a list of texts.
Shards go through the filesystem, so across hosts the shard directory must be on a filesystem
every host sees (NFS, Lustre, a mounted bucket).

    torchrun --nproc-per-node 8 -m llm2vec_gen.cli encode CKPT corpus.jsonl emb.npy   # one host
    torchrun --nnodes 4 --node-rank $NODE --nproc-per-node 8 \\
        --rdzv-backend c10d --rdzv-endpoint $HOST0:29500 \\
        -m llm2vec_gen.cli encode CKPT corpus.jsonl /mnt/nfs/emb.npy             # four hosts

The process group uses nccl when CUDA is available (each rank on ``cuda:LOCAL_RANK``), else gloo.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from llm2vec_gen.io import embeddings
from llm2vec_gen.io.atomic import atomic_write_file
from llm2vec_gen.io.stream import Encode, encode_file
from llm2vec_gen.io.texts import iter_texts


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its global rank, the world size, its rank on the host, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, end)`` of rank ``rank``'s contiguous shard of ``n`` items (sizes differ by at most 1)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    return n * rank // world_size, n * (rank + 1) // world_size


def is_launched() -> bool:
    """True when torchrun (or another launcher) set up more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(backend: str | None = None, timeout: timedelta = timedelta(hours=2)) -> DistInfo:
    """Joins the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    ``backend`` defaults to nccl when CUDA is available and gloo otherwise; with nccl the process is
    bound to ``cuda:LOCAL_RANK``. Already initialised groups are reused. ``timeout`` bounds how long
    the fastest rank waits for the slowest at the barrier.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if backend is None else backend == "nccl"
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        kwargs = {"device_id": device} if use_cuda else {}
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"), timeout=timeout, **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def teardown() -> None:
    """Leaves the process group ``setup`` joined (nothing without one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _shard_path(shard_dir: Path, rank: int, world_size: int) -> Path:
    return shard_dir / f"shard-{rank:05d}-of-{world_size:05d}.npy"


def _written_shards(shard_dir: Path, world_size: int) -> list[Path]:
    """The shard files of every rank, in rank order; FileNotFoundError naming a missing one."""
    paths = [_shard_path(shard_dir, rank, world_size) for rank in range(world_size)]
    for rank, path in enumerate(paths):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: shard of rank {rank} missing; across hosts the shard directory must be on a "
                "filesystem that every host sees"
            )
    return paths


def merge_shards(shard_dir: str | Path, world_size: int, n: int) -> np.ndarray:
    """Concatenates the ``world_size`` shard files in rank order: fp32 [n, D]."""
    parts = [np.load(path) for path in _written_shards(Path(shard_dir), world_size)]
    merged = np.concatenate([p for p in parts if p.size], axis=0) if any(p.size for p in parts) else parts[0]
    if merged.shape[0] != n:
        raise RuntimeError(f"merged shards hold {merged.shape[0]} rows, expected {n}")
    return merged


def encode_distributed(
    model: Any,
    texts: list[str],
    shard_dir: str | Path,
    *,
    ids: list[str] | None = None,
    output: str | Path | None = None,
    keep_shards: bool = False,
    **encode_kwargs: Any,
) -> np.ndarray | None:
    """Encodes ``texts`` split across the ranks of the current process group.

    Each rank calls ``model.encode(shard, convert_to_numpy=True, **encode_kwargs)`` on its
    contiguous shard and writes it under ``shard_dir``. Rank 0 returns the merged fp32 [N, D]
    embeddings in input order (and writes them with ``ids`` to ``output`` when given, see
    ``llm2vec_gen.io.embeddings``); the other ranks return None. Without an initialised
    process group this is a plain single-process encode. Shards are deleted after the merge
    unless ``keep_shards``.
    """
    texts = list(texts)
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    start, end = shard_bounds(len(texts), rank, world_size)
    shard = np.zeros((0, 0), np.float32)
    if end > start:
        out = model.encode(texts[start:end], convert_to_numpy=True, **encode_kwargs)
        shard = np.asarray(out, np.float32).reshape(end - start, -1)
    atomic_write_file(_shard_path(shard_dir, rank, world_size), lambda f: np.save(f, shard))
    if world_size > 1:
        dist.barrier()
    merged = None
    if rank == 0:
        merged = merge_shards(shard_dir, world_size, len(texts))
        if output is not None:
            embeddings.write_embeddings(
                output, ids if ids is not None else [str(i) for i in range(len(texts))], merged
            )
        if not keep_shards:
            for r in range(world_size):
                _shard_path(shard_dir, r, world_size).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # left in place if it holds anything else
                shard_dir.rmdir()
    if world_size > 1:
        dist.barrier()
    return merged


def encode_file_distributed(
    encode: Encode,
    input_path: str | Path,
    shard_dir: str | Path,
    output: str | Path,
    *,
    dim: int,
    text_field: str = "text",
    id_field: str = "id",
    chunk_rows: int = 4096,
    bad_bytes: str = "error",
    keep_shards: bool = False,
    progress: bool = False,
    settings: dict | None = None,
) -> int:
    """Encodes a texts file (see ``llm2vec_gen.io.texts``) across the ranks of the process group.

    Each rank streams its contiguous range of records, ``chunk_rows`` at a time, through
    ``encode(texts) -> [n, dim]`` into ``shard-<r>-of-<W>.npy`` (fp32 [n_r, dim]) with an ids
    sidecar; rank 0 merges them in input order into ``output``, ``chunk_rows`` rows in memory at a
    time. ``settings``: what else shapes the result, recorded in each shard's manifest. Returns the
    number of records (every rank); without a process group this is a single-process streamed encode.
    """
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    read = {"text_field": text_field, "id_field": id_field, "bad_bytes": bad_bytes}
    n = sum(len(ids) for ids, _ in iter_texts(input_path, chunk_rows=chunk_rows, **read))
    start, end = shard_bounds(n, rank, world_size)
    shard = _shard_path(shard_dir, rank, world_size)
    encode_file(
        encode,
        input_path,
        shard,
        dim=dim,
        chunk_rows=chunk_rows,
        chunks=iter_texts(input_path, chunk_rows=chunk_rows, start=start, stop=end, **read),
        settings={**(settings or {}), "shard": [start, end]},
        progress=progress and rank == 0,
        **read,
    )
    if world_size > 1:
        dist.barrier()
    if rank == 0:
        shards = _written_shards(shard_dir, world_size)

        def parts() -> Iterator[tuple[list[str], np.ndarray]]:
            for path in shards:
                ids, emb = embeddings.read_embeddings(path, mmap=True)
                for lo in range(0, len(ids), chunk_rows):
                    yield ids[lo : lo + chunk_rows], emb[lo : lo + chunk_rows]

        embeddings.write_embeddings_stream(output, parts, n, dim)
        if not keep_shards:
            for path in shards:
                path.unlink(missing_ok=True)
                embeddings.ids_sidecar(path).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # left in place if it holds anything else
                shard_dir.rmdir()
    if world_size > 1:
        dist.barrier()
    return n
