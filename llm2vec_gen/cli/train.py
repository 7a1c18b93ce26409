"""The training family: ``respond`` (the LLM's answers), ``teach`` (teacher embeddings), ``train``."""

from __future__ import annotations

import argparse

from llm2vec_gen.cli.common import (
    UsageError,
    add_device_args,
    check_file,
    check_model_source,
    checkpoint_dir,
    positive_int,
    transformers_dir,
    usage_errors,
)
from llm2vec_gen.cli.options import add_dataclass_options, dataclass_from_args
from llm2vec_gen.loading import default_device, resolve_dtype


def _cmd_respond(args: argparse.Namespace) -> int:
    """Generate the LLM's own answers to a file of queries, streamed WINDOW queries at a time; the
    JSONL output is appended and a rerun after a kill continues it (OUTPUT.progress.json)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm2vec_gen.bases import resolve_base
    from llm2vec_gen.train.respond import respond

    check_file(args.input, "input")
    with usage_errors(FileNotFoundError, ImportError):
        args.model = resolve_base(args.model)  # a .gguf file or an alias: its dense cached directory
    check_model_source(args.model, "model", transformers_dir)
    device = default_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    with usage_errors(OSError, ValueError):
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
    n = respond(
        model, tokenizer, args.input, args.output, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
        top_p=args.top_p, seed=args.seed, chat_template=not args.no_chat_template,
        max_length=args.max_length, query_field=args.query_field, id_field=args.id_field,
        window=args.window,
    )  # fmt: skip
    print(f"wrote {n} answers to {args.output}")
    return 0


def _cmd_teach(args: argparse.Namespace) -> int:
    """Embed the answers once with the teacher; cache keyed by id (safetensors). Streamed WINDOW
    answers at a time into OUTPUT.parts/; a rerun after a kill continues from the committed ones."""
    from llm2vec_gen.train.teach import MINILM_NAMES, teach

    check_file(args.input, "input")
    if args.teacher.lower() not in MINILM_NAMES:
        check_model_source(args.teacher, "--teacher", transformers_dir)
    path = teach(
        args.input, args.output, teacher=args.teacher, pooling=args.pooling,
        batch_size=args.batch_size, max_length=args.max_length, device=args.device or "cpu",
        answer_field=args.answer_field, id_field=args.id_field, adapters=args.adapter,
        bidirectional=args.bidirectional, window=args.window, resume=not args.no_resume,
    )  # fmt: skip
    print(f"wrote teacher embeddings to {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train the K special rows and both heads of a frozen LLM; writes released-format checkpoints.
    Under torchrun each process trains on its slice of every global batch."""
    from llm2vec_gen.bases import resolve_base
    from llm2vec_gen.integrations import distributed
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.train.teach import load_teacher_cache
    from llm2vec_gen.train.trainer import TrainConfig, Trainer

    if not (args.init or args.base):
        raise UsageError("give --base (a causal LM to start from) or --init (a checkpoint to continue)")
    check_file(args.data, "data")
    check_file(args.teacher_cache, "teacher cache")
    if args.init:
        check_model_source(args.init, "--init", checkpoint_dir)
    else:
        with usage_errors(FileNotFoundError, ImportError):
            args.base = resolve_base(args.base)  # a .gguf file or an alias: its dense cached directory
        check_model_source(args.base, "--base", transformers_dir)
    with usage_errors(FileNotFoundError, ValueError):
        cache = load_teacher_cache(args.teacher_cache)
    launched = distributed.setup().device if distributed.is_launched() else None
    device = default_device(args.device or launched)
    with usage_errors(OSError, ValueError):
        if args.init:
            model = LLM2VecGenModel.from_pretrained(args.init, device=device, dtype=args.dtype)
        else:
            model = LLM2VecGenModel.from_base(
                args.base, args.tokenizer or args.base, num_special_tokens=args.num_special_tokens,
                teacher_dim=cache[1].shape[1], device=device, dtype=args.dtype, seed=args.seed,
            )  # fmt: skip
    config = dataclass_from_args(TrainConfig, args)
    with usage_errors(ValueError):
        trainer = Trainer(model, args.data, cache, config)
    print(f"final checkpoint: {trainer.fit()}")
    return 0


def _add_respond(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("respond", help="the LLM's own answers to queries", description=_cmd_respond.__doc__)
    p.add_argument("model", help="causal LM directory or hub id")
    p.add_argument(
        "input", help="queries: a record file (.jsonl, .csv, .parquet, ...) with query and id fields"
    )
    p.add_argument("output", help="answers, JSON lines {id, query, answer} (appended; resumes)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--max-new-tokens", type=positive_int, default=512)
    p.add_argument("--max-length", type=positive_int, default=512, help="max prompt tokens")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-chat-template", action="store_true", help="feed the raw query")
    p.add_argument("--query-field", default="query")
    p.add_argument("--id-field", default="id")
    add_device_args(p)
    p.add_argument("--window", type=positive_int, default=4096,
                   help="queries read and sorted by length at a time (default 4096)")  # fmt: skip
    p.set_defaults(func=_cmd_respond)


def _add_teach(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "teach", help="cache teacher embeddings of the answers", description=_cmd_teach.__doc__
    )
    p.add_argument(
        "input", help="answers: a record file (.jsonl, .csv, .parquet, ...) with answer and id fields"
    )
    p.add_argument("output", help="cache file (.safetensors)")
    p.add_argument("--teacher", default="minilm", help="minilm | sentence-transformers dir | HF encoder")
    p.add_argument("--pooling", choices=["mean", "cls"], default=None, help="for a plain HF encoder")
    p.add_argument("--adapter", action="append", default=[],
                   help="peft adapter merged into the teacher, in order (repeat: MNTP, SimCSE)")  # fmt: skip
    p.add_argument("--bidirectional", action="store_true",
                   help="run a decoder teacher without its causal mask (LLM2Vec-style)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--max-length", type=positive_int, default=512)
    p.add_argument("--answer-field", default="answer")
    p.add_argument("--id-field", default="id")
    p.add_argument("--device", default=None, help="default: cpu")
    p.add_argument("--window", type=positive_int, default=4096,
                   help="answers embedded and committed at a time (default 4096)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true",
                   help="ignore the windows a killed run committed in OUTPUT.parts/")  # fmt: skip
    p.set_defaults(func=_cmd_teach)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from llm2vec_gen.train.trainer import TrainConfig

    p = sub.add_parser("train", help="train an LLM2Vec-Gen encoder", description=_cmd_train.__doc__)
    p.add_argument(
        "data", help="training data: a record file (.jsonl, .csv, .parquet, ...) with id, query, answer"
    )
    p.add_argument("teacher_cache", help="teacher embeddings written by `llm2vec-gen teach`")
    p.add_argument("output_dir", help="checkpoints (checkpoint-<step>/) and train_log.jsonl")
    p.add_argument("--base", help="causal LM to start from (directory or hub id)")
    p.add_argument("--tokenizer", help="tokenizer (default: --base)")
    p.add_argument("--init", help="continue from a released-format checkpoint instead")
    p.add_argument("--num-special-tokens", type=positive_int, default=10, help="K (default 10)")
    add_device_args(p)
    add_dataclass_options(p, TrainConfig, skip=("output_dir",))
    p.set_defaults(func=_cmd_train)


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``respond``, ``teach`` and ``train`` to the ``llm2vec-gen`` subcommands."""
    _add_respond(sub)
    _add_teach(sub)
    _add_train(sub)
