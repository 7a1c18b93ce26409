"""Training data: tokenisation and length-grouped batches of the records ``llm2vec_gen.io.records`` reads.

A record is ``{"id": str, "query": str, "answer": str}`` (field names configurable). Tokenisation
follows the reference collator:

    query  = text_ids(query.strip(), max_length - K) + the K special ids (llm2vec_gen.tokenize, left padded)
    answer = tok(answer.strip() + answer_suffix, truncated to max_length)               (right padded)
    labels = answer ids, with ids equal to the pad id set to -100 (the reference masks by pad id)

The reference appends the literal text ``"<|end_of_text|>"`` to every answer (Llama 3's EOS; for
Qwen it is plain text), so that is the default ``answer_suffix``. Answers are right padded, so the
decoder reads ``[r][answer]`` with no mask (causal attention never looks at the pads after a row).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from llm2vec_gen.batching import left_pad, pad_rows
from llm2vec_gen.tokenize import text_ids

REFERENCE_ANSWER_SUFFIX = "<|end_of_text|>"
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "data" / "demo_corpus.jsonl"
"""150 English query/answer pairs bundled for demos and tests (fields id, query, answer)."""


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
    """Tokenise queries with the one query tokeniser (``llm2vec_gen.tokenize.text_ids``: special
    tokens in the text split, truncated so the K special tokens fit in ``max_length``; they are
    appended by the model) and answers."""
    if max_length <= num_special:
        raise ValueError(f"max_length {max_length} must exceed the {num_special} special tokens")
    queries, _ = text_ids(tokenizer, [r["query"].strip() for r in records], max_length - num_special)
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
    """One micro-batch, padded; built on the CPU so the step needs no value from the device.

    query_ids    [B, Tq] int64, left padded, WITHOUT the K special tokens (they are appended)
    query_mask   [B, Tq] int64, 1 on real tokens
    answer_ids   [B, Ta] int64, right padded (any valid pad id)
    answer_mask  [B, Ta] int64, 1 on real tokens
    labels       [B, Ta] int64, -100 on pads and masked tokens
    teacher      [B, D]  fp32 teacher embeddings of the answers
    label_index  [n]     int64 flat positions in [B, Ta] of the n predicted tokens (labels != -100)
    num_tokens   real tokens in the batch (query + answer; the K appended tokens excluded)

    ``label_index`` and ``num_tokens`` are derived from the CPU tensors when not given.
    """

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    answer_ids: torch.Tensor
    answer_mask: torch.Tensor
    labels: torch.Tensor
    teacher: torch.Tensor
    label_index: torch.Tensor | None = None
    num_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.label_index is None:
            self.label_index = (self.labels != -100).flatten().nonzero().squeeze(1)
        if self.num_tokens is None:
            self.num_tokens = int(self.query_mask.sum()) + int(self.answer_mask.sum())

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``; from pinned memory (asynchronous) when that is a GPU."""
        pin = torch.device(device).type == "cuda"

        def move(t):
            return (t.pin_memory() if pin and t.device.type == "cpu" else t).to(device, non_blocking=True)

        fields = {k: move(v) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()}
        return Batch(**fields)


def collate(data: TokenizedData, indices: Sequence[int], teacher: torch.Tensor, pad_id: int) -> Batch:
    """The Batch of examples ``indices``; ``teacher`` [N, D] is aligned with ``data``."""
    q = [data.query_ids[i] for i in indices]
    a = [data.answer_ids[i] for i in indices]
    lab = [data.labels[i] for i in indices]
    query_ids, query_mask = left_pad(q, pad_id)
    return Batch(
        query_ids=query_ids,
        query_mask=query_mask,
        answer_ids=pad_rows(a, pad_id, left=False),
        answer_mask=pad_rows([[1] * len(s) for s in a], 0, left=False),
        labels=pad_rows(lab, -100, left=False),
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
