"""Evaluation on real human-judged similarity data shipped in the ``gensim`` wheel (LGPL-2.1).

``pip install --no-deps gensim`` puts the files under ``gensim/test/test_data/``; they are located
with ``importlib.util.find_spec`` and read directly (gensim itself is never imported):

- Lee: ``lee.cor`` (50 news documents, one per line, latin-1) and ``similarities0-1.txt`` (a 50 x 50
  tab-separated matrix of mean human similarity, upper triangle): 1,225 document pairs;
- WordSim-353: ``wordsim353.tsv`` (word, word, mean human score 0-10; ``#`` comment lines).

The score of an encoder is the Spearman correlation between the cosine similarity of its
embeddings and the human score, over all pairs. An encoder is any ``embed(texts) -> [n, D]``
callable; ``LLM2VecGenModel`` is wrapped with the paper's STS instruction (``STS_INSTRUCTION``).
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np

from llm2vec_gen.evaluate import spearman
from llm2vec_gen.integrations.instructions import STS_INSTRUCTION

Embed = Callable[[Sequence[str]], np.ndarray]
"""texts -> embeddings [n, D] (any float dtype; cosine is computed here)."""


def data_dir() -> Path:
    """``gensim/test/test_data`` of the installed gensim wheel; ImportError naming the install."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the human-judged evaluation data needs `pip install --no-deps gensim`")
    return Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"


@cache
def lee_documents() -> tuple[str, ...]:
    """The 50 Lee news documents, in file order."""
    lines = (data_dir() / "lee.cor").read_text(encoding="latin-1").splitlines()
    docs = tuple(line.strip() for line in lines if line.strip())
    if len(docs) != 50:
        raise ValueError(f"{data_dir() / 'lee.cor'}: expected 50 documents, found {len(docs)}")
    return docs


@cache
def lee_pairs() -> tuple[tuple[int, int, float], ...]:
    """The 1,225 document pairs ``(i, j, mean human similarity in [0, 1])``, i < j."""
    path = data_dir() / "similarities0-1.txt"
    matrix = np.loadtxt(path, delimiter="\t", dtype=np.float64)
    if matrix.shape != (50, 50):
        raise ValueError(f"{path}: expected a 50 x 50 matrix, got {matrix.shape}")
    return tuple((i, j, float(matrix[i, j])) for i in range(50) for j in range(i + 1, 50))


@cache
def wordsim353() -> tuple[tuple[str, str, float], ...]:
    """The WordSim-353 pairs ``(word1, word2, mean human score 0-10)``."""
    with open(data_dir() / "wordsim353.tsv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    return tuple((a.strip(), b.strip(), float(s)) for a, b, s in rows)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def lee_spearman(embed: Embed) -> float:
    """Spearman of cosine vs human similarity over the 1,225 Lee document pairs."""
    emb = _unit(embed(list(lee_documents())))
    pairs = lee_pairs()
    cos = np.array([emb[i] @ emb[j] for i, j, _ in pairs])
    return spearman(cos, np.array([s for _, _, s in pairs]))


def wordsim_spearman(embed: Embed) -> float:
    """Spearman of cosine vs human score over the WordSim-353 word pairs (each word embedded once)."""
    pairs = wordsim353()
    words = sorted({w for a, b, _ in pairs for w in (a, b)})
    emb = dict(zip(words, _unit(embed(words)), strict=True))
    cos = np.array([emb[a] @ emb[b] for a, b, _ in pairs])
    return spearman(cos, np.array([s for _, _, s in pairs]))


def human_eval(embed: Embed) -> dict[str, float]:
    """``{"lee": rho, "wordsim353": rho}`` for one encoder."""
    return {"lee": lee_spearman(embed), "wordsim353": wordsim_spearman(embed)}


def model_embed(model, instruction: str | None = STS_INSTRUCTION, batch_size: int = 16) -> Embed:
    """An ``LLM2VecGenModel`` as an ``Embed`` (fp32 numpy), with the paper's STS instruction."""
    return lambda texts: model.encode(
        list(texts), batch_size=batch_size, instruction=instruction, convert_to_numpy=True
    )


def teacher_embed(teacher, batch_size: int = 16) -> Embed:
    """A teacher of ``train.teach.load_teacher`` (MiniLM, or an LLM pooled) as an ``Embed``: texts
    sorted by length and encoded ``batch_size`` at a time, returned in input order."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), teacher.embedding_dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = teacher.encode([texts[i] for i in idx]).float().numpy()
        return out

    return embed


class EmbedEncoder:
    """An ``Embed`` behind the ``encode`` signature that ``evaluate.evaluate_retrieval`` calls; the
    instruction is ignored (baselines embed the raw text)."""

    def __init__(self, embed: Embed):
        self.embed = embed

    def encode(self, texts: Sequence[str], *, normalize_embeddings: bool = False, **_ignored) -> np.ndarray:
        """Embeddings [n, D] fp32 (L2-normalised when ``normalize_embeddings``)."""
        out = np.asarray(self.embed(list(texts)), dtype=np.float32)
        return _unit(out).astype(np.float32) if normalize_embeddings else out
