"""``appended_attention``: K appended queries over a constant prefix KV cache plus their own keys.

    q            [B, h, K, d]    the appended tokens' queries (fp32, bf16, fp16; fp64 for tests)
    k, v         [B, hkv, K, d]  the appended tokens' keys/values, q's dtype; h a multiple of hkv (GQA)
    k_cache      [B, hkv, L, d]  the prefix's keys/values, q's dtype, constant (never any gradient);
    v_cache                      L >= 0, entries under pads must be finite (they get weight 0)
    prefix_mask  [B, L]          bool, or integer 0/1 (uint8, int8, int32, int64): True/nonzero on real
                                 prefix tokens; float masks raise TypeError (an additive 0/-inf
                                 mask would otherwise be read inverted)
    out          [B, h, K, d]    q's dtype

Appended query i of head hd (kv head hd // (h / hkv)) attends over the prefix keys n with
``prefix_mask[b, n]`` and the appended keys j <= i (a lower-right causal block)::

                 prefix (L, padding masked)    appended (K)
        query 0  m m m m m m m m m m m m       x . . .
        query 1  m m m m m m m m m m m m       x x . .
        query 2  m m m m m m m m m m m m       x x x .
        query 3  m m m m m m m m m m m m       x x x x

so a row whose prefix is all padding still sees its own appended keys and is never NaN. Softmax
and accumulation are fp32 (fp64 for fp64, which never runs Triton: the torch reference does). The
backward returns gradients for q, k, v only; for k and v they sum over the h / hkv query heads of
each group. The cpp and triton backends save only out and the LSE [B, h, K] and recompute the
probabilities in the backward; the triton backend feeds bf16 / fp16 operands to the tensor cores.
"""

from __future__ import annotations

import torch

from llm2vec_gen._dispatch import backend_for, kernel
from llm2vec_gen.ops._checks import check_same_device, check_tensor

MASK_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64)


def appended_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    prefix_mask: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Plain PyTorch: explicit [K, L + K] mask and softmax in fp32 (autograd backward); the oracle."""
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    batch, heads, klen, dim = q.shape
    groups = heads // k.shape[1]
    scale = dim**-0.5 if scale is None else scale
    keys = torch.cat([k_cache.detach(), k], dim=2).to(acc).repeat_interleave(groups, dim=1)
    values = torch.cat([v_cache.detach(), v], dim=2).to(acc).repeat_interleave(groups, dim=1)
    causal = torch.ones(klen, klen, dtype=torch.bool, device=q.device).tril()
    visible = torch.cat(
        [(prefix_mask != 0)[:, None, :].expand(batch, klen, -1), causal.expand(batch, -1, -1)], dim=-1
    )  # [B, K, L + K]
    scores = (q.to(acc) @ keys.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    return (scores.softmax(dim=-1) @ values).to(q.dtype)


class _AppendedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, k_cache, v_cache, prefix_mask, scale, backend):
        out, lse = kernel("appended_attention", "forward", backend)(
            q, k, v, k_cache, v_cache, prefix_mask, scale
        )
        ctx.save_for_backward(q, k, v, k_cache, v_cache, prefix_mask, out, lse)
        ctx.scale = scale
        ctx.backend = backend
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, k_cache, v_cache, prefix_mask, out, lse = ctx.saved_tensors
        dq, dk, dv = kernel("appended_attention", "backward", ctx.backend)(
            q, k, v, k_cache, v_cache, prefix_mask, out, lse, grad_out.contiguous(), ctx.scale
        )
        return dq, dk, dv, None, None, None, None, None


def _check(q, k, v, k_cache, v_cache, prefix_mask) -> torch.device:
    check_tensor("q", q, (4,))
    for name, t in (("k", k), ("v", v), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_tensor(name, t, (4,))
        if t.dtype != q.dtype:
            raise TypeError(f"{name} must have q's dtype {q.dtype}, got {t.dtype}")
    check_tensor("prefix_mask", prefix_mask, (2,), MASK_DTYPES)
    batch, heads, klen, dim = q.shape
    hkv = k.shape[1]
    if klen == 0 or dim == 0 or batch == 0:
        raise ValueError(f"q of shape {tuple(q.shape)} is empty")
    if hkv == 0 or heads % hkv:
        raise ValueError(f"q's heads h={heads} must be a multiple of k's kv heads hkv={hkv}")
    want = (batch, hkv, klen, dim)
    for name, t in (("k", k), ("v", v)):
        if tuple(t.shape) != want:
            raise ValueError(f"{name} must have shape (B, hkv, K, d) = {want}, got {tuple(t.shape)}")
    length = k_cache.shape[2]
    want = (batch, hkv, length, dim)
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
        if tuple(t.shape) != want:
            raise ValueError(f"{name} must have shape (B, hkv, L, d) = {want}, got {tuple(t.shape)}")
    if tuple(prefix_mask.shape) != (batch, length):
        raise ValueError(
            f"prefix_mask must have shape (B, L) = {(batch, length)}, got {tuple(prefix_mask.shape)}"
        )
    return check_same_device(q=q, k=k, v=v, k_cache=k_cache, v_cache=v_cache, prefix_mask=prefix_mask)


def appended_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    prefix_mask: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of q [B, h, K, d] over cache [B, hkv, L, d] (masked) + k, v [B, hkv, K, d] (causal).

    ``scale`` defaults to d ** -0.5. Returns [B, h, K, d] in q's dtype; gradients flow to q, k, v.
    """
    device = _check(q, k, v, k_cache, v_cache, prefix_mask)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    backend = backend_for(device, q.dtype)
    if backend == "torch":
        return appended_attention_reference(q, k, v, k_cache, v_cache, prefix_mask, scale)
    mask = prefix_mask if prefix_mask.dtype == torch.bool else prefix_mask != 0
    return _AppendedAttention.apply(
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        k_cache.detach().contiguous(),
        v_cache.detach().contiguous(),
        mask.contiguous(),
        scale,
        backend,
    )
