"""fused_linear_cross_entropy forward+backward: chunked C++ against eager PyTorch, fp32.

The shape of the reconstruction CE of LLM2Vec-Gen: N = 4096 labelled positions, H = 1024, Qwen3's
V = 151,669. One step is ``torch.autograd.grad(loss, inputs)``: hidden always (the gradient flows
on to the soft prompt), the LM head weight only in the "weight grad" variant (it is frozen in
LLM2Vec-Gen). "eager" is ``F.cross_entropy(hidden @ weight.T, labels)``, which materialises the
[N, V] fp32 logits (2.5 GB) and as much again for their gradient. ``peak_mb`` is the resident
memory one step adds (``peak_memory_mb``), measured in a first, untimed step that also warms up.

    pytest benchmarks/bench_fused_linear_cross_entropy.py --benchmark-only --benchmark-json=out.json
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import cuda_step, peak_memory_mb, requires_cuda

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import fused_linear_cross_entropy

N, H, V = 4096, 1024, 151_669


def _eager(hidden, weight, labels):
    return F.cross_entropy(hidden @ weight.T, labels)


@pytest.mark.parametrize("weight_grad", [False, True], ids=["frozen-weight", "weight-grad"])
@pytest.mark.parametrize("provider", ["eager", "cpp"])
def bench_fused_linear_cross_entropy(benchmark, monkeypatch, provider, weight_grad):
    if provider == "cpp" and _dispatch.extension() is None:
        pytest.skip("llm2vec_gen._C is not built")
    monkeypatch.setenv(_dispatch.ENV_VAR, "cpp")
    torch.manual_seed(0)
    hidden = torch.randn(N, H, requires_grad=True)
    weight = (torch.randn(V, H) / H**0.5).requires_grad_(weight_grad)
    labels = torch.randint(0, V, (N,))
    fn = _eager if provider == "eager" else fused_linear_cross_entropy
    inputs = (hidden, weight) if weight_grad else (hidden,)

    def step():
        return torch.autograd.grad(fn(hidden, weight, labels), inputs)

    variant = "hidden+weight grad" if weight_grad else "hidden grad, frozen weight"
    benchmark.group = f"fused_linear_cross_entropy N={N} H={H} V={V} fp32 fwd+bwd, {variant}"
    benchmark.extra_info.update(provider=provider, baseline=provider == "eager", peak_mb=peak_memory_mb(step))
    benchmark.pedantic(step, rounds=3, warmup_rounds=0, iterations=1)


@requires_cuda
@pytest.mark.parametrize("weight_grad", [False, True], ids=["frozen-weight", "weight-grad"])
@pytest.mark.parametrize("provider", ["eager", "triton"])
def bench_fused_linear_cross_entropy_cuda(benchmark, monkeypatch, provider, weight_grad):
    """Qwen3-4B LM head (H = 2560) in bf16 on the GPU; eager upcasts the [N, V] logits to fp32."""
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    dim = 2560
    hidden = torch.randn(N, dim, device="cuda").bfloat16().requires_grad_()
    weight = (torch.randn(V, dim, device="cuda") / dim**0.5).bfloat16().requires_grad_(weight_grad)
    labels = torch.randint(0, V, (N,), device="cuda")
    inputs = (hidden, weight) if weight_grad else (hidden,)
    if provider == "eager":
        step = cuda_step(
            lambda: torch.autograd.grad(F.cross_entropy((hidden @ weight.T).float(), labels), inputs)
        )
    else:
        step = cuda_step(
            lambda: torch.autograd.grad(fused_linear_cross_entropy(hidden, weight, labels), inputs)
        )
    step()
    torch.cuda.reset_peak_memory_stats()
    step()
    variant = "hidden+weight grad" if weight_grad else "hidden grad, frozen weight"
    benchmark.group = f"fused_linear_cross_entropy N={N} H={dim} V={V} bf16 fwd+bwd CUDA, {variant}"
    benchmark.extra_info.update(
        provider=provider, baseline=provider == "eager", peak_mb=torch.cuda.max_memory_allocated() / 2**20
    )
    benchmark.pedantic(step, rounds=10, warmup_rounds=1, iterations=1)
