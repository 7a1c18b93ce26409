"""Batched greedy decoding of soft prompts (the recon states) with a KV cache, and the model's
``decode``/``generate`` methods (``GenerateMixin``, mixed into ``LLM2VecGenModel``).

The reference re-runs the whole sequence for every new token (O(n^2) work in the number of tokens)
and stops early only at batch size 1. Here the soft prompt [B, K, H] is prefilled once into a
``DynamicCache``; each later step feeds one token per row and computes logits for that position
only. Each row stops at its own EOS (its later tokens are dropped); the loop ends when every row
has stopped or after ``max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel

from llm2vec_gen.tokenize import check_positive, check_texts

Texts = str | Iterable[str]
END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>")
"""End-of-text special tokens that also stop a generation when the tokenizer has them as special tokens."""


def eos_token_ids(llm: PreTrainedModel, tokenizer=None) -> list[int]:
    """The ids that end a generation: the config's and generation config's EOS, the tokenizer's,
    (as the reference does) 151,643 ``<|endoftext|>`` for Qwen2/Qwen3, 128,001 for Llama, and the
    tokenizer's own end-of-text special token when it has one (SmolLM2's id 0 ``<|endoftext|>``: a
    model trained with that answer suffix learns to stop on it)."""
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
        special = set(tokenizer.all_special_tokens)
        add([tokenizer.convert_tokens_to_ids(t) for t in END_OF_TEXT if t in special])
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


class GenerateMixin:
    """``decode`` (our batched API) and ``generate`` (the reference's signature) of ``LLM2VecGenModel``:
    they use its ``encode``, ``llm``, ``tokenizer``, ``align_head`` and ``special_rows``."""

    def decode(
        self,
        recon_states_or_texts: Texts | torch.Tensor | np.ndarray,
        max_new_tokens: int = 64,
        batch_size: int = 32,
        max_length: int = 512,
        instruction: str | None = None,
    ) -> list[str]:
        """Greedy text of each soft prompt: recon states [B, N, H] or [N, H], or texts (encoded first).

        Batched with a KV cache; each row stops at its own EOS. Returns B strings (special tokens
        skipped), one per input.
        """
        check_positive("batch_size", batch_size)
        if isinstance(recon_states_or_texts, (torch.Tensor, np.ndarray)):
            recon = torch.as_tensor(recon_states_or_texts)
        else:
            _, recon = self.encode(
                recon_states_or_texts, max_length, True, batch_size=batch_size, instruction=instruction
            )
        if recon.dim() == 2:
            recon = recon.unsqueeze(0)
        if recon.dim() != 3 or recon.shape[-1] != self.special_rows.shape[1]:
            raise ValueError(
                f"recon states must be [B, N, {self.special_rows.shape[1]}], got {tuple(recon.shape)}"
            )
        eos = eos_token_ids(self.llm, self.tokenizer)
        ids: list[list[int]] = []
        for start in range(0, recon.shape[0], batch_size):
            ids += greedy_decode(self.llm, recon[start : start + batch_size], max_new_tokens, eos)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def generate(
        self,
        input_text: Texts = "",
        max_new_tokens: int = 256,
        get_align_hidden_states: bool = False,
        recon_hidden_states: torch.Tensor | None = None,
    ) -> str | list[str] | tuple:
        """The reference's ``generate``: greedy text of ``recon_hidden_states`` ([N, H] or [B, N, H]),
        or of ``input_text`` encoded first when no states are given (as ``encode`` tokenises it).

        Returns a str for one input (a str, or states of batch 1), a list of B str for a batch; with
        ``get_align_hidden_states=True`` also the embedding fp32 [B, D] of the input (for a text,
        exactly ``encode``'s). Unlike the reference it runs on any device and for a batch.
        """
        if recon_hidden_states is None:
            emb, recon = self.encode(check_texts(input_text), get_recon_hidden_states=True)
            single = isinstance(input_text, str)
        else:
            recon = torch.as_tensor(recon_hidden_states)
            recon = recon.unsqueeze(0) if recon.dim() == 2 else recon
            single = recon.shape[0] == 1
            with torch.inference_mode():
                emb = self.align_head(recon.to(self.device, torch.float32)).mean(1)
        out = self.decode(recon, max_new_tokens=max_new_tokens)
        text = out[0] if single else out
        return (text, emb) if get_align_hidden_states else text
