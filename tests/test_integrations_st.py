"""sentence-transformers: a SentenceTransformer on LLM2VecGenST gives the vectors of encode, with
prompts as instructions, and survives save + reload."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from integration_checkpoint import DIM, TEXTS
from sentence_transformers import SentenceTransformer

from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION
from llm2vec_gen.integrations.sentence_transformers import LLM2VecGenST, sentence_transformer
from llm2vec_gen.model import LLM2VecGenModel


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_same_vectors_as_encode(model, batch_size):
    st = sentence_transformer(model)
    got = st.encode(TEXTS, batch_size=batch_size)
    assert got.shape == (len(TEXTS), DIM) and got.dtype == np.float32
    if batch_size in (1, 8):  # one text per batch, or one batch: the same padding as encode
        np.testing.assert_array_equal(got, model.encode(TEXTS, batch_size=batch_size))
    else:  # sentence-transformers sorts by characters, encode by tokens: batches pad differently
        np.testing.assert_allclose(got, model.encode(TEXTS, batch_size=batch_size), rtol=0, atol=1e-6)


def test_prompts_are_instructions(model):
    st = sentence_transformer(model)
    np.testing.assert_array_equal(st.encode_query(TEXTS), model.encode(TEXTS, instruction=QUERY_INSTRUCTION))
    np.testing.assert_array_equal(
        st.encode_document(TEXTS), model.encode(TEXTS, instruction=PASSAGE_INSTRUCTION)
    )
    np.testing.assert_array_equal(st.encode(TEXTS, prompt="Say: "), model.encode(TEXTS, instruction="Say: "))


def test_single_text_and_tensor(model):
    st = sentence_transformer(model, normalize=True)
    got = st.encode(TEXTS[0], convert_to_tensor=True)
    want = model.encode(TEXTS[0], normalize_embeddings=True)[0]
    assert got.shape == (DIM,)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert st.get_embedding_dimension() == DIM


def test_save_and_reload(model, tmp_path):
    st = sentence_transformer(model)
    st.save(str(tmp_path / "st"))
    assert (tmp_path / "st" / "modules.json").is_file() and (tmp_path / "st" / "run_config.yml").is_file()
    again = SentenceTransformer(str(tmp_path / "st"), device="cpu", trust_remote_code=True)
    assert isinstance(again[0], LLM2VecGenST)
    np.testing.assert_array_equal(again.encode(TEXTS, batch_size=8), model.encode(TEXTS, batch_size=8))
    # the saved directory is still a plain LLM2Vec-Gen checkpoint
    plain = LLM2VecGenModel.from_pretrained(tmp_path / "st", device="cpu")
    np.testing.assert_array_equal(plain.encode(TEXTS), model.encode(TEXTS))
