"""llm2vec_gen: fast LLM2Vec-Gen generative embeddings (Triton and C++ kernels)."""

from llm2vec_gen import ops
from llm2vec_gen._dispatch import backend_for

__version__ = "0.1.0"

__all__ = ["ops", "backend_for", "__version__", "LLM2VecGenModel"]


def __getattr__(name: str):
    if name == "LLM2VecGenModel":  # lazy: importing the model pulls in transformers
        from llm2vec_gen.model import LLM2VecGenModel

        return LLM2VecGenModel
    raise AttributeError(f"module 'llm2vec_gen' has no attribute {name!r}")
