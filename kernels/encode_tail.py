"""Triton ``encode_tail``: pool over K, then one fp32 tl.dot GEMM with the bias fused, then normalise.

pool:      one program per (batch row, H-block): pooled [B, H] fp32 = mean_k h[b, k], h read once.
affine:    one program per (BLOCK_B x BLOCK_D) output tile: acc += pooled tile @ W^T tile over H in
           BLOCK_H steps (fp32 inputs, IEEE fp32 products: no TF32, so results match the CPU to fp32
           rounding), + bias, stored fp32. Pooling before projecting is K times fewer flops than
           applying the heads to every one of the K rows.
normalise: (only when asked) one program per row: divide by max(|row|, eps).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _encode_tail_pool_kernel(
    X, P,
    K, H,
    stride_xb, stride_xk,
    inv_k,
    BLOCK_H: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = cols < H
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for k in range(0, K):
        acc += tl.load(X + b * stride_xb + k * stride_xk + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(P + b * H + cols, acc * inv_k, mask=mask)


@triton.jit
def _encode_tail_affine_kernel(
    P, W, BIAS, OUT,
    B, H, D,
    BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    outs = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = rows < B
    omask = outs < D
    acc = tl.zeros([BLOCK_B, BLOCK_D], dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        hs = h0 + tl.arange(0, BLOCK_H)
        hmask = hs < H
        p = tl.load(P + rows[:, None] * H + hs[None, :], mask=rmask[:, None] & hmask[None, :], other=0.0)
        w = tl.load(W + outs[None, :] * H + hs[:, None], mask=omask[None, :] & hmask[:, None], other=0.0)
        acc = tl.dot(p, w.to(tl.float32), acc, input_precision="ieee")  # [BLOCK_B, BLOCK_D]
    acc += tl.load(BIAS + outs, mask=omask, other=0.0).to(tl.float32)[None, :]
    tl.store(OUT + rows[:, None] * D + outs[None, :], acc, mask=rmask[:, None] & omask[None, :])


@triton.jit
def _encode_tail_normalize_kernel(OUT, D, eps, BLOCK_D: tl.constexpr):
    row = OUT + tl.program_id(0).to(tl.int64) * D
    sq = tl.zeros([BLOCK_D], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs = d0 + tl.arange(0, BLOCK_D)
        x = tl.load(row + offs, mask=offs < D, other=0.0)
        sq += x * x
    inv = 1.0 / tl.maximum(tl.sqrt(tl.sum(sq, axis=0)), eps)
    for d0 in range(0, D, BLOCK_D):
        offs = d0 + tl.arange(0, BLOCK_D)
        x = tl.load(row + offs, mask=offs < D, other=0.0)
        tl.store(row + offs, x * inv, mask=offs < D)


def encode_tail_forward(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, normalize: bool, eps: float
) -> torch.Tensor:
    """[B, D] fp32 = weight [D, H] @ mean_k h [B, K, H] + bias [D]; rows / max(|row|, eps) if normalize."""
    x = h.contiguous()
    batch, k, hidden = x.shape
    dim = weight.shape[0]
    w = weight.contiguous()
    pooled = torch.empty(batch, hidden, device=x.device, dtype=torch.float32)
    block_h = min(triton.next_power_of_2(hidden), 1024)
    _encode_tail_pool_kernel[(batch, triton.cdiv(hidden, block_h))](
        x, pooled, k, hidden, x.stride(0), x.stride(1), 1.0 / k, BLOCK_H=block_h, num_warps=4
    )
    out = torch.empty(batch, dim, device=x.device, dtype=torch.float32)
    block_b, block_d, block_k = 32, 64, 32
    _encode_tail_affine_kernel[(triton.cdiv(batch, block_b), triton.cdiv(dim, block_d))](
        pooled, w, bias.contiguous(), out,
        batch, hidden, dim,
        BLOCK_B=block_b, BLOCK_D=block_d, BLOCK_H=block_k,
        num_warps=4, num_stages=3,
    )  # fmt: skip
    if normalize:
        block = min(triton.next_power_of_2(dim), 1024)
        _encode_tail_normalize_kernel[(batch,)](out, dim, eps, BLOCK_D=block, num_warps=4)
    return out
