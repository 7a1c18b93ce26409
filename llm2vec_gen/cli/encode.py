"""The encode family: ``encode``, ``decode``, ``eval`` and ``bench`` of a trained checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llm2vec_gen.cli.common import (
    UsageError,
    add_device_args,
    add_quantize_arg,
    check_model_source,
    checkpoint_dir,
    positive_int,
    usage_errors,
)

INPUTS = "input texts: .txt (a line each), .jsonl, .ndjson, .csv, .tsv, .parquet or .json"


def _load_model(args: argparse.Namespace, device: str | None = None):
    """The checkpoint on ``device`` (default ``args.device``); a failed load is a usage error."""
    from llm2vec_gen.model import LLM2VecGenModel

    with usage_errors(OSError, ValueError):
        return LLM2VecGenModel.from_pretrained(
            args.checkpoint, device=device or args.device, dtype=args.dtype, quantize=args.quantize
        )


def _instruction(args: argparse.Namespace) -> str | None:
    from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION, STS_INSTRUCTION

    presets = {"query": QUERY_INSTRUCTION, "document": PASSAGE_INSTRUCTION, "sts": STS_INSTRUCTION}
    return args.instruction if args.instruction is not None else presets.get(args.task)


def _read_inputs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from llm2vec_gen.io.texts import read_texts

    with usage_errors(FileNotFoundError, ValueError):
        return read_texts(args.input, text_field=args.text_field, id_field=args.id_field)


def _settings(args: argparse.Namespace, model, options: dict) -> dict:
    """What a resumed run (or a reused shard directory) must match: the checkpoint, the model's
    precision (``precision.describe``) and the encode options."""
    from llm2vec_gen.precision import describe

    return {"checkpoint": str(Path(args.checkpoint).resolve()), "dtype": describe(model.llm), **options}


def _encoder(model, args: argparse.Namespace, recon: bool):
    """``texts -> fp32 numpy [n, D]`` (with ``recon``: and the recon states [n, K, H]) of ``model``
    under the command's options, and those options as settings a resumed run must match."""
    from llm2vec_gen.batching import batch_token_budget

    options = dict(
        max_length=args.max_length,
        batch_size=args.batch_size,
        max_batch_tokens=batch_token_budget(model.device, args.max_batch_tokens),
        instruction=_instruction(args),
        normalize_embeddings=args.normalize,
    )

    def encode(texts: list[str]):
        return model.encode(
            texts, get_recon_hidden_states=recon, convert_to_numpy=True, convert_to_tensor=False, **options
        )

    return encode, options


