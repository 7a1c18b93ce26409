"""``distill_loss``: the distillation loss between pooled student embeddings and teacher embeddings.

    student [B, K, D] (mean-pooled over K inside the op) or [B, D]; fp32, bf16, fp16 (fp64 for tests)
    teacher [B, D], any float dtype, treated as a constant (no gradient flows into it)
    weight  [B] optional per-example weights, default all ones
    loss    fp32 scalar = sum_b weight_b * l_b / B, with
            kind="mse":    l_b = mean_d (p_bd - t_bd)^2        (equals F.mse_loss when weight is None)
            kind="cosine": l_b = 1 - <p_b, t_b> / (max(|p_b|, eps) * max(|t_b|, eps))

Zero-norm vectors: norms are clamped to ``eps`` (default 1e-8), so a zero student or teacher gives a
cosine of 0 (loss 1) and finite gradients, never NaN.

The cpp and triton backends compute the loss and the student's gradient in one forward (backward
only scales it by the incoming gradient; the cpp backend in one pass over the data, the triton one
in two launches over a (row, D-block) grid); accumulation is fp32 (fp64 for fp64 inputs, which never
run Triton). The gradient is the same for the K rows of a batch row, so they keep only [B, D]
between forward and backward and return it expanded to [B, K, D] (a stride-0 view). The cpp
backend's autograd node is C++ (``_C.distill_loss_apply``: no Python in the backward), the triton
backend's is ``_DistillLoss`` here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from llm2vec_gen._dispatch import backend_for, kernel
from llm2vec_gen.ops._checks import FLOAT_DTYPES, check_same_device, check_tensor, scaled

KINDS = ("cosine", "mse")
DistillKind = Literal["cosine", "mse"]


def distill_loss_reference(
    student: torch.Tensor,
    teacher: torch.Tensor,
    kind: DistillKind = "cosine",
    weight: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Plain PyTorch distillation loss (autograd backward); the oracle of the tests."""
    acc = torch.float64 if student.dtype == torch.float64 else torch.float32
    pooled = student.to(acc)
    if pooled.dim() == 3:
        pooled = pooled.mean(dim=1)
    target = teacher.detach().to(acc)
    if kind == "mse":
        per_row = (pooled - target).pow(2).mean(dim=-1)
    else:
        dot = (pooled * target).sum(dim=-1)
        norms = pooled.norm(dim=-1).clamp_min(eps) * target.norm(dim=-1).clamp_min(eps)
        per_row = 1.0 - dot / norms
    if weight is not None:
        per_row = per_row * weight.to(acc)
    return per_row.mean()


class _DistillLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher, weight, kind, eps, backend):
        loss, grad = kernel("distill_loss", "forward", backend)(
            student, teacher, weight, kind == "cosine", eps, ctx.needs_input_grad[0]
        )
        ctx.save_for_backward(grad)
        ctx.student_shape = student.shape
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad_rows,) = ctx.saved_tensors  # [B, D]
        grad = scaled(grad_rows, grad_loss)
        if len(ctx.student_shape) == 3:
            grad = grad.unsqueeze(1).expand(ctx.student_shape)
        return grad, None, None, None, None, None


def distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    kind: DistillKind = "cosine",
    weight: torch.Tensor | None = None,
    eps: float = 1e-8,
    check_finite: bool = True,
) -> torch.Tensor:
    """Mean distillation loss of student [B, K, D] or [B, D] against teacher [B, D]; fp32 scalar.

    With ``check_finite`` a non-finite loss raises ValueError naming the input that holds NaN/inf
    (one scalar read, which waits for the device; trainers that count bad steps themselves pass
    False).
    """
    check_tensor("student", student, (2, 3))
    check_tensor("teacher", teacher, (2,))
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    batch, dim = student.shape[0], student.shape[-1]
    if tuple(teacher.shape) != (batch, dim):
        raise ValueError(
            f"teacher must have shape (B, D) = {(batch, dim)} to match student {tuple(student.shape)}, "
            f"got {tuple(teacher.shape)}"
        )
    if batch == 0 or dim == 0 or (student.dim() == 3 and student.shape[1] == 0):
        raise ValueError(f"student of shape {tuple(student.shape)} is empty")
    tensors = {"student": student, "teacher": teacher}
    if weight is not None:
        check_tensor("weight", weight, (1,), FLOAT_DTYPES)
        if weight.shape[0] != batch:
            raise ValueError(f"weight must have shape ({batch},), got {tuple(weight.shape)}")
        tensors["weight"] = weight
    device = check_same_device(**tensors)
    backend = backend_for(device, student.dtype)
    if backend == "torch":
        loss = distill_loss_reference(student, teacher, kind, weight, eps)
    elif backend == "cpp":
        weight = None if weight is None else weight.detach()
        apply = kernel("distill_loss", "apply", "cpp")
        loss = apply(student, teacher.detach(), weight, kind == "cosine", eps)
    else:
        teacher = teacher.detach().contiguous()
        weight = None if weight is None else weight.detach().to(torch.float32).contiguous()
        loss = _DistillLoss.apply(student.contiguous(), teacher, weight, kind, float(eps), backend)
    if check_finite and not math.isfinite(loss.detach().item()):
        for name, t in tensors.items():
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} of shape {tuple(t.shape)} holds NaN or inf values")
        raise ValueError("distill_loss overflowed: the inputs are finite but the loss is not")
    return loss
