"""Triton ``fused_linear_cross_entropy``: chunked logits by torch GEMMs, one fused kernel per chunk.

For each chunk of C rows the launcher computes logits [C, V] = hidden[chunk] @ weight.T (+ bias)
with cuBLAS into a buffer whose row stride is V rounded up to ``ROW_ALIGN`` = 128 elements (V =
151,669 is odd: an unpadded row would start at any byte offset, which rules out cuBLAS's aligned
kernels and 16-byte vector loads), C a multiple of ``CHUNK_ALIGN`` = 128 rows. Then
``_fused_linear_cross_entropy_forward_kernel`` runs one program per row:

    pass 1  online over BLOCK_V-wide blocks: running max m and sum d of exp(x - m)
            loss = (m - x[label]) + log d
    pass 2  x <- (exp(x - m) / d - [v == label]) * scale, written over the logits in their dtype

A negative label marks a row that does not count: loss 0 and a zero gradient row (the op passes
every row and never gathers the counted ones, which would need their number on the host). ``scale``
is a device scalar (1 / counted rows for "mean"), so nothing waits for the GPU.

Then grad_hidden[chunk] = grad @ weight, grad_weight += grad.T @ hidden[chunk], grad_bias += column
sums, again as GEMMs. For bf16 / fp16 the weight gradient accumulates in an fp32 buffer straight from
the 16-bit GEMM operands (cuBLAS with an fp32 output, ``torch.addmm(..., out_dtype=float32)``), not
as an fp32 GEMM over upcast copies; where this torch lacks that (CPU, older torch) the copies remain.
A row reads its logits twice and writes them once: at V = 151,669 in bf16 that is 0.9 MB per row
against ~4 passes over an fp32 copy in the eager composition. BLOCK_V = 8192 with 32 warps keeps
8 fp32 values per thread per block.
"""

from __future__ import annotations

from functools import cache

import torch
import triton
import triton.language as tl

MAX_BLOCK_V = 8192
ROW_ALIGN = 128  # logits row stride, in elements
CHUNK_ALIGN = 128  # rows per chunk


@triton.jit
def _fused_linear_cross_entropy_forward_kernel(
    Z, Y, SCALE, LOSS,
    V, stride_z,
    WRITE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    z_row = Z + row * stride_z
    label = tl.load(Y + row)
    counted = label >= 0
    scale = tl.load(SCALE)
    cols = tl.arange(0, BLOCK_V)

    m = float("-inf")
    d = 0.0
    for v0 in range(0, V, BLOCK_V):
        offs = v0 + cols
        x = tl.load(z_row + offs, mask=offs < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    target = tl.load(z_row + tl.where(counted, label, 0)).to(tl.float32)
    tl.store(LOSS + row, tl.where(counted, (m - target) + tl.log(d), 0.0))

    if WRITE_GRAD:
        # exp(x - m) / d, not exp(x - lse): m + log(d) rounds away log(d) < ulp(m) when one logit
        # dominates, and softmax - 1 at the label would then lose all its digits.
        coef = tl.where(counted, scale / d, 0.0)
        for v0 in range(0, V, BLOCK_V):
            offs = v0 + cols
            mask = offs < V
            x = tl.load(z_row + offs, mask=mask, other=float("-inf")).to(tl.float32)
            g = tl.exp(x - m) * coef
            g = tl.where(offs == label, g - scale, g)
            tl.store(z_row + offs, g.to(Z.dtype.element_ty), mask=mask)


def _ce_rows(
    logits: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor, write_grad: bool
) -> torch.Tensor:
    """Row losses [C] (fp32) of logits [C, V] (row stride >= V); with write_grad the logits become
    their gradient. Rows with a negative label get loss 0 and a zero gradient."""
    rows, vocab = logits.shape
    row_loss = torch.empty(rows, device=logits.device, dtype=torch.float32)
    block_v = min(triton.next_power_of_2(vocab), MAX_BLOCK_V)
    _fused_linear_cross_entropy_forward_kernel[(rows,)](
        logits, labels, scale, row_loss,
        vocab, logits.stride(0),
        WRITE_GRAD=write_grad, BLOCK_V=block_v,
        num_warps=min(32, max(4, block_v // 256)),
    )  # fmt: skip
    return row_loss


@cache
def _fp32_out_addmm(device: torch.device) -> bool:
    """Whether torch's addmm on ``device`` takes bf16 operands into an fp32 ``out`` (CUDA builds of
    recent torch): probed once with a 16 x 16 product."""
    if device.type != "cuda":
        return False
    acc = torch.zeros(16, 16, device=device)
    ones = torch.ones(16, 16, device=device, dtype=torch.bfloat16)
    try:
        torch.addmm(acc, ones, ones, out_dtype=torch.float32, out=acc)
    except (RuntimeError, TypeError):
        return False
    return True


def _accumulate(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc [V, H] += a [V, C] @ b [C, H], in acc's dtype from a's and b's (fp32 output GEMM)."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    elif _fp32_out_addmm(acc.device):
        torch.addmm(acc, a, b, out_dtype=acc.dtype, out=acc)
    else:
        acc.addmm_(a.to(acc.dtype), b.to(acc.dtype))


def _aligned(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def fused_linear_cross_entropy_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float | torch.Tensor,
    chunk_rows: int,
    grad_hidden: bool,
    grad_weight: bool,
    grad_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Loss = scale * sum of row losses of hidden [M, H] @ weight [V, H].T (+ bias) against labels
    [M] (in [0, V), or negative for a row that does not count), fp32 scalar, and the requested
    gradients of it in the inputs' dtype. ``scale``: a float or a 0-dim fp32 tensor on the device;
    ``chunk_rows`` is rounded down to a multiple of ``CHUNK_ALIGN`` (at least that many)."""
    h, w, y = hidden.contiguous(), weight.contiguous(), labels.contiguous()
    rows, vocab = h.shape[0], w.shape[0]
    scale_t = scale if isinstance(scale, torch.Tensor) else torch.full((), scale, device=h.device)
    chunk = max(CHUNK_ALIGN, chunk_rows // CHUNK_ALIGN * CHUNK_ALIGN)
    acc = torch.float32
    any_grad = grad_hidden or grad_weight or grad_bias
    buffer = torch.empty(min(chunk, max(rows, 1)), _aligned(vocab, ROW_ALIGN), device=h.device, dtype=h.dtype)
    logits = buffer[:, :vocab]  # [C, V], row stride a multiple of ROW_ALIGN
    row_loss = torch.empty(rows, device=h.device, dtype=torch.float32)
    gh = torch.empty_like(h) if grad_hidden else None
    gw = torch.zeros(w.shape, device=w.device, dtype=acc) if grad_weight else None
    gb = torch.zeros(vocab, device=w.device, dtype=acc) if grad_bias else None
    for start in range(0, rows, chunk):
        hc = h[start : start + chunk]
        z = logits[: hc.shape[0]]  # [c, V]
        if bias is None:
            torch.mm(hc, w.T, out=z)
        else:
            torch.addmm(bias, hc, w.T, out=z)
        row_loss[start : start + hc.shape[0]] = _ce_rows(z, y[start : start + hc.shape[0]], scale_t, any_grad)
        if grad_hidden:
            torch.mm(z, w, out=gh[start : start + hc.shape[0]])
        if grad_weight:
            _accumulate(gw, z.T, hc)
        if grad_bias:
            gb += z.sum(0, dtype=acc)
    loss = row_loss.sum() * scale_t
    return (
        loss,
        gh,
        None if gw is None else gw.to(w.dtype),
        None if gb is None else gb.to(w.dtype),
    )