def _cmd_encode(args: argparse.Namespace) -> int:
    """Texts file in -> embeddings file out (ids kept), streamed chunk by chunk; --resume continues a
    killed run. Under torchrun each rank streams and encodes one contiguous shard."""
    from llm2vec_gen.integrations import distributed
    from llm2vec_gen.io.embeddings import OUTPUT_SUFFIXES
    from llm2vec_gen.io.stream import encode_file
    from llm2vec_gen.io.texts import check_texts

    if Path(args.output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"output {args.output}: use one of {', '.join(OUTPUT_SUFFIXES)}")
    if args.save_recon and Path(args.save_recon).suffix.lower() != ".npy":
        raise UsageError(f"--save-recon {args.save_recon}: use a .npy file")
    check_model_source(args.checkpoint, "checkpoint", checkpoint_dir)
    with usage_errors(FileNotFoundError, ValueError):
        check_texts(args.input, args.text_field, args.id_field, args.bad_bytes)
    read = dict(text_field=args.text_field, id_field=args.id_field, bad_bytes=args.bad_bytes)
    start = time.perf_counter()
    if distributed.is_launched():
        if args.save_recon or args.resume:
            raise UsageError("--save-recon and --resume are not supported under torchrun")
        info = distributed.setup()
        model = _load_model(args, device=str(info.device))
        encode, options = _encoder(model, args, recon=False)
        rows = distributed.encode_file_distributed(
            encode, args.input, args.shard_dir or f"{args.output}.shards", args.output,
            dim=model.embedding_dim, chunk_rows=args.chunk_rows, progress=args.progress,
            settings=_settings(args, model, options), **read,
        )  # fmt: skip
        distributed.teardown()
        if info.rank != 0:
            return 0
        done, where = f"{rows} texts", f"{info.world_size} ranks"
    else:
        model = _load_model(args)
        encode, options = _encoder(model, args, recon=bool(args.save_recon))
        recon_shape = (model.num_encode_tokens, model.special_rows.shape[1])
        result = encode_file(
            encode, args.input, args.output, dim=model.embedding_dim, chunk_rows=args.chunk_rows,
            resume=args.resume, recon_output=args.save_recon, recon_shape=recon_shape,
            settings=_settings(args, model, options), progress=args.progress, **read,
        )  # fmt: skip
        resumed = f", {result.resumed_rows} resumed" if result.resumed_rows else ""
        done, where = f"{result.rows} texts in {result.chunks} chunks{resumed}", str(model.device)
    elapsed = time.perf_counter() - start
    print(f"encoded {done} on {where} in {elapsed:.2f}s (load + encode) -> {args.output}")
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    """Texts (or saved recon states, .npy [N, K, H]) in -> greedy decodes as JSON lines out."""
    import numpy as np

    check_model_source(args.checkpoint, "checkpoint", checkpoint_dir)
    if Path(args.input).suffix.lower() == ".npy":
        if not Path(args.input).is_file():
            raise UsageError(f"{args.input}: no such file")
        with usage_errors(OSError, ValueError):
            source = np.load(args.input)
        if source.ndim != 3:
            raise UsageError(f"{args.input}: recon states must be [N, K, H], got shape {source.shape}")
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


