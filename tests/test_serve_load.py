"""``llm2vec-gen serve`` under load: concurrency, exactness of batched rows, disconnects, 429, SIGTERM.

Two live servers on 127.0.0.1 (tiny Qwen3 checkpoint, one torch thread):

- ``busy``: 64 concurrent clients, mixed lengths: every answer right and in order, nothing lost
  or duplicated, batches of more than one row formed.
- ``small``: ``--max-concurrent-requests 4``. Requests queued behind a slow decode share one
  forward pass; a client that disconnects has its rows dropped without running; the fifth
  concurrent request gets a 429; SIGTERM finishes every accepted request and exits 0.

Every returned vector must equal offline ``encode`` of its text alone bit for bit, whatever it was
batched with (encode is batch-invariant, ``llm2vec_gen.invariant``): /v1/embeddings answers in
base64 (the float32 bytes) and /embed in JSON floats (float32 values printed exactly).

Every wait is bounded (request timeouts, ``asyncio.wait_for``, polling deadlines).
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time

import httpx
import numpy as np
import pytest
import torch
from integration_checkpoint import TEXTS
from serve_process import LiveServer

CLIENTS, ROUNDS = 64, 3
POOL = [f"{TEXTS[i % len(TEXTS)]} " * (1 + (i * 5) % 11) for i in range(29)]  # 3 .. ~220 tokens
SLOW_DECODE = {"inputs": TEXTS[:4], "max_new_tokens": 100}  # seconds of engine time on this model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The servers run one torch thread; so does the offline reference here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def alone(model) -> dict[str, np.ndarray]:
    """Each text of the pool (and TEXTS) encoded alone, L2-normalised, fp32 [D]."""
    return {
        t: model.encode([t], normalize_embeddings=True, convert_to_numpy=True)[0] for t in {*POOL, *TEXTS}
    }


@pytest.fixture(scope="module")
def busy(ckpt):
    live = LiveServer(ckpt, "--max-concurrent-requests", "128").start()
    yield live
    assert live.stop() == 0, live.tail()


@pytest.fixture(scope="module")
def small(ckpt):
    live = LiveServer(ckpt, "--max-concurrent-requests", "4").start()
    yield live
    live.stop()


def embed(client: httpx.Client | httpx.AsyncClient, url: str, texts: list[str], route: str):
    """A request for ``texts`` on ``route`` (/v1/embeddings or /embed)."""
    body = {"input": texts, "model": "m", "encoding_format": "base64"}
    return client.post(url + route, json=body if route == "/v1/embeddings" else {"inputs": texts})


def vectors(route: str, response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    body = response.json()
    if route == "/embed":
        return np.asarray(body, np.float32)
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])


def wait_for(condition, seconds: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_64_concurrent_clients(busy, alone):
    async def client(c: int, http: httpx.AsyncClient) -> list[tuple[list[str], np.ndarray]]:
        done = []
        for r in range(ROUNDS):
            texts = [POOL[(c * 7 + r * 3 + j) % len(POOL)] for j in range(1 + (c + r) % 3)]
            route = "/v1/embeddings" if (c + r) % 2 else "/embed"
            done.append((texts, vectors(route, await embed(http, busy.url, texts, route))))
        return done

    async def main():
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            return await asyncio.gather(*(client(c, http) for c in range(CLIENTS)))

    before_rows = busy.metric("llm2vec_gen_batch_size_sum", kind="embed")
    results = asyncio.run(asyncio.wait_for(main(), timeout=600))
    answers = [a for per_client in results for a in per_client]
    assert len(answers) == CLIENTS * ROUNDS
    # right and in order: each row is its own text encoded alone, bit for bit
    wrong = [(texts, got) for texts, got in answers if not np.array_equal(got, [alone[t] for t in texts])]
    assert not wrong, f"{len(wrong)} of {len(answers)} answers differ from offline encode"
    sent = sum(len(texts) for texts, _ in answers)
    # nothing lost or duplicated: the engine ran exactly the rows that were sent, in batches > 1
    assert busy.metric("llm2vec_gen_batch_size_sum", kind="embed") - before_rows == sent
    batches = busy.metric("llm2vec_gen_batch_size_count", kind="embed")
    singles = busy.metric("llm2vec_gen_batch_size_bucket", kind="embed", le="1.0")
    assert singles < batches, "no batch of more than one row was formed"
    assert busy.metric("llm2vec_gen_requests_total", route="/embed", status="200") == CLIENTS * ROUNDS // 2
    assert busy.metric("llm2vec_gen_requests_in_flight") == 0


def in_flight(server: LiveServer) -> float:
    return server.metric("llm2vec_gen_requests_in_flight")


async def slow_then(server: LiveServer, then) -> tuple[httpx.Response, list]:
    """Starts SLOW_DECODE; once it runs, awaits ``then(http)``; returns both outcomes."""
    async with httpx.AsyncClient(timeout=300) as http:
        slow = asyncio.ensure_future(http.post(server.url + "/decode", json=SLOW_DECODE))
        await asyncio.to_thread(wait_for, lambda: in_flight(server) == 1, 60, "the slow decode")
        others = await then(http)
        return await slow, others


def test_queued_requests_share_one_forward_pass(small, alone):
    texts = [TEXTS[0], TEXTS[3], TEXTS[0]]
    before = small.metric("llm2vec_gen_batch_size_count", kind="embed")

    async def queued(http):
        return await asyncio.gather(*(embed(http, small.url, [t], "/embed") for t in texts))

    slow, answers = asyncio.run(asyncio.wait_for(slow_then(small, queued), timeout=300))
    assert slow.status_code == 200 and len(slow.json()["data"]) == 4
    got = [vectors("/embed", response)[0] for response in answers]
    for text, vector in zip(texts, got, strict=True):
        np.testing.assert_array_equal(vector, alone[text])
    assert small.metric("llm2vec_gen_batch_size_count", kind="embed") - before == 1
    assert small.metric("llm2vec_gen_batch_size_bucket", kind="embed", le="2.0") < small.metric(
        "llm2vec_gen_batch_size_bucket", kind="embed", le="4.0"
    ), "the three requests queued behind the decode ran as one batch of 3"


def test_disconnected_client_is_dropped_from_the_queue(small, alone, model):
    tokens_before = small.metric("llm2vec_gen_tokens_total", kind="embed")
    gone_before = small.metric("llm2vec_gen_requests_total", route="/embed", status="499")

    async def leave(http):
        with pytest.raises(httpx.ReadTimeout):
            await http.post(small.url + "/embed", json={"inputs": POOL[:5]}, timeout=0.5)
        await asyncio.to_thread(
            wait_for,
            lambda: (
                small.metric("llm2vec_gen_requests_total", route="/embed", status="499") == gone_before + 1
            ),
            60,
            "the 499",
        )
        return await embed(http, small.url, [TEXTS[1]], "/embed")

    slow, after = asyncio.run(asyncio.wait_for(slow_then(small, leave), timeout=300))
    assert slow.status_code == 200
    np.testing.assert_array_equal(vectors("/embed", after)[0], alone[TEXTS[1]])  # batched alone
    tokens = small.metric("llm2vec_gen_tokens_total", kind="embed") - tokens_before
    assert tokens == len(model.tokenize([TEXTS[1]])[0]), "the rows of the client that left must not run"


def test_429_then_sigterm_finishes_accepted_requests(small, alone):
    async def load(http):
        accepted = [asyncio.ensure_future(embed(http, small.url, [t], "/embed")) for t in TEXTS[2:5]]
        await asyncio.to_thread(wait_for, lambda: in_flight(small) == 4, 60, "4 requests in flight")
        refused = await embed(http, small.url, ["one too many"], "/embed")
        assert refused.status_code == 429 and "--max-concurrent-requests" in refused.json()["error"]
        small.proc.send_signal(signal.SIGTERM)
        return await asyncio.gather(*accepted)

    slow, answers = asyncio.run(asyncio.wait_for(slow_then(small, load), timeout=300))
    assert slow.status_code == 200 and len(slow.json()["data"]) == 4
    for text, response in zip(TEXTS[2:5], answers, strict=True):
        np.testing.assert_array_equal(vectors("/embed", response)[0], alone[text])
    assert small.proc.wait(timeout=120) == 0, small.tail()
    with pytest.raises(httpx.ConnectError):
        httpx.get(small.url + "/health", timeout=5)
