"""``special_token_embedding``: a frozen embedding table with K trainable rows swapped in.

    input_ids     [B, T] int64 (int32 accepted)
    weight        [V, H] the frozen base table, any float dtype; never receives a gradient
    special_ids   [K] int64, distinct, >= 0; may be >= V (tokens added past the base table)
    special_rows  [K, H] trainable, usually fp32
    out           [B, T, H] in weight.dtype: special_rows[k] where input_ids == special_ids[k]
                  (the row REPLACES the base row, as PEFT TrainableTokens does), else weight[id]

The table is not empty (V, H >= 1; else ValueError naming weight's shape). Any id that is not
special must lie in [0, V), else ValueError naming it; on a GPU that check (and special_ids'
>= 0 / distinct) is a device-side assert, so no call waits for the device (``SpecialTokenEmbedding``
checks its special_ids once, at build). Backward gives a gradient only for
special_rows ([K, H], special_rows' dtype, accumulated in fp32; fp64 for fp64). ``weight`` is
frozen: calling the op with grad mode on and ``weight.requires_grad`` raises ValueError (freeze it
with ``weight.requires_grad_(False)``; under ``torch.no_grad()`` it is allowed).

Nothing of size V is ever allocated: PEFT rebuilds the V x H table with ``index_copy`` every forward
and ``F.embedding``'s backward makes a dense V x H gradient (~620 MB fp32 at V=151,669, H=1024); here
the forward gathers rows and the backward sums the B*T x H output gradient into K x H.

The cpp and triton backends make one pass: each output row is copied from its source and the token's
slot (k, or -1 for a base token, -2 for an invalid id) is written beside it; backward groups the
positions by slot and each (k, H-block) task sums its rows in position order (deterministic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm2vec_gen._dispatch import backend_for, kernel
from llm2vec_gen.ops._checks import check_same_device, check_tensor, require

INDEX_DTYPES = (torch.int64, torch.int32)


def special_token_embedding_reference(
    input_ids: torch.Tensor, weight: torch.Tensor, special_ids: torch.Tensor, special_rows: torch.Tensor
) -> torch.Tensor:
    """Plain PyTorch version (autograd backward); the oracle of the tests. [B, T, H] in weight.dtype."""
    match = input_ids.unsqueeze(-1) == special_ids  # [B, T, K]
    is_special = match.any(dim=-1)
    slot = match.to(torch.int8).argmax(dim=-1)  # [B, T]; 0 where not special (masked below)
    base = F.embedding(torch.where(is_special, 0, input_ids), weight.detach())
    special = special_rows[slot].to(weight.dtype)
    return torch.where(is_special.unsqueeze(-1), special, base)


def _check_table(weight, special_ids, special_rows) -> None:
    """Shapes, dtypes and devices of the table and the K special tokens (no value is read)."""
    check_tensor("weight", weight, (2,))
    check_tensor("special_ids", special_ids, (1,), INDEX_DTYPES)
    check_tensor("special_rows", special_rows, (2,))
    check_same_device(weight=weight, special_ids=special_ids, special_rows=special_rows)
    k, hidden = special_rows.shape
    if weight.shape[0] == 0 or weight.shape[1] == 0:
        raise ValueError(f"weight must be a non-empty [V, H] table, got shape {tuple(weight.shape)}")
    if special_ids.shape[0] != k or k == 0:
        raise ValueError(
            f"special_ids {tuple(special_ids.shape)} and special_rows {tuple(special_rows.shape)} must "
            "hold the same number K >= 1 of tokens"
        )
    if weight.shape[1] != hidden:
        raise ValueError(
            f"special_rows {tuple(special_rows.shape)} and weight {tuple(weight.shape)} must share H"
        )


def _check_special_ids(special_ids: torch.Tensor) -> None:
    """special_ids >= 0 and distinct: a ValueError on the CPU, a device-side assert on a GPU (no sync)."""
    ordered = special_ids.sort().values
    require(ordered[0] >= 0, "special_ids must be >= 0", lambda: f", got {special_ids.tolist()}")
    distinct = (ordered[1:] != ordered[:-1]).all()
    require(distinct, "special_ids must be distinct", lambda: f", got {special_ids.tolist()}")


def _check_ids(input_ids: torch.Tensor, bad: torch.Tensor, vocab: int) -> None:
    """No id is flagged ``bad`` [B, T]: a ValueError naming them on the CPU, a device assert on a GPU."""
    require(
        ~bad.any(),
        f"input_ids holds ids outside [0, {vocab}) that are not special tokens",
        lambda: f": {input_ids[bad].unique()[:8].tolist()}",
    )


class _SpecialTokenEmbedding(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input_ids, weight, special_ids, special_rows, backend):
        rows = special_rows.detach().to(weight.dtype).contiguous()
        out, slot = kernel("special_token_embedding", "forward", backend)(
            input_ids, weight, special_ids, rows
        )
        _check_ids(input_ids, slot == -2, weight.shape[0])
        ctx.save_for_backward(slot)
        ctx.k, ctx.rows_dtype, ctx.backend = special_rows.shape[0], special_rows.dtype, backend
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (slot,) = ctx.saved_tensors
        grad_rows = kernel("special_token_embedding", "backward", ctx.backend)(grad_out, slot, ctx.k)
        return None, None, None, grad_rows.to(ctx.rows_dtype), None


def special_token_embedding(
    input_ids: torch.Tensor, weight: torch.Tensor, special_ids: torch.Tensor, special_rows: torch.Tensor
) -> torch.Tensor:
    """Embed input_ids [B, T] with weight [V, H] (frozen), special_ids [K] taking special_rows [K, H].

    Returns [B, T, H] in weight.dtype; the gradient flows only into special_rows. Value checks never
    wait for a GPU (see ``_checks.require``).
    """
    _check_table(weight, special_ids, special_rows)
    _check_special_ids(special_ids)
    return _embed(input_ids, weight, special_ids, special_rows)


def _embed(input_ids, weight, special_ids, special_rows) -> torch.Tensor:
    """``special_token_embedding`` once the table and special ids are known to be valid."""
    check_tensor("input_ids", input_ids, (2,), INDEX_DTYPES)
    device = check_same_device(input_ids=input_ids, weight=weight)
    if torch.is_grad_enabled() and weight.requires_grad:
        raise ValueError(
            "weight is the frozen base table and gets no gradient, but it requires grad: call "
            "weight.requires_grad_(False) (or run under torch.no_grad())"
        )
    backend = backend_for(device, weight.dtype)
    if backend == "torch" or input_ids.numel() == 0:
        bad = ~torch.isin(input_ids, special_ids) & ((input_ids < 0) | (input_ids >= weight.shape[0]))
        _check_ids(input_ids, bad, weight.shape[0])
        return special_token_embedding_reference(input_ids, weight, special_ids, special_rows)
    ids, sids = input_ids.long().contiguous(), special_ids.long().contiguous()
    return _SpecialTokenEmbedding.apply(ids, weight, sids, special_rows, backend)


class SpecialTokenEmbedding(nn.Module):
    """Drop-in for ``model.get_input_embeddings()``: the base table (shared, frozen) + K trainable rows.

    Holds a reference to ``base`` (its weight is not copied) and freezes ``base.weight``, as PEFT
    freezes the base model; ``special_rows`` [K, H] is an fp32 Parameter, ``special_ids`` [K] a buffer.
    forward(input_ids [B, T]) -> [B, T, H] in the base weight's dtype.
    """

    def __init__(
        self, base: nn.Embedding, special_ids: torch.Tensor | list[int], special_rows_init: torch.Tensor
    ):
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        ids = torch.as_tensor(special_ids, dtype=torch.int64, device=base.weight.device)
        rows = special_rows_init.detach().to(device=base.weight.device, dtype=torch.float32).clone()
        _check_table(base.weight, ids, rows)
        _check_special_ids(ids)  # once, at build: forward reads no value of them
        self.register_buffer("special_ids", ids)
        self.special_rows = nn.Parameter(rows)

    @property
    def weight(self) -> torch.Tensor:
        """The base table [V, H] (transformers reads ``get_input_embeddings().weight``)."""
        return self.base.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return _embed(input_ids, self.base.weight, self.special_ids, self.special_rows)

    def extra_repr(self) -> str:
        vocab, hidden = self.base.weight.shape
        return f"vocab={vocab}, hidden={hidden}, k={self.special_ids.numel()}"
