"""distill_loss forward+backward: the fused C++ kernel against unfused PyTorch eager, fp32.

One step is ``torch.autograd.grad(loss, student)``: the loss and the gradient that flows on into
the alignment head, as in training.

    pytest benchmarks/bench_distill_loss.py --benchmark-only
"""

import pytest
import torch
from conftest import cuda_step, requires_cuda

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import distill_loss, distill_loss_reference

SHAPES = [(256, 10, 1024), (4096, 1, 384)]


def _eager(student, teacher, kind):
    return distill_loss_reference(student, teacher, kind)


def _fused(student, teacher, kind):
    return distill_loss(student, teacher, kind)


@pytest.mark.parametrize("kind", ["cosine", "mse"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-K{}-D{}".format(*s))
@pytest.mark.parametrize("provider", ["eager", "cpp"])
def bench_distill_loss(benchmark, monkeypatch, provider, shape, kind):
    if provider == "cpp" and _dispatch.extension() is None:
        pytest.skip("llm2vec_gen._C is not built")
    monkeypatch.setenv(_dispatch.ENV_VAR, "cpp")
    batch, k, dim = shape
    student = torch.randn(batch, k, dim, requires_grad=True)
    teacher = torch.randn(batch, dim)
    fn = _eager if provider == "eager" else _fused

    def step():
        return torch.autograd.grad(fn(student, teacher, kind), student)

    benchmark.group = f"distill_loss {kind} B={batch} K={k} D={dim} fp32 fwd+bwd"
    benchmark.extra_info.update(provider=provider, baseline=provider == "eager")
    benchmark.pedantic(step, rounds=100, warmup_rounds=5, iterations=1)


@requires_cuda
@pytest.mark.parametrize("shape", [(32, 10, 4096), (4096, 1, 384)], ids=lambda s: "B{}-K{}-D{}".format(*s))
@pytest.mark.parametrize("provider", ["torch", "triton"])
def bench_distill_loss_cuda(benchmark, monkeypatch, provider, shape):
    """bf16 student on the GPU: the compiled Triton kernels against the torch reference (cosine)."""
    monkeypatch.setenv(_dispatch.ENV_VAR, provider)
    batch, k, dim = shape
    student = torch.randn(batch, k, dim, device="cuda").bfloat16().requires_grad_()
    teacher = torch.randn(batch, dim, device="cuda")
    step = cuda_step(lambda: torch.autograd.grad(distill_loss(student, teacher, check_finite=False), student))
    benchmark.group = f"distill_loss cosine B={batch} K={k} D={dim} bf16 fwd+bwd CUDA"
    benchmark.extra_info.update(provider=provider, baseline=provider == "torch")
    benchmark.pedantic(step, rounds=100, warmup_rounds=10, iterations=1)
