"""special_token_embedding forward+backward against PEFT TrainableTokens (peft 0.21), fp32.

One step embeds a [B, T] batch whose last K positions are the special tokens and backpropagates
into the K trainable rows. "peft" wraps a model whose ``embed_tokens`` is an ``nn.Embedding`` with
``TrainableTokensConfig`` (what the reference package trains); "cpp" is this library's op on the
same frozen table. Peak memory is the resident high-water mark one step adds.

    pytest benchmarks/bench_special_token_embedding.py --benchmark-only
"""

import pytest
import torch
from conftest import cuda_step, peak_memory_mb, requires_cuda
from peft import TrainableTokensConfig, get_peft_model
from torch import nn

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import SpecialTokenEmbedding

VOCAB, HIDDEN, BATCH, SEQ, K = 151_669, 1024, 32, 128, 10


class _Tiny(nn.Module):
    def __init__(self, embed: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)


def _setup(provider: str):
    torch.manual_seed(0)
    embed = nn.Embedding(VOCAB, HIDDEN)
    special = list(range(VOCAB - K, VOCAB))
    ids = torch.randint(0, VOCAB - K, (BATCH, SEQ))
    ids[:, -K:] = torch.tensor(special)
    if provider == "peft":
        model = get_peft_model(
            _Tiny(embed), TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=special)
        )
    else:
        model = SpecialTokenEmbedding(embed, special, embed.weight[special].detach())
    params = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in params) == K * HIDDEN
    grad_out = torch.randn(BATCH, SEQ, HIDDEN)

    def step():
        return torch.autograd.grad(model(ids), params, grad_out)

    return step


@pytest.mark.parametrize("provider", ["peft", "cpp"])
def bench_special_token_embedding(benchmark, monkeypatch, provider):
    if provider == "cpp" and _dispatch.extension() is None:
        pytest.skip("llm2vec_gen._C is not built")
    monkeypatch.setenv(_dispatch.ENV_VAR, "cpp")
    step = _setup(provider)
    step()
    peak = peak_memory_mb(step)
    benchmark.group = f"special_token_embedding V={VOCAB} H={HIDDEN} B={BATCH} T={SEQ} K={K} fp32 fwd+bwd"
    benchmark.extra_info.update(provider=provider, baseline=provider == "peft", peak_mb=peak)
    benchmark.pedantic(step, rounds=10, warmup_rounds=1, iterations=1)


@requires_cuda
@pytest.mark.parametrize("provider", ["torch", "triton"])
def bench_special_token_embedding_cuda(benchmark, monkeypatch, provider):
    """Qwen3-8B table (H = 4096) in bf16 on the GPU, B = 8, T = 512: the compiled Triton gather and
    K-row backward against the torch reference of the same op."""
    monkeypatch.setenv(_dispatch.ENV_VAR, provider)
    hidden, batch, seq = 4096, 8, 512
    embed = nn.Embedding(VOCAB, hidden, device="cuda", dtype=torch.bfloat16)
    special = list(range(VOCAB - K, VOCAB))
    ids = torch.randint(0, VOCAB - K, (batch, seq), device="cuda")
    ids[:, -K:] = torch.tensor(special, device="cuda")
    module = SpecialTokenEmbedding(embed, special, embed.weight[special].detach())
    grad_out = torch.randn(batch, seq, hidden, device="cuda").bfloat16()
    step = cuda_step(lambda: torch.autograd.grad(module(ids), module.special_rows, grad_out))
    benchmark.group = (
        f"special_token_embedding V={VOCAB} H={hidden} B={batch} T={seq} K={K} bf16 fwd+bwd CUDA"
    )
    benchmark.extra_info.update(provider=provider, baseline=provider == "torch")
    benchmark.pedantic(step, rounds=50, warmup_rounds=5, iterations=1)
