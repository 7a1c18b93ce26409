"""Times the reference implementation (PyPI llm2vec-gen==0.1.3) on one checkpoint. Runs INSIDE the
reference venv made by benchmarks/reference_env.sh, never in the project's own environment:

    benchmarks/.refenv/bin/python benchmarks/reference_driver.py CKPT texts.json --out ref.npy

texts.json is a JSON list of strings. After loading, one warm-up encode writes the fp32 [N, D]
embeddings to --out. Then either --repeats timed encodes (and --decode N greedy decodes from the
recon states) are printed as one JSON object, or, with --serve, a JSON header line is printed and
commands read from stdin are timed one by one (see ``_serve``), so the caller can interleave them
with its own measurements.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time

import numpy as np
import torch


def import_reference(parser: argparse.ArgumentParser):
    """The reference package (``llm2vec_gen`` of benchmarks/.refenv); exits with an error if the
    ``llm2vec_gen`` on the path is this project's own package."""
    reference = importlib.import_module("llm2vec_gen")
    if not hasattr(reference, "__author__"):  # the reference sets it; this project's package does not
        parser.error(f"{reference.__file__} is not the reference package: run inside benchmarks/.refenv")
    return reference


def versions() -> dict[str, str]:
    """Versions of the libraries the reference runs on."""
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def _encode_all(model, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    parts = [
        model.encode(texts[i : i + batch_size], max_length=max_length).float().cpu().numpy()
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(parts, axis=0)


def _decode_one(model, text: str, max_new_tokens: int, max_length: int) -> str:
    """The reference's own path (LLM2VecGenModel.generate hard-codes CUDA, so its two steps are
    called directly): recon states from encode, then EncoderDecoderModel.generate from them."""
    _, recon = model.encode([text], max_length=max_length, get_recon_hidden_states=True)
    dummy = model.tokenizer(["x"], return_tensors="pt").to(model.device)
    ids = model.model.generate(
        input_ids=dummy["input_ids"],
        attention_mask=dummy["attention_mask"],
        max_new_tokens=max_new_tokens,
        decoder_inputs_embeds=recon,
    )
    return model.tokenizer.batch_decode(ids, skip_special_tokens=True)[0]


def _serve(model, texts: list[str], args: argparse.Namespace) -> None:
    """Answers one line per command on stdin, so the caller can time single passes with its own
    clock: ``encode`` -> ``{"s": seconds}``; ``decode`` -> ``{"s": seconds, "decoded": [...]}``;
    ``quit`` (or end of input) stops."""
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        start = time.perf_counter()
        reply: dict = {}
        if command == "encode":
            _encode_all(model, texts, args.batch_size, args.max_length)
        elif command == "decode":
            reply["decoded"] = [
                _decode_one(model, t, args.max_new_tokens, args.max_length) for t in texts[: args.decode]
            ]
        else:
            reply["error"] = f"unknown command {command!r}"
        reply["s"] = time.perf_counter() - start
        print(json.dumps(reply), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("texts", help="JSON file holding a list of strings")
    parser.add_argument("--out", required=True, help="where to write the fp32 [N, D] embeddings (.npy)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed encode passes after one warm-up")
    parser.add_argument("--decode", type=int, default=0, help="decode the first N texts (batch size 1)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--serve", action="store_true", help="after the warm-up, answer commands on stdin")
    args = parser.parse_args(argv)

    reference = import_reference(parser)
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)

    start = time.perf_counter()
    model = reference.LLM2VecGenModel.from_pretrained(args.checkpoint)
    model.model.eval()
    load_s = time.perf_counter() - start
    embeddings = _encode_all(model, texts, args.batch_size, args.max_length)  # warm-up
    np.save(args.out, embeddings)
    result = {
        "load_s": load_s,
        "num_texts": len(texts),
        "dim": int(embeddings.shape[1]),
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "versions": versions(),
    }
    if args.serve:
        print(json.dumps(result), flush=True)
        _serve(model, texts, args)
        return 0
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _encode_all(model, texts, args.batch_size, args.max_length)
        times.append(time.perf_counter() - start)
    result.update(encode_s=times, encode_median_s=statistics.median(times))
    if args.decode:
        start = time.perf_counter()
        result["decoded"] = [
            _decode_one(model, t, args.max_new_tokens, args.max_length) for t in texts[: args.decode]
        ]
        result["decode_s"] = time.perf_counter() - start
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
