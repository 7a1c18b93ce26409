"""Triton ``encode_tail``: pool over K, the affine map by cuBLAS, then (optionally) normalise.

pool:      grid (batch row, H-block): pooled [B, H] fp32 = mean_k h[b, k], the K rows of an H-block
           read as one [BLOCK_K, BLOCK_H] tile (K <= 16: one load, no serial loop), h read once.
affine:    out [B, D] fp32 = pooled @ W^T + bias by one cuBLAS GEMM (``torch.addmm``): at B = 256,
           H = D = 4096 that is 8.6 GFLOP, where a hand-written fp32 FMA tile loop would run far
           from the chip's GEMM rate. fp32 operands (the folded heads are fp32), so it follows
           PyTorch's TF32 setting like every other fp32 matmul. Pooling before projecting is K times
           fewer flops than applying the heads to every one of the K rows.
normalise: (only when asked) one program per row, in place: divide by max(|row|, eps).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TILE_ELEMENTS = 8192
MAX_BLOCK_K = 16


@triton.jit
def _encode_tail_pool_kernel(
    X, P,
    K, H,
    stride_xb, stride_xk,
    inv_k,
    BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = cols < H
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + ks
        tile = tl.load(
            X + b * stride_xb + kk[:, None] * stride_xk + cols[None, :],
            mask=(kk < K)[:, None] & mask[None, :],
            other=0.0,
        )
        acc += tl.sum(tile.to(tl.float32), axis=0)
    tl.store(P + b * H + cols, acc * inv_k, mask=mask)


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
    """[B, D] fp32 = weight [D, H] @ mean_k h [B, K, H] + bias [D]; rows / max(|row|, eps) if normalize.

    h fp32 / bf16 / fp16; weight and bias any float dtype (used in fp32).
    """
    x = h.contiguous()
    batch, k, hidden = x.shape
    dim = weight.shape[0]
    pooled = torch.empty(batch, hidden, device=x.device, dtype=torch.float32)
    block_k = min(triton.next_power_of_2(k), MAX_BLOCK_K)
    block_h = min(triton.next_power_of_2(hidden), TILE_ELEMENTS // block_k)
    _encode_tail_pool_kernel[(batch, triton.cdiv(hidden, block_h))](
        x, pooled, k, hidden, x.stride(0), x.stride(1), 1.0 / k,
        BLOCK_K=block_k, BLOCK_H=block_h, num_warps=8 if block_k * block_h >= 4096 else 4,
    )  # fmt: skip
    out = torch.addmm(bias.float(), pooled, weight.float().t())
    if normalize:
        block = min(triton.next_power_of_2(dim), 1024)
        _encode_tail_normalize_kernel[(batch,)](out, dim, eps, BLOCK_D=block, num_warps=4)
    return out
