"""A fresh (untrained) model's parts, as the reference's resize + PEFT set-up would give them:
the tokenizer with the K special tokens added (a copy), the K initial rows and the two heads."""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from llm2vec_gen.checkpoint import extra_special_tokens


def special_token_names(k: int, teacher_dim: int | None, special_tokens: list[str] | None) -> list[str]:
    """The K special tokens (default ``<question1>..<questionK>``), checked with teacher_dim before any
    loading: TypeError without teacher_dim >= 1, ValueError for K < 1 or a list of another length."""
    if teacher_dim is None or teacher_dim < 1:
        raise TypeError(f"from_base needs teacher_dim >= 1 (the teacher's embedding size), got {teacher_dim}")
    if k < 1:
        raise ValueError(f"num_special_tokens must be >= 1, got {k}")
    tokens = special_tokens or [f"<question{i}>" for i in range(1, k + 1)]
    if len(tokens) != k:
        raise ValueError(f"{len(tokens)} special_tokens given for num_special_tokens={k}")
    return list(tokens)


def fresh_parts(
    llm: nn.Module, tokenizer: PreTrainedTokenizerBase, special_tokens: list[str], teacher_dim: int, seed: int
) -> tuple[PreTrainedTokenizerBase, torch.Tensor, nn.Linear, nn.Linear]:
    """(a copy of tokenizer with the special tokens, initial rows [K, H] fp32, recon H -> H, align
    H -> teacher_dim) for a fresh model over ``llm``."""
    tokenizer = with_special_tokens(tokenizer, special_tokens)
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(special_tokens), dtype=torch.long)
    rows = initial_rows(llm.get_input_embeddings().weight.detach(), ids, seed)
    return (tokenizer, rows, *initial_heads(rows.shape[1], teacher_dim, seed))


def with_special_tokens(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> PreTrainedTokenizerBase:
    """A copy of ``tokenizer`` holding ``tokens`` as additional special tokens (the caller's is untouched)."""
    tokenizer = copy.deepcopy(tokenizer)
    missing = [t for t in tokens if t not in extra_special_tokens(tokenizer)]
    if missing:  # existing extras are listed again: transformers 4 would otherwise replace them
        tokenizer.add_special_tokens({"additional_special_tokens": extra_special_tokens(tokenizer) + missing})
    return tokenizer


def _mean_resized_rows(table: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` new rows [n, H] fp32 drawn as transformers' ``mean_resizing`` does, but seeded:
    N(mean, 1e-9 * cov) of the existing rows (just the mean if that covariance is not positive
    definite). Mean and covariance accumulate in fp64 over chunks of rows."""
    hidden = table.shape[1]
    total = torch.zeros(hidden, dtype=torch.float64)
    gram = torch.zeros(hidden, hidden, dtype=torch.float64)
    for chunk in table.detach().split(16_384):
        chunk = chunk.to("cpu", torch.float64)
        total += chunk.sum(0)
        gram += chunk.T @ chunk
    mean = total / table.shape[0]
    cov = gram / table.shape[0] - torch.outer(mean, mean)
    chol, info = torch.linalg.cholesky_ex(1e-9 * cov)
    if int(info) != 0:
        return mean.float().expand(n, hidden).clone()
    noise = torch.randn(n, hidden, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return (mean + noise @ chol.T).float()


def initial_rows(table: torch.Tensor, ids: torch.Tensor, seed: int) -> torch.Tensor:
    """Initial special rows [K, H] fp32 for ``ids`` [K]: an id inside the LM's ``table`` [V, H] (Qwen3's
    padded rows) keeps its row; an id past it gets the mean-resizing draw, seeded by ``seed``."""
    rows = torch.empty(ids.shape[0], table.shape[1])
    inside = ids < table.shape[0]
    rows[inside] = table[ids[inside].to(table.device)].float().cpu()
    if not bool(inside.all()):
        rows[~inside] = _mean_resized_rows(table, int((~inside).sum()), seed)
    return rows


def initial_heads(hidden: int, dim: int, seed: int) -> tuple[nn.Linear, nn.Linear]:
    """(recon H -> H, align H -> dim) fp32 nn.Linear with PyTorch's default init under ``seed``
    (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(hidden, hidden), nn.Linear(hidden, dim)
