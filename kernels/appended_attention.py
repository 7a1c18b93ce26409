"""Triton ``appended_attention``: flash-attention over a constant prefix cache plus K appended keys.

GQA is packed: the G = h / hkv query heads that share one KV head are contiguous in a contiguous
q [B, h, K, d], so a group's queries are one [G*K, d] matrix whose row r is head r // K, appended
position r % K. One program owns a BLOCK_M slice of those rows for one (batch, kv head); the row
tiles of one (batch, kv head) are neighbours on grid axis 0, so with BLOCK_M = min(128, G*K) a whole
GQA group (Qwen3: G*K = 40, Qwen2.5-7B: 70) reads each prefix K/V tile once.

Mask seen by row r (appended position i = r % K), keys = [prefix 0..L-1 | appended 0..K-1]:

    prefix key n:    prefix_mask[b, n]             (left padding: pads are False)
    appended key j:  j <= i                        (lower-right causal block)

          prefix (L)         appended (K)
    i=0   m m m m m m m m    x . . .
    i=1   m m m m m m m m    x x . .
    i=2   m m m m m m m m    x x x .
    i=3   m m m m m m m m    x x x x

The appended block is processed first: key 0 is visible to every row, so the running max is finite
before the first (possibly fully padded) prefix tile and no row can produce NaN. K/V tiles are loaded
masked by n < L only (no load waits on the mask's load); the mask applies to the scores (-inf, so
p = 0 and finite pad entries contribute exactly nothing). Softmax runs in fp32 in the log2 domain;
the forward stores the natural-log LSE [B, h, K] for the backward, which recomputes P.

Dots: operands in the inputs' dtype (bf16 / fp16 on the tensor cores, fp32 accumulation; P and dS
rounded to V's dtype before their dots, as flash-attention does); fp32 inputs as tf32 only where
``torch.backends.cuda.matmul.allow_tf32`` is set, else IEEE fp32 (see ``_common.dot_dtype``).

Backward: grid (row tile, L split, batch x kv head). Split s walks its share of the prefix tiles
and writes a partial dq; split 0 also does the appended block and writes that row tile's partial dk,
dv of the K appended keys (summed over its G heads). The launcher sums the partials in a fixed order
(deterministic, no atomics). Splits are used only when B * hkv * row tiles leaves SMs idle.
delta = rowsum(dO * O) [B, h, K] is computed by the launcher first (as flash-attention's
preprocessing kernel does), so the kernel never holds the fp32 O tile.

Tiles per head dim (BLOCK_D = next_pow2(d): d = 80 runs in a 128-wide tile). Shared memory from
the budget below; registers from ptxas for sm_90 (``benchmarks/triton_compile_check.py``, which
compiles every variant without a GPU); e = operand bytes, a stage holds one K and one V tile:

    shared ~ e * (R * BLOCK_M * BLOCK_D + stages * 2 * BLOCK_N * BLOCK_D) <= 160 KiB of Hopper's
    227 KiB per block (headroom for Triton's layout-conversion scratch); R = 1 (Q) forward,
    2 (Q, dO) backward. Registers: <= 255 per thread with no spills in the bf16 / fp16 paths.

    G*K = 40 (Qwen3: 32 heads / 8 KV heads, K = 10), bf16:
    forward   d=64:  M64 N64 s3 4 warps  56 KiB   d=128: M64 N64 s3 8 warps 112 KiB (248 regs)
              d=256: M64 N64 s2 8 warps 160 KiB (255 regs, no spills)
    backward  d=64:  M64 N32 s3 4 warps  40 KiB   d=128: M64 N32 s3 8 warps  80 KiB (235 regs)
              d=256: M32 N32 s3 8 warps 128 KiB (254 regs; 32 rows: mma.sync, not wgmma)
    G*K = 70 (Qwen2.5-7B, d=128): forward one 128-row tile (254 regs), backward two 64-row tiles
    (128 rows spill 956 B). fp32 operands take at most 64 rows and 32 keys.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import dot_dtype, dot_precision, sm_count

_LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * log2(e))
SMEM_BUDGET = 160 * 1024


@triton.jit
def _cache_tile(KC, VC, PM, L, D, n, d, d_ok, DOT: tl.constexpr):
    """Rows n (int32) of one (batch, KV head)'s prefix cache (KC, VC, PM point at its start): the
    mask [BLOCK_N] (False past L) and K, V tiles [BLOCK_N, BLOCK_D] in the dot dtype, zero past L
    (pads are loaded as they are). 32-bit offsets within the slice keep the address registers few."""
    in_l = n < L
    valid = tl.load(PM + n, mask=in_l, other=0) != 0
    c_off = n[:, None] * D + d[None, :]
    c_mask = in_l[:, None] & d_ok[None, :]
    kc = tl.load(KC + c_off, mask=c_mask, other=0.0).to(DOT)
    vc = tl.load(VC + c_off, mask=c_mask, other=0.0).to(DOT)
    return valid, kc, vc


@triton.jit
def _appended_tile(K, V, bh, KLEN, D, d, d_ok, BLOCK_K: tl.constexpr, DOT: tl.constexpr):
    """The K appended keys and values of KV head bh: positions j [BLOCK_K], j_ok and K, V tiles
    [BLOCK_K, BLOCK_D] in the dot dtype, zero past KLEN."""
    j = tl.arange(0, BLOCK_K)
    j_ok = j < KLEN
    kv_off = bh * KLEN * D + j[:, None] * D + d[None, :]
    kv_mask = j_ok[:, None] & d_ok[None, :]
    k_app = tl.load(K + kv_off, mask=kv_mask, other=0.0).to(DOT)
    v_app = tl.load(V + kv_off, mask=kv_mask, other=0.0).to(DOT)
    return j, j_ok, k_app, v_app


@triton.jit
def _appended_attention_forward_kernel(
    Q, K, V, KC, VC, PM, OUT, LSE,
    HKV, L, D, GK, KLEN,
    qk_scale,
    DOT: tl.constexpr, PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    bh = tl.program_id(1).to(tl.int64)  # b * HKV + kv
    b = bh // HKV
    KC += bh * L * D  # this (batch, kv head)'s slices; offsets below are 32-bit within them
    VC += bh * L * D
    PM += b * L
    Q += bh * GK * D
    OUT += bh * GK * D
    LSE += bh * GK
    row_ok = rows < GK
    qi = rows % KLEN
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    r_off = rows[:, None] * D + d[None, :]
    r_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + r_off, mask=r_mask, other=0.0).to(DOT)

    # Appended keys first: key 0 is visible to every row, so m_i is finite from here on.
    # (Names of [BLOCK_M, BLOCK_K] tiles differ from the loop's [BLOCK_M, BLOCK_N] ones: a name
    # assigned before a loop and in it is loop-carried and must keep its shape.)
    j, j_ok, k_app, v_app = _appended_tile(K, V, bh, KLEN, D, d, d_ok, BLOCK_K, DOT)
    s_app = tl.dot(q, tl.trans(k_app), input_precision=PREC) * qk_scale
    s_app = tl.where((j[None, :] <= qi[:, None]) & j_ok[None, :], s_app, float("-inf"))
    m_i = tl.max(s_app, axis=1)
    p_app = tl.math.exp2(s_app - m_i[:, None])
    l_i = tl.sum(p_app, axis=1)
    acc = tl.dot(p_app.to(DOT), v_app, input_precision=PREC)

    n_base = tl.arange(0, BLOCK_N)
    for n0 in range(0, L, BLOCK_N):
        valid, kc, vc = _cache_tile(KC, VC, PM, L, D, n0 + n_base, d, d_ok, DOT)
        s = tl.dot(q, tl.trans(kc), input_precision=PREC) * qk_scale
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = tl.dot(p.to(DOT), vc, acc * alpha[:, None], input_precision=PREC)
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(OUT + r_off, out.to(OUT.dtype.element_ty), mask=r_mask)
    tl.store(LSE + rows, (m_i + tl.math.log2(l_i)) * 0.6931471805599453, mask=row_ok)


@triton.jit
def _appended_attention_backward_kernel(
    Q, K, V, KC, VC, PM, DELTA, LSE, DO, DQP, DKP, DVP,
    HKV, L, D, GK, KLEN, NBH, TILES_PER_SPLIT,
    scale, qk_scale,
    DOT: tl.constexpr, PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    m = tl.program_id(0)
    split = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    b = bh // HKV
    KC += bh * L * D  # this (batch, kv head)'s slices; offsets below are 32-bit within them
    VC += bh * L * D
    PM += b * L
    Q += bh * GK * D
    DO += bh * GK * D
    DQP += (split.to(tl.int64) * NBH + bh) * GK * D
    LSE += bh * GK
    DELTA += bh * GK
    rows = m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < GK
    qi = rows % KLEN
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    r_off = rows[:, None] * D + d[None, :]
    r_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + r_off, mask=r_mask, other=0.0).to(DOT)
    do = tl.load(DO + r_off, mask=r_mask, other=0.0).to(DOT)
    lse2 = tl.load(LSE + rows, mask=row_ok, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + rows, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    if split == 0:
        j, j_ok, k_app, v_app = _appended_tile(K, V, bh, KLEN, D, d, d_ok, BLOCK_K, DOT)
        s_app = tl.dot(q, tl.trans(k_app), input_precision=PREC) * qk_scale
        allowed = (j[None, :] <= qi[:, None]) & j_ok[None, :] & row_ok[:, None]
        p_app = tl.where(allowed, tl.math.exp2(s_app - lse2[:, None]), 0.0)
        dp_app = tl.dot(do, tl.trans(v_app), input_precision=PREC)
        ds_app = (p_app * (dp_app - delta[:, None])).to(DOT)
        dq = tl.dot(ds_app, k_app, dq, input_precision=PREC)
        dk = tl.dot(tl.trans(ds_app), q, input_precision=PREC)
        dv = tl.dot(tl.trans(p_app.to(DOT)), do, input_precision=PREC)
        kv_off = (m * NBH + bh) * KLEN * D + j[:, None] * D + d[None, :]
        kv_mask = j_ok[:, None] & d_ok[None, :]
        tl.store(DKP + kv_off, dk * scale, mask=kv_mask)
        tl.store(DVP + kv_off, dv, mask=kv_mask)

    n_base = tl.arange(0, BLOCK_N)
    n_start = split * TILES_PER_SPLIT * BLOCK_N
    n_stop = tl.minimum(n_start + TILES_PER_SPLIT * BLOCK_N, L)
    for n0 in range(n_start, n_stop, BLOCK_N):
        valid, kc, vc = _cache_tile(KC, VC, PM, L, D, n0 + n_base, d, d_ok, DOT)
        s = tl.dot(q, tl.trans(kc), input_precision=PREC) * qk_scale
        p = tl.where(valid[None, :] & row_ok[:, None], tl.math.exp2(s - lse2[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(vc), input_precision=PREC)
        ds = (p * (dp - delta[:, None])).to(DOT)
        dq = tl.dot(ds, kc, dq, input_precision=PREC)

    tl.store(DQP + r_off, dq * scale, mask=r_mask)


def _tiles(gk: int, klen: int, dim: int, elem: int, resident: int) -> dict:
    """Block sizes, warps and stages (module docstring): ``resident`` [BLOCK_M, BLOCK_D] tiles stay
    in shared memory beside the ``num_stages`` K/V stages; over the budget, fewer stages first, then
    narrower K/V tiles, then fewer rows; tl.dot needs every dim >= 16."""
    block_d = max(16, triton.next_power_of_2(dim))
    # Row and key caps from the registers ptxas reports for sm_90 (benchmarks/triton_compile_check.py):
    # the backward keeps four [BLOCK_M, BLOCK_N] fp32 tiles (S, P, dP, dS) beside dq, so at most 64
    # rows and 32 keys (d=128: 235 registers, no spills; 128 rows or 64 keys spill); at d=256 only
    # 32 rows fit without spills (no wgmma below 64 rows, mma.sync instead); fp32 operands take
    # twice the registers: 64 rows and 32 keys (forward d=128: 13.8 KB spilled at 64 keys, 0.2 at 32).
    rows_cap = 128 if block_d <= 128 and resident == 1 and elem == 2 else 64
    if resident == 2 and block_d > 128:
        rows_cap = 32
    block_m = min(rows_cap, max(16, triton.next_power_of_2(gk)))
    block_n, stages = (64 if resident == 1 and elem == 2 else 32), 3

    def smem() -> int:
        return elem * (resident * block_m * block_d + stages * 2 * block_n * block_d)

    while smem() > SMEM_BUDGET and (stages > 2 or block_n > 16 or block_m > 16):
        if stages > 2:
            stages -= 1
        elif block_n > 16:
            block_n //= 2
        else:
            block_m //= 2
    return {
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "BLOCK_K": max(16, triton.next_power_of_2(klen)),
        "BLOCK_D": block_d,
        "num_warps": 8 if block_m * block_d >= 8192 else 4,
        "num_stages": stages,
    }


def _dot_args(x: torch.Tensor) -> dict:
    dot = dot_dtype(x.dtype, x.device)
    return {"DOT": dot, "PREC": dot_precision(x.dtype)}


def _splits(programs: int, n_tiles: int, device: torch.device) -> int:
    """Prefix tiles per split: one split while ``programs`` fill two waves of the SMs, else enough
    splits (at most one per tile) to reach that."""
    want = -(-2 * sm_count(device) // max(programs, 1))
    splits = max(1, min(n_tiles, want))
    return -(-n_tiles // splits) if n_tiles else 1


def appended_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    prefix_mask: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """out [B, h, K, d] (q's dtype) and natural-log LSE [B, h, K] fp32; contiguous fp32 / bf16 /
    fp16 inputs, bool mask [B, L]."""
    batch, heads, klen, dim = q.shape
    hkv, length = k_cache.shape[1], k_cache.shape[2]
    gk = heads // hkv * klen
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, klen, device=q.device, dtype=torch.float32)
    dots = _dot_args(q)
    tiles = _tiles(gk, klen, dim, dots["DOT"].primitive_bitwidth // 8, resident=1)
    grid = (triton.cdiv(gk, tiles["BLOCK_M"]), batch * hkv)
    _appended_attention_forward_kernel[grid](
        q, k, v, k_cache, v_cache, prefix_mask.view(torch.uint8), out, lse,
        hkv, length, dim, gk, klen,
        scale * _LOG2E,
        **dots, **tiles,
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
    tiles_per_split: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq [B, h, K, d], dk and dv [B, hkv, K, d] (inputs' dtype); the cache gets no gradient.

    ``tiles_per_split`` (prefix tiles of BLOCK_N per program) defaults to ``_splits``' choice.
    """
    batch, heads, klen, dim = q.shape
    hkv, length = k_cache.shape[1], k_cache.shape[2]
    gk = heads // hkv * klen
    dots = _dot_args(q)
    tiles = _tiles(gk, klen, dim, dots["DOT"].primitive_bitwidth // 8, resident=2)
    row_tiles = triton.cdiv(gk, tiles["BLOCK_M"])
    n_tiles = triton.cdiv(length, tiles["BLOCK_N"])
    per_split = tiles_per_split or _splits(row_tiles * batch * hkv, n_tiles, q.device)
    splits = max(1, triton.cdiv(n_tiles, per_split))
    f32 = {"device": q.device, "dtype": torch.float32}
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1)  # [B, h, K] rowsum(dO * O), as flash-attention
    dq_part = torch.empty(splits, *q.shape, **f32)
    dk_part = torch.empty(row_tiles, *k.shape, **f32)
    dv_part = torch.empty(row_tiles, *v.shape, **f32)
    _appended_attention_backward_kernel[(row_tiles, splits, batch * hkv)](
        q, k, v, k_cache, v_cache, prefix_mask.view(torch.uint8), delta, lse, grad_out,
        dq_part, dk_part, dv_part,
        hkv, length, dim, gk, klen, batch * hkv, per_split,
        scale, scale * _LOG2E,
        **dots, **tiles,
    )  # fmt: skip
    return tuple(part.sum(0).to(q.dtype) for part in (dq_part, dk_part, dv_part))
