"""encode_tail (inference): pooled-then-folded projection against the two heads applied then mean, fp32.

"eager" is the reference package's path: ``align(recon(h)).mean(1)`` ([B*K, H] x [H, H] then
[B*K, H] x [H, D]); "torch-folded" is ``encode_tail_reference`` with ``fold_heads`` weights (pool,
one addmm) in plain PyTorch; "cpp" is the C++ kernel with the same folded weights. Folding is done
once per model, outside the timed step.

    pytest benchmarks/bench_encode_tail.py --benchmark-only
"""

import pytest
import torch
from conftest import cuda_step, peak_memory_mb, requires_cuda
from torch import nn

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import encode_tail, encode_tail_reference, fold_heads

BATCH, K, HIDDEN, DIM = 256, 10, 1024, 1024


@pytest.mark.parametrize("provider", ["eager", "torch-folded", "cpp"])
def bench_encode_tail(benchmark, monkeypatch, provider):
    if provider == "cpp" and _dispatch.extension() is None:
        pytest.skip("llm2vec_gen._C is not built")
    monkeypatch.setenv(_dispatch.ENV_VAR, "cpp")
    torch.manual_seed(0)
    recon = nn.Linear(HIDDEN, HIDDEN).requires_grad_(False)
    align = nn.Linear(HIDDEN, DIM).requires_grad_(False)
    h = torch.randn(BATCH, K, HIDDEN)
    weight, bias = fold_heads(recon, align)
    step = {
        "eager": lambda: align(recon(h)).mean(1),
        "torch-folded": lambda: encode_tail_reference(h, weight, bias),
        "cpp": lambda: encode_tail(h, weight, bias),
    }[provider]
    with torch.no_grad():
        step()
        peak = peak_memory_mb(step)
        benchmark.group = f"encode_tail B={BATCH} K={K} H={HIDDEN} D={DIM} fp32 inference"
        benchmark.extra_info.update(provider=provider, baseline=provider == "eager", peak_mb=peak)
        benchmark.pedantic(step, rounds=30, warmup_rounds=3, iterations=1)


@requires_cuda
@pytest.mark.parametrize("provider", ["eager", "torch-folded", "triton"])
def bench_encode_tail_cuda(benchmark, monkeypatch, provider):
    """Qwen3-8B width (H = D = 4096), bf16 hidden states on the GPU, fp32 folded heads."""
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    hidden = dim = 4096
    recon = nn.Linear(hidden, hidden, device="cuda").requires_grad_(False)
    align = nn.Linear(hidden, dim, device="cuda").requires_grad_(False)
    h = torch.randn(BATCH, K, hidden, device="cuda").bfloat16()
    weight, bias = fold_heads(recon, align)
    step = {
        "eager": lambda: align(recon(h.float())).mean(1),
        "torch-folded": lambda: encode_tail_reference(h, weight, bias),
        "triton": lambda: encode_tail(h, weight, bias),
    }[provider]
    with torch.no_grad():
        benchmark.group = f"encode_tail B={BATCH} K={K} H={hidden} D={dim} bf16 inference CUDA"
        benchmark.extra_info.update(provider=provider, baseline=provider == "eager")
        benchmark.pedantic(cuda_step(step), rounds=50, warmup_rounds=5, iterations=1)