def _cmd_eval(args: argparse.Namespace) -> int:
    """Local retrieval (nDCG@k, recall@k, MRR@k) and STS on the bundled set or a BEIR directory."""
    from llm2vec_gen import evaluate

    check_model_source(args.checkpoint, "checkpoint", checkpoint_dir)
    data = None
    if args.data:
        with usage_errors(FileNotFoundError, ValueError, KeyError, IndexError):
            data = evaluate.load_beir(args.data, split=args.split)
    model = _load_model(args)
    kwargs = dict(batch_size=args.batch_size, max_length=args.max_length)
    results = {"retrieval": evaluate.evaluate_retrieval(model, data, k=args.k, **kwargs)}
    if not args.data:
        results["sts"] = evaluate.evaluate_sts(model, **kwargs)
    print(json.dumps(results, indent=2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Throughput of encode (and decode) on this machine: texts/s and tokens/s, median of repeats, and
    the padding waste of its batches (padded_tokens: what the forward passes run)."""
    import statistics

    from llm2vec_gen.batching import batch_token_budget, padded_tokens, token_batches
    from llm2vec_gen.precision import describe

    check_model_source(args.checkpoint, "checkpoint", checkpoint_dir)
    if args.input:
        _, texts = _read_inputs(args)
    else:
        from llm2vec_gen.integrations.sample_data import SAMPLE_CORPUS, SAMPLE_QUERIES

        pool = list(SAMPLE_QUERIES.values()) + list(SAMPLE_CORPUS.values())
        texts = [pool[i % len(pool)] for i in range(args.num_texts)]
    model = _load_model(args)
    instruction = _instruction(args)
    lengths = [len(r) for r in model.tokenize(texts, max_length=args.max_length, instruction=instruction)]
    tokens = sum(lengths)
    budget = batch_token_budget(model.device, args.max_batch_tokens)
    padded = padded_tokens(lengths, token_batches(lengths, args.batch_size, budget))
    kwargs = dict(max_length=args.max_length, batch_size=args.batch_size, instruction=instruction)
    kwargs.update(max_batch_tokens=budget)
    model.encode(texts[: args.batch_size], **kwargs)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.encode(texts, **kwargs)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {"device": str(model.device), "dtype": describe(model.llm), "num_texts": len(texts)}
    result.update(tokens=tokens, padded_tokens=padded, padding_waste=round(1 - tokens / padded, 4))
    result.update(batch_size=args.batch_size, max_batch_tokens=budget)
    result.update(encode_median_s=median, texts_per_s=len(texts) / median)
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
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--max-length", type=positive_int, default=512, help="max tokens per text (default 512)")
    add_device_args(p)
    add_quantize_arg(p)
    if texts:
        p.add_argument("--text-field", default="text", help="text field of a record file")
        p.add_argument("--id-field", default="id", help="id field (absent: record numbers)")
        p.add_argument("--instruction", default=None, help="prepended to every text")
        p.add_argument("--task", choices=["query", "document", "sts"], default=None,
                       help="use the paper's instruction for queries, documents or STS")  # fmt: skip


def _add_batch_tokens(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-batch-tokens", type=positive_int, default=None,
                   help="also cap each batch at this many padded tokens (default: 2048 on a CPU, "
                   "16384 on a GPU)")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``encode``, ``decode``, ``eval`` and ``bench`` to the ``llm2vec-gen`` subcommands."""
    encode = sub.add_parser("encode", help="embed a file of texts", description=_cmd_encode.__doc__)
    _add_model_args(encode)
    _add_batch_tokens(encode)
    encode.add_argument("input", help=INPUTS)
    encode.add_argument("output", help="embeddings + ids: .npy (+ .ids.json), .npz, .safetensors, .parquet")
    encode.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    encode.add_argument("--save-recon", metavar="NPY", help="also save the recon states [N, K, H] (.npy)")
    encode.add_argument("--shard-dir", help="torchrun: shared directory for shards (default OUTPUT.shards)")
    encode.add_argument("--progress", action="store_true", help="show a progress bar")
    encode.add_argument("--chunk-rows", type=positive_int, default=4096,
                        help="texts read, encoded and committed at a time (default 4096)")  # fmt: skip
    encode.add_argument("--resume", action="store_true",
                        help="continue a killed run from OUTPUT.parts/ (same input and options)")  # fmt: skip
    encode.add_argument("--bad-bytes", choices=["error", "replace"], default="error",
                        help="non-UTF-8 bytes: fail naming the line (default) or use U+FFFD")  # fmt: skip
    encode.set_defaults(func=_cmd_encode)

    decode = sub.add_parser("decode", help="texts or recon states to text", description=_cmd_decode.__doc__)
    _add_model_args(decode)
    decode.add_argument("input", help=f"{INPUTS}; or recon states saved by encode --save-recon (.npy)")
    decode.add_argument("--output", help="JSON lines {id, text} (default: stdout)")
    decode.add_argument("--max-new-tokens", type=positive_int, default=64, help="default 64")
    decode.set_defaults(func=_cmd_decode)

    evaluate = sub.add_parser("eval", help="local retrieval / STS evaluation", description=_cmd_eval.__doc__)
    _add_model_args(evaluate, texts=False)
    evaluate.add_argument("--data", help="BEIR-layout directory (default: the bundled sample set)")
    evaluate.add_argument("--split", default="test", help="qrels split of --data (default test)")
    evaluate.add_argument("--k", type=positive_int, default=10, help="cut-off of the metrics (default 10)")
    evaluate.set_defaults(func=_cmd_eval)

    bench = sub.add_parser("bench", help="measure encode throughput", description=_cmd_bench.__doc__)
    _add_model_args(bench)
    _add_batch_tokens(bench)
    bench.add_argument("--input", help=f"{INPUTS} (default: sample texts)")
    bench.add_argument("--num-texts", type=positive_int, default=256, help="sample texts (default 256)")
    bench.add_argument("--repeats", type=positive_int, default=3, help="timed passes (default 3)")
    bench.add_argument("--decode-tokens", type=int, default=0, help="also time decoding this many tokens")
    bench.set_defaults(func=_cmd_bench)
