"""The loss of one micro-batch, assembled from the model's forward pieces (``LLM2VecGenModel``):
``appended_hidden_states`` (encoder through the KV cache), ``heads``, ``decoder_hidden_states``,
``lm_head_rows``; this module only builds the decoder's targets and sums the losses.

Encoder (only K positions carry a gradient)::

    query_ids [B, Tq] (left padded) --no_grad--> KV cache
    special_rows [K, H] --appended after the cache--> h [B, K, H] --recon_head--> r --align_head--> a

Decoder (the one frozen LLM; answers come right padded, so no mask is needed: pads sit after every
real token and causal attention never looks ahead)::

    position   0 .. K-1        K .. K+L-2
    input      r_1 .. r_K      answer_0 .. answer_{L-2}
    predicts   -, .., answer_0 answer_1 .. answer_{L-1}

That is the reference's shifted causal-LM loss over ``[pads][r][answer]`` with labels on the answer
tokens only (RoPE is relative, so dropping the left pads changes no score). The cross-entropy runs on
the labelled rows alone (``batch.label_index``, built on the CPU: no boolean-mask indexing waits on
the device) through ``fused_linear_cross_entropy`` (no [B, T, V] logits), over the first
``min(len(tokenizer), V)`` rows of the LM head: the reference resizes the table to the tokenizer.

Normalisation: the step's loss is ``recon_weight * CE_sum / ce_count + align_weight * distill * B /
rows``, where ``ce_count`` and ``rows`` count the whole optimizer step (all micro-batches, all
processes). Summing micro-batch gradients (and all-reducing them with SUM) therefore gives exactly
the gradient of one big batch, whatever the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm2vec_gen.ops import distill_loss, fused_linear_cross_entropy
from llm2vec_gen.train.data import Batch


@dataclass
class StepOutput:
    """``loss`` carries the gradient; the rest are detached fp32 statistics of the micro-batch."""

    loss: torch.Tensor
    ce_sum: torch.Tensor  # summed token cross-entropy
    ce_count: int  # answer tokens predicted
    distill: torch.Tensor  # mean distillation loss over the B rows
    rows: int


def step_loss(
    model,
    batch: Batch,
    ce_count: int,
    rows: int,
    kind: str = "mse",
    recon_weight: float = 1.0,
    align_weight: float = 1.0,
    checkpointing: bool = False,
) -> StepOutput:
    """Loss of one micro-batch, normalised by the step's totals ``ce_count`` tokens and ``rows``.

    ``checkpointing``: run the decoder in train mode so the LLM's gradient checkpointing (enabled by
    the caller) applies; the encoder stays in eval mode (transformers drops the KV cache in train
    mode with checkpointing on).
    """
    r, a = model.heads(
        model.appended_hidden_states(batch.query_ids, batch.query_mask)
    )  # [B, K, H], [B, K, D]
    k = r.shape[1]
    model.llm.train(checkpointing)
    try:
        hidden = model.decoder_hidden_states(r, batch.answer_ids)[:, k - 1 :]  # [B, Ta, H]: j -> labels[:, j]
    finally:
        model.llm.train(False)
    predicting = hidden.flatten(0, 1).index_select(0, batch.label_index)  # [n, H]
    targets = batch.labels.flatten().index_select(0, batch.label_index)  # [n]
    weight, bias = model.lm_head_rows()
    ce_sum = fused_linear_cross_entropy(
        predicting.to(weight.dtype), weight, targets, reduction="sum", bias=bias
    )
    distill = distill_loss(a.float(), batch.teacher.float(), kind=kind, check_finite=False)
    bsz = a.shape[0]
    loss = recon_weight * ce_sum / max(ce_count, 1) + align_weight * distill * (bsz / rows)
    count = batch.label_index.numel()
    return StepOutput(loss, ce_sum.detach().float(), count, distill.detach().float(), bsz)
