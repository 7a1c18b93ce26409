"""Encode on the CPU against what users would pick instead: same texts, same thread count, one run.

32 texts of 5-400 tokens (seeded runs of words from the bundled demo corpus), one thread, one random
LLM of SmolLM2-135M's shape (hidden 576, 30 layers, 9/3 heads, intermediate 1536) with the real Qwen
tokenizer's vocabulary (151,669 + K), saved as a base model and a checkpoint that every side loads:

- plain transformers (``AutoModel``) with mean pooling and with last-token pooling, as
  sentence-transformers runs a decoder embedder (length-sorted batches of 8, padded to the longest);
- the llm2vec-gen 0.1.3 package in benchmarks/.refenv (its own encode, batches of 8 in the given
  order), driven as in bench_reference.py;
- this library, ``from_pretrained(ckpt)`` in fp32, ``dtype=torch.bfloat16`` and ``quantize="int8"``
  (batches of at most 8, length-sorted, under the default token budget; and fp32 with
  ``max_batch_tokens=1024``). On a CPU without bf16 hardware ``dtype=torch.bfloat16`` keeps bf16
  linear weights and multiplies them in fp32 (``precision.bf16_weights``).

texts/s and tokens/s (the texts' own tokens, without the K special tokens) are in extra_info, and for
this library the worst and mean per-row cosine of its embeddings against its fp32 ones and the MiB
of the LLM's weights (``llm_weight_mib``: parameters and buffers, int8's packed weights included).

``bench_small_batches`` (two groups): one short text's encode and a 32-token decode from it, in
fp32, bf16 and int8: the small batches where a per-call cost (bf16's weight upcast) shows.

``bench_token_budget`` (its own group): this library in fp32 on 64 texts of 5-400 tokens,
``batch_size=32`` by count alone (``COUNT_ONLY``) against token budgets (``max_batch_tokens``; None:
the default, 2,048 on a CPU) and a smaller fixed batch;
extra_info has the padding waste and the largest batch's padded tokens (what bounds the memory of a
forward pass: activations grow with it).

    pytest benchmarks/bench_cpu_encode.py --benchmark-only --benchmark-json=/tmp/cpu_encode.json
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from importlib import resources

import pytest
import torch
from bench_cpu_limits import SHAPES, random_llm
from bench_reference import DRIVER, REFENV_PYTHON, _Reference
from transformers import AutoModel

from llm2vec_gen.batching import batch_token_budget, padded_tokens, token_batches
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer

N_TEXTS, BATCH, MAX_LENGTH, MAX_BATCH_TOKENS, K = 32, 8, 512, 1024, 10
COUNT_ONLY = 10**9
"""A budget no batch reaches: batches by count alone (``encode``'s behaviour before the default budget)."""
SHAPE = dataclasses.replace(SHAPES["smollm2"], vocab=QWEN_VOCAB_SIZE)
FP32_EMBEDDINGS: dict[str, torch.Tensor] = {}  # this library's fp32 embeddings, the quality reference
GROUP = f"encode {N_TEXTS} texts of 5-400 tokens, SmolLM2-135M shape, CPU, 1 thread"


def corpus_texts(n: int = N_TEXTS, seed: int = 0) -> list[str]:
    """n texts of 4..300 words (5..400 Qwen tokens), seeded runs of the demo corpus's words."""
    lines = resources.files("llm2vec_gen").joinpath("data/demo_corpus.jsonl").read_text().splitlines()
    words = " ".join(" ".join(json.loads(line)[k] for k in ("query", "answer")) for line in lines).split()
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        size, start = rng.randint(4, 300), rng.randrange(len(words))
        texts.append(" ".join((words[start:] + words)[:size]))
    return texts


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("bench_cpu_encode")
    llm = random_llm(SHAPE)
    llm.save_pretrained(root / "base")
    fresh = LLM2VecGenModel.from_base(llm, qwen_tokenizer(), K, teacher_dim=384, device="cpu", seed=1)
    with torch.no_grad():
        fresh.special_rows.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(2))
    fresh.save_pretrained(root / "ckpt", base_model_name_or_path=str(root / "base"))
    del fresh, llm
    texts = corpus_texts()
    (root / "texts.json").write_text(json.dumps(texts))
    tokens = sum(len(ids) for ids in qwen_tokenizer()(texts)["input_ids"])
    return root, texts, tokens


def _record(
    benchmark,
    provider: str,
    fn: Callable[[], object],
    texts: list[str],
    tokens: int,
    rounds: int = 2,
    group: str = GROUP,
) -> object:
    """Times ``fn`` (``rounds`` calls, no warm-up: a pass takes 10-100 s), records texts/s and
    tokens/s; returns what the last call returned."""
    benchmark.group = group
    benchmark.extra_info.update(provider=provider, baseline=provider.startswith("transformers, mean"))
    result = benchmark.pedantic(fn, rounds=rounds)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        texts_per_s=round(len(texts) / median, 2), tokens_per_s=round(tokens / median, 1),
        threads=torch.get_num_threads(),
    )  # fmt: skip
    return result


