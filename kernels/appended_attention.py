"""Triton ``appended_attention``: flash-attention over a constant prefix cache plus K appended keys.

GQA is packed: the G = h / hkv query heads that share one KV head are contiguous in a contiguous
q [B, h, K, d], so a group's queries are one [G*K, d] matrix whose row r is head r // K, appended
position r % K. One program owns a BLOCK_M slice of those rows for one (batch, kv head): it reads
each prefix K/V tile once for all G heads (G-fold less cache traffic than one program per head).

Mask seen by row r (appended position i = r % K), keys = [prefix 0..L-1 | appended 0..K-1]:

    prefix key n:    prefix_mask[b, n]             (left padding: pads are False)
    appended key j:  j <= i                        (lower-right causal block)

          prefix (L)         appended (K)
    i=0   m m m m m m m m    x . . .
    i=1   m m m m m m m m    x x . .
    i=2   m m m m m m m m    x x x .
    i=3   m m m m m m m m    x x x x

The appended block is processed first: key 0 is visible to every row, so the running max is finite
before the first (possibly fully padded) prefix tile and no row can produce NaN. Masked prefix rows
are loaded as zeros, so pad entries contribute exactly nothing. Softmax runs in fp32 in the log2
domain; the forward stores the natural-log LSE [B, h, K] for the backward, which recomputes P.

Dots: fp32 operands. For fp32 inputs they use ``input_precision="ieee"`` (exact fp32); for bf16/fp16
inputs "tf32", which is exact on the inputs (bf16 fits in tf32) and runs on tensor cores; only the
fp32 probabilities / dS operands are rounded, to tf32's 10-bit mantissa (finer than bf16's).

The backward runs one program per (batch, kv head): it loops over the group's rows, accumulating
dq per row tile and dk, dv of the K appended keys (summed over the G heads) in registers: no atomics.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * log2(e))


@triton.jit
def _cache_tile(KC, VC, PM, b, bh, L, D, n, d, d_ok):
    """Rows n of the prefix cache of (batch b, KV head bh): the mask [BLOCK_N] and K, V tiles
    [BLOCK_N, BLOCK_D] in fp32, zero on padding and past L."""
    valid = tl.load(PM + b * L + n, mask=n < L, other=0) != 0
    c_off = bh * L * D + n[:, None] * D + d[None, :]
    c_mask = valid[:, None] & d_ok[None, :]
    kc = tl.load(KC + c_off, mask=c_mask, other=0.0).to(tl.float32)
    vc = tl.load(VC + c_off, mask=c_mask, other=0.0).to(tl.float32)
    return valid, kc, vc


@triton.jit
def _appended_tile(K, V, bh, KLEN, D, d, d_ok, BLOCK_K: tl.constexpr):
    """The K appended keys and values of KV head bh: positions j [BLOCK_K], j_ok, their offsets and
    mask [BLOCK_K, BLOCK_D] (for the dk / dv stores too) and K, V tiles in fp32, zero past KLEN."""
    j = tl.arange(0, BLOCK_K)
    j_ok = j < KLEN
    kv_off = bh * KLEN * D + j[:, None] * D + d[None, :]
    kv_mask = j_ok[:, None] & d_ok[None, :]
    k_app = tl.load(K + kv_off, mask=kv_mask, other=0.0).to(tl.float32)
    v_app = tl.load(V + kv_off, mask=kv_mask, other=0.0).to(tl.float32)
    return j, j_ok, kv_off, kv_mask, k_app, v_app


@triton.jit
def _appended_attention_forward_kernel(
    Q, K, V, KC, VC, PM, OUT, LSE,
    HKV, L, D, GK, KLEN,
    qk_scale,
    PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0).to(tl.int64)  # b * HKV + kv
    b = bh // HKV
    rows = tl.program_id(1).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < GK
    qi = rows % KLEN
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D

    q = tl.load(
        Q + bh * GK * D + rows[:, None] * D + d[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0
    )
    q = q.to(tl.float32)

    # Appended keys first: key 0 is visible to every row, so m_i is finite from here on.
    j, j_ok, kv_off, kv_mask, k_app, v_app = _appended_tile(K, V, bh, KLEN, D, d, d_ok, BLOCK_K)
    s = tl.dot(q, tl.trans(k_app), input_precision=PREC) * qk_scale
    s = tl.where((j[None, :] <= qi[:, None]) & j_ok[None, :], s, float("-inf"))
    m_i = tl.max(s, axis=1)
    p = tl.math.exp2(s - m_i[:, None])
    l_i = tl.sum(p, axis=1)
    acc = tl.dot(p, v_app, input_precision=PREC)

    n_base = tl.arange(0, BLOCK_N)
    for n0 in range(0, L, BLOCK_N):
        n = n0 + n_base
        valid, kc, vc = _cache_tile(KC, VC, PM, b, bh, L, D, n, d, d_ok)
        s = tl.dot(q, tl.trans(kc), input_precision=PREC) * qk_scale
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, vc, input_precision=PREC)
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(
        OUT + bh * GK * D + rows[:, None] * D + d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )
    tl.store(LSE + bh * GK + rows, (m_i + tl.math.log2(l_i)) * 0.6931471805599453, mask=row_ok)


@triton.jit
def _appended_attention_backward_kernel(
    Q, K, V, KC, VC, PM, OUT, LSE, DO, DQ, DK, DV,
    HKV, L, D, GK, KLEN,
    scale, qk_scale,
    PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0).to(tl.int64)
    b = bh // HKV
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    j, j_ok, kv_off, kv_mask, k_app, v_app = _appended_tile(K, V, bh, KLEN, D, d, d_ok, BLOCK_K)
    dk_acc = tl.zeros([BLOCK_K, BLOCK_D], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_K, BLOCK_D], dtype=tl.float32)
    n_base = tl.arange(0, BLOCK_N)

    for m0 in range(0, GK, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < GK
        qi = rows % KLEN
        r_off = bh * GK * D + rows[:, None] * D + d[None, :]
        r_mask = row_ok[:, None] & d_ok[None, :]
        q = tl.load(Q + r_off, mask=r_mask, other=0.0).to(tl.float32)
        do = tl.load(DO + r_off, mask=r_mask, other=0.0).to(tl.float32)
        o = tl.load(OUT + r_off, mask=r_mask, other=0.0).to(tl.float32)
        lse2 = tl.load(LSE + bh * GK + rows, mask=row_ok, other=0.0) * 1.4426950408889634
        delta = tl.sum(do * o, axis=1)

        s = tl.dot(q, tl.trans(k_app), input_precision=PREC) * qk_scale
        allowed = (j[None, :] <= qi[:, None]) & j_ok[None, :] & row_ok[:, None]
        p = tl.where(allowed, tl.math.exp2(s - lse2[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v_app), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds, k_app, input_precision=PREC)
        dk_acc += tl.dot(tl.trans(ds), q, input_precision=PREC)
        dv_acc += tl.dot(tl.trans(p), do, input_precision=PREC)

        for n0 in range(0, L, BLOCK_N):
            n = n0 + n_base
            valid, kc, vc = _cache_tile(KC, VC, PM, b, bh, L, D, n, d, d_ok)
            s = tl.dot(q, tl.trans(kc), input_precision=PREC) * qk_scale
            p = tl.where(valid[None, :] & row_ok[:, None], tl.math.exp2(s - lse2[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(vc), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds, kc, input_precision=PREC)

        tl.store(DQ + r_off, (dq * scale).to(DQ.dtype.element_ty), mask=r_mask)

    tl.store(DK + kv_off, (dk_acc * scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + kv_off, dv_acc.to(DV.dtype.element_ty), mask=kv_mask)


def _blocks(gk: int, klen: int, dim: int) -> dict:
    """Tile sizes for an H100: tl.dot needs every dim >= 16; K (~10) pads to 16."""
    return {
        "BLOCK_M": min(64, max(16, triton.next_power_of_2(gk))),
        "BLOCK_N": 64,
        "BLOCK_K": max(16, triton.next_power_of_2(klen)),
        "BLOCK_D": max(16, triton.next_power_of_2(dim)),
        "num_warps": 4 if dim <= 64 else 8,
        "num_stages": 2,
    }


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype in (torch.float32, torch.float64) else "tf32"


def appended_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    prefix_mask: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """out [B, h, K, d] (q's dtype) and natural-log LSE [B, h, K] fp32; contiguous inputs, bool mask."""
    batch, heads, klen, dim = q.shape
    hkv, length = k_cache.shape[1], k_cache.shape[2]
    gk = heads // hkv * klen
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, klen, device=q.device, dtype=torch.float32)
    blocks = _blocks(gk, klen, dim)
    grid = (batch * hkv, triton.cdiv(gk, blocks["BLOCK_M"]))
    _appended_attention_forward_kernel[grid](
        q, k, v, k_cache, v_cache, prefix_mask.view(torch.uint8), out, lse,
        hkv, length, dim, gk, klen,
        scale * _LOG2E,
        PREC=_precision(q.dtype), **blocks,
    )  # fmt: skip
    return out, lse


def appended_attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    prefix_mask: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    grad_out: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq [B, h, K, d], dk and dv [B, hkv, K, d] (inputs' dtype); the cache gets no gradient."""
    batch, heads, klen, dim = q.shape
    hkv, length = k_cache.shape[1], k_cache.shape[2]
    gk = heads // hkv * klen
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    _appended_attention_backward_kernel[(batch * hkv,)](
        q, k, v, k_cache, v_cache, prefix_mask.view(torch.uint8), out, lse, grad_out.contiguous(),
        dq, dk, dv,
        hkv, length, dim, gk, klen,
        scale, scale * _LOG2E,
        PREC=_precision(q.dtype), **_blocks(gk, klen, dim),
    )  # fmt: skip
    return dq, dk, dv
