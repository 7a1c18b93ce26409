"""appended_attention and the prefix-cache encoder forward, fp32 CPU.

Op level: the C++ kernel (packed GQA, no cache copy, grads for the K appended tokens only) against
the eager reference (concatenate + repeat K/V, explicit [K, L + K] mask, autograd), forward alone
(encoding) and forward + backward (training).

Encoder level: one training step's encoder part on a tiny Qwen3 (hidden 256, 4 layers, 8 heads,
4 KV heads): ``forward_appended`` (prefix once under no_grad, then K=10 tokens with grad) against
the full-sequence forward + backward through all T + K tokens; both end in the gradient of the
K appended embeddings. ``peak_mb`` is the resident-memory high-water mark that one step adds.

    pytest benchmarks/bench_appended_attention.py --benchmark-only --benchmark-json=/tmp/aa.json
    python benchmarks/report.py /tmp/aa.json
"""

import pytest
import torch
from conftest import cuda_step, peak_memory_mb, requires_cuda
from transformers import Qwen3Config, Qwen3Model

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import appended_attention, appended_attention_reference
from llm2vec_gen.prefix_cache import forward_appended, prefix_positions

# batch, heads, kv heads, K, head dim, prefix length L
OP_SHAPES = [(8, 16, 8, 10, 128, 200), (4, 32, 8, 10, 128, 512)]
KLEN = 10


def _skip_without_extension(provider):
    if provider != "eager" and _dispatch.extension() is None:
        pytest.skip("llm2vec_gen._C is not built")


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", OP_SHAPES, ids=lambda s: "B{}-h{}-hkv{}-K{}-d{}-L{}".format(*s))
@pytest.mark.parametrize("provider", ["eager", "cpp"])
def bench_appended_attention(benchmark, monkeypatch, provider, shape, mode):
    _skip_without_extension(provider)
    monkeypatch.setenv(_dispatch.ENV_VAR, "cpp")
    batch, heads, hkv, klen, dim, length = shape
    grad = mode == "fwd+bwd"
    q = torch.randn(batch, heads, klen, dim, requires_grad=grad)
    k, v = (torch.randn(batch, hkv, klen, dim, requires_grad=grad) for _ in range(2))
    k_cache, v_cache = torch.randn(batch, hkv, length, dim), torch.randn(batch, hkv, length, dim)
    mask = torch.arange(length)[None, :] >= torch.randint(0, length // 2, (batch, 1))
    fn = appended_attention_reference if provider == "eager" else appended_attention

    def step():
        out = fn(q, k, v, k_cache, v_cache, mask)
        return torch.autograd.grad(out.sum(), (q, k, v)) if grad else out

    benchmark.group = (
        f"appended_attention B={batch} h={heads} hkv={hkv} K={klen} d={dim} L={length} fp32 {mode}"
    )
    benchmark.extra_info.update(provider=provider, baseline=provider == "eager", peak_mb=peak_memory_mb(step))
    benchmark.pedantic(step, rounds=20, warmup_rounds=2, iterations=1)


def _tiny_qwen3():
    config = Qwen3Config(
        vocab_size=1000,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=32,
    )
    return Qwen3Model(config).eval().requires_grad_(False)


def _full_sequence(model, input_ids, mask, appended):
    full_mask = torch.cat([mask, torch.ones_like(mask[:, : appended.shape[1]])], dim=1)
    embeds = torch.cat([model.embed_tokens(input_ids), appended], dim=1)
    out = model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=prefix_positions(full_mask))
    return out.last_hidden_state[:, -appended.shape[1] :]


@pytest.mark.parametrize("length", [128, 200])
@pytest.mark.parametrize("provider", ["full_sequence", "prefix_cache"])
def bench_encoder_forward_backward(benchmark, monkeypatch, provider, length):
    _skip_without_extension(provider)
    monkeypatch.setenv(_dispatch.ENV_VAR, "cpp")
    torch.manual_seed(0)
    model = _tiny_qwen3()
    batch = 8
    input_ids = torch.randint(0, 1000, (batch, length))
    mask = (torch.arange(length)[None, :] >= torch.randint(0, length // 2, (batch, 1))).long()
    appended = torch.randn(batch, KLEN, 256, requires_grad=True)
    fn = _full_sequence if provider == "full_sequence" else forward_appended

    def step():
        return torch.autograd.grad(fn(model, input_ids, mask, appended).square().sum(), appended)

    benchmark.group = f"encoder fwd+bwd tiny Qwen3 (H=256, 4 layers) B={batch} T={length} K={KLEN} fp32"
    benchmark.extra_info.update(
        provider=provider, baseline=provider == "full_sequence", peak_mb=peak_memory_mb(step)
    )
    benchmark.pedantic(step, rounds=10, warmup_rounds=2, iterations=1)


@requires_cuda
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize(
    "shape",
    [(8, 32, 8, 10, 128, 512), (32, 32, 8, 10, 128, 512)],
    ids=lambda s: "B{}-h{}-hkv{}-K{}-d{}-L{}".format(*s),
)
@pytest.mark.parametrize("provider", ["eager", "triton"])
def bench_appended_attention_cuda(benchmark, monkeypatch, provider, shape, mode):
    """Qwen3-4B/8B attention (32 heads, 8 KV heads, d = 128) in bf16 on the GPU: compiled Triton
    against the eager reference (concatenated, repeated K/V, explicit mask, fp32 softmax)."""
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    batch, heads, hkv, klen, dim, length = shape
    grad = mode == "fwd+bwd"

    def rand(*s, g=False):
        return torch.randn(*s, device="cuda").bfloat16().requires_grad_(g)

    q, k, v = (
        rand(batch, heads, klen, dim, g=grad),
        rand(batch, hkv, klen, dim, g=grad),
        rand(batch, hkv, klen, dim, g=grad),
    )
    k_cache, v_cache = rand(batch, hkv, length, dim), rand(batch, hkv, length, dim)
    mask = torch.arange(length, device="cuda")[None, :] >= torch.randint(
        0, length // 2, (batch, 1), device="cuda"
    )
    fn = appended_attention_reference if provider == "eager" else appended_attention

    def step():
        out = fn(q, k, v, k_cache, v_cache, mask)
        return torch.autograd.grad(out.float().sum(), (q, k, v)) if grad else out

    benchmark.group = (
        f"appended_attention B={batch} h={heads} hkv={hkv} K={klen} d={dim} L={length} bf16 {mode} CUDA"
    )
    benchmark.extra_info.update(provider=provider, baseline=provider == "eager")
    benchmark.pedantic(cuda_step(step), rounds=50, warmup_rounds=5, iterations=1)
