"""The ``llm2vec-gen`` command line. Each subcommand is one function ``_cmd_<name>(args)``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _default_cache_dir() -> Path:
    from llm2vec_gen.tiny import cache_root

    return cache_root()


def _cmd_demo(args: argparse.Namespace) -> int:
    """The offline end-to-end pipeline (llm2vec_gen/demo.py): tiny LLM, teach, train, save, eval, decode."""
    from llm2vec_gen.demo import run_demo

    run_demo(args.model, Path(args.output_dir), Path(args.cache_dir), steps=args.steps,
             batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device)  # fmt: skip
    return 0


# ------------------------------------------- encode / decode / eval / bench (llm2vec_gen.integrations)


class _UsageError(ValueError):
    """A bad command-line argument found after parsing: reported in one line, exit status 2."""


def _usage_errors(cmd):
    """Turns a _UsageError raised by ``cmd`` into one line on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except _UsageError as exc:
            print(f"llm2vec-gen {args.command}: error: {exc}", file=sys.stderr)
            return 2

    run.__doc__ = cmd.__doc__
    return run


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _check_checkpoint(path: str) -> None:
    """A local checkpoint must be complete; a name that is not a local path must look like a hub id."""
    import os
    import re

    from llm2vec_gen.checkpoint import check_files

    if os.path.exists(path):
        try:
            check_files(path)
        except FileNotFoundError as exc:
            raise _UsageError(str(exc)) from exc
    elif not re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        raise _UsageError(f"checkpoint {path!r}: no such directory")


def _load_model(args: argparse.Namespace, device: str | None = None):
    from llm2vec_gen.model import LLM2VecGenModel

    return LLM2VecGenModel.from_pretrained(args.checkpoint, device=device or args.device, dtype=args.dtype)


def _read_inputs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from llm2vec_gen.integrations.files import read_texts

    try:
        return read_texts(args.input, text_field=args.text_field, id_field=args.id_field)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise _UsageError(str(exc)) from exc


def _instruction(args: argparse.Namespace) -> str | None:
    from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION, STS_INSTRUCTION

    presets = {"query": QUERY_INSTRUCTION, "document": PASSAGE_INSTRUCTION, "sts": STS_INSTRUCTION}
    return args.instruction if args.instruction is not None else presets.get(args.task)


