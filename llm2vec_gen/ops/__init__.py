"""The ops: each is one function that dispatches to torch, C++ or Triton (see ``_dispatch``).

``<op>_reference`` is the plain PyTorch version of each op, the oracle of the tests.
"""

from llm2vec_gen.ops.appended_attention import appended_attention, appended_attention_reference
from llm2vec_gen.ops.distill_loss import distill_loss, distill_loss_reference
from llm2vec_gen.ops.encode_tail import encode_tail, encode_tail_reference, fold_heads
from llm2vec_gen.ops.fused_linear_cross_entropy import (
    fused_linear_cross_entropy,
    fused_linear_cross_entropy_reference,
)
from llm2vec_gen.ops.special_token_embedding import (
    SpecialTokenEmbedding,
    special_token_embedding,
    special_token_embedding_reference,
)

__all__ = [
    "appended_attention",
    "appended_attention_reference",
    "SpecialTokenEmbedding",
    "distill_loss",
    "distill_loss_reference",
    "fused_linear_cross_entropy",
    "fused_linear_cross_entropy_reference",
    "encode_tail",
    "encode_tail_reference",
    "fold_heads",
    "special_token_embedding",
    "special_token_embedding_reference",
]
