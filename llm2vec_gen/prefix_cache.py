"""Encoder forward in two steps: the query prefix once without grad, then only the K appended tokens.

The prefix (the input text) depends on no trainable parameter under causal attention, because the
K trainable tokens come last. So ``forward_appended`` runs it under ``torch.no_grad`` into a KV cache
and then runs only the K appended tokens with grad, their attention going through
``appended_attention`` (the constant cache plus their own keys, GQA and left padding handled inside
the op; no [K, L + K] mask is built). The K final hidden states and the gradient with respect to the
appended embeddings equal those of the full-sequence forward, while autograd keeps activations of K
tokens instead of T + K: the backward cost grows with K, not T.

The appended step uses the attention function registered here with transformers'
``AttentionInterface`` under ``ATTENTION_NAME``; the model's ``attn_implementation`` is switched to it
only for that call and restored afterwards. The function reads the prefix cache from a keyword
argument that transformers passes down to every attention layer, so nothing global holds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AttentionInterface, DynamicCache, PreTrainedModel

from llm2vec_gen.batching import positions as prefix_positions
from llm2vec_gen.ops.appended_attention import appended_attention

ATTENTION_NAME = "llm2vec_gen_appended"
_PREFIX_KWARG = "llm2vec_gen_prefix"


@dataclass(frozen=True)
class _Prefix:
    """The prefix's KV cache (one [B, hkv, L, d] pair per layer) and its mask [B, L] bool."""

    cache: DynamicCache
    mask: torch.Tensor

    def layer(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.cache.layers[idx]
        return layer.keys, layer.values


def _appended_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: query [B, h, K, d], key/value [B, hkv, K, d] -> [B, K, h, d]."""
    prefix = kwargs.get(_PREFIX_KWARG)
    if prefix is None:
        raise RuntimeError(f"attn_implementation={ATTENTION_NAME!r} runs only inside forward_appended")
    if dropout:
        raise NotImplementedError(f"{ATTENTION_NAME} has no attention dropout, got p={dropout}")
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError(f"{ATTENTION_NAME} does not support sliding-window layers")
    k_cache, v_cache = prefix.layer(module.layer_idx)
    out = appended_attention(query, key, value, k_cache, v_cache, prefix.mask, scale=scaling)
    return out.transpose(1, 2), None


AttentionInterface.register(ATTENTION_NAME, _appended_attention_forward)


@contextmanager
def attention_implementation(config, name: str) -> Iterator[None]:
    """Switch ``config``'s attention implementation (and its sub-configs') to ``name`` for a block."""
    saved = {"": config._attn_implementation}
    for key in getattr(config, "sub_configs", {}):
        sub = getattr(config, key, None)
        if sub is not None:
            saved[key] = sub._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = saved


def forward_appended(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    appended_embeds: torch.Tensor,
) -> torch.Tensor:
    """Final hidden states [B, K, H] (after the final norm) of K tokens appended to a left-padded prefix.

    model:           a transformers decoder base model (Qwen3Model, LlamaModel, ...) or a causal LM
                     wrapping one (its ``base_model`` is used; no LM head runs)
    input_ids:       [B, T] int64, left padded, T >= 1
    attention_mask:  [B, T], 1 on real tokens, 0 on pads (a row may be all pads)
    appended_embeds: [B, K, H] in the model's dtype; may require grad

    Equals ``last_hidden_state[:, -K:]`` of the full sequence ``[embed(input_ids) | appended_embeds]``
    with mask ``[attention_mask | 1]`` and positions ``prefix_positions`` of that mask, values and
    gradient with respect to ``appended_embeds``. The prefix runs under ``torch.no_grad``, so the model
    parameters get only the K tokens' share of their gradient: use it with a frozen model.
    """
    base = model.base_model
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape (B, T) with T >= 1, got {tuple(input_ids.shape)}")
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    if appended_embeds.dim() != 3 or appended_embeds.shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"appended_embeds must have shape (B, K, H) with B={input_ids.shape[0]}, "
            f"got {tuple(appended_embeds.shape)}"
        )
    with torch.no_grad():
        cache = base(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=prefix_positions(attention_mask),
            use_cache=True,
        ).past_key_values
    klen = appended_embeds.shape[1]
    positions = attention_mask.long().sum(-1, keepdim=True) + torch.arange(klen, device=input_ids.device)
    prefix = _Prefix(cache, attention_mask != 0)
    with attention_implementation(base.config, ATTENTION_NAME):
        out = base(
            inputs_embeds=appended_embeds,
            attention_mask=None,
            position_ids=positions,
            use_cache=False,
            **{_PREFIX_KWARG: prefix},
        )
    return out.last_hidden_state
