"""mteb (v2) integration: an encoder implementing ``mteb.models.EncoderProtocol`` with the paper's
per-task instructions, its ``ModelMeta``, and local tasks over your own data (no hub).

    import mteb
    from llm2vec_gen.integrations.mteb import LLM2VecGenMTEB, local_retrieval_task

    encoder = LLM2VecGenMTEB("/path/to/checkpoint")          # or LLM2VecGenMTEB(model=loaded_model)
    mteb.evaluate(encoder, mteb.get_tasks(["STS12", "ArguAna"]))             # hub tasks
    mteb.evaluate(encoder, local_retrieval_task("MyQA", queries, corpus, qrels), cache=None)

Instructions: corpus documents always get "Summarize the following passage: "; everything else
gets the task's own instruction from the paper (``instructions.TASK_INSTRUCTIONS``) or the default
for its type (``instructions.TYPE_INSTRUCTIONS``), overridable with ``instructions={task name or
type: instruction}``. Inputs are stripped and joined to the instruction as the paper's evaluation
did; embeddings come back fp32 [N, D] (not normalised: mteb's cosine similarity normalises).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset, DatasetDict
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, TASK_INSTRUCTIONS, TYPE_INSTRUCTIONS

if TYPE_CHECKING:
    import numpy as np
    from torch.utils.data import DataLoader

    from llm2vec_gen.model import LLM2VecGenModel

REFERENCE = "https://github.com/McGill-NLP/llm2vec-gen"
CITATION = """@article{llm2vecgen2026,
  title={LLM2Vec-Gen: Generative Embeddings from Large Language Models},
  author={BehnamGhader, Parishad and Adlakha, Vaibhav and others},
  journal={arXiv preprint arXiv:2603.10913},
  year={2026}
}"""


def model_meta(
    model: LLM2VecGenModel | None = None,
    *,
    name: str = "local/llm2vec-gen",
    path: str | Path | None = None,
    revision: str | None = None,
    max_length: int = 512,
    loader_kwargs: dict[str, Any] | None = None,
) -> ModelMeta:
    """The mteb ``ModelMeta`` of an LLM2Vec-Gen encoder; ``name`` must read "organisation/model".

    With ``path``, ``meta.load_model()`` loads that checkpoint into :class:`LLM2VecGenMTEB`.
    Parameter count and embedding width are read from ``model`` when given.
    """
    n_params = sum(p.numel() for p in model.parameters()) if model is not None else None
    return ModelMeta(
        loader=LLM2VecGenMTEB,
        loader_kwargs={**({"path": str(path)} if path is not None else {}), **(loader_kwargs or {})},
        name=name,
        revision=revision,
        release_date=None,
        languages=["eng-Latn"],
        n_parameters=n_params,
        memory_usage_mb=None,
        max_tokens=max_length,
        embed_dim=getattr(model, "embedding_dim", None) if model is not None else None,
        license="mit",
        open_weights=True,
        public_training_code=REFERENCE,
        public_training_data=None,
        framework=["PyTorch"],
        reference=REFERENCE,
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=True,
        training_datasets=None,
        citation=CITATION,
    )


def _meta_name(model_name: str | None, path: str | None) -> str:
    """A hub-style name is kept; a local checkpoint becomes ``local/<directory name>``."""
    if model_name and "/" in model_name and not Path(model_name).exists():
        return model_name
    source = path or model_name
    return f"local/{Path(source).name}" if source else "local/llm2vec-gen"


class LLM2VecGenMTEB(AbsEncoder):
    """mteb encoder over an ``LLM2VecGenModel``: ``encode`` returns fp32 [N, D] numpy arrays.

    Build it from a checkpoint (``LLM2VecGenMTEB(path_or_name)``, also how ``ModelMeta.load_model``
    calls it with ``path=``) or around a loaded model (``LLM2VecGenMTEB(model=m)``).
    """

    def __init__(
        self,
        model_name: str | None = None,
        revision: str | None = None,
        *,
        model: LLM2VecGenModel | None = None,
        path: str | None = None,
        device: str | None = None,
        dtype: Any = None,
        max_length: int = 512,
        instructions: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        if model is None:
            from llm2vec_gen.model import LLM2VecGenModel

            source = path or model_name
            if source is None:
                raise ValueError("LLM2VecGenMTEB needs a checkpoint path (model_name or path=) or model=")
            model = LLM2VecGenModel.from_pretrained(source, device=device, dtype=dtype)
        self.model = model
        self.max_length = max_length
        self.instructions = dict(instructions or {})
        self.mteb_model_meta = model_meta(
            model, name=_meta_name(model_name, path), path=path, revision=revision, max_length=max_length
        )

    def instruction(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str:
        """The instruction for this task side: user override, passage, per task, per task type."""
        if prompt_type == PromptType.document:
            return self.instructions.get(f"{task_metadata.name}-document", PASSAGE_INSTRUCTION)
        for key in (task_metadata.name, task_metadata.type):
            if key in self.instructions:
                return self.instructions[key]
        if task_metadata.name in TASK_INSTRUCTIONS:
            return TASK_INSTRUCTIONS[task_metadata.name]
        return TYPE_INSTRUCTIONS.get(task_metadata.type, TYPE_INSTRUCTIONS["STS"])

    def encode(
        self,
        inputs: DataLoader,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Encodes every ``batch["text"]`` of ``inputs`` with the task's instruction: fp32 [N, D]."""
        texts = [str(t).strip() for batch in inputs for t in batch["text"]]
        return self.model.encode(
            texts,
            batch_size=kwargs.get("batch_size", 32),
            max_length=self.max_length,
            instruction=self.instruction(task_metadata, prompt_type),
            convert_to_numpy=True,
            show_progress_bar=kwargs.get("show_progress_bar", False),
        )


