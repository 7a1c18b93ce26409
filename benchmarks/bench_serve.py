"""``llm2vec-gen serve`` throughput and latency against offline ``encode`` of the same texts.

A tiny Qwen3 (hidden 256, 4 layers, the real Qwen tokenizer, K=10, D=256) saved as a checkpoint;
256 texts of 5..400 words (bench_encode's). The server runs in a subprocess on 127.0.0.1 with one
torch thread, like the offline encode here (``one_thread``); the load generator is one asyncio
httpx client in this process, each request one text to ``/v1/embeddings`` in base64 (what the
``openai`` client asks for).

- throughput: offline ``encode(texts, batch_size=32)`` vs the server under 32 concurrent clients
  (dynamic batching) vs one request at a time, timed in turn within each round (the shared
  machine's load swings by 30% between minutes: only ratios within a round compare);
- latency: requests sent at a fixed rate (open loop, ``RATE`` per second for ``DURATION`` s),
  p50 / p99 from send to answer.

- what batch invariance costs (``llm2vec_gen.invariant``: per-row attention, GEMM rows padded to a
  multiple of 8): offline ``encode`` against the same encode with transformers' SDPA over each
  padded batch and the heads on the batch's own rows (the encode path before #14's invariance),
  timed in turn within each round, on this tiny model and on an LLM of SmolLM2-135M's shape.

    OMP_NUM_THREADS=1 pytest benchmarks/bench_serve.py --benchmark-only -s --benchmark-json=serve.json
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from bench_cpu_limits import SHAPES, random_llm
from bench_encode import mixed_texts

from llm2vec_gen.batching import positions, token_batches
from llm2vec_gen.ops import encode_tail

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the live-server helper
from serve_process import LiveServer  # noqa: E402

N_TEXTS, CLIENTS, RATE, DURATION = 256, 32, 4.0, 15.0
GROUP = f"serve: {N_TEXTS} texts of 5..400 words, tiny Qwen3 H=256 L=4, 1 torch thread"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_qwen3

    root = tmp_path_factory.mktemp("serve-bench")
    llm = tiny_qwen3(QWEN_VOCAB_SIZE, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2)
    llm.save_pretrained(root / "base")
    model = LLM2VecGenModel.from_base(llm, qwen_tokenizer(), 10, teacher_dim=256, device="cpu")
    model.save_pretrained(root / "ckpt", base_model_name_or_path=str(root / "base"))
    return root / "ckpt"


@pytest.fixture(scope="module")
def model(checkpoint):
    from llm2vec_gen.model import LLM2VecGenModel

    return LLM2VecGenModel.from_pretrained(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(checkpoint):
    live = LiveServer(checkpoint, "--max-concurrent-requests", "1024").start()
    yield live
    assert live.stop() == 0, live.tail()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return mixed_texts(N_TEXTS, seed=1)


async def _post(http, url: str, text: str) -> np.ndarray:
    response = await http.post(url, json={"input": text, "model": "m", "encoding_format": "base64"})
    response.raise_for_status()
    return np.frombuffer(base64.b64decode(response.json()["data"][0]["embedding"]), dtype="<f4")


def served(url: str, texts: list[str], clients: int) -> np.ndarray:
    """[n, D] of ``texts``, one per request, ``clients`` requests in flight at a time."""

    async def main() -> list[np.ndarray]:
        out: list = [None] * len(texts)
        todo = iter(range(len(texts)))
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=300, limits=limits) as http:

            async def client() -> None:
                for i in todo:
                    out[i] = await _post(http, url + "/v1/embeddings", texts[i])

            await asyncio.gather(*(client() for _ in range(clients)))
        return out

    return np.stack(asyncio.run(asyncio.wait_for(main(), timeout=900)))


def fixed_rate_latencies(url: str, texts: list[str], rate: float, duration: float) -> np.ndarray:
    """Seconds from send to answer of requests sent every 1/rate s for ``duration`` s (open loop)."""

    async def main() -> list[float]:
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=1024)) as http:

            async def one(i: int, at: float) -> float:
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                sent = time.perf_counter()
                await _post(http, url + "/v1/embeddings", texts[i % len(texts)])
                return time.perf_counter() - sent

            start = time.perf_counter()
            count = int(rate * duration)
            return await asyncio.gather(*(one(i, start + i / rate) for i in range(count)))

    return np.asarray(asyncio.run(asyncio.wait_for(main(), timeout=900)))


def in_turn(runs: dict[str, Callable[[], object]]) -> tuple[dict[str, list[float]], Callable[[], None]]:
    """(seconds per name, one_round): each call of one_round times every run once, in order, so all
    see the same machine load; the lists collect the seconds of each run over the rounds."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}

    def one_round() -> None:
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)

    return seconds, one_round


