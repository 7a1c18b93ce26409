"""Batched greedy decoding of soft prompts (the recon states) with a KV cache.

The reference re-runs the whole sequence for every new token (O(n^2) work in the number of tokens)
and stops early only at batch size 1. Here the soft prompt [B, K, H] is prefilled once into a
``DynamicCache``; each later step feeds one token per row and computes logits for that position
only. Each row stops at its own EOS (its later tokens are dropped); the loop ends when every row
has stopped or after ``max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import DynamicCache, PreTrainedModel


def eos_token_ids(llm: PreTrainedModel, tokenizer=None) -> list[int]:
    """The ids that end a generation: the config's and generation config's EOS, the tokenizer's,
    and (as the reference does) 151,643 ``<|endoftext|>`` for Qwen2/Qwen3, 128,001 for Llama."""
    ids: set[int] = set()

    def add(value: int | Iterable[int] | None) -> None:
        if value is None:
            return
        ids.update([value] if isinstance(value, int) else value)

    add(llm.config.eos_token_id)
    if getattr(llm, "generation_config", None) is not None:
        add(llm.generation_config.eos_token_id)
    if tokenizer is not None:
        add(tokenizer.eos_token_id)
    family_eos = {"qwen2": 151_643, "qwen3": 151_643, "llama": 128_001}.get(llm.config.model_type)
    if family_eos is not None:
        ids.add(family_eos)
    vocab = llm.get_output_embeddings().weight.shape[0]
    return sorted(i for i in ids if 0 <= i < vocab)


@torch.inference_mode()
def greedy_decode(
    llm: PreTrainedModel,
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
    eos_ids: list[int],
) -> list[list[int]]:
    """Greedy continuation of soft prompts.

    inputs_embeds [B, K, H] (any float dtype; cast to the LM's) is fed alone: no BOS, attention mask
    of ones. Returns B lists of generated ids, each cut before its first EOS.
    """
    if inputs_embeds.dim() != 3:
        raise ValueError(f"inputs_embeds must be [B, K, H], got shape {tuple(inputs_embeds.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    batch, k, _ = inputs_embeds.shape
    if batch == 0 or max_new_tokens == 0:
        return [[] for _ in range(batch)]
    weight = llm.get_input_embeddings().weight
    embeds = inputs_embeds.to(device=weight.device, dtype=weight.dtype)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=weight.device)
    cache = DynamicCache(config=llm.config)
    mask = torch.ones(batch, k + max_new_tokens, dtype=torch.long, device=weight.device)
    out = llm(
        inputs_embeds=embeds,
        attention_mask=mask[:, :k],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    tokens = torch.empty(batch, max_new_tokens, dtype=torch.long, device=weight.device)
    done = torch.zeros(batch, dtype=torch.bool, device=weight.device)
    steps = 0
    for step in range(max_new_tokens):
        next_ids = out.logits[:, -1].argmax(dim=-1)  # [B]
        tokens[:, step] = next_ids
        done |= torch.isin(next_ids, eos)
        steps = step + 1
        if steps == max_new_tokens or bool(done.all()):
            break
        length = k + steps
        position = torch.full((batch, 1), length - 1, dtype=torch.long, device=weight.device)
        out = llm(
            input_ids=next_ids[:, None],
            attention_mask=mask[:, :length],
            position_ids=position,
            past_key_values=out.past_key_values,
            use_cache=True,
            logits_to_keep=1,
        )
    stop, result = set(eos_ids), []
    for row in tokens[:, :steps].tolist():
        cut = next((i for i, t in enumerate(row) if t in stop), len(row))
        result.append(row[:cut])
    return result
