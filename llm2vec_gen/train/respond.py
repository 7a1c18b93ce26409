"""Step 1 of training: the LLM's own answers to a file of queries, streamed and resumable.

The input is streamed ``window`` records at a time (``io.records.iter_records``); inside a window the
queries are sorted by length and generated in batches (left padding, transformers' ``generate``
with its KV cache), through the tokenizer's chat template when it has one (Qwen3: thinking off).
Each batch is appended to the output JSONL as ``{"id", "query", "answer"}`` rows in one write,
flushed and fsynced. After each window a sidecar ``<output>.progress.json`` is committed
atomically: the input's identity (path, size, mtime), the window size and fields, the number of
finished windows and the output's size then.

Resuming after a kill: the finished windows are read past (checked, not generated); the ids of the
window that was running are the rows after the recorded size (a torn last line is cut off), so
memory holds one window, never the file, and no row is computed or written twice. Without a
sidecar that matches the input (an older output, a changed input) every id already in the output
counts as done (memory then grows with the output); that part of the output is recorded in the
sidecar (``legacy_bytes``) so later resumes read it again. With ``do_sample`` a resumed run draws
new random numbers: its answers differ from an uninterrupted run's, greedy answers do not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llm2vec_gen.io.atomic import atomic_write_file
from llm2vec_gen.io.chunks import input_identity
from llm2vec_gen.io.records import iter_records, windows


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


def progress_path(output: str | Path) -> Path:
    """The resume sidecar of ``output``: ``<output>.progress.json`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".progress.json")


def done_ids(path: str | Path, skip: tuple[int, int] = (0, 0)) -> set[str]:
    """Ids already answered in ``path``, except those of the byte range ``skip`` (rows of windows
    known to be finished, not read); a torn last line (unparsable or without its newline) is cut
    off the file."""
    path = Path(path)
    if not path.is_file():
        return set()
    ids, good_bytes, torn = set(), 0, False
    with open(path, "rb") as f:
        for start, stop in ((0, skip[0]), (skip[1], None)):
            f.seek(start)
            good_bytes = start
            while not torn and (stop is None or good_bytes < stop) and (line := f.readline()):
                try:
                    if not line.endswith(b"\n"):  # cut before its end: the next row would join it
                        raise ValueError("no line end")
                    ids.add(str(json.loads(line)["id"]))
                    good_bytes += len(line)
                except (ValueError, KeyError, TypeError):  # JSONDecodeError, UnicodeDecodeError
                    torn = True
            if torn:
                break
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return ids


def _resume_state(output: Path, settings: dict) -> tuple[dict, set[str]]:
    """The sidecar to continue from and the ids of unfinished windows already in ``output``."""
    try:
        state = json.loads(progress_path(output).read_text(encoding="utf-8"))
        usable = state["settings"] == settings and state["bytes"] <= output.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        usable = False
    if usable:
        return state, done_ids(output, (state["legacy_bytes"], state["bytes"]))
    done = done_ids(output)
    size = output.stat().st_size if output.is_file() else 0
    return {"settings": settings, "legacy_bytes": size, "bytes": size, "windows": 0, "rows": 0}, done


def _save_state(output: Path, state: dict) -> None:
    text = json.dumps(state, indent=1).encode("utf-8")
    atomic_write_file(progress_path(output), lambda f: f.write(text))


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
            return_token_type_ids=False,  # BERT-style tokenizers add them; generate rejects them
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
    window: int = 4096,
) -> int:
    """Answer every query of ``input_path`` not yet in ``output_path``; returns rows written now.

    ``window``: records read (and sorted by length for batching) at a time; memory holds one
    window. Input errors (ValueError, FileNotFoundError) name the line.
    """
    output_path = Path(output_path)
    records = iter_records(input_path, ("id", "query"), {"id": id_field, "query": query_field})
    settings = {**input_identity(input_path), "window": window}
    settings.update(query_field=query_field, id_field=id_field)
    state, done = _resume_state(output_path, settings)
    torch.manual_seed(seed)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with (
        open(output_path, "ab") as f,
        tqdm(desc="respond", unit="query", initial=state["rows"], disable=not progress) as bar,
    ):
        for index, chunk in enumerate(windows(records, window)):
            if index < state["windows"]:
                continue  # finished before a kill: read (and checked) only
            todo = sorted((r for r in chunk if r["id"] not in done), key=lambda r: len(r["query"]))
            bar.update(len(chunk) - len(todo))
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                answers = generate_answers(
                    model,
                    tokenizer,
                    [r["query"] for r in batch],
                    max_new_tokens,
                    do_sample,
                    temperature,
                    top_p,
                    chat_template,
                    max_length,
                )
                rows = (
                    json.dumps({"id": r["id"], "query": r["query"], "answer": a}) + "\n"
                    for r, a in zip(batch, answers, strict=True)
                )
                f.write("".join(rows).encode("utf-8"))  # one write: a kill tears at most one line
                f.flush()
                os.fsync(f.fileno())
                written += len(batch)
                bar.update(len(batch))
            state.update(windows=index + 1, bytes=f.tell(), rows=state["rows"] + len(chunk))
            _save_state(output_path, state)
            done.difference_update(r["id"] for r in chunk)
    return written
