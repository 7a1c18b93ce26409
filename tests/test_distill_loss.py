import os

import pytest
import torch
from conftest import available_backends, on_cuda, requires_cuda
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tolerances import assert_close, assert_within_lowp_error

from llm2vec_gen._dispatch import ENV_VAR
from llm2vec_gen.ops import distill_loss, distill_loss_reference


def _inputs(batch, k, dim, dtype):
    shape = (batch, dim) if k is None else (batch, k, dim)
    student = torch.randn(shape, dtype=torch.float32).to(dtype).requires_grad_()
    teacher = torch.randn(batch, dim)
    return student, teacher


@pytest.mark.parametrize("kind", ["cosine", "mse"])
@pytest.mark.parametrize("dim", [1, 384, 1000])
@pytest.mark.parametrize("k", [None, 1, 10])
@pytest.mark.parametrize("batch", [1, 7, 131])
def test_matches_reference_fp32(backend, batch, k, dim, kind):
    student, teacher = _inputs(batch, k, dim, torch.float32)
    loss = distill_loss(student, teacher, kind)
    loss.backward()
    ref_student = student.detach().double().requires_grad_()
    ref = distill_loss_reference(ref_student, teacher.double(), kind)
    ref.backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert_close(loss, ref, torch.float32)
    assert_close(student.grad, ref_student.grad, torch.float32)


def _same_dtype_loss(student, teacher, kind):
    """The same PyTorch computation carried out entirely in the student's dtype: (loss, the student
    copy holding its gradient), the low-precision side of the tolerance rule."""
    lowp_student = student.detach().clone().requires_grad_()
    pooled = lowp_student.mean(1) if lowp_student.dim() == 3 else lowp_student
    if kind == "mse":
        lowp = (pooled - teacher).pow(2).mean()
    else:
        lowp = (1 - (pooled * teacher).sum(-1) / (pooled.norm(dim=-1) * teacher.norm(dim=-1))).mean()
    lowp.backward()
    return lowp, lowp_student


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["cosine", "mse"])
@pytest.mark.parametrize(("batch", "k", "dim"), [(7, 10, 1000), (131, None, 384), (1, 1, 1)])
def test_low_precision_within_rule(backend, batch, k, dim, kind, dtype):
    student, teacher = _inputs(batch, k, dim, dtype)
    loss = distill_loss(student, teacher.to(dtype), kind)
    loss.backward()
    assert student.grad.dtype == dtype
    ref_student = student.detach().double().requires_grad_()
    ref = distill_loss_reference(ref_student, teacher.to(dtype).double(), kind)
    ref.backward()
    lowp, lowp_student = _same_dtype_loss(student, teacher.to(dtype), kind)
    assert_within_lowp_error(loss, ref, lowp, atol=1e-4)
    assert_within_lowp_error(student.grad, ref_student.grad, lowp_student.grad, atol=1e-4)


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_weight_scales_rows(backend, kind):
    student, teacher = _inputs(5, 3, 17, torch.float32)
    weight = torch.tensor([1.0, 0.0, 2.0, 0.5, 3.0])
    loss = distill_loss(student, teacher, kind, weight=weight)
    loss.backward()
    ref_student = student.detach().double().requires_grad_()
    ref = distill_loss_reference(ref_student, teacher.double(), kind, weight.double())
    ref.backward()
    per_row = torch.stack(
        [distill_loss_reference(student[i : i + 1].detach(), teacher[i : i + 1], kind) for i in range(5)]
    )
    assert_close(loss, (per_row * weight).mean(), torch.float32)
    assert_close(student.grad, ref_student.grad, torch.float32)


def test_mse_equals_torch_mse(backend):
    student, teacher = _inputs(7, None, 33, torch.float32)
    assert_close(distill_loss(student, teacher, "mse"), torch.nn.functional.mse_loss(student, teacher))


def test_cosine_equals_torch_cosine(backend):
    student, teacher = _inputs(7, 4, 33, torch.float32)
    expected = 1 - torch.nn.functional.cosine_similarity(student.mean(1), teacher).mean()
    assert_close(distill_loss(student, teacher, "cosine"), expected)


def test_zero_norm_vectors_are_finite(backend):
    student = torch.zeros(3, 2, 8, requires_grad=True)
    teacher = torch.randn(3, 8)
    teacher[1] = 0
    loss = distill_loss(student, teacher, "cosine")
    loss.backward()
    assert loss.item() == pytest.approx(1.0)
    assert torch.isfinite(student.grad).all()


def test_no_grad_path(backend):
    student, teacher = _inputs(4, 2, 9, torch.float32)
    with torch.no_grad():
        loss = distill_loss(student, teacher)
    assert_close(loss, distill_loss_reference(student.detach(), teacher))


