"""``llm2vec-gen train`` survives SIGKILL: a real subprocess is killed between checkpoints (mid-step)
and while a checkpoint is being written (before its ``complete`` marker), resumed each time, and
its final weights equal an uninterrupted run's bit for bit, and its log holds each step once. Torn
or corrupted checkpoints are never resumed from silently: a corrupted one is skipped with a warning
(the previous one is used), re-saving a step never leaves it without a complete checkpoint, stale
temporary directories are cleaned up, and the CLI reports missing inputs in one line (exit 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_runs import kill_when
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from llm2vec_gen import cli
from llm2vec_gen.checkpoint import ADAPTER_WEIGHTS, ALIGN_HEAD, RECON_HEAD
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.teachers import minilm_path
from llm2vec_gen.tiny import tiny_qwen3
from llm2vec_gen.train import TrainConfig, Trainer
from llm2vec_gen.train import state as ckpt_mod
from llm2vec_gen.train.state import (
    MARKER,
    STATE_FILE,
    clean_stale,
    last_checkpoint,
    load_state,
    save_checkpoint,
)

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


def _spawn(work: Path, out: Path, log: str, *extra: str) -> subprocess.Popen:
    argv = [
        "train", str(work / "data.jsonl"), str(work / "cache.safetensors"), str(out),
        "--base", str(work / "base"), "--num-special-tokens", "4", "--batch-size", "4",
        "--max-steps", str(STEPS), "--total-steps", str(STEPS), "--warmup-steps", "2",
        "--save-every", str(SAVE_EVERY), "--max-length", "32", "--device", "cpu", "--seed", "7", *extra,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with (work / f"{log}.err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "llm2vec_gen.cli", *argv], stdout=subprocess.DEVNULL, stderr=err, env=env
        )


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
    kill_when(_spawn(work, out, "kill1"), lambda: _log_lines(out) >= 4)
    first = last_checkpoint(out)
    assert first is not None and (first / MARKER).is_file() and not (out / f"checkpoint-{STEPS}").exists()

    # 2. mid-save: the resumed run is killed while its next checkpoint is still a temporary directory.
    resumed_from = int(first.name.split("-")[1])
    pending = out / f".tmp-checkpoint-{resumed_from + SAVE_EVERY}"
    kill_when(_spawn(work, out, "kill2"), pending.exists)
    assert pending.exists(), "the kill did not land during the save"
    assert not (out / f"checkpoint-{resumed_from + SAVE_EVERY}").exists()
    assert last_checkpoint(out) == first  # the torn save is ignored: the previous checkpoint stays in use

    # 3. resume to the end (``--resume`` spells out the default).
    proc = _spawn(work, out, "final", "--resume")
    assert proc.wait(timeout=300) == 0, (work / "final.err").read_text()[-2000:]
    got = _weights(out / f"checkpoint-{STEPS}")
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), f"{name} differs from the uninterrupted run"
    assert not list(out.glob(".tmp-checkpoint-*")), "a torn temporary checkpoint was left behind"
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # steps redone after a kill are logged once


def _trainer(work: Path, out: Path, resume: bool = True) -> Trainer:
    base = str(work / "base")
    model = LLM2VecGenModel.from_base(base, base, num_special_tokens=4, teacher_dim=DIM, device="cpu", seed=7)
    config = TrainConfig(
        output_dir=str(out), batch_size=4, max_steps=STEPS, total_steps=STEPS, warmup_steps=2,
        save_every=SAVE_EVERY, max_length=32, seed=7, progress=False, resume=resume,
    )  # fmt: skip
    return Trainer(model, str(work / "data.jsonl"), str(work / "cache.safetensors"), config)


def _reference(work: Path) -> Path:
    ref = work / "ref"
    if not (ref / f"checkpoint-{STEPS}").is_dir():  # run alone: build the reference here
        assert _spawn(work, ref, "ref").wait(timeout=300) == 0, (work / "ref.err").read_text()[-2000:]
    return ref


def test_torn_or_corrupted_checkpoints_are_not_resumed_silently(work, tmp_path):
    ref = _reference(work)
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

    # marked complete (an old marker without a checksum), yet its state is truncated: skipped loudly
    (torn / MARKER).write_text(json.dumps({"step": 6}))
    shutil.copy(ref / "train_log.jsonl", out / "train_log.jsonl")  # the log of all 12 steps
    corrupted = r"checkpoint-6/trainer_state\.pt: truncated or corrupted checkpoint"
    with pytest.warns(UserWarning, match=corrupted):
        trainer = _trainer(work, out)
    assert trainer.step == 3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference ran with OMP_NUM_THREADS=1: the same reduction order
    try:
        final = trainer.fit()  # redoes steps 4-12 and saves step 6 again over the corrupted one
    finally:
        torch.set_num_threads(threads)
    want, got = _weights(ref / f"checkpoint-{STEPS}"), _weights(final)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), f"{name} differs from the uninterrupted run"
    redone, saved = load_state(torn)["trainable"], load_state(ref / "checkpoint-6")["trainable"]
    assert all(torch.equal(a, b) for a, b in zip(redone, saved, strict=True))
    assert not list(out.glob(".old-checkpoint-*"))
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))

    # every complete checkpoint unreadable: a clear error naming them, never a silent fresh start
    for step in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY):
        (out / f"checkpoint-{step}" / STATE_FILE).write_bytes(b"")
    unreadable = r"no checkpoint in .* could be resumed from: .*checkpoint-12"
    with pytest.raises(ValueError, match=unreadable), pytest.warns(UserWarning):
        _trainer(work, out)


def _corrupt(kind: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) // 3]
    if kind == "empty":
        return b""
    pos = {"flip-header": 40, "flip-middle": len(data) // 2, "flip-end": len(data) - 30}[kind]
    return data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1 :]


@pytest.mark.parametrize("kind", ["truncated", "empty", "flip-header", "flip-middle", "flip-end"])
def test_load_state_names_a_corrupted_file(tmp_path, kind):
    state = {"step": 5, "trainable": [torch.randn(7, 13)], "rng": {"python": (3, (1, 2), None)}}
    ckpt = save_checkpoint(tmp_path, 5, lambda d: None, state)
    assert load_state(ckpt)["step"] == 5
    path = ckpt / STATE_FILE
    path.write_bytes(_corrupt(kind, path.read_bytes()))
    with pytest.raises(ValueError, match=rf"^{path}: truncated or corrupted checkpoint \(.+\)$"):
        load_state(ckpt)


def test_resaving_a_step_always_keeps_a_complete_checkpoint(tmp_path, monkeypatch):
    first = save_checkpoint(tmp_path, 4, lambda d: None, {"step": 4, "v": torch.zeros(3)})
    real_rename, calls = os.rename, []

    def killed_after_first_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the process dies between moving the old copy aside and the new one in
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "rename", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 4, lambda d: None, {"step": 4, "v": torch.ones(3)})
    monkeypatch.setattr(ckpt_mod.os, "rename", real_rename)
    assert calls[0] == ("checkpoint-4", ".old-checkpoint-4")
    assert (tmp_path / ".old-checkpoint-4" / MARKER).is_file()  # the complete old copy is still there
    clean_stale(tmp_path)  # what a restarted trainer does first
    assert last_checkpoint(tmp_path) == first and torch.equal(load_state(first)["v"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]
    save_checkpoint(tmp_path, 4, lambda d: None, {"step": 4, "v": torch.ones(3)})  # uninterrupted
    assert torch.equal(load_state(first)["v"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]


@pytest.mark.parametrize("resume", [True, False])
def test_stale_temporary_checkpoints_are_removed_at_start(work, tmp_path, resume):
    out = tmp_path / "run"
    (out / ".tmp-checkpoint-99").mkdir(parents=True)  # a save killed at a step never reached again
    (out / ".tmp-checkpoint-99" / STATE_FILE).write_bytes(b"partial")
    shutil.copytree(_reference(work) / "checkpoint-3", out / ".old-checkpoint-3")  # killed mid re-save
    trainer = _trainer(work, out, resume)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-3"]
    assert trainer.step == (3 if resume else 0)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_cli_missing_inputs_exit_2_with_one_line(work, tmp_path, capsys):
    data, cache, base = str(work / "data.jsonl"), str(work / "cache.safetensors"), str(work / "base")
    missing = str(tmp_path / "missing")
    out = str(tmp_path / "out")
    cases = {
        "teacher cache": ["train", data, missing + ".safetensors", out, "--base", base],
        "data": ["train", missing + ".jsonl", cache, out, "--base", base],
        "--base": ["train", data, cache, out, "--base", missing],
        "no such directory": ["train", data, cache, out, "--init", missing],
        "input": ["teach", missing + ".jsonl", str(tmp_path / "t.safetensors")],
        "--teacher": ["teach", data, str(tmp_path / "t.safetensors"), "--teacher", missing],
    }
    for reason, argv in cases.items():
        code, err = _cli(argv, capsys)
        assert code == 2, argv
        assert err.count("\n") == 1 and reason in err and f"llm2vec-gen {argv[0]}: error:" in err, err
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file at all")
    code, err = _cli(["train", data, str(tmp_path / "bad.safetensors"), out, "--base", base], capsys)
    assert code == 2 and err.count("\n") == 1 and "not a readable teacher cache" in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "t.safetensors").exists()


def test_cli_resume_flag_is_the_default_and_excludes_no_resume(capsys):
    parser = cli.build_parser()
    base = ["train", "d.jsonl", "c.safetensors", "out", "--base", "b"]
    assert parser.parse_args(base).resume
    assert parser.parse_args([*base, "--resume"]).resume
    assert not parser.parse_args([*base, "--no-resume"]).resume
    with pytest.raises(SystemExit) as info:
        parser.parse_args([*base, "--resume", "--no-resume"])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
