"""``llm2vec-gen train`` under torchrun with 2 CPU processes (gloo) equals one process, same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from test_train_loop import bert_tokenizer

from llm2vec_gen.io.records import read_records
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import tiny_qwen3
from llm2vec_gen.train import TrainConfig, Trainer
from llm2vec_gen.train.data import DEMO_CORPUS
from llm2vec_gen.train.state import load_state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    records = read_records(DEMO_CORPUS)[:16]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    cache = tmp_path / "teacher.safetensors"
    emb = torch.randn(len(records), 384, generator=torch.Generator().manual_seed(0))
    save_file({"embeddings": emb}, str(cache), metadata={"ids": json.dumps([r["id"] for r in records])})
    base = tmp_path / "base"
    tok = bert_tokenizer()
    tiny_qwen3(len(tok), hidden_size=32, num_layers=1).save_pretrained(base)
    tok.save_pretrained(base)
    args = ["--base", str(base), "--num-special-tokens", "4", "--batch-size", "8", "--micro-batch-size", "2",
            "--max-steps", "2", "--total-steps", "10", "--warmup-steps", "1", "--lr", "1e-2",
            "--max-length", "40", "--save-every", "0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
              "--master_port", str(_free_port())]  # fmt: skip
    cmd = [*launch, "-m", "llm2vec_gen.cli", "train", str(data), str(cache), str(tmp_path / "ddp"), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    model = LLM2VecGenModel.from_base(
        str(base), str(base), num_special_tokens=4, teacher_dim=384, device="cpu", seed=42
    )
    cfg = TrainConfig(output_dir=str(tmp_path / "one"), batch_size=8, micro_batch_size=2, max_steps=2,
                      total_steps=10, warmup_steps=1, lr=1e-2, max_length=40, save_every=0,
                      progress=False)  # fmt: skip
    Trainer(model, str(data), str(cache), cfg).fit()

    one, two = load_state(tmp_path / "one" / "checkpoint-2"), load_state(tmp_path / "ddp" / "checkpoint-2")
    assert two["step"] == 2
    for a, b in zip(one["trainable"], two["trainable"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    log = [json.loads(line) for line in (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in ref], rel=1e-5)
