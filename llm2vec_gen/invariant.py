"""Batch-invariant encoding: a text's embedding does not depend on the texts that share its batch.

A left-padded batch rounds a row differently from the same row run alone, for two reasons
(measured on the CPU, torch 2.13 with MKL, 1 and 2 threads, fp32; bf16 has only the first):

1. attention: SDPA over a padded key range (masked keys, other block boundaries) rounds
   differently. ``row_attention`` instead attends each row over its own real keys only: the left
   padding is sliced off and SDPA runs on that row alone, so a padded row computes exactly what it
   computes unpadded. It is a transformers attention function (``AttentionInterface``, registered
   as ``ATTENTION_NAME``), switched on only for the encoder forward; the row lengths reach it as the
   keyword argument ``LENGTHS_KWARG``, which transformers passes down to every attention layer.
2. small GEMMs: MKL's sgemm rounds a row of ``x @ W.T`` differently when the row count M is small
   and not a multiple of 4 (1 thread: M in {1, 2, 3}; 2 threads: also 5-7 and 9-11; 16 threads:
   up to 27), whatever the row's position, while every M that is a multiple of 4 gives the rows of
   any other such M bit for bit. So every GEMM of the encoder runs on a multiple of ``GEMM_ROWS``
   rows: the LLM's B x T tokens (``aligned``: a few more left-padding columns) and the heads' rows
   (``row_padded``: zero rows appended, results sliced off).

Every other op of the forward (embedding gather, RMSNorm, RoPE, SiLU, residual adds) is row-wise.
Elementwise kernels run a vectorised body and a scalar tail whose transcendental functions may
differ in the last bit, so the guarantee also needs the row widths (hidden, intermediate and head
sizes) to be multiples of 16 (every released model's are).

What is guaranteed (tests/test_batch_invariance.py): on the CPU, in fp32, bf16 and
``quantize="int8"`` (``precision``: one activation scale per token, int32 accumulation), for a fixed
torch thread count, each row's hidden states, embedding and recon states are bit-equal whatever
else is in its batch, whatever the batch size or token budget. Not guaranteed on CUDA: the
attention is per row there too, but cuBLAS picks GEMM kernels (split-K included) by the row count,
so a row may change in the last bits with its batch; untested, no GPU was available.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface

from llm2vec_gen.prefix_cache import attention_implementation

ATTENTION_NAME = "llm2vec_gen_rows"
LENGTHS_KWARG = "llm2vec_gen_lengths"
GEMM_ROWS = 8


def _row_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: query [B, h, T, d], key/value [B, hkv, T, d] of left-padded
    rows whose real lengths are ``kwargs[LENGTHS_KWARG]`` -> [B, T, h, d] (zeros at pad positions)."""
    lengths = kwargs.get(LENGTHS_KWARG)
    if lengths is None:
        raise RuntimeError(f"attn_implementation={ATTENTION_NAME!r} needs the row lengths ({LENGTHS_KWARG})")
    if dropout:
        raise NotImplementedError(f"{ATTENTION_NAME} has no attention dropout, got p={dropout}")
    for name in ("softcap", "s_aux"):
        if kwargs.get(name) is not None:
            raise NotImplementedError(f"{ATTENTION_NAME} does not support {name}")
    window = kwargs.get("sliding_window")
    batch, heads, width, dim = query.shape
    out = query.new_zeros(batch, width, heads, dim)
    for row, n in enumerate(lengths):
        if n == 0:
            continue
        span = slice(width - n, width)
        mask = None
        if window is not None and n > window:  # a causal band: key j seen by query i when i - j < window
            i = torch.arange(n, device=query.device)
            mask = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < window)
        o = F.scaled_dot_product_attention(
            query[row : row + 1, :, span],
            key[row : row + 1, :, span],
            value[row : row + 1, :, span],
            attn_mask=mask,
            is_causal=mask is None,
            scale=scaling,
            enable_gqa=True,
        )  # [1, h, n, d]
        out[row, span] = o[0].transpose(0, 1)
    return out, None


AttentionInterface.register(ATTENTION_NAME, _row_attention_forward)


def row_attention(config) -> contextlib.AbstractContextManager:
    """Inside: the model of ``config`` attends with ``row_attention`` (pass ``LENGTHS_KWARG``)."""
    return attention_implementation(config, ATTENTION_NAME)


def aligned(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(input_ids [B, T'], attention_mask [B, T'], row lengths) of left-padded rows [B, T], widened on
    the left (id 0, mask 0) to the narrowest T' >= T with B x T' a multiple of ``GEMM_ROWS``.

    Raises ValueError when a row's mask is not left padding (zeros, then ones)."""
    batch, width = input_ids.shape
    real = attention_mask != 0
    lengths = real.sum(-1)
    if not torch.equal(real, torch.arange(width, device=real.device) >= width - lengths[:, None]):
        raise ValueError("attention_mask must be left padding: each row zeros, then ones")
    extra = next(c for c in range(GEMM_ROWS) if batch * (width + c) % GEMM_ROWS == 0)
    return F.pad(input_ids, (extra, 0)), F.pad(attention_mask, (extra, 0)), lengths.tolist()


def row_padded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` for a row-wise ``fn`` (heads, ``encode_tail``) of x [B, ...], run on x with zero rows
    appended up to a multiple of ``GEMM_ROWS`` rows (so its GEMMs round each row alike whatever B);
    the result's first B rows."""
    rows = x.shape[0]
    extra = -rows % GEMM_ROWS
    if extra:
        x = torch.cat([x, x.new_zeros(extra, *x.shape[1:])])
    return fn(x)[:rows]
