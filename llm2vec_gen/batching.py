"""Padding, positions and batch formation: the one place every forward pass builds its inputs.

- ``pad_rows``/``left_pad``: token rows to [B, T] tensors (queries are left padded so the K special
  tokens sit in the last K columns of every row; answers are right padded).
- ``positions``: position ids that count real tokens only, so a row's states do not depend on how
  much padding its batch has (RoPE is relative: the reference's arange positions give the same scores).
- ``token_batches``: length-sorted batches of at most ``batch_size`` rows and, optionally, at most
  ``max_batch_tokens`` padded tokens (padded width x rows); ``padded_tokens`` counts what they run.
- ``run_split_on_oom``: runs a batch; one that raises an out-of-memory error is split in two and
  retried, down to single rows (a single row that does not fit re-raises).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedTokenizerBase


def pad_token_id(tokenizer: PreTrainedTokenizerBase, vocab: int) -> int:
    """The tokenizer's pad id when it lies inside the LM's table of ``vocab`` rows, else 0 (pads are
    masked: their value is never read, it only has to be a valid row)."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None and 0 <= pad < vocab else 0


def pad_rows(rows: Sequence[Sequence[int]], value: int, left: bool) -> torch.Tensor:
    """Rows of ints -> [B, T] int64 (T: the longest row, at least 1), padded with ``value`` on one side."""
    width = max([1, *(len(r) for r in rows)])
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            part = torch.as_tensor(list(row), dtype=torch.long)
            if left:
                out[i, width - len(row) :] = part
            else:
                out[i, : len(row)] = part
    return out


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, T] int64, attention_mask [B, T] int64) of left-padded token rows, on the CPU."""
    ids = pad_rows(rows, pad, left=True)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    mask = (torch.arange(ids.shape[1]) >= ids.shape[1] - lengths[:, None]).long()
    return ids, mask


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, T] int64 of a left-padded mask [B, T]: real tokens count 0, 1, ...; pads 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def default_batch_tokens(device: torch.device) -> int:
    """Padded tokens per forward pass when none is given: 16,384 on a GPU, 2,048 on a CPU (where a
    batch gains little over one text and large activations leave the cache; the fastest measured on
    mixed lengths, benchmarks/RESULTS.md)."""
    return 16_384 if device.type == "cuda" else 2_048


def batch_token_budget(device: torch.device, max_batch_tokens: int | None = None) -> int:
    """The padded-token budget of a forward pass: ``max_batch_tokens`` when given, else
    ``default_batch_tokens(device)`` (what encode, the CLI and the server all use)."""
    return default_batch_tokens(device) if max_batch_tokens is None else max_batch_tokens


def token_batches(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None
) -> list[list[int]]:
    """Indices of ``lengths`` in batches, longest first (an out-of-memory error shows at once).

    A batch holds at most ``batch_size`` rows and, with ``max_batch_tokens``, at most that many
    padded tokens (its longest row x its rows); a row longer than the budget forms a batch alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        fits = current is not None and len(current) < batch_size
        if fits and max_batch_tokens is not None:
            fits = lengths[current[0]] * (len(current) + 1) <= max_batch_tokens
        if fits:
            current.append(i)
        else:
            batches.append([i])
    return batches


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens the forward passes over ``batches`` (indices into ``lengths``) run, each batch padded to
    its longest row; ``1 - sum(lengths) / padded_tokens`` is the share spent on padding."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches if b)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/accelerator out-of-memory errors and the CPU allocator's failure."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    message = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


def run_split_on_oom(run: Callable[[list[int]], None], batch: list[int]) -> None:
    """``run(batch)``; on an out-of-memory error, run its two halves instead (recursively), so no
    row is lost. A single row that still does not fit re-raises the error."""
    pending = [batch]
    while pending:
        part = pending.pop()
        try:
            run(part)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if len(part) == 1 or not is_out_of_memory(exc):
                raise
            del exc
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(part) // 2
            pending += [part[half:], part[:half]]