def _metadata(name: str, task_type: str, main_score: str, description: str) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=description,
        reference=None,
        dataset={"path": f"local/{name}", "revision": "local"},
        type=task_type,
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation="",
    )


def local_retrieval_task(
    name: str,
    queries: dict[str, str],
    corpus: dict[str, str],
    qrels: dict[str, dict[str, int]],
) -> AbsTaskRetrieval:
    """An mteb retrieval task over in-memory data ({qid: text}, {doc id: text}, {qid: {doc id: grade}}),
    split "test", main score nDCG@10. Queries get the Retrieval-type instruction unless ``name`` has one."""

    def load_data(self: AbsTaskRetrieval, num_proc: int | None = None, **kwargs: Any) -> None:
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": q, "text": t} for q, t in queries.items()]),
            corpus=Dataset.from_list([{"id": d, "text": t, "title": ""} for d, t in corpus.items()]),
            relevant_docs={q: dict(r) for q, r in qrels.items()},
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True

    metadata = _metadata(name, "Retrieval", "ndcg_at_10", f"Local retrieval task {name}.")
    cls = type(name, (AbsTaskRetrieval,), {"metadata": metadata, "load_data": load_data})
    return cls()


def local_sts_task(
    name: str, pairs: list[tuple[str, str, float]], min_score: float = 0.0, max_score: float = 5.0
):
    """An mteb STS task over ``(sentence1, sentence2, score)`` pairs, split "test", main score
    cosine Spearman; scores lie in ``[min_score, max_score]``."""

    def load_data(self: AbsTaskSTS, num_proc: int | None = None, **kwargs: Any) -> None:
        columns = {"sentence1": [p[0] for p in pairs], "sentence2": [p[1] for p in pairs]}
        columns["score"] = [float(p[2]) for p in pairs]
        self.dataset = DatasetDict({"test": Dataset.from_dict(columns)})
        self.data_loaded = True

    metadata = _metadata(name, "STS", "cosine_spearman", f"Local STS task {name}.")
    attrs = {"metadata": metadata, "load_data": load_data, "min_score": min_score, "max_score": max_score}
    return type(name, (AbsTaskSTS,), attrs)()
