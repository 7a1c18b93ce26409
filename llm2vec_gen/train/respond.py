"""Step 1 of training: the LLM's own answers to a file of queries.

Queries are sorted by length and generated in batches (left padding, transformers' ``generate`` with
its KV cache), through the tokenizer's chat template when it has one (Qwen3: thinking off). Each
batch is appended to the output JSONL as ``{"id", "query", "answer"}`` rows, flushed and fsynced, so
an interrupted run resumes: ids already in the output are skipped (a torn last line is dropped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llm2vec_gen.train.data import read_records


def prompt_text(tokenizer, query: str, chat_template: bool = True) -> str:
    """The generation prompt of ``query``: the chat template (no thinking) when available."""
    if chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": query}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )
    return query


def done_ids(path: str | Path) -> set[str]:
    """Ids already answered in ``path``; a torn (unparsable) last line is cut off the file."""
    path = Path(path)
    if not path.is_file():
        return set()
    ids, good_bytes = set(), 0
    with open(path, "rb") as f:
        for line in f:
            try:
                ids.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
                break
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return ids


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    queries: Sequence[str],
    max_new_tokens: int = 512,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    chat_template: bool = True,
    max_length: int = 512,
) -> list[str]:
    """Answers to ``queries`` (one batch): KV-cached ``generate``, new tokens decoded without specials."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(
            [prompt_text(tokenizer, q, chat_template) for q in queries],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            add_special_tokens=not (chat_template and getattr(tokenizer, "chat_template", None)),
        ).to(model.device)
    finally:
        tokenizer.padding_side = side
    kwargs = {"do_sample": do_sample}
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    new = out[:, enc["input_ids"].shape[1] :]
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def respond(
    model,
    tokenizer,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 16,
    max_new_tokens: int = 512,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 42,
    chat_template: bool = True,
    max_length: int = 512,
    query_field: str = "query",
    id_field: str = "id",
    progress: bool = True,
) -> int:
    """Answer every query of ``input_path`` not yet in ``output_path``; returns rows written now."""
    records = read_records(input_path, ("id", "query"), {"id": id_field, "query": query_field})
    done = done_ids(output_path)
    todo = sorted((r for r in records if r["id"] not in done), key=lambda r: len(r["query"]))
    torch.manual_seed(seed)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with (
        open(output_path, "a", encoding="utf-8") as f,
        tqdm(total=len(todo), desc="respond", disable=not progress) as bar,
    ):
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            answers = generate_answers(
                model,
                tokenizer,
                [r["query"] for r in chunk],
                max_new_tokens,
                do_sample,
                temperature,
                top_p,
                chat_template,
                max_length,
            )
            for rec, ans in zip(chunk, answers, strict=True):
                f.write(json.dumps({"id": rec["id"], "query": rec["query"], "answer": ans}) + "\n")
            f.flush()
            os.fsync(f.fileno())
            written += len(chunk)
            bar.update(len(chunk))
    return written