def bench_server_vs_offline(benchmark, server, model, texts):
    """Each round times offline encode, the server under 32 clients and under 1 client, one after the
    other, so the three see the same load on the shared machine; the ratios are of per-provider
    medians over the rounds (the benchmark's own time is a whole round)."""
    runs = {
        "offline encode, batch 32": lambda: model.encode(texts, batch_size=32),
        f"server, {CLIENTS} concurrent clients": lambda: served(server.url, texts, CLIENTS),
        "server, 1 client": lambda: served(server.url, texts, 1),
    }
    seconds, one_round = in_turn(runs)
    served(server.url, texts[:CLIENTS], CLIENTS)  # warm-up: connections, first batches
    benchmark.group = GROUP
    benchmark.extra_info.update(provider="offline, 32 clients, 1 client in turn", baseline=True)
    benchmark.pedantic(one_round, rounds=3)
    rates = {name: N_TEXTS / float(np.median(s)) for name, s in seconds.items()}
    offline, many, one = rates.values()
    benchmark.extra_info.update(texts_per_s=rates, ratio_32_clients_vs_offline=many / offline,
                                ratio_32_clients_vs_1_client=many / one)  # fmt: skip
    print("\n" + "\n".join(f"{name}: {rate:.1f} texts/s" for name, rate in rates.items()))
    print(f"32 clients / offline = {many / offline:.2f}, 32 clients / 1 client = {many / one:.2f}")
    expected = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_array_equal(served(server.url, texts, CLIENTS), expected)  # batch-invariant


def bench_server_latency_at_fixed_rate(benchmark, server, texts):
    benchmark.group = f"serve latency: {RATE:g} requests/s for {DURATION:g} s, one text each"
    benchmark.extra_info.update(provider="server", baseline=True)
    latencies = benchmark.pedantic(lambda: fixed_rate_latencies(server.url, texts, RATE, DURATION), rounds=1)
    p50, p99 = np.percentile(latencies, [50, 99])
    benchmark.extra_info.update(p50_ms=1e3 * p50, p99_ms=1e3 * p99, requests=len(latencies))
    print(
        f"\nlatency at {RATE:g}/s: p50 {1e3 * p50:.1f} ms, p99 {1e3 * p99:.1f} ms, {len(latencies)} requests"
    )


@torch.inference_mode()
def batch_dependent_encode(model, texts: list[str], batch_size: int) -> torch.Tensor:
    """[n, D] fp32 as ``encode`` ran before its batch invariance: transformers' SDPA over each
    length-sorted, left-padded batch (pads masked) and the folded heads on the batch's own rows."""
    rows = model.tokenize(texts)
    out = torch.empty(len(rows), model.embedding_dim)
    for batch in token_batches([len(r) for r in rows], batch_size):
        ids, mask = model.pad([rows[i] for i in batch])
        hidden = model.llm.base_model(
            inputs_embeds=model.embed_tokens(ids), attention_mask=mask, position_ids=positions(mask)
        ).last_hidden_state[:, -model.num_encode_tokens :]
        out[batch] = encode_tail(hidden, *model.folded_heads())
    return out


@pytest.fixture(scope="module")
def smollm2_model():
    """A random LLM of SmolLM2-135M's shape (Qwen tokenizer's vocabulary), K=10, D=576."""
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer

    llm = random_llm(dataclasses.replace(SHAPES["smollm2"], vocab=QWEN_VOCAB_SIZE))
    return LLM2VecGenModel.from_base(llm, qwen_tokenizer(), 10, teacher_dim=576, device="cpu")


INVARIANCE_CASES = {  # name: (model fixture, texts, batch size, rounds)
    "tiny Qwen3 H=256 L=4, 256 texts, batch 32": ("model", N_TEXTS, 32, 3),
    "tiny Qwen3 H=256 L=4, 64 texts, batch 1": ("model", 64, 1, 3),
    "SmolLM2-135M shape, 32 texts, batch 32": ("smollm2_model", 32, 32, 2),
}


@pytest.mark.parametrize("case", list(INVARIANCE_CASES))
def bench_invariance_cost(benchmark, request, texts, case):
    """Batch-invariant ``encode`` vs the batch-dependent one, in turn each round (5..400 words); the
    ratio is of per-provider medians over the rounds."""
    fixture, count, batch_size, rounds = INVARIANCE_CASES[case]
    model, some = request.getfixturevalue(fixture), texts[:count]
    runs = {
        "batch-dependent": lambda: batch_dependent_encode(model, some, batch_size),
        "batch-invariant": lambda: model.encode(some, batch_size=batch_size),
    }
    torch.testing.assert_close(runs["batch-invariant"](), runs["batch-dependent"](), rtol=1e-4, atol=1e-5)
    seconds, one_round = in_turn(runs)
    benchmark.group = f"encode, batch invariance cost: {case}, fp32, 1 torch thread"
    benchmark.extra_info.update(provider="batch-dependent, batch-invariant in turn", baseline=True)
    benchmark.pedantic(one_round, rounds=rounds)
    rates = {name: len(some) / float(np.median(s)) for name, s in seconds.items()}
    ratio = rates["batch-invariant"] / rates["batch-dependent"]
    benchmark.extra_info.update(texts_per_s=rates, ratio_invariant_vs_dependent=ratio)
    print("\n" + "\n".join(f"{name}: {rate:.2f} texts/s" for name, rate in rates.items()))
    print(f"batch-invariant / batch-dependent = {ratio:.3f}")
