"""What every command family shares: the usage-error type, argument types and the input checks.

A usage error is bad input from the user (a flag, a path, a malformed file) and ends the command
with one line on stderr and exit status 2 (``main``). Only ``UsageError`` and ``io.InputError``
count as usage errors; a library call made only to validate input (loading a checkpoint, a teacher
cache, building the trainer) turns its errors into ``UsageError`` with ``usage_errors(...)``. Any
other exception, e.g. a bug inside an op, keeps its traceback and exits 1.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
DTYPES = ("float32", "bfloat16", "float16")


class UsageError(ValueError):
    """A bad command-line argument or input found after parsing: one line, exit status 2."""


@contextmanager
def usage_errors(*types: type[BaseException]) -> Iterator[None]:
    """Re-raises an exception of ``types`` from the block as a UsageError holding its first line."""
    try:
        yield
    except types as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise UsageError(lines[0]) from exc


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def check_file(path: str, what: str) -> None:
    """UsageError unless ``path`` is an existing file."""
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path}: no such file")


def check_model_source(path: str, what: str, directory_check=None) -> None:
    """The one check of a model given as a local directory or a hub id.

    A name that exists locally must be a directory, and ``directory_check(path)`` (e.g. the
    checkpoint's file list) must pass: its FileNotFoundError / ValueError become UsageError. A name
    that does not exist locally must look like a hub id (``name`` or ``owner/name``).
    """
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"{what} {path!r}: not a directory")
        if directory_check is not None:
            with usage_errors(FileNotFoundError, ValueError):
                directory_check(path)
    elif not HUB_ID.fullmatch(path):
        raise UsageError(f"{what} {path!r}: no such directory (and not a hub id)")


def transformers_dir(path: str) -> None:
    """``directory_check`` of a transformers model directory: it holds a config.json."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path!r}: no config.json (not a transformers model directory)")


def checkpoint_dir(path: str) -> None:
    """``directory_check`` of a released-format LLM2Vec-Gen checkpoint: every file present."""
    from llm2vec_gen.checkpoint import check_files

    check_files(path)


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, as every command that loads a model takes them."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=DTYPES, help="default: bf16 on CUDA, fp32 on CPU")


def add_quantize_arg(parser: argparse.ArgumentParser) -> None:
    """``--quantize``, as every inference command (encode, eval, bench, serve) takes it."""
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="CPU: the LLM's linear layers in dynamic int8 (inference only)")  # fmt: skip
