"""Encoding throughput: LLM2VecGenModel.encode against a reference-style encode, fp32 on the CPU.

256 texts of mixed length (5 to 400 tokens, seeded), a tiny Qwen3 (hidden 256, 4 layers, 151,669 +
10 vocab) with the real Qwen tokenizer, batch 32, max length 512. The reference style (as
McGill-NLP llm2vec-gen 0.1.3 encodes): batches in the given order padded to their longest text, the
PEFT embedding (full table rebuilt with the K rows every forward), the two heads in sequence, then
the mean. Ours: length-sorted batches, the special-row embedding op, the folded heads.

    pytest benchmarks/bench_encode.py --benchmark-only
"""

from __future__ import annotations

import random

import pytest
import torch

from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_qwen3

N_TEXTS, BATCH, MAX_LENGTH = 256, 32, 512
WORDS = (
    "the",
    "model",
    "reads",
    "every",
    "query",
    "and",
    "writes",
    "an",
    "answer",
    "about",
    "cats",
    "rivers",
)


pytestmark = pytest.mark.usefixtures("one_thread")


def mixed_texts(n: int = N_TEXTS, seed: int = 0) -> list[str]:
    """n texts of 5..400 words (about one token per word), seeded."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 400))) for _ in range(n)]


@pytest.fixture(scope="module")
def model() -> LLM2VecGenModel:
    llm = tiny_qwen3(QWEN_VOCAB_SIZE, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2)
    return LLM2VecGenModel.from_base(llm, qwen_tokenizer(), 10, teacher_dim=256, device="cpu")


@torch.inference_mode()
def reference_style_encode(model: LLM2VecGenModel, texts: list[str]) -> torch.Tensor:
    """[n, D] fp32 the reference's way (given order, PEFT table rebuild, two heads, mean)."""
    k, tok = model.num_special_tokens, model.tokenizer
    table = model.llm.get_input_embeddings().weight
    special_ids = model.special_ids
    out = []
    for start in range(0, len(texts), BATCH):
        batch = tok(
            [t + "".join(model.special_tokens) for t in texts[start : start + BATCH]],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        ids = batch["input_ids"]
        cut = torch.isin(ids, special_ids).sum(1) < k
        ids[cut, -k:] = special_ids
        full = torch.cat([table, table.new_zeros(k, table.shape[1])]).index_copy(
            0, special_ids, model.special_rows
        )
        hidden = model.llm.model(
            inputs_embeds=full[ids], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        out.append(model.align_head(model.recon_head(hidden[:, -k:])).mean(1).float())
    return torch.cat(out)


@pytest.mark.parametrize("provider", ["reference-style", "llm2vec_gen"])
def bench_encode(benchmark, model, provider):
    texts = mixed_texts()
    if provider == "reference-style":
        fn = lambda: reference_style_encode(model, texts)
    else:
        fn = lambda: model.encode(texts, batch_size=BATCH, max_length=MAX_LENGTH, convert_to_tensor=True)
    expected = reference_style_encode(model, texts[:8])
    torch.testing.assert_close(
        model.encode(texts[:8], convert_to_tensor=True), expected, rtol=1e-3, atol=1e-4
    )
    lengths = [len(ids) for ids in model.tokenize(texts, MAX_LENGTH)]
    benchmark.group = (
        f"encode {N_TEXTS} texts ({min(lengths)}-{max(lengths)} tokens), tiny Qwen3 H=256 L=4, fp32"
    )
    benchmark.extra_info.update(
        provider=provider, baseline=provider == "reference-style", texts_per_s=None, tokens=sum(lengths)
    )
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1, iterations=1)
    benchmark.extra_info["texts_per_s"] = N_TEXTS / benchmark.stats.stats.median
