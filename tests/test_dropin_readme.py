"""Code written for llm2vec-gen 0.1.3 runs unchanged: the README's examples verbatim and the call
patterns of its scripts (mteb_eval.py, load_model.py, logit_lens_analysis.py), on a tiny Qwen3
checkpoint written the reference's way (PEFT's own adapter, ``llm2vec_gen.tiny.tiny_checkpoint``);
values against the fp64 reference-style forward (tests/reference_forward.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dropin_examples import CLUSTERING, COSINE_EXAMPLES, DECODE_TEXT, DECODING, load, run
from reference_forward import reference_forward

from llm2vec_gen.decode import eos_token_ids, greedy_decode
from llm2vec_gen.tiny import tiny_checkpoint

RECON_ATOL = 1e-4


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("released"), hidden_size=64, teacher_dim=48, seed=11)


@pytest.fixture(scope="module")
def namespace(released) -> dict:
    """The README's loading lines, run as written (Hub id -> the local checkpoint)."""
    return load(str(released))


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    return a @ b.T


@pytest.mark.parametrize("example", sorted(COSINE_EXAMPLES))
def test_readme_cosine_examples(namespace, released, example):
    printed = run(COSINE_EXAMPLES[example], namespace)
    assert printed.startswith("tensor([[")
    cos = namespace["cos_sim"]
    assert isinstance(cos, torch.Tensor) and cos.shape == (2, 2) and cos.dtype == torch.float32
    left = "q_reps"
    right = "d_reps" if "d_reps" in COSINE_EXAMPLES[example] else "p_reps"
    for name in (left, right):
        reps = namespace[name]
        assert (
            isinstance(reps, torch.Tensor)
            and reps.shape == (2, 48)
            and reps.device == namespace["model"].device
        )
    pairs = {"retrieval": ("q_instruction", "queries", "d_instruction", "documents"),
             "similarity": ("instruction", "queries", "instruction", "pairs"),
             "classification": ("q_instruction", "queries", "p_instruction", "pairs")}[example]  # fmt: skip
    texts = [[namespace[pre] + t for t in namespace[items]] for pre, items in (pairs[:2], pairs[2:])]
    want = _cosines(reference_forward(released, texts[0])[0], reference_forward(released, texts[1])[0])
    torch.testing.assert_close(cos.double(), want, rtol=0, atol=1e-5)


def test_readme_clustering(namespace, released):
    printed = run(CLUSTERING, namespace)
    assert printed.splitlines() == [
        f"[{label}] {s}" for s, label in zip(namespace["sentences"], namespace["labels"], strict=True)
    ]
    reps = namespace["reps"]
    assert isinstance(reps, np.ndarray) and reps.shape == (4, 48) and reps.dtype == np.float32
    want = reference_forward(released, [namespace["instruction"] + s for s in namespace["sentences"]])[0]
    np.testing.assert_allclose(reps, want.numpy(), rtol=1e-4, atol=1e-5)


def test_readme_decoding(namespace, released):
    printed = run(DECODING, namespace)
    model, recon = namespace["model"], namespace["recon_hidden_states"]
    assert recon.shape == (1, model.num_encode_tokens, 64) and recon.dtype == torch.float32
    _, want_recon, _ = reference_forward(released, [DECODE_TEXT])
    torch.testing.assert_close(recon.double(), want_recon, rtol=0, atol=RECON_ATOL)
    answer = namespace["answer"]
    assert isinstance(answer, str) and printed == answer + "\n"
    ids = greedy_decode(model.llm, want_recon.float(), 55, eos_token_ids(model.llm, model.tokenizer))
    assert answer == model.tokenizer.decode(ids[0], skip_special_tokens=True)


def test_mteb_eval_model_wrapper_pattern(namespace, released):
    """scripts/mteb_eval.py ModelWrapper._batch_encode: sorted batches of encode(sentences,
    max_length=...), torch.cat, order restored, .to(torch.float32), .cpu()."""
    model = namespace["model"]
    sentences = [["Summarize the following passage:", s] for s in ("a b c", "hello", "x " * 20, "bread")]
    instruction_sentences = [s[0].strip() + " " + s[1].strip() for s in sentences]
    length_sorted_idx = np.argsort([-len(sen) for sen in instruction_sentences])
    sorted_sentences = [instruction_sentences[i] for i in length_sorted_idx]
    parts = [
        model.encode(sorted_sentences[i : i + 3], max_length=256) for i in range(0, len(sorted_sentences), 3)
    ]
    all_embeddings = torch.cat(parts, dim=0)
    all_embeddings = all_embeddings[np.argsort(length_sorted_idx)]
    enc = all_embeddings.to(torch.float32).cpu()
    want = reference_forward(released, instruction_sentences, max_length=256)[0]
    torch.testing.assert_close(enc.double(), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.encode(instruction_sentences, 256), enc, rtol=1e-5, atol=1e-6)


def test_load_model_script_pattern(namespace):
    """scripts/load_model.py: encode a str, generate from the same text with its embedding."""
    model = namespace["model"]
    input_text = "Is Montreal located in Canada?"
    enc = model.encode(input_text)
    answer, enc_before_answer = model.generate(input_text, max_new_tokens=100, get_align_hidden_states=True)
    assert isinstance(answer, str) and enc.shape == enc_before_answer.shape == (1, 48)
    assert enc_before_answer.equal(enc)


def test_logit_lens_script_pattern(released):
    """scripts/logit_lens_analysis.py: heads removed through model.model, then the LM head of
    model.model.decoder_model over the encoder's raw hidden states."""
    from llm2vec_gen.models import LLM2VecGenModel

    model = LLM2VecGenModel.from_pretrained(str(released))
    model.model.alignment_mlp = None
    model.model.reconstruction_mlp = None
    input_texts = ["where do polar bears live?", "what is a soft prompt"]
    _, dec_embeddings = model.encode(input_texts, get_recon_hidden_states=True)
    lm_head = model.model.decoder_model.lm_head
    logits = lm_head(dec_embeddings)
    topk_values, topk_indices = torch.topk(logits, k=5, dim=-1)
    strings = [model.tokenizer.decode([tid]) for tid in topk_indices[0, 0].tolist()]
    assert len(strings) == 5 and topk_values.shape == (2, model.num_encode_tokens, 5)
    _, _, hidden = reference_forward(released, input_texts)
    torch.testing.assert_close(dec_embeddings.double(), hidden, rtol=0, atol=RECON_ATOL)
    assert model.model.reconstruction_mlp is None and model.embedding_dim == 64
