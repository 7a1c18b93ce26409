"""A small local evaluation: retrieval (nDCG@k, recall@k, MRR@k) and STS (Spearman), no hub needed.

The encoder is anything with our ``encode(texts, batch_size=, max_length=, instruction=,
normalize_embeddings=, convert_to_numpy=)`` (``LLM2VecGenModel``). Queries and documents get the
instructions of the paper's evaluation (``llm2vec_gen.integrations.instructions``); scores are
cosine similarities. Without data the bundled sample set is used; a BEIR-layout directory
(``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) can be given instead.

Gains are linear in the relevance grade (``rel / log2(rank + 1)``), as in trec_eval's ``ndcg_cut``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION, STS_INSTRUCTION
from llm2vec_gen.io.rows import iter_rows

RetrievalSet = tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]


def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k of one ranking (document ids, best first) against graded ``relevant`` {doc id: grade}."""
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """Fraction of the relevant (grade > 0) documents found in the top ``k``."""
    positives = {d for d, g in relevant.items() if g > 0}
    return len(positives.intersection(ranked[:k])) / len(positives) if positives else 0.0


def mrr_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (0 if none)."""
    return next((1.0 / (i + 1) for i, d in enumerate(ranked[:k]) if relevant.get(d, 0) > 0), 0.0)


def sample_retrieval_set() -> RetrievalSet:
    """The bundled set: ``(queries, corpus, qrels)`` = ({qid: text}, {did: text}, {qid: {did: grade}})."""
    from llm2vec_gen.integrations.sample_data import SAMPLE_CORPUS, SAMPLE_QRELS, SAMPLE_QUERIES

    return dict(SAMPLE_QUERIES), dict(SAMPLE_CORPUS), {q: dict(r) for q, r in SAMPLE_QRELS.items()}


def load_beir(path: str | Path, split: str = "test") -> RetrievalSet:
    """Reads a BEIR-layout directory: corpus.jsonl (``_id``, ``title``, ``text``), queries.jsonl
    (``_id``, ``text``) and qrels/<split>.tsv (header, then query-id, corpus-id, score)."""
    path = Path(path)
    qrels_path = path / "qrels" / f"{split}.tsv"
    for needed in (path / "corpus.jsonl", path / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: missing (expected a BEIR-layout directory)")

    def records(name: str) -> list[dict[str, Any]]:
        return [record for _, record in iter_rows(path / name)]

    corpus = {
        str(r["_id"]): (str(r.get("title") or "") + " " + str(r["text"])).strip()
        for r in records("corpus.jsonl")
    }
    queries = {str(r["_id"]): str(r["text"]) for r in records("queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    for _, record in iter_rows(qrels_path):  # columns by position: query-id, corpus-id, score
        query_id, corpus_id, score = list(record.values())[:3]
        qrels.setdefault(query_id, {})[corpus_id] = int(float(score))
    return queries, corpus, qrels


def _embed(model: Any, texts: list[str], instruction: str, batch_size: int, max_length: int) -> np.ndarray:
    out = model.encode(
        [t.strip() for t in texts],
        batch_size=batch_size,
        max_length=max_length,
        instruction=instruction,
        normalize_embeddings=True,
        convert_to_numpy=True,
    )
    return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def evaluate_retrieval(
    model: Any,
    data: RetrievalSet | None = None,
    *,
    k: int = 10,
    query_instruction: str = QUERY_INSTRUCTION,
    passage_instruction: str = PASSAGE_INSTRUCTION,
    batch_size: int = 32,
    max_length: int = 512,
) -> dict[str, float]:
    """Ranks the whole corpus for every query with a relevance judgement; returns the mean
    ``ndcg@k``, ``recall@k``, ``mrr@k`` (each in [0, 1]) and ``num_queries``."""
    queries, corpus, qrels = data if data is not None else sample_retrieval_set()
    qids = [q for q in queries if any(g > 0 for g in qrels.get(q, {}).values())]
    if not qids or not corpus:
        raise ValueError("nothing to evaluate: no query has a relevant document, or the corpus is empty")
    dids = list(corpus)
    q = _embed(model, [queries[i] for i in qids], query_instruction, batch_size, max_length)
    d = _embed(model, [corpus[i] for i in dids], passage_instruction, batch_size, max_length)
    scores = q @ d.T  # [Q, D] cosine similarities
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    metrics = {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0, f"mrr@{k}": 0.0}
    for row, qid in enumerate(qids):
        ranked = [dids[j] for j in top[row]]
        metrics[f"ndcg@{k}"] += ndcg_at_k(ranked, qrels[qid], k)
        metrics[f"recall@{k}"] += recall_at_k(ranked, qrels[qid], k)
        metrics[f"mrr@{k}"] += mrr_at_k(ranked, qrels[qid], k)
    metrics = {name: value / len(qids) for name, value in metrics.items()}
    metrics["num_queries"] = float(len(qids))
    return metrics


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (ties averaged), in [-1, 1]."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def evaluate_sts(
    model: Any,
    pairs: list[tuple[str, str, float]] | None = None,
    *,
    instruction: str = STS_INSTRUCTION,
    batch_size: int = 32,
    max_length: int = 512,
) -> dict[str, float]:
    """Spearman correlation between cosine similarities and gold scores of ``(s1, s2, score)`` pairs
    (the bundled pairs by default); returns ``cosine_spearman`` in [-1, 1] and ``num_pairs``."""
    if pairs is None:
        from llm2vec_gen.integrations.sample_data import SAMPLE_STS as pairs
    if len(pairs) < 2:
        raise ValueError("STS needs at least two scored pairs")
    a = _embed(model, [p[0] for p in pairs], instruction, batch_size, max_length)
    b = _embed(model, [p[1] for p in pairs], instruction, batch_size, max_length)
    cos = (a * b).sum(axis=1)
    return {"cosine_spearman": spearman(cos, np.array([p[2] for p in pairs])), "num_pairs": float(len(pairs))}
