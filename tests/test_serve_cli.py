"""``llm2vec-gen serve`` as a command: exit status 2 for a bad argument, 1 when the model cannot
be served, and ``python -m llm2vec_gen.serve`` taking the same options."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from serve_process import free_port


def serve(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "llm2vec_gen.cli", "serve", *argv, "--port", str(free_port())]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    for argv, message in (
        ([str(tmp_path / "missing")], "no such directory"),
        ([str(tmp_path)], "not a complete LLM2Vec-Gen checkpoint"),
        ([str(tmp_path), "--max-padding", "1.5"], "must be in [0, 1]"),
        ([str(tmp_path), "--max-batch-tokens", "0"], "must be >= 1"),
        ([str(tmp_path), "--quantize", "int4"], "invalid choice: 'int4'"),
    ):
        done = serve(*argv)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr.strip().splitlines()[-1]


def test_a_model_that_cannot_be_served_exits_1(ckpt):
    """--max-input-length must leave room beside the K=10 special tokens: found once the model is
    loaded, reported, and the server stops with status 1 (no request was ever accepted)."""
    done = serve(str(ckpt), "--max-input-length", "10")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "max_input_length=10 must exceed K=10" in done.stderr


def test_quantize_and_dtype_reach_the_model(ckpt):
    """``--quantize int8`` and ``--dtype`` are from_pretrained's: the server loads what encode does."""
    from llm2vec_gen.precision import describe
    from llm2vec_gen.serve.app import load_model
    from llm2vec_gen.serve.command import add_arguments
    from llm2vec_gen.serve.config import ServeConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(ckpt), "--device", "cpu", "--quantize", "int8"])
    assert (args.quantize, args.dtype) == ("int8", None)
    model = load_model(ServeConfig(str(ckpt), device="cpu", quantize=args.quantize))
    assert describe(model.llm) == "torch.float32, int8 linears"


def test_module_entry_point_help():
    command = [sys.executable, "-m", "llm2vec_gen.serve", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--max-batch-tokens" in done.stdout and "/v1/embeddings" in done.stdout
