"""The local evaluation: metrics against hand-computed values and scipy, an oracle encoder scores
1.0, a BEIR directory loads, and the instructions reach the encoder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from llm2vec_gen.evaluate import (
    evaluate_retrieval,
    evaluate_sts,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    sample_retrieval_set,
    spearman,
)
from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION, STS_INSTRUCTION


class _Oracle:
    """Embeds a text as the one-hot of the bundled query/passage pair it belongs to."""

    def __init__(self, noise: float = 0.0):
        queries, corpus, qrels = sample_retrieval_set()
        self.slot = {queries[q]: i for i, q in enumerate(qrels)}
        self.slot.update({corpus[next(iter(qrels[q]))]: i for i, q in enumerate(qrels)})
        self.noise, self.instructions = noise, set()

    def encode(self, texts, batch_size, max_length, instruction, normalize_embeddings, convert_to_numpy):
        self.instructions.add(instruction)
        out = np.full((len(texts), 64), self.noise, np.float32)
        for row, text in enumerate(texts):
            out[row, self.slot.get(text, 63)] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_metrics_by_hand():
    rel = {"a": 2, "b": 1, "z": 0}
    assert ndcg_at_k(["a", "b", "c"], rel) == pytest.approx(1.0)
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    assert ndcg_at_k(["b", "a"], rel) == pytest.approx(dcg / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(["c", "d"], rel) == 0.0 and ndcg_at_k(["a"], {"a": 0}) == 0.0
    assert recall_at_k(["c", "b", "a"], rel, k=2) == 0.5
    assert mrr_at_k(["c", "z", "b"], rel) == pytest.approx(1 / 3)
    assert mrr_at_k(["c"], rel) == 0.0


def test_spearman_matches_scipy():
    rng = np.random.default_rng(1)
    for n in (2, 7, 31):
        a = np.concatenate([[0.0, 4.0], rng.integers(0, 5, n - 2)])  # not constant, with ties
        b = rng.standard_normal(n)
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman(np.ones(3), np.arange(3.0)) == 0.0


def test_oracle_is_perfect_and_instructions_reach_encoder():
    oracle = _Oracle()
    metrics = evaluate_retrieval(oracle, k=10)
    assert metrics == {"ndcg@10": 1.0, "recall@10": 1.0, "mrr@10": 1.0, "num_queries": 16.0}
    assert oracle.instructions == {QUERY_INSTRUCTION, PASSAGE_INSTRUCTION}
    sts = evaluate_sts(oracle, [("a", "a b", 5.0), ("c", "d", 1.0), ("e", "f", 0.0)])
    assert math.isfinite(sts["cosine_spearman"]) and sts["num_pairs"] == 3.0
    assert STS_INSTRUCTION in oracle.instructions


def test_sample_sts_in_range():
    scores = evaluate_sts(_Oracle(noise=0.1))
    assert -1.0 <= scores["cosine_spearman"] <= 1.0 and scores["num_pairs"] == 12.0


def test_load_beir(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Bread", "text": "Bake it."})
        + "\n"
        + json.dumps({"_id": "d2", "text": "x"})
    )
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "bread?"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    queries, corpus, qrels = load_beir(tmp_path)
    assert queries == {"q1": "bread?"} and corpus == {"d1": "Bread Bake it.", "d2": "x"}
    assert qrels == {"q1": {"d1": 1, "d2": 0}}
    with pytest.raises(FileNotFoundError, match="dev.tsv: missing"):
        load_beir(tmp_path, split="dev")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_retrieval(_Oracle(), (queries, corpus, {"q1": {"d2": 0}}))
