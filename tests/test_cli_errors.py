"""The CLI's error paths and its generated train options.

- usage and input errors (a bad flag, path or file, found after parsing) exit 2 with one line;
- a bug inside an op is no usage error: its traceback is shown and the process exits 1;
- every ``TrainConfig`` field is an option of ``llm2vec-gen train`` and reaches the Trainer;
- ``python -m llm2vec_gen.cli`` (what torchrun runs) is the same command; ``serve`` without the
  server's dependencies says what to install.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from integration_checkpoint import DIM
from safetensors.torch import save_file

from llm2vec_gen import cli
from llm2vec_gen.cli import main
from llm2vec_gen.cli.options import dataclass_from_args
from llm2vec_gen.train.trainer import TrainConfig

# A value unlike each field's default, as typed on the command line, and the value it must become.
NON_DEFAULTS = {
    "output_dir": None,  # positional
    "lr": ("1e-3", 1e-3),
    "weight_decay": ("0.1", 0.1),
    "warmup_steps": ("7", 7),
    "total_steps": ("99", 99),
    "max_steps": ("5", 5),
    "batch_size": ("4", 4),
    "micro_batch_size": ("2", 2),
    "max_length": ("64", 64),
    "distill": ("cosine", "cosine"),
    "recon_weight": ("0.5", 0.5),
    "align_weight": ("2", 2.0),
    "grad_clip": ("0.25", 0.25),
    "seed": ("3", 3),
    "save_every": ("0", 0),
    "log_every": ("10", 10),
    "gradient_checkpointing": (True, True),
    "bf16": (True, True),
    "max_bad_steps": ("2", 2),
    "answer_suffix": ("</s>", "</s>"),
    "mega_batches": ("3", 3),
    "resume": (False, False),
    "progress": (False, False),
}


def _flags(values: dict) -> list[str]:
    argv = []
    for name, (text, _) in values.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag if text else "--no-" + flag[2:]] if isinstance(text, bool) else [flag, text]
    return argv


def _usage_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    assert err[-1].startswith(f"llm2vec-gen {command}: error: "), err[-1]
    return err[-1]


@pytest.fixture
def train_inputs(tmp_path, model):
    """(data file, teacher cache) for 8 examples with a teacher of the checkpoint's dimension."""
    data = tmp_path / "data.jsonl"
    rows = [{"id": f"e{i}", "query": f"question {i}?", "answer": f"answer number {i}."} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "teacher.safetensors"
    ids = [r["id"] for r in rows]
    save_file({"embeddings": torch.randn(8, DIM)}, str(cache), metadata={"ids": json.dumps(ids)})
    return data, cache


def test_every_train_config_field_is_an_option_with_its_type_and_default():
    assert set(NON_DEFAULTS) == {f.name for f in dataclasses.fields(TrainConfig)}, "a field has no test value"
    parser = cli.build_parser()
    defaults = dataclass_from_args(TrainConfig, parser.parse_args(["train", "d", "t", "out"]))
    assert defaults == TrainConfig(output_dir="out")
    values = {k: v for k, v in NON_DEFAULTS.items() if v is not None}
    args = parser.parse_args(["train", "d", "t", "out", *_flags(values)])
    config = dataclass_from_args(TrainConfig, args)
    for name, (_, want) in values.items():
        assert getattr(config, name) == want != getattr(TrainConfig(), name), name


def test_train_options_reach_the_trainer(ckpt, train_inputs, tmp_path, monkeypatch, capsys):
    from llm2vec_gen.train import trainer

    seen = {}

    class Recording(trainer.Trainer):
        def __init__(self, model, data, cache, config):
            seen["config"] = config
            super().__init__(model, data, cache, config)

        def fit(self):
            return "fitted"

    monkeypatch.setattr(trainer, "Trainer", Recording)
    data, cache = train_inputs
    flags = ["--batch-size", "4", "--grad-clip", "0.3", "--weight-decay", "0.01", "--max-bad-steps", "3"]
    argv = ["train", str(data), str(cache), str(tmp_path / "run"), "--init", str(ckpt), "--device", "cpu"]
    assert main([*argv, *flags, "--no-bf16", "--no-progress"]) == 0
    assert "final checkpoint: fitted" in capsys.readouterr().out
    config = seen["config"]
    assert (config.batch_size, config.grad_clip, config.weight_decay) == (4, 0.3, 0.01)
    assert (config.max_bad_steps, config.bf16, config.progress) == (3, False, False)
    assert config.output_dir == str(tmp_path / "run")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([], "give --base (a causal LM to start from) or --init"),
        (["--init", "{tmp}/none"], "--init '{tmp}/none': no such directory (and not a hub id)"),
        (["--base", "{tmp}"], "no config.json (not a transformers model directory)"),
        (["--init", "{ckpt}", "--batch-size", "3", "--micro-batch-size", "2"], "must be a multiple of"),
        (["--init", "{ckpt}", "--batch-size", "16"], "8 examples are fewer than one batch of 16"),
    ],
)
def test_train_usage_errors_exit_2_with_one_line(ckpt, train_inputs, tmp_path, capsys, extra, reason):
    data, cache = train_inputs
    fill = {"tmp": tmp_path, "ckpt": ckpt}
    argv = ["train", str(data), str(cache), str(tmp_path / "run"), "--device", "cpu"]
    assert main([*argv, *(a.format(**fill) for a in extra)]) == 2
    assert reason.format(**fill) in _usage_line(capsys, "train")


