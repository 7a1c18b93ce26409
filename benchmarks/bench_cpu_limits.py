"""How close encode comes to this CPU's own GEMM rate, in fp32, bf16 and dynamic int8 (issue #16).

1. The machine's GEMM rate per precision, one thread: ``F.linear`` [M, K] x [N, K]^T in fp32 and bf16
   (oneDNN), and torch's dynamic int8 linear (fbgemm/x86: activation quantized per call, int8 GEMM,
   fp32 out), M=2048 (tokens), K=1024, N=3072 (a Qwen3-0.6B MLP projection).
2. The model FLOPs/s that ``LLM2VecGenModel.encode_ids`` reaches on real model shapes with random
   weights (SmolLM2-135M: hidden 576, 30 layers, 9/3 heads, intermediate 1536, vocab 49,152;
   Qwen3-0.6B: hidden 1024, 28 layers, 16/8 heads of 128, intermediate 3072) over 16 rows of 5-400
   tokens (+ the K=10 special tokens), token-budget batches of at most 1,024 padded tokens.
   Model FLOPs count the useful work only: 2 x the backbone's linear weights per real token plus the
   causal attention (QK^T and PV over real tokens); padding, norms, RoPE and activations are not
   counted, so efficiency = model FLOPs/s / GEMM rate of the same precision shows what they cost.

    pytest benchmarks/bench_cpu_limits.py --benchmark-only --benchmark-json=/tmp/limits.json
    python benchmarks/bench_cpu_limits.py --profile smollm2 fp32   # where the time goes (torch.profiler)

bf16 here is the LLM in bf16 with bf16 GEMMs, what CUDA and avx512_bf16/AMX CPUs run (on a CPU
without them ``from_pretrained(dtype=torch.bfloat16)`` multiplies bf16 weights in fp32 instead:
bench_cpu_encode.py measures that mode). It runs only on the SmolLM2 shape: without avx512_bf16/AMX
this CPU's bf16 GEMM rate (part 1) makes a Qwen3-0.6B bf16 pass take minutes.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Qwen3Config, Qwen3ForCausalLM

from llm2vec_gen.batching import padded_tokens, token_batches
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.precision import quantize_int8, smooth_and_quantize_int8
from llm2vec_gen.tiny import qwen_tokenizer

GEMM_M, GEMM_K, GEMM_N = 2048, 1024, 3072
N_ROWS, MIN_TOKENS, MAX_TOKENS, MAX_BATCH_TOKENS, K = 16, 5, 400, 1024, 10
PRECISIONS = ("fp32", "bf16", "int8")

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class Shape:
    """A decoder's shape (the parts encode FLOPs depend on)."""

    name: str
    arch: str  # "llama" or "qwen3"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    def linear_weights(self) -> int:
        """Weights of one layer's linear maps: q, k, v, o and the gated MLP's three."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 2 * self.hidden * q + 2 * self.hidden * kv + 3 * self.hidden * self.intermediate

    def encode_flops(self, lengths: list[int]) -> float:
        """Model FLOPs of one forward over rows of these real lengths (no padding): 2 per linear
        weight per token, and 2 x 2 x (n(n+1)/2) x heads x head_dim per row for causal QK^T and PV."""
        tokens = sum(lengths)
        pairs = sum(n * (n + 1) / 2 for n in lengths)
        return self.layers * (2 * self.linear_weights() * tokens + 4 * pairs * self.heads * self.head_dim)


SHAPES = {
    "smollm2": Shape("SmolLM2-135M", "llama", 576, 30, 9, 3, 64, 1536, 49_152),
    "qwen3": Shape("Qwen3-0.6B", "qwen3", 1024, 28, 16, 8, 128, 3072, 151_936),
}


def random_llm(shape: Shape, seed: int = 0) -> PreTrainedModel:
    """A causal LM of ``shape`` with random weights (tied embeddings, SDPA attention), fp32, eval."""
    common = dict(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    llama = shape.arch == "llama"
    config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if llama else (Qwen3Config, Qwen3ForCausalLM)
    torch.manual_seed(seed)
    return model_cls(config_cls(**common)).eval()


def with_precision(model: LLM2VecGenModel, precision: str) -> LLM2VecGenModel:
    """A copy of an fp32 ``model`` whose LLM runs in ``precision`` (heads and pooling stay fp32)."""
    out = copy.deepcopy(model)
    if precision == "bf16":
        out.llm.to(torch.bfloat16)  # the bf16 LLM of bf16 hardware, not this CPU's bf16-weights mode
    elif precision == "int8":
        smooth_and_quantize_int8(out)  # what from_pretrained(quantize="int8") does
    return out


def encoder(shape: Shape) -> LLM2VecGenModel:
    """An fp32 LLM2Vec-Gen model on a random LLM of ``shape`` (the Qwen tokenizer's K special ids lie
    past a smaller table: the embedding op takes them from the K rows)."""
    return LLM2VecGenModel.from_base(random_llm(shape), qwen_tokenizer(), K, teacher_dim=shape.hidden)


def token_rows(model: LLM2VecGenModel, n: int = N_ROWS, seed: int = 0) -> list[list[int]]:
    """n rows of MIN_TOKENS..MAX_TOKENS random body ids, each ending with the K special ids."""
    rng = random.Random(seed)
    vocab = min(model.llm.get_input_embeddings().weight.shape[0], len(model.tokenizer))
    special = model.special_ids.tolist()
    rows = [[rng.randrange(vocab) for _ in range(rng.randint(MIN_TOKENS, MAX_TOKENS))] for _ in range(n)]
    return [row + special for row in rows]


def run_tokens(lengths: list[int]) -> int:
    """Tokens ``encode_ids(rows, max_batch_tokens=MAX_BATCH_TOKENS)`` runs, padding included."""
    return padded_tokens(lengths, token_batches(lengths, 32, MAX_BATCH_TOKENS))


def gemm_call(precision: str) -> Callable[[], torch.Tensor]:
    """One [M, K] x [N, K]^T product in ``precision`` (int8: the shipped ``PerTokenInt8Linear``, torch's
    dynamic int8 linear with per-token scaling)."""
    torch.manual_seed(0)
    x, layer = torch.randn(GEMM_M, GEMM_K), nn.Linear(GEMM_K, GEMM_N, bias=False)
    if precision == "int8":
        linear = quantize_int8(nn.Sequential(layer))
        return lambda: linear(x)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    xd, wd = x.to(dtype), layer.weight.detach().to(dtype)
    return lambda: nn.functional.linear(xd, wd)


GEMM_RATES: dict[str, float] = {}  # GFLOP/s per precision, filled by bench_gemm_rate in this run


@pytest.mark.parametrize("precision", PRECISIONS)
def bench_gemm_rate(benchmark, precision):
    benchmark.group = f"CPU GEMM rate M={GEMM_M} K={GEMM_K} N={GEMM_N}, 1 thread"
    benchmark.extra_info.update(provider=precision, baseline=precision == "fp32")
    call = gemm_call(precision)
    with torch.inference_mode():
        benchmark.pedantic(call, rounds=3 if precision == "bf16" else 10, warmup_rounds=1, iterations=1)
    GEMM_RATES[precision] = 2 * GEMM_M * GEMM_K * GEMM_N / benchmark.stats.stats.median / 1e9
    benchmark.extra_info.update(gflops_per_s=round(GEMM_RATES[precision], 1))


@pytest.fixture(scope="module", params=list(SHAPES))
def fp32_encoder(request) -> tuple[Shape, LLM2VecGenModel, list[list[int]]]:
    shape = SHAPES[request.param]
    model = encoder(shape)
    return shape, model, token_rows(model)


@pytest.mark.parametrize("precision", PRECISIONS)
def bench_encode_flops(benchmark, fp32_encoder, precision):
    shape, fp32_model, rows = fp32_encoder
    if precision == "bf16" and shape.name != "SmolLM2-135M":
        pytest.skip("bf16 without avx512_bf16: minutes per pass at this shape (see the GEMM rates)")
    model = with_precision(fp32_model, precision)
    lengths = [len(r) for r in rows]
    benchmark.group = (
        f"encode {N_ROWS} rows of {MIN_TOKENS}-{MAX_TOKENS}+{K} tokens, {shape.name} shape, "
        f"max_batch_tokens={MAX_BATCH_TOKENS}, 1 thread"
    )
    benchmark.extra_info.update(provider=precision, baseline=precision == "fp32")
    rounds = 1 if precision == "bf16" else 2  # passes of 5-40 s: the first one is not discarded
    benchmark.pedantic(lambda: model.encode_ids(rows, max_batch_tokens=MAX_BATCH_TOKENS), rounds=rounds)
    rate = shape.encode_flops(lengths) / benchmark.stats.stats.median / 1e9
    benchmark.extra_info.update(
        real_tokens=sum(lengths),
        padded_tokens=run_tokens(lengths),
        model_gflops_per_s=round(rate, 1),
    )
    if precision in GEMM_RATES:
        benchmark.extra_info.update(efficiency=round(rate / GEMM_RATES[precision], 3))


CATEGORIES = (  # (name, substrings of profiler op names), first match wins
    ("GEMM", ("aten::mm", "aten::addmm", "aten::bmm", "quantized::linear", "mkldnn")),
    ("attention", ("attention", "flash", "softmax")),
    ("norms", ("rms_norm", "pow", "mean", "rsqrt")),
    ("elementwise (RoPE, SiLU, residual)", ("mul", "add", "silu", "cat", "neg", "cos", "sin", "sub")),
)


def profile(shape_key: str, precision: str) -> None:
    """Print where one encode pass spends its time: self CPU time per op category, the rest (Python
    and framework overhead) as wall time minus the ops' time, and the padding share."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(1)
    shape = SHAPES[shape_key]
    model = with_precision(encoder(shape), precision)
    rows = token_rows(model)
    lengths = [len(r) for r in rows]
    model.encode_ids(rows, max_batch_tokens=MAX_BATCH_TOKENS)  # warm-up
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        model.encode_ids(rows, max_batch_tokens=MAX_BATCH_TOKENS)
        wall_us = (time.perf_counter() - start) * 1e6
    events = prof.key_averages()
    totals = dict.fromkeys([c for c, _ in CATEGORIES] + ["other ops"], 0.0)
    for e in events:
        name = e.key.lower()
        cat = next((c for c, subs in CATEGORIES if any(s in name for s in subs)), "other ops")
        totals[cat] += e.self_cpu_time_total
    padded = run_tokens(lengths)
    print(f"{shape.name} {precision}: {wall_us / 1e6:.2f} s, {sum(lengths)} real tokens, {padded} run "
          f"({1 - sum(lengths) / padded:.1%} padding)")  # fmt: skip
    for cat, us in [*totals.items(), ("Python / framework", wall_us - sum(totals.values()))]:
        print(f"  {cat:36s} {us / 1e6:7.2f} s  {us / wall_us:6.1%}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", nargs=2, metavar=("SHAPE", "PRECISION"), required=True)
    args = parser.parse_args()
    shape_key, precision = args.profile
    if shape_key not in SHAPES or precision not in PRECISIONS:
        parser.error(f"SHAPE is one of {list(SHAPES)}, PRECISION one of {list(PRECISIONS)}")
    profile(shape_key, precision)


if __name__ == "__main__":
    main()
