"""Batch-invariant encode (issue #14): a text's embedding and recon states are the same bits whatever
else shares its batch (``llm2vec_gen.invariant``).

Tiny random Qwen3 and Llama models (hidden 64, 2 layers, GQA), K=3 so that short texts give rows of
fewer than 8 tokens, in fp32, bf16, bf16 weights with fp32 arithmetic (``precision.bf16_weights``)
and int8 (``precision.quantize_int8``: one activation scale per token), with 1 and 2 torch
threads: each text encoded alone equals its row encoded with a prime number of texts of 1..~150
tokens, for several batch sizes and token budgets, in any order (``torch.equal``). Then the pieces:
the GEMM rounding that ``row_padded`` and ``aligned`` work around (measured, not assumed), the row
attention against transformers' SDPA path, a sliding window, and bad masks.
"""

from __future__ import annotations

import random

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from llm2vec_gen import invariant, precision
from llm2vec_gen.batching import left_pad
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_llama, tiny_qwen3

K, HIDDEN, DIM = 3, 64, 24
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "encoders", "read"]
LENGTHS = (4, 9, 17, 30, 41, 66, 95, 120, 150, 23)
TEXTS = ["a", "hi", "What is RoPE?"] + [
    " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(n)) for i, n in enumerate(LENGTHS)
]  # 13 texts, 1 .. ~150 tokens


def build(arch: str, dtype: torch.dtype, mode: str | None = None) -> LLM2VecGenModel:
    make = tiny_qwen3 if arch == "qwen3" else tiny_llama
    llm = make(QWEN_VOCAB_SIZE, hidden_size=HIDDEN, num_layers=2, num_heads=4, num_kv_heads=2, seed=1)
    model = LLM2VecGenModel.from_base(llm, qwen_tokenizer(), K, teacher_dim=DIM, device="cpu", seed=2)
    with torch.no_grad():  # trained-looking rows and heads
        model.special_rows.normal_(0, 1.0)
        model.recon_head.bias.normal_(0, 0.1)
        model.align_head.bias.normal_(0, 0.1)
    model.llm.to(dtype)
    if mode == "int8":  # what from_pretrained(quantize="int8") does to the backbone
        precision.quantize_int8(model.llm.base_model)
    if mode == "bf16 weights":  # from_pretrained(dtype=torch.bfloat16) on a CPU without bf16 hardware
        precision.bf16_weights(model.llm)
    return model


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module", params=["fp32", "bf16", "bf16 weights", "int8"])
def model(request, arch) -> LLM2VecGenModel:
    dtype = torch.bfloat16 if request.param.startswith("bf16") else torch.float32
    return build(arch, dtype, request.param)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    saved = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(saved)


def test_rows_equal_the_text_alone(model, threads):
    alone = [model.encode([t], get_recon_hidden_states=True) for t in TEXTS]
    emb_alone = torch.cat([e for e, _ in alone])
    recon_alone = torch.cat([r for _, r in alone])
    assert emb_alone.dtype == recon_alone.dtype == torch.float32
    for batch_size, budget in ((2, None), (3, 64), (5, None), (8, 300), (13, None), (13, 1000)):
        emb, recon = model.encode(
            TEXTS, batch_size=batch_size, max_batch_tokens=budget, get_recon_hidden_states=True
        )
        for i in range(len(TEXTS)):
            assert torch.equal(emb[i], emb_alone[i]), (batch_size, budget, i)
            assert torch.equal(recon[i], recon_alone[i]), (batch_size, budget, i)
    normalized = model.encode(TEXTS, normalize_embeddings=True)
    for i, text in enumerate(TEXTS):
        assert torch.equal(normalized[i], model.encode([text], normalize_embeddings=True)[0])


def test_any_companions_any_order(model):
    """Random companions and order (the server's batches): every row still the text alone."""
    alone = torch.cat([model.encode([t]) for t in TEXTS])
    ids = model.tokenize(TEXTS)
    rng = random.Random(0)
    for _ in range(6):
        pick = rng.sample(range(len(TEXTS)), rng.randrange(2, len(TEXTS) + 1))
        got = model.encode_ids([ids[i] for i in pick], batch_size=len(pick))
        assert torch.equal(got, alone[pick])