def test_malformed_inputs_of_each_family_exit_2(ckpt, train_inputs, tmp_path, capsys):
    data, cache = train_inputs
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "a", "query": "q", "answer": "x", "text": "t"}\n{"id": "b", "query": \n')
    run = str(tmp_path / "run")
    cases = [
        (["encode", str(ckpt), str(bad), str(tmp_path / "o.npy")], "line 2 is not valid JSON"),
        (
            ["train", str(bad), str(cache), run, "--init", str(ckpt), "--device", "cpu"],
            "line 2 is not valid JSON",
        ),
        (["train", str(data), str(data), run, "--init", str(ckpt)], "not a readable teacher cache"),
        (["teach", str(data), str(tmp_path / "cache.npy")], "use a .safetensors file"),
        (["respond", str(tmp_path / "base"), str(data), str(tmp_path / "a.jsonl")], "no such directory"),
    ]
    for argv, reason in cases:
        assert main(argv) == 2, argv
        assert reason in _usage_line(capsys, argv[0]), argv


_BUGGY_RUN = """
import sys
from llm2vec_gen.cli import main
from llm2vec_gen.model import LLM2VecGenModel

def broken(self, *args, **kwargs):
    raise ValueError("an internal bug, not the user's input")

LLM2VecGenModel.{method} = broken
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("method", "command"), [("encode", "encode"), ("decode", "decode")])
def test_a_bug_inside_an_op_shows_its_traceback_and_exits_1(ckpt, tmp_path, method, command):
    source = tmp_path / "in.txt"
    source.write_text("first text\nsecond text\n")
    argv = [command, str(ckpt), str(source)] + ([str(tmp_path / "o.npy")] if command == "encode" else [])
    proc = subprocess.run(
        [sys.executable, "-c", _BUGGY_RUN.format(method=method), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "ValueError: an internal bug, not the user's input"
    assert f"llm2vec-gen {command}: error" not in proc.stderr


def test_python_dash_m_runs_the_same_command():
    proc = subprocess.run(
        [sys.executable, "-m", "llm2vec_gen.cli", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: llm2vec-gen train" in proc.stdout and "--max-bad-steps" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "llm2vec_gen.cli", "encode"], capture_output=True, text=True)
    assert proc.returncode == 2 and "the following arguments are required" in proc.stderr


def test_serve_without_its_dependencies_says_what_to_install(monkeypatch, capsys):
    for name in [m for m in sys.modules if m.startswith("llm2vec_gen.serve")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed: importing it fails
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "fastapi" else True)
    assert main(["serve", "ckpt"]) == 2
    assert "pip install 'llm2vec-gen-fast[serve]'" in _usage_line(capsys, "serve")


def test_source_checkout_serves_the_kernels_or_says_why_not(tmp_path):
    """From a plain checkout on sys.path (no install maps kernels/ to llm2vec_gen.kernels)."""
    root = Path(__file__).resolve().parents[1]
    code = f"""
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]  # no installed package
sys.path.insert(0, {str(root)!r})
import llm2vec_gen
assert llm2vec_gen.__file__.startswith({str(root)!r}), llm2vec_gen.__file__
import llm2vec_gen.kernels.encode_tail as k
print(k.__file__)
from llm2vec_gen import _dispatch
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _dispatch._SourceKernelsFinder)]
for name in [m for m in sys.modules if m.startswith("llm2vec_gen.kernels")]:
    del sys.modules[name]
_dispatch.SOURCE_KERNELS = _dispatch.Path({str(tmp_path)!r})
try:
    _dispatch.kernel("encode_tail", "forward", "triton")
except RuntimeError as exc:
    print(exc)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    found, why = proc.stdout.strip().splitlines()
    assert found == str(root / "kernels" / "encode_tail.py")
    assert "llm2vec_gen.kernels is not installed" in why and str(tmp_path / "__init__.py") in why
