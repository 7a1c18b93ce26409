"""Triton ``distill_loss``: one program per batch row, loss and student gradient in one launch.

Each program streams its row in BLOCK_D-wide chunks twice: pass 1 pools the K student rows and
accumulates <p, t>, |p|^2, |t|^2 (or |p - t|^2); pass 2 re-pools (mostly L2 hits) and writes
grad_rows [D] = (d loss / d pooled) / K, the gradient of every one of the K rows; autograd expands it
to [B, K, D] without a copy. Traffic: the student read twice, B * D written, against a [B, K, D]
gradient and ~10 passes for the eager PyTorch composition.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _pooled_chunk(s_row, t_row, stride_sk, K, D, d0, inv_k, BLOCK_D: tl.constexpr):
    """Columns [d0, d0 + BLOCK_D) of the pooled student row and of the teacher row, fp32."""
    offs = d0 + tl.arange(0, BLOCK_D)
    mask = offs < D
    p = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k in range(0, K):
        p += tl.load(s_row + k * stride_sk + offs, mask=mask, other=0.0).to(tl.float32)
    t = tl.load(t_row + offs, mask=mask, other=0.0).to(tl.float32)
    return p * inv_k, t, offs, mask


@triton.jit
def _distill_loss_forward_kernel(
    S, T, W, LOSS, G,
    K, D,
    stride_sb, stride_sk, stride_tb,
    inv_k, inv_b, eps,
    COSINE: tl.constexpr, HAS_WEIGHT: tl.constexpr, COMPUTE_GRAD: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    s_row = S + row * stride_sb
    t_row = T + row * stride_tb

    acc_a = tl.zeros([BLOCK_D], dtype=tl.float32)  # cosine: <p, t>   mse: |p - t|^2
    acc_p = tl.zeros([BLOCK_D], dtype=tl.float32)  # cosine: |p|^2
    acc_t = tl.zeros([BLOCK_D], dtype=tl.float32)  # cosine: |t|^2
    for d0 in range(0, D, BLOCK_D):
        p, t, offs, mask = _pooled_chunk(s_row, t_row, stride_sk, K, D, d0, inv_k, BLOCK_D)
        if COSINE:
            acc_a += p * t
            acc_p += p * p
            acc_t += t * t
        else:
            acc_a += (p - t) * (p - t)

    w = 1.0
    if HAS_WEIGHT:
        w = tl.load(W + row).to(tl.float32)
    if COSINE:
        norm_p = tl.sqrt(tl.sum(acc_p, axis=0))
        np_ = tl.maximum(norm_p, eps)
        nt = tl.maximum(tl.sqrt(tl.sum(acc_t, axis=0)), eps)
        cos = tl.sum(acc_a, axis=0) / (np_ * nt)
        tl.store(LOSS + row, w * (1.0 - cos))
        scale = -w * inv_b
        coef_t = scale / (np_ * nt)
        coef_p = tl.where(norm_p > eps, -scale * cos / (np_ * np_), 0.0)
    else:
        tl.store(LOSS + row, w * tl.sum(acc_a, axis=0) / D)
        coef_p = 2.0 * w * inv_b / D
        coef_t = -coef_p

    if COMPUTE_GRAD:
        g_row = G + row * D
        for d0 in range(0, D, BLOCK_D):
            p, t, offs, mask = _pooled_chunk(s_row, t_row, stride_sk, K, D, d0, inv_k, BLOCK_D)
            g = (coef_p * p + coef_t * t) * inv_k
            tl.store(g_row + offs, g.to(G.dtype.element_ty), mask=mask)


def distill_loss_forward(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor | None,
    cosine: bool,
    eps: float,
    compute_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss (fp32 scalar) and grad_rows [B, D] (student's dtype): d loss / d student[b, k] for every k."""
    s = student.contiguous()
    s3 = s.unsqueeze(1) if s.dim() == 2 else s  # [B, K, D]
    batch, k, dim = s3.shape
    t = teacher.to(torch.float32).contiguous()
    row_loss = torch.empty(batch, device=s.device, dtype=torch.float32)
    grad = torch.empty(batch, dim, device=s.device, dtype=s.dtype) if compute_grad else None
    block_d = min(triton.next_power_of_2(dim), 2048)
    _distill_loss_forward_kernel[(batch,)](
        s3, t, weight if weight is not None else t, row_loss, grad if compute_grad else s3,
        k, dim,
        s3.stride(0), s3.stride(1), t.stride(0),
        1.0 / k, 1.0 / batch, eps,
        COSINE=cosine, HAS_WEIGHT=weight is not None, COMPUTE_GRAD=compute_grad, BLOCK_D=block_d,
        num_warps=4 if block_d <= 1024 else 8,
    )  # fmt: skip
    return row_loss.sum() / batch, grad
