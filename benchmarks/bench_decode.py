"""Decoding 64 tokens from recon states: KV-cached batched greedy against the reference's loop.

The reference (McGill-NLP llm2vec-gen 0.1.3 ``generate``) re-runs the whole sequence for every new
token and computes logits at every position. Both sides decode exactly 64 tokens (no EOS: the same
work) from [B, 10, H] soft prompts, fp32, on two tiny Qwen3 shapes: "qwen-vocab" (hidden 256,
4 layers, the real vocabulary 151,679: the LM head is 94% of a token's flops) and "body" (hidden 512,
8 layers, vocab 8,192: the transformer body dominates, as in real models).

    pytest benchmarks/bench_decode.py --benchmark-only
"""

from __future__ import annotations

import functools

import pytest
import torch

from llm2vec_gen.decode import greedy_decode
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, tiny_qwen3

NEW_TOKENS, K = 64, 10
SHAPES = {"qwen-vocab": (QWEN_VOCAB_SIZE + K, 256, 4), "body": (8192, 512, 8)}  # vocab, hidden, layers


pytestmark = pytest.mark.usefixtures("one_thread")


# The body-dominated shape is measured at B=1 only: the hardest case for the cache.
CASES = [("qwen-vocab", 1), ("qwen-vocab", 8), ("qwen-vocab", 32), ("body", 1)]


@functools.cache
def _llm(shape: str):
    vocab, hidden, layers = SHAPES[shape]
    return tiny_qwen3(vocab, hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2)


@torch.inference_mode()
def reference_loop(llm, prompts: torch.Tensor, max_new_tokens: int) -> list[list[int]]:
    """The reference's greedy loop: full forward over the growing sequence for each token."""
    embeds, tokens = prompts, []
    for _ in range(max_new_tokens):
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
        next_ids = llm(inputs_embeds=embeds, attention_mask=mask).logits[:, -1, :].argmax(-1)
        tokens.append(next_ids)
        embeds = torch.cat([embeds, llm.get_input_embeddings()(next_ids[:, None])], dim=1)
    return torch.stack(tokens, 1).tolist()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-B{c[1]}")
@pytest.mark.parametrize("provider", ["reference-loop", "kv-cache"])
def bench_decode(benchmark, provider, case):
    shape, batch = case
    llm = _llm(shape)
    hidden, layers = llm.config.hidden_size, llm.config.num_hidden_layers
    prompts = torch.randn(batch, K, hidden, generator=torch.Generator().manual_seed(0))
    if provider == "reference-loop":
        fn = lambda: reference_loop(llm, prompts, NEW_TOKENS)
    else:
        fn = lambda: greedy_decode(llm, prompts, NEW_TOKENS, [])
    assert greedy_decode(llm, prompts, 8, []) == reference_loop(llm, prompts, 8)
    vocab = llm.config.vocab_size
    benchmark.group = (
        f"decode {NEW_TOKENS} tokens, B={batch}, tiny Qwen3 H={hidden} L={layers} V={vocab}, fp32"
    )
    benchmark.extra_info.update(provider=provider, baseline=provider == "reference-loop")
    benchmark.pedantic(fn, rounds=2, warmup_rounds=1, iterations=1)
