"""The ``demo`` command: the offline end-to-end pipeline of ``llm2vec_gen/demo.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm2vec_gen.cli.common import positive_int

DESCRIPTION = (
    "Without --model: builds (or reuses from --cache-dir) a tiny Qwen3 with the real Qwen tokenizer, "
    "trains LLM2Vec-Gen on the bundled corpus with the offline all-MiniLM-L6-v2 teacher, saves a "
    "released-format checkpoint, evaluates retrieval and decodes one embedding."
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from llm2vec_gen.demo import run_demo

    run_demo(args.model, Path(args.output_dir), Path(args.cache_dir), steps=args.steps,
             batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device)  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``demo`` to the ``llm2vec-gen`` subcommands."""
    from llm2vec_gen.tiny import cache_root

    p = sub.add_parser(
        "demo", help="offline end to end: tiny Qwen3 + real tokenizer, teach, train, save, eval, decode",
        description=DESCRIPTION,
    )  # fmt: skip
    p.add_argument("--model", default=None, help="a checkpoint dir / hub id, or a base LLM to train")
    p.add_argument("--output-dir", default="llm2vec-gen-demo", help="where the run is written")
    p.add_argument("--cache-dir", default=str(cache_root()), help="where the tiny base LLM is kept")
    p.add_argument("--steps", type=positive_int, default=200, help="training steps (default 200)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_demo)