def test_forward_rows_equal_rows_alone(model):
    """The hidden states themselves, at every real position of a row (pad positions are finite)."""
    rows = model.tokenize(TEXTS)
    with torch.inference_mode():
        batch = model.sequence_hidden_states(*model.pad(rows))
        width = batch.shape[1]
        for i, row in enumerate(rows):
            one = model.sequence_hidden_states(*model.pad([row]))[0]
            assert torch.equal(batch[i, width - len(row) :], one)
            assert bool(batch[i, : width - len(row)].isfinite().all())


def test_close_to_transformers_sdpa(arch):
    """The row attention computes attention: a padded batch through it matches transformers' own SDPA
    path on the same batch (which rounds differently, so only to within rounding)."""
    model = build(arch, torch.float32)
    ids, mask = model.pad(model.tokenize(TEXTS))
    with torch.inference_mode():
        ours = model.sequence_hidden_states(ids, mask)
        theirs = model.llm.base_model(
            inputs_embeds=model.embed_tokens(ids),
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=False,
        ).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)


def test_sliding_window_matches_transformers():
    """A Qwen3 whose layers slide a window shorter than the text: the row attention applies the band."""
    config = Qwen3Config(
        vocab_size=QWEN_VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=HIDDEN // 4, use_sliding_window=True,
        sliding_window=7, max_window_layers=0, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(3)
    llm = Qwen3ForCausalLM(config).eval()
    assert set(config.layer_types) == {"sliding_attention"}
    model = LLM2VecGenModel.from_base(llm, qwen_tokenizer(), K, teacher_dim=DIM, device="cpu", seed=2)
    ids, mask = model.pad(model.tokenize([TEXTS[-3]]))  # one row of ~100 tokens, no padding
    with torch.inference_mode():
        ours = model.sequence_hidden_states(ids, mask)
        theirs = model.llm.base_model(inputs_embeds=model.embed_tokens(ids), use_cache=False)
        for layer in model.llm.model.layers:
            layer.self_attn.sliding_window = None
        full = model.sequence_hidden_states(ids, mask)
    torch.testing.assert_close(ours, theirs.last_hidden_state, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, full, atol=1e-3), "the window must change long rows"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_row_padded_gemm(threads, dtype):
    """The rounding ``row_padded`` removes: ``x[:M] @ W.T`` alone vs inside 61 rows (odd shapes)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(61, 144, generator=gen).to(dtype)
        w = torch.randn(80, 144, generator=gen).to(dtype)
        full = x @ w.t()
        for m in range(1, 20):
            got = invariant.row_padded(lambda a: a @ w.t(), x[:m])
            assert got.shape == (m, 80) and torch.equal(got, full[:m]), m
            shifted = invariant.row_padded(lambda a: a @ w.t(), x[7 : 7 + m])  # another position
            assert torch.equal(shifted, full[7 : 7 + m]), m
    finally:
        torch.set_num_threads(saved)


def test_aligned_widens_to_gemm_rows():
    rows = [[5, 6, 7], [1], [2, 3, 4, 5, 6]]
    ids, mask = left_pad(rows, 0)
    wide_ids, wide_mask, lengths = invariant.aligned(ids, mask)
    assert lengths == [3, 1, 5]
    assert wide_ids.shape == wide_mask.shape == (3, 8) and 3 * 8 % invariant.GEMM_ROWS == 0
    assert torch.equal(wide_ids[:, -5:], ids) and torch.equal(wide_mask[:, -5:], mask)
    assert not wide_mask[:, :3].any()
    for batch in range(1, 10):  # the narrowest width that makes B x T' a multiple of 8
        ones = torch.ones(batch, 5, dtype=torch.long)
        wide, _, _ = invariant.aligned(ones, ones)
        width = wide.shape[1]
        assert width >= 5 and batch * width % 8 == 0 and all(batch * w % 8 for w in range(5, width))


def test_mask_must_be_left_padding():
    model = build("qwen3", torch.float32)
    ids = torch.tensor([[11, 12, 13, 0]])
    for bad in ([[1, 1, 1, 0]], [[1, 0, 1, 1]]):  # right padding, a hole
        with pytest.raises(ValueError, match="left padding"):
            model.sequence_hidden_states(ids, torch.tensor(bad))
