"""LLM2VecGenModel.encode: tokenisation as the reference, order, outputs, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from llm2vec_gen.batching import token_batches
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_llama, tiny_qwen3

K = 5
HIDDEN = 48
DIM = 20
TEXTS = ["short", "", "a somewhat longer sentence about encoders and decoders", "x " * 30, "ünï ✓ 7", "b"]


@pytest.fixture(scope="module")
def model() -> LLM2VecGenModel:
    llm = tiny_qwen3(QWEN_VOCAB_SIZE, hidden_size=HIDDEN, num_layers=2, num_heads=4, num_kv_heads=2, seed=1)
    model = LLM2VecGenModel.from_base(llm, qwen_tokenizer(), K, teacher_dim=DIM, device="cpu", seed=2)
    with torch.no_grad():  # trained-looking rows and heads
        model.special_rows.normal_(0, 0.05)
        model.recon_head.bias.normal_(0, 0.1)
        model.align_head.bias.normal_(0, 0.1)
    return model


@torch.no_grad()
def plain_encode(model: LLM2VecGenModel, texts: list[str], max_length: int) -> torch.Tensor:
    """One text at a time, no padding: full table with the K rows replaced, backbone, two heads, mean."""
    table = model.llm.get_input_embeddings().weight
    full = torch.cat([table, torch.zeros(K, HIDDEN)]).clone()
    full[model.special_ids] = model.special_rows
    out = []
    for text in texts:
        ids = model.tokenizer(text + "".join(model.special_tokens), truncation=True, max_length=max_length)
        ids = torch.tensor(ids["input_ids"])
        ids[-K:] = model.special_ids
        hidden = model.llm.model(inputs_embeds=full[ids][None]).last_hidden_state[:, -K:]
        out.append(model.align_head(model.recon_head(hidden)).mean(1)[0])
    return torch.stack(out)


def test_matches_unbatched_forward(model):
    ours = model.encode(TEXTS, batch_size=4)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32 and ours.shape == (len(TEXTS), DIM)
    torch.testing.assert_close(ours, plain_encode(model, TEXTS, 512), rtol=1e-4, atol=1e-5)


def test_order_and_batching_do_not_matter(model):
    base = model.encode(TEXTS, batch_size=len(TEXTS))
    perm = [3, 0, 5, 1, 4, 2]
    for batch_size in (1, 2, 5):
        shuffled = model.encode([TEXTS[i] for i in perm], batch_size=batch_size)
        torch.testing.assert_close(shuffled, base[perm], rtol=1e-4, atol=1e-5)
    for budget in (1, 7, 40, 10_000):  # token budget: every batch is padded width x rows <= budget
        got = model.encode(TEXTS, batch_size=3, max_batch_tokens=budget)
        torch.testing.assert_close(got, base, rtol=1e-4, atol=1e-5)


def test_token_budget_batches():
    lengths = [5, 9, 2, 9, 3, 30, 1]
    batches = token_batches(lengths, batch_size=3, max_batch_tokens=20)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [5]  # longer than the budget: alone
    for batch in batches[1:]:
        assert len(batch) <= 3 and max(lengths[i] for i in batch) * len(batch) <= 20
    assert token_batches(lengths, batch_size=2) == [[5, 1], [3, 0], [4, 2], [6]]


def test_default_token_budget(model, monkeypatch):
    """Without max_batch_tokens, batches stay under the device's default budget (2,048 padded
    tokens on a CPU): long texts run in smaller batches than batch_size."""
    from llm2vec_gen import batching

    assert batching.default_batch_tokens(torch.device("cpu")) == 2048
    monkeypatch.setattr("llm2vec_gen.batching.default_batch_tokens", lambda device: 64)
    forward, shapes = type(model).forward, []

    def recording(self, input_ids, attention_mask):
        shapes.append(tuple(input_ids.shape))
        return forward(self, input_ids, attention_mask)

    monkeypatch.setattr(type(model), "forward", recording)
    long_texts = ["word " * n for n in (40, 3, 25, 60, 2, 8)]
    got = model.encode(long_texts, batch_size=32)
    assert len(shapes) > 1 and all(rows * width <= 64 or rows == 1 for rows, width in shapes)
    monkeypatch.setattr(type(model), "forward", forward)
    torch.testing.assert_close(got, model.encode(long_texts, batch_size=1), rtol=0, atol=0)


def test_out_of_memory_batch_is_split(model, monkeypatch):
    """A batch that raises an out-of-memory error is halved and retried; no row is lost."""
    want = model.encode(TEXTS, batch_size=8)
    forward, sizes = type(model).forward, []

    def flaky(self, input_ids, attention_mask):
        sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, input_ids, attention_mask)

    monkeypatch.setattr(type(model), "forward", flaky)
    torch.testing.assert_close(model.encode(TEXTS, batch_size=8), want, rtol=1e-4, atol=1e-5)
    assert sizes[0] == len(TEXTS) and max(sizes[1:]) <= 3
    monkeypatch.setattr(type(model), "forward", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):  # not memory: raised as is
        model.encode(TEXTS)


def test_truncation_keeps_special_tokens(model):
    long = "word " * 50
    ids = model.tokenizer(long)["input_ids"]
    with pytest.warns(UserWarning, match="1 of 2 texts are longer than max_length=17") as record:
        rows = model.tokenize([long, "hi"], max_length=17)
    assert len(record) == 1
    assert rows[0] == ids[: 17 - K] + model.special_ids.tolist()
    assert rows[1] == model.tokenizer("hi")["input_ids"] + model.special_ids.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.tokenize(["hi"], max_length=17)
    with pytest.warns(UserWarning, match="longer than max_length"):
        got = model.encode([long], max_length=17)
    torch.testing.assert_close(got, plain_encode(model, [long], 17), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cannot hold the 5 special tokens"):
        model.tokenize(["hi"], max_length=4)


def test_instruction_is_prepended(model):
    instruction = "Generate a passage that best answers this question: "
    got = model.encode(["what is rope?"], instruction=instruction)
    torch.testing.assert_close(got, model.encode([instruction + "what is rope?"]), rtol=0, atol=0)


def test_user_text_cannot_inject_special_tokens(model):
    """``<question3>`` typed by a user is plain text: split into pieces, never the trainable id."""
    special = set(model.special_ids.tolist())
    text = f"see {model.special_tokens[2]} and {model.special_tokens[0]}"
    row = model.tokenize([text], instruction=model.special_tokens[1])[0]
    assert row[-K:] == model.special_ids.tolist()
    assert not special & set(row[:-K])


def test_output_forms(model):
    one = model.encode("short")
    assert isinstance(one, torch.Tensor) and one.shape == (1, DIM)  # 2-D, as the reference
    torch.testing.assert_close(one[0], model.encode(["short"])[0], rtol=1e-5, atol=1e-6)
    array = model.encode(TEXTS[:2], convert_to_numpy=True)
    assert isinstance(array, np.ndarray) and array.shape == (2, DIM)
    both = model.encode(TEXTS[:2], convert_to_numpy=True, convert_to_tensor=True)  # tensor wins
    assert isinstance(both, torch.Tensor)
    assert isinstance(model.encode(TEXTS[:2], convert_to_numpy=True, convert_to_tensor=False), np.ndarray)
    normed = model.encode(TEXTS, normalize_embeddings=True)
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(len(TEXTS)), rtol=1e-5, atol=1e-6)
    emb, recon = model.encode(TEXTS, 512, True)  # the reference's positional order
    assert recon.shape == (len(TEXTS), K, HIDDEN) and recon.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(model.align_head(recon).mean(1), emb, rtol=1e-4, atol=1e-5)
    emb_np, recon_np = model.encode(TEXTS, get_recon_hidden_states=True, convert_to_numpy=True)
    assert isinstance(recon_np, np.ndarray) and recon_np.shape == (len(TEXTS), K, HIDDEN)
    assert model.encode("short", get_recon_hidden_states=True)[1].shape == (1, K, HIDDEN)
    import pandas as pd

    for iterable in (
        (t for t in TEXTS),
        tuple(TEXTS),
        np.array(TEXTS),
        pd.Series(TEXTS, index=range(9, 3, -1)),
    ):
        torch.testing.assert_close(model.encode(iterable), emb, rtol=1e-5, atol=1e-6)


def test_encode_ids_is_encode(model):
    ids = model.tokenize(TEXTS)
    torch.testing.assert_close(model.encode_ids(ids), model.encode(TEXTS), rtol=0, atol=0)
    emb, recon = model.encode_ids(ids, get_recon_hidden_states=True, normalize_embeddings=True)
    assert recon.shape == (len(TEXTS), K, HIDDEN)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(TEXTS)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"ids\[1\] must be a non-empty"):
        model.encode_ids([ids[0], []])
    with pytest.raises(ValueError, match=r"ids\[0\] holds id -1"):
        model.encode_ids([[-1, *ids[0]]])
    with pytest.raises(ValueError, match=r"outside \[0, "):
        model.encode_ids([[len(model.tokenizer)]])
    with pytest.raises(TypeError, match="ids must be"):
        model.encode_ids("hello")
    with pytest.raises(ValueError, match="max_batch_tokens"):
        model.encode_ids(ids, max_batch_tokens=0)


def test_heads_refold_after_update(model):
    before = model.encode(["short"])
    with torch.no_grad():
        model.align_head.bias += 1.0
    try:
        torch.testing.assert_close(model.encode(["short"]), before + 1.0)
    finally:
        with torch.no_grad():
            model.align_head.bias -= 1.0


def test_bad_input(model):
    empty = model.encode([])
    assert isinstance(empty, torch.Tensor) and empty.shape == (0, DIM)
    assert model.encode([], convert_to_numpy=True).shape == (0, DIM)
    emb, recon = model.encode([], get_recon_hidden_states=True)
    assert emb.shape == (0, DIM) and recon.shape == (0, K, HIDDEN)
    assert bool(torch.isfinite(model.encode("")).all())
    with pytest.raises(TypeError, match="texts must be a str"):
        model.encode(None)
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        model.encode(["ok", None])
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        model.encode([3])
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(["ok"], batch_size=0)
    with pytest.raises(TypeError, match="bytes"):
        model.encode(b"bytes are not text")
    with pytest.raises(TypeError, match=r"texts\[1\] is bytes"):
        model.encode(["ok", b"no"])
    with pytest.raises(TypeError, match="positional arguments"):
        model.encode(["ok"], 512, False, 8)  # our options are keyword-only


def test_gradient_reaches_only_trainable_parts(model):
    ids, mask = model.pad(model.tokenize(TEXTS[:3]))
    hidden = model(ids, mask)
    assert hidden.shape == (3, K, HIDDEN)
    model.align_head(model.recon_head(hidden)).mean(1).square().sum().backward()
    try:
        for param in (model.special_rows, model.recon_head.weight, model.align_head.weight):
            assert param.grad is not None and bool(param.grad.abs().sum() > 0)
        assert all(p.grad is None for p in model.llm.parameters())
    finally:
        model.zero_grad(set_to_none=True)


def test_llama_base_past_table():
    """A Llama base whose table is smaller than the tokenizer: all special ids lie past it."""
    llm = tiny_llama(QWEN_VOCAB_SIZE, hidden_size=32, seed=4)
    model = LLM2VecGenModel.from_base(llm, qwen_tokenizer(), 3, teacher_dim=8, device="cpu")
    assert bool((model.special_ids >= llm.get_input_embeddings().weight.shape[0]).all())
    got = model.encode(["llama text", ""])
    assert got.shape == (2, 8) and bool(torch.isfinite(got).all())


def test_bf16_llm_close_to_fp32(model):
    """The LM in bf16 (the CUDA default): rows, heads and pooling stay fp32; embeddings stay close."""
    import copy

    low = copy.deepcopy(model)
    low.llm.to(torch.bfloat16)
    assert low.special_rows.dtype == low.recon_head.weight.dtype == torch.float32
    got = low.encode(TEXTS)
    assert got.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(got, model.encode(TEXTS), dim=-1)
    assert bool((cos > 0.999).all()), cos.tolist()
    _, recon = low.encode(TEXTS[:2], get_recon_hidden_states=True)
    assert len(low.decode(recon, max_new_tokens=3)) == 2
