"""sentence-transformers integration: ``LLM2VecGenST``, an input module that makes a
``SentenceTransformer`` encode with exactly the computation of ``LLM2VecGenModel.encode``.

    from llm2vec_gen.integrations.sentence_transformers import sentence_transformer

    st = sentence_transformer("/path/to/checkpoint")          # or sentence_transformer(loaded_model)
    q = st.encode_query(["how do I bake bread?"])             # "Generate a passage that best answers ..."
    d = st.encode_document(["Sourdough needs a starter ..."]) # "Summarize the following passage: "
    st.save("st-model")                                       # a checkpoint + modules.json
    SentenceTransformer("st-model", trust_remote_code=True)   # our class is outside sentence-transformers

The module calls the model's public pieces in order: ``tokenize`` (the one query tokeniser),
``pad`` (left padding), ``forward`` (the K final hidden states) and ``pool`` (folded heads), and
returns ``sentence_embedding`` fp32 [B, D]. A prompt given to ``SentenceTransformer.encode``
(``prompt=`` or ``prompt_name=``) is the instruction. The saved directory is a regular LLM2Vec-Gen
checkpoint plus sentence-transformers' ``modules.json`` and this module's config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import InputModule

from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION, STS_INSTRUCTION
from llm2vec_gen.model import LLM2VecGenModel

PROMPTS = {"query": QUERY_INSTRUCTION, "document": PASSAGE_INSTRUCTION, "sts": STS_INSTRUCTION}
"""The paper's evaluation instructions as sentence-transformers prompts (``prompt_name=``)."""


class LLM2VecGenST(InputModule):
    """sentence-transformers input module around an ``LLM2VecGenModel`` (its only module)."""

    config_file_name = "llm2vec_gen_st_config.json"
    config_keys = ["max_seq_length", "normalize"]
    save_in_root = True

    def __init__(self, model: LLM2VecGenModel, max_seq_length: int = 512, normalize: bool = False) -> None:
        super().__init__()
        self.model = model
        self.max_seq_length = max_seq_length
        self.normalize = normalize

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def preprocess(
        self, inputs: Sequence[str], prompt: str | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Token ids of ``prompt + text + specials``, left-padded: input_ids, attention_mask [B, T] int64."""
        rows = self.model.tokenize(list(inputs), self.max_seq_length, instruction=prompt)
        input_ids, attention_mask = self.model.pad(rows)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Adds ``sentence_embedding`` fp32 [B, D] (and ``token_embeddings``, the final hidden states
        [B, N, H] at the N special positions) to ``features``."""
        h = self.model(features["input_ids"], features["attention_mask"])  # [B, N, H]
        features["token_embeddings"] = h
        features["sentence_embedding"] = self.model.pool(h, self.normalize)
        return features

    def get_embedding_dimension(self) -> int:
        return self.model.embedding_dim

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Writes the LLM2Vec-Gen checkpoint into ``output_path`` plus this module's config."""
        self.model.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> LLM2VecGenST:
        """Loads the checkpoint saved by :meth:`save` (a local directory or a Hub repo id)."""
        config = cls.load_config(model_name_or_path, subfolder=subfolder)
        root = f"{model_name_or_path}/{subfolder}" if subfolder else model_name_or_path
        return cls(LLM2VecGenModel.from_pretrained(root, device="cpu"), **config)


def sentence_transformer(
    model: LLM2VecGenModel | str,
    device: str | None = None,
    max_seq_length: int = 512,
    normalize: bool = False,
) -> SentenceTransformer:
    """A ``SentenceTransformer`` over an LLM2Vec-Gen model (or checkpoint path), cosine similarity,
    with the prompts ``query``, ``document`` and ``sts`` of the paper's evaluation."""
    if isinstance(model, str):
        model = LLM2VecGenModel.from_pretrained(model, device=device)
    module = LLM2VecGenST(model, max_seq_length=max_seq_length, normalize=normalize)
    return SentenceTransformer(
        modules=[module],
        device=device or str(model.device),
        prompts=dict(PROMPTS),
        similarity_fn_name="cosine",
    )
