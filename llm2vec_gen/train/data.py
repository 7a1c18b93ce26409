"""Training data: records from JSONL / CSV / parquet, tokenisation, length-grouped batches.

A record is ``{"id": str, "query": str, "answer": str}`` (field names configurable). Tokenisation
follows the reference collator:

    query  = tok(query.strip(), truncated to max_length - K) + the K special ids       (left padded)
    answer = tok(answer.strip() + answer_suffix, truncated to max_length)               (right padded)
    labels = answer ids, with ids equal to the pad id set to -100 (the reference masks by pad id)

The reference appends the literal text ``"<|end_of_text|>"`` to every answer (Llama 3's EOS; for
Qwen it is plain text), so that is the default ``answer_suffix``. Padding side does not change the
loss: the decoder input is rebuilt without left pads (see ``step.assemble_decoder_inputs``).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypeVar

import torch

from llm2vec_gen.integrations import files

REFERENCE_ANSWER_SUFFIX = "<|end_of_text|>"
T = TypeVar("T")
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "data" / "demo_corpus.jsonl"
"""150 English query/answer pairs bundled for demos and tests (fields id, query, answer)."""


def read_table(path: str | Path) -> list[dict]:
    """Rows of a ``.jsonl`` / ``.json`` (list) / ``.csv`` / ``.parquet`` file, as dicts."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
        return rows
    if suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json data file must hold a list of objects")
        return rows
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    raise ValueError(f"{path}: unknown data format {suffix!r} (use .jsonl, .json, .csv or .parquet)")


def read_records(
    path: str | Path,
    fields: Sequence[str] = ("id", "query", "answer"),
    names: dict[str, str] | None = None,
) -> list[dict]:
    """Rows of ``path`` with the given logical ``fields`` (``names`` maps a field to its column).

    Ids become strings; every field must be present and non-empty in every row, ids unique, else
    ValueError naming the row.
    """
    return check_records(read_table(path), fields, names, str(path))


def check_records(
    rows: Sequence[dict],
    fields: Sequence[str] = ("id", "query", "answer"),
    names: dict[str, str] | None = None,
    path: str = "data",
) -> list[dict]:
    """``read_records`` on rows already in memory."""
    return list(_checked(((f"row {n}", row) for n, row in enumerate(rows, 1)), fields, names, path))


def iter_records(
    path: str | Path,
    fields: Sequence[str] = ("id", "query", "answer"),
    names: dict[str, str] | None = None,
) -> Iterator[dict]:
    """The records of ``read_records``, streamed: one row in memory, plus the set of ids seen so far
    (to refuse a repeated id: about 100 bytes per id, 100 MB for a million rows).

    .jsonl/.ndjson/.csv/.parquet are streamed through ``integrations.files.iter_rows`` (bytes that
    are not UTF-8 and lines over 16 MiB raise ``InputError`` naming the line); a .json list is read
    whole. Errors (ValueError) name the line (parquet: the row); FileNotFoundError is raised at once.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    columns = [(names or {}).get(f, f) for f in fields]
    if suffix == ".json":
        rows = ((f"row {n}", row) for n, row in enumerate(read_table(path), 1))
    elif suffix in (".jsonl", ".ndjson", ".csv", ".parquet"):
        rows = files.iter_rows(path, ".jsonl" if suffix == ".ndjson" else suffix, columns)
    else:
        raise ValueError(f"{path}: unknown data format {suffix!r} (use .jsonl, .json, .csv or .parquet)")
    return _checked(rows, fields, names, str(path))


def _checked(
    rows: Iterable[tuple[str, object]], fields: Sequence[str], names: dict[str, str] | None, path: str
) -> Iterator[dict]:
    """Each ``(where, row)`` as a record of ``fields`` (strings); ValueError naming ``where``."""
    names = {f: (names or {}).get(f, f) for f in fields}
    seen: set[str] = set()
    empty = True
    for where, row in rows:
        empty = False
        if not isinstance(row, dict):
            raise ValueError(f"{path}: {where} is not an object")
        rec = {}
        for field, column in names.items():
            value = row.get(column)
            if value is None or (isinstance(value, float) and value != value):
                raise ValueError(f"{path}: {where} has no {column!r} field (needed as {field})")
            value = str(value)
            if field != "id" and not value.strip():
                raise ValueError(
                    f"{path}: {where} (id {row.get(names.get('id', 'id'))}) has an empty {column!r}"
                )
            rec[field] = value
        if "id" in rec:
            if rec["id"] in seen:
                raise ValueError(f"{path}: {where} repeats id {rec['id']!r}")
            seen.add(rec["id"])
        yield rec
    if empty:
        raise ValueError(f"{path}: no rows")


def windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter), read lazily from ``items``."""
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass
class TokenizedData:
    """Token ids of every example (Python lists; the whole set is small next to the model)."""

    ids: list[str]
    query_ids: list[list[int]]  # without the K special tokens
    answer_ids: list[list[int]]
    labels: list[list[int]]

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self, num_special: int) -> list[int]:
        """Real tokens per example: query + K + answer (the compute each example costs)."""
        return [len(q) + num_special + len(a) for q, a in zip(self.query_ids, self.answer_ids, strict=True)]


