"""Batched KV-cached greedy decoding of recon states against the reference's uncached loop."""

from __future__ import annotations

import pytest
import torch

from llm2vec_gen.decode import eos_token_ids, greedy_decode
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_qwen3

K = 4
HIDDEN = 64


@pytest.fixture(scope="module")
def model() -> LLM2VecGenModel:
    llm = tiny_qwen3(QWEN_VOCAB_SIZE, hidden_size=HIDDEN, num_layers=3, seed=7)
    return LLM2VecGenModel.from_base(llm, qwen_tokenizer(), K, teacher_dim=16, device="cpu", seed=8)


@torch.no_grad()
def uncached_greedy(llm, prompt: torch.Tensor, max_new_tokens: int, eos_ids: list[int]) -> list[list[int]]:
    """The reference's loop: re-run the whole sequence for every token; cut each row at its EOS."""
    embeds, tokens = prompt, []
    table = llm.get_input_embeddings()
    for _ in range(max_new_tokens):
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
        next_ids = llm(inputs_embeds=embeds, attention_mask=mask).logits[:, -1].argmax(-1)
        tokens.append(next_ids)
        embeds = torch.cat([embeds, table(next_ids[:, None])], dim=1)
    rows = torch.stack(tokens, 1).tolist()
    return [row[: next((i for i, t in enumerate(row) if t in eos_ids), len(row))] for row in rows]


def _prompts(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, K, HIDDEN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batch", [1, 3])
def test_cached_equals_uncached(model, batch):
    prompts = _prompts(batch)
    eos = eos_token_ids(model.llm, model.tokenizer)
    got = greedy_decode(model.llm, prompts, 12, eos)
    assert got == uncached_greedy(model.llm, prompts, 12, eos)
    assert all(len(row) == 12 for row in got)  # a random LM never says EOS this soon


def test_each_row_stops_at_its_own_eos(model):
    prompts = _prompts(3, seed=1)
    free = greedy_decode(model.llm, prompts, 10, [])
    eos = [free[0][2]]  # row 0 ends at its third token; the others run on unless they say it too
    got = greedy_decode(model.llm, prompts, 10, eos)
    assert got == uncached_greedy(model.llm, prompts, 10, eos)
    assert got[0] == free[0][:2]
    assert any(len(row) > 2 for row in got[1:]) or all(eos[0] in row for row in free[1:])
    everyone = sorted({row[0] for row in free})
    assert greedy_decode(model.llm, prompts, 10, everyone) == [[], [], []]


def test_model_decode_and_generate(model):
    texts = ["What is a soft prompt?", "", "decode me"]
    emb, recon = model.encode(texts, get_recon_hidden_states=True)
    eos = eos_token_ids(model.llm, model.tokenizer)
    expected = model.tokenizer.batch_decode(
        uncached_greedy(model.llm, recon, 6, eos), skip_special_tokens=True
    )
    assert model.decode(recon, max_new_tokens=6) == expected
    assert model.decode(texts, max_new_tokens=6) == expected
    assert model.decode(recon, max_new_tokens=6, batch_size=2) == expected
    assert model.decode(recon[1], max_new_tokens=6) == [expected[1]]
    assert model.generate("decode me", max_new_tokens=6) == expected[2]
    assert model.generate(recon_hidden_states=recon[:1], max_new_tokens=6) == expected[0]
    assert model.generate(recon_hidden_states=recon[0], max_new_tokens=6) == expected[0]  # [N, H]
    assert model.generate(recon_hidden_states=recon, max_new_tokens=6) == expected  # a batch: a list
    assert model.generate(texts, max_new_tokens=6) == expected
    text, align = model.generate("decode me", max_new_tokens=6, get_align_hidden_states=True)
    assert text == expected[2] and torch.equal(align, model.encode("decode me"))  # as load_model.py
    text, align = model.generate(recon_hidden_states=recon, max_new_tokens=6, get_align_hidden_states=True)
    assert text == expected and align.shape == (3, emb.shape[1])
    torch.testing.assert_close(align, emb, rtol=1e-4, atol=1e-5)
    assert model.decode(recon, max_new_tokens=0) == ["", "", ""]


def test_eos_ids(model):
    eos = eos_token_ids(model.llm, model.tokenizer)
    assert 151_645 in eos and 151_643 in eos  # <|im_end|> (config, tokenizer), <|endoftext|> (Qwen family)


def test_bad_decode_input(model):
    with pytest.raises(ValueError, match=r"recon states must be \[B, N, 64\]"):
        model.decode(torch.zeros(2, K, HIDDEN + 1))
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_decode(model.llm, _prompts(1), -1, [])
    with pytest.raises(TypeError, match="texts must be a str"):
        model.generate(None)
    assert model.generate(max_new_tokens=2) == model.decode([""], max_new_tokens=2)[0]  # the defaults