def test_teacher_requiring_grad_is_treated_as_constant(backend):
    student, teacher = _inputs(4, 2, 9, torch.float32)
    teacher.requires_grad_()
    distill_loss(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_gradcheck_fp64(fp64_backend, kind):
    student = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(3, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: distill_loss(s, teacher, kind), (student,))


@pytest.mark.parametrize(
    ("student", "teacher", "error", "match"),
    [
        (torch.randn(4, 2, 8), torch.randn(4, 7), ValueError, r"\(4, 8\).*\(4, 7\)"),
        (torch.randn(4, 2, 8), torch.randn(3, 8), ValueError, r"\(3, 8\)"),
        (torch.randn(8), torch.randn(8), ValueError, "rank 2 or 3"),
        (torch.randn(2, 2, 2, 8), torch.randn(2, 8), ValueError, "rank 2 or 3"),
        (torch.ones(4, 8, dtype=torch.long), torch.randn(4, 8), TypeError, "int64"),
        (torch.randn(4, 8), torch.ones(4, 8, dtype=torch.int32), TypeError, "int32"),
        ([[1.0]], torch.randn(1, 1), TypeError, "list"),
        (torch.full((2, 3), float("nan")), torch.randn(2, 3), ValueError, "student.*NaN"),
        (torch.randn(2, 3), torch.full((2, 3), float("inf")), ValueError, "teacher.*NaN or inf"),
        (torch.randn(0, 3), torch.randn(0, 3), ValueError, "empty"),
    ],
)
def test_bad_input(backend, student, teacher, error, match):
    with pytest.raises(error, match=match):
        distill_loss(student, teacher)


def test_bad_kind_and_weight():
    with pytest.raises(ValueError, match="kind"):
        distill_loss(torch.randn(2, 3), torch.randn(2, 3), kind="l1")
    with pytest.raises(ValueError, match=r"weight must have shape \(2,\)"):
        distill_loss(torch.randn(2, 3), torch.randn(2, 3), weight=torch.ones(3))


def _grad_scale(student: torch.Tensor, kind: str) -> float:
    """The size of the terms the gradient is made of: its own largest entry, and for the cosine the
    two terms of size 1 / (|p_b| B K) that cancel when p_b is parallel to t_b (always at D = 1)."""
    scale = student.grad.abs().max().item()
    if kind == "cosine":
        batch, dim = student.shape[0], student.shape[-1]
        rows = student.detach().reshape(batch, -1, dim)
        norms = rows.mean(1).norm(dim=-1).clamp_min(1e-8)
        scale = max(scale, (1 / (norms * batch * rows.shape[1])).max().item())
    return scale


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 9),
    k=st.one_of(st.none(), st.integers(1, 5)),
    dim=st.integers(1, 70),
    kind=st.sampled_from(["cosine", "mse"]),
    log_scale=st.floats(-20, 12),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
@example(batch=1, k=None, dim=1, kind="cosine", log_scale=-3.0, dtype=torch.float32)  # terms cancel
def test_property_matches_reference(batch, k, dim, kind, log_scale, dtype):
    """Random shapes and magnitudes (norms from 1e-9 to 1e5), every available backend."""
    scale = 10.0**log_scale if kind == "cosine" else 10.0 ** min(log_scale, 3)
    shape = (batch, dim) if k is None else (batch, k, dim)
    student = (torch.randn(shape) * scale).to(dtype)
    teacher = torch.randn(batch, dim)
    ref_student = student.double().requires_grad_()
    ref = distill_loss_reference(ref_student, teacher.double(), kind)
    ref.backward()
    for name in available_backends():
        os.environ[ENV_VAR] = name
        try:
            s = student.clone().requires_grad_()
            loss = distill_loss(s, teacher, kind)
            loss.backward()
        finally:
            del os.environ[ENV_VAR]
        tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=0.02, atol=1e-3)
        torch.testing.assert_close(loss.double(), ref, **tol)
        grad_tol = dict(tol, atol=tol["atol"] * max(1.0, _grad_scale(ref_student, kind)))
        torch.testing.assert_close(s.grad.double(), ref_student.grad, **grad_tol)


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_small_tiles_take_every_loop(backend, monkeypatch, kind):
    """Triton with [4, 16] tiles: a loop over K in steps of 4 and D = 100 split over 7 programs."""
    if backend == "triton":
        from llm2vec_gen.kernels import distill_loss as kernels

        monkeypatch.setattr(kernels, "MAX_BLOCK_K", 4)
        monkeypatch.setattr(kernels, "TILE_ELEMENTS", 64)
    student, teacher = _inputs(5, 10, 100, torch.float32)
    weight = torch.rand(5)
    loss = distill_loss(student, teacher, kind, weight)
    loss.backward()
    ref_student = student.detach().double().requires_grad_()
    ref = distill_loss_reference(ref_student, teacher.double(), kind, weight.double())
    ref.backward()
    assert_close(loss, ref, torch.float32)
    assert_close(student.grad, ref_student.grad, torch.float32)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["cosine", "mse"])
@pytest.mark.parametrize(("batch", "dim"), [(8, 2560), (32, 4096), (4096, 384)])
def test_cuda_matches_reference(monkeypatch, batch, dim, kind, dtype):
    """Compiled Triton at realistic shapes (K = 10): loss and gradient against the fp64 oracle,
    within twice the error of the same PyTorch computation in ``dtype``."""
    monkeypatch.setenv(ENV_VAR, "triton")
    student, teacher = on_cuda(*_inputs(batch, 10, dim, dtype))
    loss = distill_loss(student, teacher, kind)
    loss.backward()
    ref_student = student.detach().double().requires_grad_()
    ref = distill_loss_reference(ref_student, teacher.double(), kind)
    ref.backward()
    lowp, lowp_student = _same_dtype_loss(student, teacher.to(dtype), kind)
    assert student.grad.dtype == dtype and student.grad.is_cuda
    assert_within_lowp_error(loss, ref, lowp, atol=1e-6)
    assert_within_lowp_error(student.grad, ref_student.grad, lowp_student.grad, atol=1e-6)
