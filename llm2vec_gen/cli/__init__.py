"""The ``llm2vec-gen`` command line, one module per command family, each with ``register(subparsers)``.

    demo      demo.py     the offline end-to-end pipeline
    encode    encode.py   encode, decode, eval, bench (a trained checkpoint)
    train     train.py    respond, teach, train (from queries to a checkpoint)
    serve     llm2vec_gen/serve/command.py (needs the ``serve`` extra)

``main`` is the one place that turns a usage error (``common.UsageError``, ``io.InputError``) into
one line on stderr and exit status 2; every other exception propagates with its traceback (exit 1).
Run as ``llm2vec-gen ...`` or ``python -m llm2vec_gen.cli ...`` (what torchrun launches).
"""

from __future__ import annotations

import argparse
import sys

from llm2vec_gen.cli import demo, encode, train
from llm2vec_gen.cli.common import UsageError
from llm2vec_gen.io.rows import InputError

SERVE_DEPENDENCIES = ("fastapi", "uvicorn", "pydantic", "prometheus_client")


def _register_serve(sub: argparse._SubParsersAction) -> None:
    """The server's own ``register``; without its optional dependencies, a ``serve`` command that
    says what to install."""
    try:
        from llm2vec_gen.serve.command import register
    except ModuleNotFoundError as exc:
        if exc.name not in (*SERVE_DEPENDENCIES, "llm2vec_gen.serve", "llm2vec_gen.serve.command"):
            raise
        missing = exc.name
    else:
        register(sub)
        return

    def unavailable(args: argparse.Namespace) -> int:
        raise UsageError(
            f"needs the server's dependencies ({missing} is missing): pip install 'llm2vec-gen-fast[serve]'"
        )

    p = sub.add_parser("serve", help="OpenAI-compatible embedding server (needs the serve extra)")
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=unavailable)


def build_parser() -> argparse.ArgumentParser:
    """The ``llm2vec-gen`` parser with every command family registered."""
    parser = argparse.ArgumentParser(prog="llm2vec-gen", description="LLM2Vec-Gen generative embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)
    for family in (demo, encode, train):
        family.register(sub)
    _register_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; its exit status (2 and one line on stderr for a usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, InputError) as exc:
        print(f"llm2vec-gen {args.command}: error: {exc}", file=sys.stderr)
        return 2