@_usage_errors
def _cmd_encode(args: argparse.Namespace) -> int:
    """Texts file in -> embeddings file out (ids kept), streamed chunk by chunk; --resume continues a
    killed run. Under torchrun each rank streams and encodes one contiguous shard."""
    from pathlib import Path

    from llm2vec_gen.integrations import distributed, stream_encode
    from llm2vec_gen.integrations.files import OUTPUT_SUFFIXES, InputError

    if Path(args.output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise _UsageError(f"output {args.output}: use one of {', '.join(OUTPUT_SUFFIXES)}")
    if args.save_recon and Path(args.save_recon).suffix.lower() != ".npy":
        raise _UsageError(f"--save-recon {args.save_recon}: use a .npy file")
    _check_checkpoint(args.checkpoint)
    try:
        stream_encode.check_input(args.input, args.text_field, args.id_field, args.bad_bytes)
    except (FileNotFoundError, ValueError) as exc:
        raise _UsageError(str(exc)) from exc
    kwargs = dict(batch_size=args.batch_size, max_length=args.max_length, instruction=_instruction(args))
    kwargs.update(normalize_embeddings=args.normalize)
    start = time.perf_counter()
    if distributed.is_launched():
        if args.save_recon or args.resume:
            raise _UsageError("--save-recon and --resume are not supported under torchrun")
        import torch.distributed as dist

        info = distributed.setup()
        model = _load_model(args, device=str(info.device))
        shard_dir = args.shard_dir or f"{args.output}.shards"
        try:
            rows = distributed.encode_file_distributed(
                model, args.input, shard_dir, args.output, text_field=args.text_field,
                id_field=args.id_field, chunk_rows=args.chunk_rows, bad_bytes=args.bad_bytes,
                progress=args.progress, **kwargs,
            )  # fmt: skip
        except (InputError, ValueError) as exc:
            raise _UsageError(str(exc)) from exc
        dist.destroy_process_group()
        if info.rank != 0:
            return 0
        done, where = f"{rows} texts", f"{info.world_size} ranks"
    else:
        model = _load_model(args)
        settings = {"checkpoint": str(Path(args.checkpoint).resolve()), "dtype": str(model.llm.dtype)}
        try:
            result = stream_encode.encode_file(
                model, args.input, args.output, text_field=args.text_field, id_field=args.id_field,
                chunk_rows=args.chunk_rows, resume=args.resume, recon_output=args.save_recon,
                bad_bytes=args.bad_bytes, settings=settings, progress=args.progress, **kwargs,
            )  # fmt: skip
        except (InputError, ValueError) as exc:
            raise _UsageError(str(exc)) from exc
        resumed = f", {result.resumed_rows} resumed" if result.resumed_rows else ""
        done, where = f"{result.rows} texts in {result.chunks} chunks{resumed}", str(model.device)
    elapsed = time.perf_counter() - start
    print(f"encoded {done} on {where} in {elapsed:.2f}s (load + encode) -> {args.output}")
    return 0


@_usage_errors
def _cmd_decode(args: argparse.Namespace) -> int:
    """Texts (or saved recon states, .npy [N, K, H]) in -> greedy decodes as JSON lines out."""
    import json
    from pathlib import Path

    import numpy as np

    _check_checkpoint(args.checkpoint)
    if Path(args.input).suffix.lower() == ".npy":
        if not Path(args.input).is_file():
            raise _UsageError(f"{args.input}: no such file")
        source = np.load(args.input)
        if source.ndim != 3:
            raise _UsageError(f"{args.input}: recon states must be [N, K, H], got shape {source.shape}")
        ids = [str(i) for i in range(source.shape[0])]
    else:
        ids, source = _read_inputs(args)
    model = _load_model(args)
    decoded = model.decode(
        source,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        max_length=args.max_length,
        instruction=_instruction(args),
    )
    rows = zip(ids, decoded, strict=True)
    lines = "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in rows)
    if args.output:
        Path(args.output).write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    return 0


@_usage_errors
def _cmd_eval(args: argparse.Namespace) -> int:
    """Local retrieval (nDCG@k, recall@k, MRR@k) and STS on the bundled set or a BEIR directory."""
    import json

    from llm2vec_gen import evaluate

    _check_checkpoint(args.checkpoint)
    data = None
    if args.data:
        try:
            data = evaluate.load_beir(args.data, split=args.split)
        except (FileNotFoundError, ValueError, KeyError, IndexError) as exc:
            raise _UsageError(str(exc)) from exc
    model = _load_model(args)
    kwargs = dict(batch_size=args.batch_size, max_length=args.max_length)
    results = {"retrieval": evaluate.evaluate_retrieval(model, data, k=args.k, **kwargs)}
    if not args.data:
        results["sts"] = evaluate.evaluate_sts(model, **kwargs)
    print(json.dumps(results, indent=2))
    return 0


@_usage_errors
def _cmd_bench(args: argparse.Namespace) -> int:
    """Throughput of encode (and decode) on this machine: texts/s and tokens/s, median of repeats."""
    import json
    import statistics

    _check_checkpoint(args.checkpoint)
    if args.input:
        _, texts = _read_inputs(args)
    else:
        from llm2vec_gen.integrations.sample_data import SAMPLE_CORPUS, SAMPLE_QUERIES

        pool = list(SAMPLE_QUERIES.values()) + list(SAMPLE_CORPUS.values())
        texts = [pool[i % len(pool)] for i in range(args.num_texts)]
    model = _load_model(args)
    kwargs = dict(batch_size=args.batch_size, max_length=args.max_length, instruction=_instruction(args))
    tokens = sum(len(r) for r in model.tokenize(texts, args.max_length, kwargs["instruction"]))
    model.encode(texts[: args.batch_size], **kwargs)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.encode(texts, **kwargs)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {"device": str(model.device), "dtype": str(model.llm.dtype), "num_texts": len(texts)}
    result.update(tokens=tokens, encode_median_s=median, texts_per_s=len(texts) / median)
    result["tokens_per_s"] = tokens / median
    if args.decode_tokens:
        start = time.perf_counter()
        model.decode(texts[: args.batch_size], max_new_tokens=args.decode_tokens, batch_size=args.batch_size)
        result["decode_s"] = time.perf_counter() - start
        result["decode_texts"] = min(len(texts), args.batch_size)
    print(json.dumps(result, indent=2))
    return 0


def _add_model_args(p: argparse.ArgumentParser, texts: bool = True) -> None:
    p.add_argument("checkpoint", help="LLM2Vec-Gen checkpoint directory (or hub id)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--max-length", type=_positive_int, default=512, help="max tokens per text (default 512)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="model dtype (default: bf16 on CUDA, fp32 on CPU)")  # fmt: skip
    if texts:
        p.add_argument("--text-field", default="text", help="text field of .jsonl/.csv/.parquet input")
        p.add_argument("--id-field", default="id", help="id field (absent: line numbers)")
        p.add_argument("--instruction", default=None, help="prepended to every text")
        p.add_argument("--task", choices=["query", "document", "sts"], default=None,
                       help="use the paper's instruction for queries, documents or STS")  # fmt: skip


def _add_integration_commands(sub: argparse._SubParsersAction) -> None:
    inputs = "input texts: .txt (a line each), .jsonl, .csv, .tsv or .parquet"
    encode = sub.add_parser("encode", help="embed a file of texts", description=_cmd_encode.__doc__)
    _add_model_args(encode)
    encode.add_argument("input", help=inputs)
    encode.add_argument("output", help="embeddings + ids: .npy (+ .ids.json), .npz, .safetensors, .parquet")
    encode.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    encode.add_argument("--save-recon", metavar="NPY", help="also save the recon states [N, K, H] (.npy)")
    encode.add_argument("--shard-dir", help="torchrun: shared directory for shards (default OUTPUT.shards)")
    encode.add_argument("--progress", action="store_true", help="show a progress bar")
    encode.add_argument("--chunk-rows", type=_positive_int, default=4096,
                        help="texts read, encoded and committed at a time (default 4096)")  # fmt: skip
    encode.add_argument("--resume", action="store_true",
                        help="continue a killed run from OUTPUT.parts/ (same input and options)")  # fmt: skip
    encode.add_argument("--bad-bytes", choices=["error", "replace"], default="error",
                        help="non-UTF-8 bytes: fail naming the line (default) or use U+FFFD")  # fmt: skip
    encode.set_defaults(func=_cmd_encode)

    decode = sub.add_parser("decode", help="texts or recon states to text", description=_cmd_decode.__doc__)
    _add_model_args(decode)
    decode.add_argument("input", help=f"{inputs}; or recon states saved by encode --save-recon (.npy)")
    decode.add_argument("--output", help="JSON lines {id, text} (default: stdout)")
    decode.add_argument("--max-new-tokens", type=_positive_int, default=64, help="default 64")
    decode.set_defaults(func=_cmd_decode)

    evaluate = sub.add_parser("eval", help="local retrieval / STS evaluation", description=_cmd_eval.__doc__)
    _add_model_args(evaluate, texts=False)
    evaluate.add_argument("--data", help="BEIR-layout directory (default: the bundled sample set)")
    evaluate.add_argument("--split", default="test", help="qrels split of --data (default test)")
    evaluate.add_argument("--k", type=_positive_int, default=10, help="cut-off of the metrics (default 10)")
    evaluate.set_defaults(func=_cmd_eval)

    bench = sub.add_parser("bench", help="measure encode throughput", description=_cmd_bench.__doc__)
    _add_model_args(bench)
    bench.add_argument("--input", help=f"{inputs} (default: sample texts)")
    bench.add_argument("--num-texts", type=_positive_int, default=256, help="sample texts (default 256)")
    bench.add_argument("--repeats", type=_positive_int, default=3, help="timed passes (default 3)")
    bench.add_argument("--decode-tokens", type=int, default=0, help="also time decoding this many tokens")
    bench.set_defaults(func=_cmd_bench)


# ------------------------------------------------------- respond / teach / train (llm2vec_gen.train)


def _check_model_path(path: str, what: str) -> None:
    """A model given as a path must exist; a name that is not a local path must look like a hub id."""
    import os
    import re

    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise _UsageError(f"{what} {path!r}: no config.json (not a transformers model directory)")
    if not os.path.exists(path) and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path):
        raise _UsageError(f"{what} {path!r}: no such directory (and not a hub id)")


def _check_file(path: str, what: str) -> None:
    import os

    if not os.path.isfile(path):
        raise _UsageError(f"{what} {path}: no such file")


def _cmd_respond(args: argparse.Namespace) -> int:
    """Generate the LLM's own answers to a file of queries, streamed WINDOW queries at a time; the
    JSONL output is appended and a rerun after a kill continues it (OUTPUT.progress.json)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm2vec_gen.train.respond import respond

    _check_file(args.input, "input")
    _check_model_path(args.model, "model")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda_default = torch.bfloat16 if device.startswith("cuda") else None
    dtype = getattr(torch, args.dtype) if args.dtype else cuda_default
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
    except (OSError, ValueError) as exc:
        raise _UsageError(f"model {args.model!r}: {str(exc).strip().splitlines()[0]}") from exc
    try:
        n = respond(
            model, tokenizer, args.input, args.output, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
            top_p=args.top_p, seed=args.seed, chat_template=not args.no_chat_template,
            max_length=args.max_length, query_field=args.query_field, id_field=args.id_field,
            window=args.window,
        )  # fmt: skip
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    print(f"wrote {n} answers to {args.output}")
    return 0


def _cmd_teach(args: argparse.Namespace) -> int:
    """Embed the answers once with the teacher; cache keyed by id (safetensors). Streamed WINDOW
    answers at a time into OUTPUT.parts/; a rerun after a kill continues from the committed ones."""
    from llm2vec_gen.train.teach import teach

    _check_file(args.input, "input")
    if args.teacher.lower() not in ("minilm", "all-minilm-l6-v2"):
        _check_model_path(args.teacher, "--teacher")
    try:
        path = teach(
            args.input, args.output, teacher=args.teacher, pooling=args.pooling,
            batch_size=args.batch_size, max_length=args.max_length, device=args.device or "cpu",
            answer_field=args.answer_field, id_field=args.id_field, adapters=args.adapter,
            bidirectional=args.bidirectional, window=args.window, resume=not args.no_resume,
        )  # fmt: skip
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    print(f"wrote teacher embeddings to {path}")
    return 0


def _init_distributed() -> str:
    """Under torchrun: join the process group (nccl on CUDA, gloo on CPU); the device to train on."""
    import os

    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def _cmd_train(args: argparse.Namespace) -> int:
    """Train the K special rows and both heads of a frozen LLM; writes released-format checkpoints."""
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.train.teach import load_teacher_cache
    from llm2vec_gen.train.trainer import TrainConfig, Trainer

    if not (args.init or args.base):
        raise _UsageError("give --base (a causal LM to start from) or --init (a checkpoint to continue)")
    _check_file(args.data, "data")
    _check_file(args.teacher_cache, "teacher cache")
    if args.init:
        _check_checkpoint(args.init)
    else:
        _check_model_path(args.base, "--base")
    try:
        cache = load_teacher_cache(args.teacher_cache)
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    device = args.device or _init_distributed()
    try:
        if args.init:
            model = LLM2VecGenModel.from_pretrained(args.init, device=device, dtype=args.dtype)
        else:
            model = LLM2VecGenModel.from_base(
                args.base, args.tokenizer or args.base, num_special_tokens=args.num_special_tokens,
                teacher_dim=cache[1].shape[1], device=device, dtype=args.dtype, seed=args.seed,
            )  # fmt: skip
    except (OSError, ValueError) as exc:
        raise _UsageError(f"{args.init or args.base!r}: {str(exc).strip().splitlines()[0]}") from exc
    config = TrainConfig(
        output_dir=args.output_dir, lr=args.lr, warmup_steps=args.warmup_steps, total_steps=args.total_steps,
        max_steps=args.max_steps, batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
        max_length=args.max_length, distill=args.distill, recon_weight=args.recon_weight,
        align_weight=args.align_weight, seed=args.seed, save_every=args.save_every,
        gradient_checkpointing=args.gradient_checkpointing, resume=not args.no_resume,
    )  # fmt: skip
    try:
        trainer = Trainer(model, args.data, cache, config)
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    print(f"final checkpoint: {trainer.fit()}")
    return 0


def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    respond = sub.add_parser(
        "respond", help="the LLM's own answers to queries", description=_cmd_respond.__doc__
    )
    respond.add_argument("model", help="causal LM directory or hub id")
    respond.add_argument("input", help="queries: .jsonl, .csv or .parquet with query and id fields")
    respond.add_argument("output", help="answers, JSON lines {id, query, answer} (appended; resumes)")
    respond.add_argument("--batch-size", type=_positive_int, default=16)
    respond.add_argument("--max-new-tokens", type=_positive_int, default=512)
    respond.add_argument("--max-length", type=_positive_int, default=512, help="max prompt tokens")
    respond.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    respond.add_argument("--temperature", type=float, default=1.0)
    respond.add_argument("--top-p", type=float, default=1.0)
    respond.add_argument("--seed", type=int, default=42)
    respond.add_argument("--no-chat-template", action="store_true", help="feed the raw query")
    respond.add_argument("--query-field", default="query")
    respond.add_argument("--id-field", default="id")
    respond.add_argument("--device", default=None)
    respond.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    respond.add_argument("--window", type=_positive_int, default=4096,
                         help="queries read and sorted by length at a time (default 4096)")  # fmt: skip
    respond.set_defaults(func=_usage_errors(_cmd_respond))

    teach = sub.add_parser(
        "teach", help="cache teacher embeddings of the answers", description=_cmd_teach.__doc__
    )
    teach.add_argument("input", help="answers: .jsonl, .csv or .parquet with answer and id fields")
    teach.add_argument("output", help="cache file (.safetensors)")
    teach.add_argument("--teacher", default="minilm", help="minilm | sentence-transformers dir | HF encoder")
    teach.add_argument("--pooling", choices=["mean", "cls"], default=None, help="for a plain HF encoder")
    teach.add_argument(
        "--adapter",
        action="append",
        default=[],
        help="peft adapter merged into the teacher, in order (repeat: LLM2Vec MNTP, SimCSE)",
    )
    teach.add_argument(
        "--bidirectional",
        action="store_true",
        help="run a decoder teacher without its causal mask (LLM2Vec-style)",
    )
    teach.add_argument("--batch-size", type=_positive_int, default=64)
    teach.add_argument("--max-length", type=_positive_int, default=512)
    teach.add_argument("--answer-field", default="answer")
    teach.add_argument("--id-field", default="id")
    teach.add_argument("--device", default=None)
    teach.add_argument("--window", type=_positive_int, default=4096,
                       help="answers embedded and committed at a time (default 4096)")  # fmt: skip
    teach.add_argument("--no-resume", action="store_true",
                       help="ignore the windows a killed run committed in OUTPUT.parts/")  # fmt: skip
    teach.set_defaults(func=_usage_errors(_cmd_teach))

    train = sub.add_parser("train", help="train an LLM2Vec-Gen encoder", description=_cmd_train.__doc__)
    train.add_argument("data", help="training data: .jsonl, .csv or .parquet with id, query, answer")
    train.add_argument("teacher_cache", help="teacher embeddings written by `llm2vec-gen teach`")
    train.add_argument("output_dir", help="checkpoints (checkpoint-<step>/) and train_log.jsonl")
    train.add_argument("--base", help="causal LM to start from (directory or hub id)")
    train.add_argument("--tokenizer", help="tokenizer (default: --base)")
    train.add_argument("--init", help="continue from a released-format checkpoint instead")
    train.add_argument("--num-special-tokens", type=_positive_int, default=10)
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--warmup-steps", type=int, default=100)
    train.add_argument("--total-steps", type=_positive_int, default=20_000, help="schedule length")
    train.add_argument("--max-steps", type=_positive_int, default=None, help="stop here (default total)")
    train.add_argument("--batch-size", type=_positive_int, default=32, help="global batch (all processes)")
    train.add_argument("--micro-batch-size", type=_positive_int, default=None, help="per process forward")
    train.add_argument("--max-length", type=_positive_int, default=512)
    train.add_argument("--distill", choices=["mse", "cosine"], default="mse")
    train.add_argument("--recon-weight", type=float, default=1.0)
    train.add_argument("--align-weight", type=float, default=1.0)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--save-every", type=int, default=500)
    train.add_argument("--gradient-checkpointing", action="store_true")
    resume = train.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint in output_dir (the default)",
    )
    resume.add_argument("--no-resume", action="store_true", help="ignore checkpoints in output_dir")
    train.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK when available, else cpu")
    train.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    train.set_defaults(func=_usage_errors(_cmd_train))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm2vec-gen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="offline end to end: tiny Qwen3 + real tokenizer, teach, train, save, eval, decode",
        description="Without --model: builds (or reuses from --cache-dir) a tiny Qwen3 with the real Qwen "
        "tokenizer, trains LLM2Vec-Gen on the bundled corpus with the offline all-MiniLM-L6-v2 teacher, "
        "saves a released-format checkpoint, evaluates retrieval and decodes one embedding.",
    )
    demo.add_argument("--model", default=None, help="a checkpoint dir / hub id, or a base LLM to train")
    demo.add_argument("--output-dir", default="llm2vec-gen-demo", help="where the run is written")
    demo.add_argument(
        "--cache-dir", default=str(_default_cache_dir()), help="where the tiny base LLM is kept"
    )
    demo.add_argument("--steps", type=_positive_int, default=200, help="training steps (default 200)")
    demo.add_argument("--batch-size", type=_positive_int, default=8)
    demo.add_argument("--lr", type=float, default=3e-3)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--device", default=None)
    demo.set_defaults(func=_cmd_demo)
    _add_integration_commands(sub)
    _add_train_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