@pytest.mark.parametrize("pooling", ["mean", "last-token"])
def bench_transformers(benchmark, setup, pooling):
    root, texts, tokens = setup
    model = AutoModel.from_pretrained(root / "base", dtype=torch.float32).eval()
    tok = qwen_tokenizer()
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))

    @torch.inference_mode()
    def encode() -> torch.Tensor:
        out = torch.empty(len(texts), SHAPE.hidden)
        for start in range(0, len(texts), BATCH):
            index = order[start : start + BATCH]
            batch = tok([texts[i] for i in index], padding=True, truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")  # fmt: skip
            hidden = model(**batch).last_hidden_state  # [b, T, H], left padded
            if pooling == "mean":
                mask = batch["attention_mask"].unsqueeze(-1).float()
                out[index] = (hidden * mask).sum(1) / mask.sum(1)
            else:
                out[index] = hidden[:, -1]
        return out

    _record(benchmark, f"transformers, {pooling} pooling", encode, texts, tokens)


@pytest.mark.skipif(not REFENV_PYTHON.exists(), reason=f"reference env absent ({REFENV_PYTHON})")
def bench_reference_package(benchmark, setup):
    root, texts, tokens = setup
    reference = _Reference(
        DRIVER, str(root / "ckpt"), str(root / "texts.json"), "--out", str(root / "ref.npy"), "--serve",
        "--batch-size", str(BATCH), "--max-length", str(MAX_LENGTH),
    )  # fmt: skip
    try:
        _record(benchmark, "llm2vec-gen 0.1.3 (fp32)", lambda: reference.ask("encode"), texts, tokens)
        benchmark.extra_info.update(reference_versions=reference.info["versions"])
    finally:
        reference.close()


def load_ours(root, precision: str) -> LLM2VecGenModel:
    """The benchmark checkpoint as ``from_pretrained`` loads it in ``precision`` (fp32, bf16, int8)."""
    options = {"bf16": {"dtype": torch.bfloat16}, "int8": {"quantize": "int8"}}.get(precision, {})
    return LLM2VecGenModel.from_pretrained(root / "ckpt", device="cpu", **options)


def weight_mib(module: torch.nn.Module) -> float:
    """MiB of ``module``'s state (parameters and buffers; int8 linears' packed weights included)."""
    tensors = [t for v in module.state_dict().values() for t in (v if isinstance(v, tuple) else (v,))]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)) / 2**20


@pytest.mark.parametrize(
    ("precision", "max_batch_tokens"),
    [("fp32", None), ("fp32", MAX_BATCH_TOKENS), ("bf16", None), ("int8", None)],
)
def bench_ours(benchmark, setup, precision, max_batch_tokens):
    root, texts, tokens = setup
    model = load_ours(root, precision)
    provider = f"llm2vec_gen {precision}" + (
        f", max_batch_tokens={max_batch_tokens}" if max_batch_tokens else ""
    )

    def encode() -> torch.Tensor:
        return model.encode(texts, MAX_LENGTH, batch_size=BATCH, max_batch_tokens=max_batch_tokens)

    emb = _record(benchmark, provider, encode, texts, tokens)
    reference = FP32_EMBEDDINGS.setdefault("fp32", emb)
    cos = torch.nn.functional.cosine_similarity(emb.double(), reference.double(), dim=-1)
    benchmark.extra_info.update(min_cosine_vs_fp32=float(cos.min()), mean_cosine_vs_fp32=float(cos.mean()),
                                llm_weight_mib=round(weight_mib(model.llm), 1))  # fmt: skip


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("work", ["encode 1 text", "decode 1 x 32 tokens"])
def bench_small_batches(benchmark, setup, precision, work):
    """What a server's single requests and ``decode`` run: one short text, or 32 greedy tokens from
    one text's recon states. bf16 on this CPU upcasts each linear's bf16 weights per call, a cost a
    small batch does not amortise."""
    root, texts, _ = setup
    model = load_ours(root, precision)
    text = min(texts, key=len)
    if work == "encode 1 text":
        fn = lambda: model.encode([text])  # noqa: E731
    else:
        _, recon = model.encode([text], get_recon_hidden_states=True)
        fn = lambda: model.decode(recon, max_new_tokens=32)  # noqa: E731
    fn()  # warm-up
    benchmark.group = f"{work}, SmolLM2-135M shape, CPU, 1 thread"
    benchmark.extra_info.update(provider=f"llm2vec_gen {precision}", baseline=precision == "fp32")
    benchmark.pedantic(fn, rounds=5 if work.startswith("encode") else 3)


@pytest.mark.parametrize(
    ("batch_size", "max_batch_tokens"),
    [(32, COUNT_ONLY), (32, None), (32, 4096), (32, 8192), (8, COUNT_ONLY)],
)
def bench_token_budget(benchmark, setup, batch_size, max_batch_tokens):
    root, _, _ = setup
    texts = corpus_texts(64, seed=1)
    model = LLM2VecGenModel.from_pretrained(root / "ckpt", device="cpu")
    lengths = [len(row) for row in model.tokenize(texts, max_length=MAX_LENGTH)]
    batches = token_batches(lengths, batch_size, batch_token_budget(model.device, max_batch_tokens))
    tokens = sum(len(ids) for ids in qwen_tokenizer()(texts)["input_ids"])

    def encode() -> torch.Tensor:
        return model.encode(texts, MAX_LENGTH, batch_size=batch_size, max_batch_tokens=max_batch_tokens)

    provider = f"llm2vec_gen fp32, batch_size={batch_size}, max_batch_tokens={max_batch_tokens}"
    group = "token budget: encode 64 texts of 5-400 tokens, SmolLM2-135M shape, CPU, 1 thread"
    _record(benchmark, provider, encode, texts, tokens, group=group)
    benchmark.extra_info.update(
        baseline=(batch_size, max_batch_tokens) == (32, COUNT_ONLY), batches=len(batches),
        padding_waste=round(1 - sum(lengths) / padded_tokens(lengths, batches), 4),
        largest_batch_padded_tokens=max(padded_tokens(lengths, [b]) for b in batches),
    )  # fmt: skip