def tokenize_records(
    tokenizer,
    records: Sequence[dict],
    num_special: int,
    max_length: int = 512,
    answer_suffix: str = REFERENCE_ANSWER_SUFFIX,
) -> TokenizedData:
    """Tokenise queries (truncated so the K special tokens fit in ``max_length``) and answers."""
    if max_length <= num_special:
        raise ValueError(f"max_length {max_length} must exceed the {num_special} special tokens")
    queries = tokenizer(
        [r["query"].strip() for r in records], truncation=True, max_length=max_length - num_special
    )["input_ids"]
    answers = tokenizer(
        [r["answer"].strip() + answer_suffix for r in records], truncation=True, max_length=max_length
    )["input_ids"]
    pad = tokenizer.pad_token_id
    labels = [[-100 if t == pad else t for t in a] for a in answers]
    for rec, a, lab in zip(records, answers, labels, strict=True):
        if not a or all(t == -100 for t in lab):
            raise ValueError(f"example {rec['id']!r}: the answer has no token to predict")
    return TokenizedData([r["id"] for r in records], queries, answers, labels)


@dataclass
class Batch:
    """One micro-batch, padded.

    query_ids    [B, Tq] int64, left padded, WITHOUT the K special tokens (they are appended)
    query_mask   [B, Tq] int64, 1 on real tokens
    answer_ids   [B, Ta] int64, right padded (any pad id)
    answer_mask  [B, Ta] int64, 1 on real tokens
    labels       [B, Ta] int64, -100 on pads and masked tokens
    teacher      [B, D]  fp32 teacher embeddings of the answers
    """

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    answer_ids: torch.Tensor
    answer_mask: torch.Tensor
    labels: torch.Tensor
    teacher: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in vars(self).values()))

    @property
    def num_tokens(self) -> int:
        """Real tokens in the batch (query + answer; the K appended tokens excluded)."""
        return int(self.query_mask.sum()) + int(self.answer_mask.sum())


def _pad(seqs: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(1, max(len(s) for s in seqs))
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if left:
            out[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        else:
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate(data: TokenizedData, indices: Sequence[int], teacher: torch.Tensor, pad_id: int) -> Batch:
    """The Batch of examples ``indices``; ``teacher`` [N, D] is aligned with ``data``."""
    q = [data.query_ids[i] for i in indices]
    a = [data.answer_ids[i] for i in indices]
    lab = [data.labels[i] for i in indices]
    query_ids = _pad(q, pad_id, left=True)
    query_mask = _pad([[1] * len(s) for s in q], 0, left=True)
    return Batch(
        query_ids=query_ids,
        query_mask=query_mask,
        answer_ids=_pad(a, pad_id, left=False),
        answer_mask=_pad([[1] * len(s) for s in a], 0, left=False),
        labels=_pad(lab, -100, left=False),
        teacher=teacher[list(indices)].float(),
    )


def length_grouped_order(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, mega: int = 50
) -> list[int]:
    """A permutation of the examples in which each run of ``batch_size`` has similar lengths.

    Shuffle (seeded by ``seed`` and ``epoch``), cut into mega-batches of ``mega * batch_size``, sort
    each by length (longest first), then shuffle the order of the batches. Deterministic, so a resumed
    run sees the same order.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = max(batch_size * mega, batch_size)
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    rng.shuffle(full)
    return [i for b in full for i in b]


def global_batches(
    lengths: Sequence[int], batch_size: int, seed: int, start_step: int = 0, mega: int = 50
) -> Iterator[tuple[int, list[int]]]:
    """Yields ``(step, indices)`` forever: the global batch of each optimizer step from ``start_step``.

    Epochs run back to back; a last partial batch of an epoch is dropped. Raises ValueError when the
    data hold fewer examples than one batch.
    """
    per_epoch = len(lengths) // batch_size
    if per_epoch == 0:
        raise ValueError(f"{len(lengths)} examples are fewer than one batch of {batch_size}")
    step = start_step
    while True:
        epoch, pos = divmod(step, per_epoch)
        order = length_grouped_order(lengths, batch_size, seed, epoch, mega)
        for b in range(pos, per_epoch):
            yield step, order[b * batch_size : (b + 1) * batch_size]
            step += 1


def split_batch(indices: Sequence[int], lengths: Sequence[int], parts: int) -> list[list[int]]:
    """Split a global batch into ``parts`` equal slices of similar lengths (sorted, contiguous)."""
    if len(indices) % parts:
        raise ValueError(f"a batch of {len(indices)} does not split into {parts} equal parts")
    ordered = sorted(indices, key=lambda i: -lengths[i])
    size = len(ordered) // parts
    return [ordered[p * size : (p + 1) * size] for p in range(parts)]
