"""Triton ``distill_loss``: loss and student gradient in two launches over a (row, D-block) grid.

pass 1  ``_distill_loss_partial_kernel``, grid (B, NB): a program pools its [K, BLOCK_D] student
        tile (K rows read as one 2-D tile, no serial loop over K for K <= 16), stores the pooled
        block [BLOCK_D] fp32 and its three partial sums: <p, t>, |p|^2, |t|^2 (cosine) or
        |p - t|^2 (mse).
pass 2  ``_distill_loss_forward_kernel``, grid (B, NB) (B, 1 without a gradient): each program
        adds its row's NB partials in a fixed order (deterministic), block 0 stores the row loss,
        and every block writes grad_rows [BLOCK_D] = (d loss / d pooled) / K, the gradient of each
        of the K rows; autograd expands it to [B, K, D] without a copy.

The grid over D keeps the GPU busy at small B (B = 8, D = 4096: 64 programs, not 8), and a block is
at most 8192 elements ([16, 512] for K = 10) so a program keeps ~32 fp32 values per thread at
8 warps. Traffic: the student read once, the pooled rows written and read once in fp32, the teacher
read twice, B * D written, against a [B, K, D] gradient and ~10 passes for the eager composition.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TILE_ELEMENTS = 8192
MAX_BLOCK_K = 16


@triton.jit
def _distill_loss_partial_kernel(
    S, T, P, PART,
    K, D, NB,
    stride_sb, stride_sk, stride_tb,
    inv_k,
    COSINE: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    offs = blk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = offs < D
    ks = tl.arange(0, BLOCK_K)
    pooled = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + ks
        tile = tl.load(
            S + row * stride_sb + kk[:, None] * stride_sk + offs[None, :],
            mask=(kk < K)[:, None] & mask[None, :],
            other=0.0,
        )
        pooled += tl.sum(tile.to(tl.float32), axis=0)
    p = pooled * inv_k
    t = tl.load(T + row * stride_tb + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(P + row * D + offs, p, mask=mask)
    part = PART + (row * NB + blk) * 3
    if COSINE:
        tl.store(part, tl.sum(p * t, axis=0))
        tl.store(part + 1, tl.sum(p * p, axis=0))
        tl.store(part + 2, tl.sum(t * t, axis=0))
    else:
        tl.store(part, tl.sum((p - t) * (p - t), axis=0))


@triton.jit
def _distill_loss_forward_kernel(
    P, T, W, PART, LOSS, G,
    D, NB,
    stride_tb,
    inv_k, inv_b, eps,
    COSINE: tl.constexpr, HAS_WEIGHT: tl.constexpr, COMPUTE_GRAD: tl.constexpr,
    BLOCK_NB: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    nbs = tl.arange(0, BLOCK_NB)
    part = PART + (row * NB + nbs) * 3
    a = tl.sum(tl.load(part, mask=nbs < NB, other=0.0), axis=0)  # cosine: <p, t>   mse: |p - t|^2

    w = 1.0
    if HAS_WEIGHT:
        w = tl.load(W + row).to(tl.float32)
    if COSINE:
        norm_p = tl.sqrt(tl.sum(tl.load(part + 1, mask=nbs < NB, other=0.0), axis=0))
        np_ = tl.maximum(norm_p, eps)
        nt = tl.maximum(tl.sqrt(tl.sum(tl.load(part + 2, mask=nbs < NB, other=0.0), axis=0)), eps)
        cos = a / (np_ * nt)
        loss = w * (1.0 - cos)
        scale = -w * inv_b
        coef_t = scale / (np_ * nt)
        coef_p = tl.where(norm_p > eps, -scale * cos / (np_ * np_), 0.0)
    else:
        loss = w * a / D
        coef_p = 2.0 * w * inv_b / D
        coef_t = -coef_p
    if blk == 0:
        tl.store(LOSS + row, loss)

    if COMPUTE_GRAD:
        offs = blk * BLOCK_D + tl.arange(0, BLOCK_D)
        mask = offs < D
        p = tl.load(P + row * D + offs, mask=mask, other=0.0)
        t = tl.load(T + row * stride_tb + offs, mask=mask, other=0.0).to(tl.float32)
        g = (coef_p * p + coef_t * t) * inv_k
        tl.store(G + row * D + offs, g.to(G.dtype.element_ty), mask=mask)


def distill_loss_forward(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor | None,
    cosine: bool,
    eps: float,
    compute_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss (fp32 scalar) and grad_rows [B, D] (student's dtype): d loss / d student[b, k] for every
    k; student [B, K, D] or [B, D] fp32 / bf16 / fp16, teacher [B, D], weight [B] fp32 or None."""
    s = student.contiguous()
    s3 = s.unsqueeze(1) if s.dim() == 2 else s  # [B, K, D]
    batch, k, dim = s3.shape
    t = teacher.to(torch.float32).contiguous()
    block_k = min(triton.next_power_of_2(k), MAX_BLOCK_K)
    block_d = min(triton.next_power_of_2(dim), TILE_ELEMENTS // block_k)
    n_blocks = triton.cdiv(dim, block_d)
    f32 = {"device": s.device, "dtype": torch.float32}
    pooled = torch.empty(batch, dim, **f32)
    partials = torch.empty(batch, n_blocks, 3, **f32)
    row_loss = torch.empty(batch, **f32)
    grad = torch.empty(batch, dim, device=s.device, dtype=s.dtype) if compute_grad else None
    warps = 8 if block_k * block_d >= 4096 else 4
    _distill_loss_partial_kernel[(batch, n_blocks)](
        s3, t, pooled, partials,
        k, dim, n_blocks,
        s3.stride(0), s3.stride(1), t.stride(0),
        1.0 / k,
        COSINE=cosine, BLOCK_K=block_k, BLOCK_D=block_d,
        num_warps=warps,
    )  # fmt: skip
    _distill_loss_forward_kernel[(batch, n_blocks if compute_grad else 1)](
        pooled, t, weight if weight is not None else t, partials, row_loss, grad if compute_grad else pooled,
        dim, n_blocks,
        t.stride(0),
        1.0 / k, 1.0 / batch, eps,
        COSINE=cosine, HAS_WEIGHT=weight is not None, COMPUTE_GRAD=compute_grad,
        BLOCK_NB=max(2, triton.next_power_of_2(n_blocks)), BLOCK_D=block_d,
        num_warps=4,
    )  # fmt: skip
    return row_loss.sum() / batch, grad
