"""Sharded encoding under torch.distributed (gloo on the CPU).

- two ``torchrun`` processes running ``llm2vec-gen encode`` give exactly the single-process
  embeddings of the tiny checkpoint, ids and rows in input order;
- two spawned processes with a cheap stand-in encoder check the sharding itself: an odd corpus, a
  corpus smaller than the world (an empty shard), order, shard clean-up.

This module imports nothing heavy at the top: spawned children import it to find ``_worker``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llm2vec_gen.integrations.distributed import encode_distributed, merge_shards, shard_bounds
from llm2vec_gen.io.embeddings import read_embeddings


class _LengthEncoder:
    """Stand-in encoder: row i is [len(text), first char code, rank that encoded it]."""

    def __init__(self, rank: int):
        self.rank = rank

    def encode(self, texts, convert_to_numpy=True, **kwargs):
        assert kwargs == {"batch_size": 3}
        return np.array([[len(t), ord(t[0]), self.rank] for t in texts], np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        encoder = _LengthEncoder(rank)
        for n in (7, 1):
            texts = [chr(ord("a") + i) * (i + 1) for i in range(n)]
            merged = encode_distributed(
                encoder, texts, f"{out}/shards{n}", output=f"{out}/{n}.npz", batch_size=3
            )
            assert (merged is None) == (rank != 0)
    finally:
        dist.destroy_process_group()


def test_shard_bounds_cover_in_order():
    for n in (0, 1, 2, 7, 100, 101):
        for world in (1, 2, 3, 8):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [e - s for s, e in bounds]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        shard_bounds(5, 2, 2)


def test_spawned_ranks_merge_in_input_order(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ids, rows = read_embeddings(tmp_path / "7.npz")
    assert ids == [str(i) for i in range(7)]
    np.testing.assert_array_equal(rows[:, 0], np.arange(1, 8))  # lengths 1..7: input order
    np.testing.assert_array_equal(rows[:, 1], [ord("a") + i for i in range(7)])
    np.testing.assert_array_equal(rows[:, 2], [0, 0, 0, 1, 1, 1, 1])  # contiguous shards 3 + 4
    ids, rows = read_embeddings(tmp_path / "1.npz")
    assert ids == ["0"] and rows.tolist() == [[1.0, 97.0, 1.0]]  # rank 0's shard was empty
    assert not (tmp_path / "shards7").exists()


def test_merge_reports_missing_shard(tmp_path):
    np.save(tmp_path / "shard-00000-of-00002.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="rank 1 missing"):
        merge_shards(tmp_path, 2, 4)


def test_without_process_group_is_one_shard(tmp_path):
    out = encode_distributed(_LengthEncoder(0), ["a", "bcd"], tmp_path / "s", keep_shards=True, batch_size=3)
    np.testing.assert_array_equal(out, [[1, 97, 0], [3, 98, 0]])
    assert (tmp_path / "s" / "shard-00000-of-00001.npy").is_file()


def test_torchrun_cli_equals_single_process(tmp_path_factory, tmp_path):
    from integration_checkpoint import TEXTS, tiny_checkpoint

    from llm2vec_gen.model import LLM2VecGenModel

    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("integration"))
    rows = [json.dumps({"id": f"doc{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)]
    (tmp_path / "in.jsonl").write_text("".join(rows))
    args = ["--batch-size", "1", "--max-length", "64", "--task", "document"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port"]
    cmd += [str(_free_port()), "-m", "llm2vec_gen.cli", "encode", str(ckpt), str(tmp_path / "in.jsonl")]
    cmd += [str(tmp_path / "out.safetensors"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "encoded 7 texts on 2 ranks" in done.stdout

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = LLM2VecGenModel.from_pretrained(ckpt, device="cpu")
        from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION

        single = model.encode(TEXTS, batch_size=1, max_length=64, instruction=PASSAGE_INSTRUCTION)
    finally:
        torch.set_num_threads(threads)
    ids, merged = read_embeddings(tmp_path / "out.safetensors")
    assert ids == [f"doc{i}" for i in range(len(TEXTS))]
    np.testing.assert_array_equal(merged, single)
    assert not Path(f"{tmp_path}/out.safetensors.shards").exists()
