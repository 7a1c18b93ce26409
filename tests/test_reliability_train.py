"""``llm2vec-gen train`` survives SIGKILL: a real subprocess is killed between checkpoints (mid-step)
and while a checkpoint is being written (before its ``complete`` marker), resumed each time, and
its final weights equal an uninterrupted run's bit for bit. Torn or corrupted checkpoints are never
resumed from silently.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from llm2vec_gen.checkpoint import ADAPTER_WEIGHTS, ALIGN_HEAD, RECON_HEAD
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.teachers import minilm_path
from llm2vec_gen.tiny import tiny_qwen3
from llm2vec_gen.train import TrainConfig, Trainer
from llm2vec_gen.train.checkpoint import MARKER, STATE_FILE, last_checkpoint, load_state

STEPS, SAVE_EVERY, EXAMPLES, DIM = 12, 3, 24, 16


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A tiny Qwen3 base (WordPiece tokenizer), 24 training examples and a random teacher cache."""
    root = tmp_path_factory.mktemp("train_reliability")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    tiny_qwen3(len(tok), hidden_size=32, num_layers=1, seed=0).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    with (root / "data.jsonl").open("w") as f:
        for i in range(EXAMPLES):
            record = {
                "id": f"e{i}",
                "query": f"question {i} about {i * 3}",
                "answer": f"{i} is {i * 7} things",
            }
            f.write(json.dumps(record) + "\n")
    teacher = torch.randn(EXAMPLES, DIM, generator=torch.Generator().manual_seed(0))
    ids = json.dumps([f"e{i}" for i in range(EXAMPLES)])
    save_file({"embeddings": teacher}, str(root / "cache.safetensors"), metadata={"ids": ids})
    return root


def _spawn(work: Path, out: Path, log: str) -> subprocess.Popen:
    argv = [
        "train", str(work / "data.jsonl"), str(work / "cache.safetensors"), str(out),
        "--base", str(work / "base"), "--num-special-tokens", "4", "--batch-size", "4",
        "--max-steps", str(STEPS), "--total-steps", str(STEPS), "--warmup-steps", "2",
        "--save-every", str(SAVE_EVERY), "--max-length", "32", "--device", "cpu", "--seed", "7",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with (work / f"{log}.err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "llm2vec_gen.cli", *argv], stdout=subprocess.DEVNULL, stderr=err, env=env
        )


def _kill_when(proc: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"


def _log_lines(out: Path) -> int:
    try:
        return len((out / "train_log.jsonl").read_text().splitlines())
    except OSError:
        return 0


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The trained tensors of a checkpoint: trainer state, adapter rows and both heads."""
    state = load_state(checkpoint)
    tensors = {f"trainable.{i}": t for i, t in enumerate(state["trainable"])}
    tensors.update({f"adapter.{k}": v for k, v in load_file(checkpoint / ADAPTER_WEIGHTS).items()})
    for head in (RECON_HEAD, ALIGN_HEAD):
        saved = torch.load(checkpoint / head, map_location="cpu", weights_only=True)["state_dict"]
        tensors.update({f"{head}.{k}": v for k, v in saved.items()})
    return tensors


def test_sigkill_mid_step_and_mid_save_then_resume_equals_uninterrupted(work):
    ref = work / "ref"
    proc = _spawn(work, ref, "ref")
    assert proc.wait(timeout=300) == 0, (work / "ref.err").read_text()[-2000:]
    want = _weights(ref / f"checkpoint-{STEPS}")

    out = work / "killed"
    # 1. mid-step: four steps logged, the checkpoint of step 3 written, step 5 under way.
    _kill_when(_spawn(work, out, "kill1"), lambda: _log_lines(out) >= 4)
    first = last_checkpoint(out)
    assert first is not None and (first / MARKER).is_file() and not (out / f"checkpoint-{STEPS}").exists()

    # 2. mid-save: the resumed run is killed while its next checkpoint is still a temporary directory.
    resumed_from = int(first.name.split("-")[1])
    pending = out / f".tmp-checkpoint-{resumed_from + SAVE_EVERY}"
    _kill_when(_spawn(work, out, "kill2"), pending.exists)
    assert pending.exists(), "the kill did not land during the save"
    assert not (out / f"checkpoint-{resumed_from + SAVE_EVERY}").exists()
    assert last_checkpoint(out) == first  # the torn save is ignored: the previous checkpoint stays in use

    # 3. resume to the end.
    proc = _spawn(work, out, "final")
    assert proc.wait(timeout=300) == 0, (work / "final.err").read_text()[-2000:]
    got = _weights(out / f"checkpoint-{STEPS}")
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), f"{name} differs from the uninterrupted run"
    assert not list(out.glob(".tmp-checkpoint-*")), "a torn temporary checkpoint was left behind"
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == list(range(1, STEPS + 1))


def _trainer(work: Path, out: Path) -> Trainer:
    base = str(work / "base")
    model = LLM2VecGenModel.from_base(base, base, num_special_tokens=4, teacher_dim=DIM, device="cpu", seed=7)
    config = TrainConfig(
        output_dir=str(out), batch_size=4, max_steps=STEPS, total_steps=STEPS, warmup_steps=2,
        save_every=SAVE_EVERY, max_length=32, seed=7, progress=False,
    )  # fmt: skip
    return Trainer(model, str(work / "data.jsonl"), str(work / "cache.safetensors"), config)


def test_torn_or_corrupted_checkpoints_are_not_resumed_silently(work, tmp_path):
    ref = work / "ref"
    if not (ref / f"checkpoint-{STEPS}").is_dir():  # run alone: build the reference here
        assert _spawn(work, ref, "ref").wait(timeout=300) == 0
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(ref / "checkpoint-3", out / "checkpoint-3")
    torn = out / "checkpoint-6"  # a checkpoint copied without its marker, state cut short
    shutil.copytree(ref / "checkpoint-6", torn)
    (torn / MARKER).unlink()
    state = (torn / STATE_FILE).read_bytes()
    (torn / STATE_FILE).write_bytes(state[: len(state) // 2])
    assert last_checkpoint(out) == out / "checkpoint-3"
    assert _trainer(work, out).step == 3

    (torn / MARKER).write_text(json.dumps({"step": 6}))  # marked complete, yet its state is truncated
    with pytest.raises(Exception) as info:  # noqa: PT011 - the loader's own error; see the report
        _trainer(work, out)
    assert not isinstance(info.value, (KeyError, AttributeError)), info.value
