"""mteb v2: the encoder meets EncoderProtocol, picks the paper's instructions, and mteb.evaluate on
locally defined retrieval and STS tasks (no hub) gives finite scores in range."""

from __future__ import annotations

import math

import mteb
import numpy as np
import pytest
from integration_checkpoint import DIM
from mteb.models.models_protocols import EncoderProtocol
from mteb.types import PromptType

from llm2vec_gen.integrations.instructions import (
    PASSAGE_INSTRUCTION,
    QUERY_INSTRUCTION,
    STS_INSTRUCTION,
    TASK_INSTRUCTIONS,
    TYPE_INSTRUCTIONS,
)
from llm2vec_gen.integrations.mteb import LLM2VecGenMTEB, local_retrieval_task, local_sts_task, model_meta
from llm2vec_gen.integrations.sample_data import SAMPLE_CORPUS, SAMPLE_QRELS, SAMPLE_QUERIES, SAMPLE_STS


class _Spy:
    """Wraps a model and records (instruction, texts) of every encode call."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.embedding_dim = model.embedding_dim

    def parameters(self):
        return self.model.parameters()

    def encode(self, texts, **kwargs):
        self.calls.append((kwargs["instruction"], list(texts)))
        return self.model.encode(texts, **kwargs)


def test_protocol_and_meta(model):
    encoder = LLM2VecGenMTEB(model=model)
    assert isinstance(encoder, EncoderProtocol)
    meta = encoder.mteb_model_meta
    assert meta.name == "local/llm2vec-gen" and meta.embed_dim == DIM and meta.use_instructions
    assert meta.n_parameters == sum(p.numel() for p in model.parameters())
    assert meta.similarity_fn_name.value == "cosine"
    assert model_meta(name="McGill-NLP/x").name == "McGill-NLP/x"


def test_instruction_choice(model):
    encoder = LLM2VecGenMTEB(model=model, instructions={"Clustering": "Topic: "})
    retrieval = local_retrieval_task("LocalQA", {}, {}, {}).metadata
    sts = local_sts_task("LocalSTS", []).metadata
    arguana = retrieval.model_copy(update={"name": "ArguAna"})
    clustering = sts.model_copy(update={"type": "Clustering"})
    classification = sts.model_copy(update={"type": "Classification"})
    assert encoder.instruction(retrieval, PromptType.query) == QUERY_INSTRUCTION
    assert encoder.instruction(retrieval, PromptType.document) == PASSAGE_INSTRUCTION
    assert encoder.instruction(arguana, PromptType.query) == TASK_INSTRUCTIONS["ArguAna"]
    assert encoder.instruction(arguana, PromptType.document) == PASSAGE_INSTRUCTION
    assert encoder.instruction(sts, None) == STS_INSTRUCTION
    assert encoder.instruction(clustering, None) == "Topic: "
    assert encoder.instruction(classification, None) == TYPE_INSTRUCTIONS["Classification"]
    for instruction in [*TASK_INSTRUCTIONS.values(), *TYPE_INSTRUCTIONS.values()]:
        assert instruction.endswith(": ")  # "instruction + text" == the paper's "instruction text"


def test_evaluate_local_tasks(model):
    spy = _Spy(model)
    encoder = LLM2VecGenMTEB(model=spy)
    tasks = [
        local_retrieval_task("LocalQA", SAMPLE_QUERIES, SAMPLE_CORPUS, SAMPLE_QRELS),
        local_sts_task("LocalSTS", SAMPLE_STS),
    ]
    result = mteb.evaluate(encoder, tasks, cache=None, show_progress_bar=False)
    scores = {r.task_name: r.scores["test"][0] for r in result.task_results}
    qa, sts = scores["LocalQA"], scores["LocalSTS"]
    for name in ("ndcg_at_10", "recall_at_10", "map_at_10", "mrr_at_10"):
        assert math.isfinite(qa[name]) and 0.0 <= qa[name] <= 1.0, (name, qa[name])
    assert qa["recall_at_100"] == 1.0  # 24 documents: every relevant one is within the top 100
    for name in ("cosine_spearman", "cosine_pearson"):
        assert math.isfinite(sts[name]) and -1.0 <= sts[name] <= 1.0, (name, sts[name])

    by_instruction = {}
    for instruction, texts in spy.calls:
        by_instruction.setdefault(instruction, []).extend(texts)
    assert sorted(by_instruction[QUERY_INSTRUCTION]) == sorted(SAMPLE_QUERIES.values())
    assert sorted(by_instruction[PASSAGE_INSTRUCTION]) == sorted(SAMPLE_CORPUS.values())
    sentences = {s for a, b, _ in SAMPLE_STS for s in (a, b)}
    assert set(by_instruction[STS_INSTRUCTION]) == sentences


def test_encode_matches_model(model):
    encoder = LLM2VecGenMTEB(model=model)
    task = local_sts_task("LocalSTS", SAMPLE_STS)
    texts = [" What is the capital of France?  ", "hi"]
    loader = [{"text": texts}]
    got = encoder.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default")
    want = model.encode([t.strip() for t in texts], instruction=STS_INSTRUCTION)
    assert got.dtype == np.float32 and got.shape == (2, DIM)
    np.testing.assert_array_equal(got, want)


def test_meta_loads_checkpoint(ckpt, model):
    encoder = model_meta(model, name="local/tiny", path=ckpt).load_model(device="cpu")
    assert isinstance(encoder, LLM2VecGenMTEB)
    np.testing.assert_array_equal(encoder.model.encode(["hi"]), model.encode(["hi"]))
    with pytest.raises(ValueError, match="needs a checkpoint path"):
        LLM2VecGenMTEB()
