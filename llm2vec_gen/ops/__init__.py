"""The ops: each is one function that dispatches to torch, C++ or Triton (see ``_dispatch``).

``<op>_reference`` is the plain PyTorch version of each op, the oracle of the tests.
"""

from llm2vec_gen.ops.distill_loss import distill_loss, distill_loss_reference

__all__ = ["distill_loss", "distill_loss_reference"]
