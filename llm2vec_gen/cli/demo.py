"""The ``demo`` command: LLM2Vec-Gen on SmolLM2-135M-Instruct, offline (``llm2vec_gen/demo.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm2vec_gen.cli.common import positive_int

DESCRIPTION = (
    "Converts the packaged SmolLM2-135M-Instruct GGUF once to a dense base, loads the shipped trained "
    "special rows and heads, prints three questions with the LLM's answer and the decode of their "
    "embedding, evaluates on human-judged data (Lee, WordSim-353) and the bundled retrieval set, and "
    "shows a search. --train retrains the rows and heads from scratch first (slow on a CPU)."
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from llm2vec_gen.demo import run_demo

    save = Path(args.save_model) if args.save_model else None
    run_demo(Path(args.output_dir), train=args.train, steps=args.steps, save_model=save,
             full_eval=args.full_eval, device=args.device)  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``demo`` to the ``llm2vec-gen`` subcommands."""
    p = sub.add_parser(
        "demo", help="offline end to end on SmolLM2-135M-Instruct: answers, decodes, evaluation, search",
        description=DESCRIPTION,
    )  # fmt: skip
    p.add_argument("--output-dir", default="llm2vec-gen-demo", help="where --train writes its runs")
    p.add_argument("--train", action="store_true", help="retrain the rows and heads from scratch first")
    p.add_argument("--steps", type=positive_int, help="--train steps (default: one pass over the answers)")
    p.add_argument("--save-model", metavar="DIR", help="write the released-format checkpoint to DIR")
    p.add_argument("--full-eval", action="store_true", help="recompute every row of the evaluation table")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_demo)
