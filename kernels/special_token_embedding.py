"""Triton ``special_token_embedding``: a row gather with K rows swapped in, and its K-row backward.

forward:  one program per (token, H-block). The token's id is compared with the K special ids in
          one vector compare; the row block is loaded from special_rows or from the table (masked
          loads: only the source that applies is read) and stored. The H-block-0 program writes the
          token's slot (k, -1 base, -2 invalid id). Traffic: N*H read + N*H written, nothing of size V.
backward: positions are grouped by slot with one stable sort on the device (N int32s), segment
          starts found by binary search in the sorted slots; then one program per (k, H-block)
          sums its [BLOCK_P, BLOCK_H] tiles of grad rows in position order into fp32 and writes
          them once: deterministic, no atomics, no host sync.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _special_token_embedding_forward_kernel(
    IDS, W, SIDS, ROWS, OUT, SLOT,
    V, H, K, stride_w,
    BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    tok = tl.program_id(0).to(tl.int64)
    hb = tl.program_id(1)
    tid = tl.load(IDS + tok)
    ks = tl.arange(0, BLOCK_K)
    sids = tl.load(SIDS + ks, mask=ks < K, other=0)
    slot = tl.max(tl.where((sids == tid) & (ks < K), ks, -1), axis=0)
    in_table = (tid >= 0) & (tid < V)

    cols = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    cmask = cols < H
    # Per-lane copies of the scalar tests (the interpreter mis-types block & scalar masks).
    slot_b = tl.zeros([BLOCK_H], dtype=tl.int32) + slot
    tid_b = tl.zeros([BLOCK_H], dtype=tl.int64) + tid
    special_mask = cmask & (slot_b >= 0)
    table_mask = cmask & (slot_b < 0) & (tid_b >= 0) & (tid_b < V)
    safe_slot = tl.maximum(slot, 0).to(tl.int64)
    safe_tid = tl.where(in_table, tid, 0)
    # A copy in the table's dtype (ROWS was cast to it on the host): no conversion, bits preserved.
    special = tl.load(ROWS + safe_slot * H + cols, mask=special_mask, other=0.0)
    base = tl.load(W + safe_tid * stride_w + cols, mask=table_mask, other=0.0)
    tl.store(OUT + tok * H + cols, tl.where(slot_b >= 0, special, base), mask=cmask)
    if hb == 0:
        tl.store(SLOT + tok, tl.where((slot >= 0) | in_table, slot, -2).to(tl.int32))


@triton.jit
def _special_token_embedding_backward_kernel(
    G, ORDER, START, OUT,
    H,
    BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(0).to(tl.int64)
    hb = tl.program_id(1)
    cols = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    cmask = cols < H
    begin = tl.load(START + k)
    end = tl.load(START + k + 1)
    acc = tl.zeros([BLOCK_P, BLOCK_H], dtype=tl.float32)
    for p0 in range(begin, end, BLOCK_P):
        offs = p0 + tl.arange(0, BLOCK_P)
        pmask = offs < end
        pos = tl.load(ORDER + offs, mask=pmask, other=0).to(tl.int64)
        tile = tl.load(G + pos[:, None] * H + cols[None, :], mask=pmask[:, None] & cmask[None, :], other=0.0)
        acc += tile.to(tl.float32)
    tl.store(OUT + k * H + cols, tl.sum(acc, axis=0), mask=cmask)


def _block_h(hidden: int) -> int:
    return min(triton.next_power_of_2(hidden), 1024)


def special_token_embedding_forward(
    input_ids: torch.Tensor, weight: torch.Tensor, special_ids: torch.Tensor, special_rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """out [B, T, H] (weight's dtype) and slot [B, T] int32; special_rows already in weight's dtype."""
    ids = input_ids.contiguous()
    table = weight if weight.stride(1) == 1 else weight.contiguous()  # any row stride
    vocab, hidden = table.shape
    k = special_ids.numel()
    out = torch.empty(*ids.shape, hidden, device=table.device, dtype=table.dtype)
    slot = torch.empty(ids.shape, device=table.device, dtype=torch.int32)
    block_h = _block_h(hidden)
    grid = (ids.numel(), triton.cdiv(hidden, block_h))
    _special_token_embedding_forward_kernel[grid](
        ids, table, special_ids.contiguous(), special_rows.contiguous(), out, slot,
        vocab, hidden, k, table.stride(0),
        BLOCK_K=max(triton.next_power_of_2(k), 2), BLOCK_H=block_h,
        num_warps=4,
    )  # fmt: skip
    return out, slot


def special_token_embedding_backward(grad_out: torch.Tensor, slot: torch.Tensor, k: int) -> torch.Tensor:
    """grad_rows [K, H] fp32: the sum of the grad_out rows [B, T, H] at the positions of each slot."""
    slots = slot.reshape(-1)
    grad = grad_out.reshape(slots.numel(), -1).contiguous()
    hidden = grad.shape[1]
    # Base positions (slot -1) sort first; the special ones follow grouped by k, in position order.
    # The sorted slots give the segment starts: start[j] = first sorted position with slot >= j
    # (a binary search per k; unlike bincount, nothing waits for the device).
    ordered, order = torch.sort(slots, stable=True)
    bounds = torch.arange(k + 1, device=slots.device, dtype=slots.dtype)
    start = torch.searchsorted(ordered, bounds).to(torch.int32)
    order = order.to(torch.int32)
    out = torch.empty(k, hidden, device=grad.device, dtype=torch.float32)
    block_h = min(_block_h(hidden), 256)
    _special_token_embedding_backward_kernel[(k, triton.cdiv(hidden, block_h))](
        grad, order, start, out,
        hidden,
        BLOCK_P=16, BLOCK_H=block_h,
        num_warps=4,
    )  # fmt: skip
    return out
