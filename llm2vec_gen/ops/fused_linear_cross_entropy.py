"""``fused_linear_cross_entropy``: cross-entropy of ``hidden @ weight.T + bias`` without the logits.

    hidden  [N, H]  fp32, bf16, fp16 (fp64 for tests); the rows to predict from
    weight  [V, H]  same dtype as hidden (the LM head); frozen or trainable
    labels  [N]     int64 class ids in [0, V), or ``ignore_index`` for rows that do not count
    bias    [V]     optional, same dtype as hidden
    loss    fp32 scalar (fp64 for fp64 inputs):
            reduction="sum":  sum over non-ignored rows of lse(logits_n) - logits_n[label_n]
            reduction="mean": that sum / number of non-ignored rows (0 when every row is ignored)

It equals ``F.cross_entropy((hidden @ weight.T + bias).float(), labels, ignore_index=...)`` except
that every row ignored gives 0 and zero gradients (F.cross_entropy gives NaN).

Memory: the [N, V] logits are never materialised. The cpp backend first gathers the non-ignored
rows (the M of N that count); the triton backend takes all N rows and gives the ignored ones loss
and gradient 0 (counting them would wait for the GPU; label checks there are device-side asserts).
Both then walk the rows in chunks of C rows: logits [C, V], per-row log-sum-exp and loss in fp32,
and in the same pass the gradient softmax - onehot (times 1/M for "mean") written over the logits;
then grad_hidden[chunk] = grad_logits @ weight and, when the weight or bias needs a gradient,
grad_weight += grad_logits.T @ hidden[chunk], grad_bias += sum of rows. The gradients are thus
computed in the forward (as in Liger-Kernel); backward only scales them by the incoming gradient.
C is picked so one chunk's fp32 logits take at most ``CHUNK_BYTES`` (160 MiB): at V = 151,669 that
is 274 rows for N = 4096 (the triton backend rounds it to 256, a multiple of 128), against 2.5 GB
of logits (plus as much again for their gradient) in the eager composition. Besides that buffer the
op holds grad_hidden [N, H] and, only when the weight trains, grad_weight [V, H] (accumulated in
fp32 for bf16 / fp16 weights, cast at the end). fp64 never runs Triton (the torch reference does).
"""

from __future__ import annotations

from typing import Literal

import torch

from llm2vec_gen._dispatch import backend_for, kernel
from llm2vec_gen.ops._checks import check_same_device, check_tensor, require, scaled

REDUCTIONS = ("mean", "sum")
Reduction = Literal["mean", "sum"]
CHUNK_BYTES = 160 * 2**20


def chunk_rows(rows: int, vocab: int, max_bytes: int) -> int:
    """Rows per chunk: fp32 logits [C, V] stay under ``max_bytes``; chunks split ``rows`` evenly."""
    cap = max(1, max_bytes // (4 * max(vocab, 1)))
    n_chunks = -(-max(rows, 1) // cap)
    return -(-max(rows, 1) // n_chunks)


def fused_linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain PyTorch: materialised logits and F.cross_entropy (autograd backward); the tests' oracle."""
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    loss = torch.nn.functional.cross_entropy(
        logits.to(acc), labels, ignore_index=ignore_index, reduction="sum"
    )
    if reduction == "mean":
        loss = loss / (labels != ignore_index).sum().clamp_min(1)
    return loss


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, rows, scale, chunk, backend, grad_enabled):
        # needs_input_grad follows requires_grad even under torch.no_grad(): check the mode too.
        needs_h, needs_w, needs_b = (grad_enabled and needs for needs in ctx.needs_input_grad[:3])
        picked = hidden if rows is None else hidden.index_select(0, rows)  # [M, H]
        loss, grad_h, grad_w, grad_b = kernel("fused_linear_cross_entropy", "forward", backend)(
            picked, weight, labels, bias, scale, chunk, needs_h, needs_w, needs_b
        )
        if needs_h and rows is not None:
            grad_h = torch.zeros_like(hidden).index_copy_(0, rows, grad_h)
        ctx.save_for_backward(
            grad_h if needs_h else None, grad_w if needs_w else None, grad_b if needs_b else None
        )
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads = [scaled(g, grad_loss) for g in ctx.saved_tensors]
        return *grads, None, None, None, None, None, None


def _check_labels(labels: torch.Tensor, vocab: int, ignore_index: int) -> torch.Tensor:
    """The non-ignored positions [N] bool; every other label must lie in [0, vocab) (a ValueError
    naming the first one on the CPU, a device-side assert on a GPU: no host sync)."""
    counted = labels != ignore_index
    bad = counted & ((labels < 0) | (labels >= vocab))

    def first_bad() -> str:
        pos = int(bad.nonzero()[0, 0])
        return f"; got label {int(labels[pos])} at position {pos}"

    require(~bad.any(), f"labels must lie in [0, {vocab}) or equal ignore_index={ignore_index}", first_bad)
    return counted


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of hidden [N, H] @ weight [V, H].T (+ bias [V]) against labels [N]; fp32 scalar."""
    check_tensor("hidden", hidden, (2,))
    check_tensor("weight", weight, (2,))
    check_tensor("labels", labels, (1,), (torch.int64,))
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    (n, dim), vocab = hidden.shape, weight.shape[0]
    if weight.shape[1] != dim:
        raise ValueError(f"weight must have shape (V, {dim}) to match hidden {tuple(hidden.shape)}, "
                         f"got {tuple(weight.shape)}")  # fmt: skip
    if labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match hidden, got {tuple(labels.shape)}")
    if vocab == 0 or dim == 0:
        raise ValueError(f"weight of shape {tuple(weight.shape)} is empty")
    tensors = {"hidden": hidden, "weight": weight, "labels": labels}
    if bias is not None:
        check_tensor("bias", bias, (1,))
        if bias.shape[0] != vocab:
            raise ValueError(f"bias must have shape ({vocab},), got {tuple(bias.shape)}")
        tensors["bias"] = bias
    for name in ("weight", "bias"):
        if name in tensors and tensors[name].dtype != hidden.dtype:
            raise TypeError(
                f"{name} must have hidden's dtype {str(hidden.dtype).removeprefix('torch.')}, "
                f"got {str(tensors[name].dtype).removeprefix('torch.')}"
            )
    device = check_same_device(**tensors)
    counted = _check_labels(labels, vocab, ignore_index)
    backend = backend_for(device, hidden.dtype)
    if backend == "torch":
        return fused_linear_cross_entropy_reference(hidden, weight, labels, ignore_index, reduction, bias)
    if backend == "triton":  # no host sync: every row goes in, ignored ones labelled -1
        rows, kept, n_kept = None, torch.where(counted, labels, -1), n
        count = counted.sum().clamp_min(1).float()
        scale = 1.0 / count if reduction == "mean" else torch.ones((), device=device)
    else:  # CPU tensors: reading the count waits for nothing, so only the counted rows go in
        n_kept = int(counted.sum())
        rows = None if n_kept == n else counted.nonzero().squeeze(1)
        kept = labels if rows is None else labels.index_select(0, rows)
        scale = 1.0 / max(n_kept, 1) if reduction == "mean" else 1.0
    return _FusedLinearCrossEntropy.apply(
        hidden.contiguous(),
        weight.contiguous(),
        None if bias is None else bias.contiguous(),
        kept.contiguous(),
        rows,
        scale,
        chunk_rows(n_kept, vocab, CHUNK_BYTES),
        backend,
        torch.is_grad_enabled(),
    )
