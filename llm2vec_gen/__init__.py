"""llm2vec_gen: fast LLM2Vec-Gen generative embeddings (Triton and C++ kernels)."""

from llm2vec_gen import ops
from llm2vec_gen._dispatch import backend_for

__version__ = "0.1.0"

__all__ = ["ops", "backend_for", "__version__"]
