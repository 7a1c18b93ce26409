"""``llm2vec-gen serve`` through real clients: the official ``openai`` client, httpx and requests,
against a live server on 127.0.0.1 (tiny Qwen3 checkpoint, one torch thread on both sides).

Requests here are sent one at a time (``--max-padding 1``: a request's texts form one batch) and
every vector equals offline ``encode``'s bit for bit (encode is batch-invariant; concurrent batches
of other texts are checked in test_serve_load.py). Every bad input is a 4xx with a JSON error in its
API's shape, and the server keeps serving.
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
import requests
import torch
from integration_checkpoint import TEXTS
from serve_process import LiveServer

from llm2vec_gen.integrations.instructions import PROMPTS

KEY = "test-key-1234"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMIT = 64  # --max-input-length
DEFAULT = PROMPTS["query"]  # --default-prompt-name query
LONG = "a long text of many words " * 40  # > LIMIT tokens


@pytest.fixture(scope="module")
def server(ckpt):
    options = [
        "--api-key",
        KEY,
        "--served-model-name",
        "tiny",
        "--max-input-length",
        str(LIMIT),
        "--max-client-batch-size",
        "8",
        "--max-body-bytes",
        "100000",
        "--max-decode-tokens",
        "64",
        "--max-padding",
        "1",
        "--default-prompt-name",
        "query",
    ]
    live = LiveServer(ckpt, *options)
    live.start()
    yield live
    assert live.stop() == 0, live.tail()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The server runs one torch thread; so does the offline reference here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def offline(model, texts, instruction=DEFAULT, **kwargs) -> np.ndarray:
    """Offline encode as the server encodes (its default prompt unless another instruction)."""
    return model.encode(texts, convert_to_numpy=True, instruction=instruction, **kwargs)


def tokens(model, texts) -> int:
    return sum(len(r) for r in model.tokenize(texts, instruction=DEFAULT))


def test_openai_client_one_text_batch_and_base64(server, model):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    one = client.embeddings.create(model="tiny", input=TEXTS[0], encoding_format="float")
    assert one.model == "tiny" and one.object == "list" and len(one.data) == 1
    expected = offline(model, [TEXTS[0]], normalize_embeddings=True)
    np.testing.assert_array_equal(np.asarray(one.data[0].embedding, dtype=np.float32), expected[0])
    assert one.usage.prompt_tokens == one.usage.total_tokens == tokens(model, [TEXTS[0]])

    expected = offline(model, TEXTS, normalize_embeddings=True)
    floats = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="float")
    default = client.embeddings.create(model="tiny", input=TEXTS)  # asks for base64, decodes it itself
    explicit = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="base64")  # left as str
    for batch in (floats, default):
        assert [d.index for d in batch.data] == list(range(len(TEXTS)))
        np.testing.assert_array_equal(
            np.stack([np.asarray(d.embedding, np.float32) for d in batch.data]), expected
        )
        assert batch.usage.prompt_tokens == tokens(model, TEXTS)
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in explicit.data]
    np.testing.assert_array_equal(np.stack(decoded), expected)


def test_embed_normalize_and_prompt_name(server, model):
    body = {"inputs": TEXTS[:5], "normalize": False, "prompt_name": "document"}
    got = np.asarray(
        requests.post(server.url + "/embed", json=body, headers=AUTH, timeout=60).json(), np.float32
    )
    np.testing.assert_array_equal(got, offline(model, TEXTS[:5], instruction=PROMPTS["document"]))
    unit = requests.post(server.url + "/embed", json={"inputs": TEXTS[5]}, headers=AUTH, timeout=60).json()
    np.testing.assert_array_equal(
        np.asarray(unit, np.float32), offline(model, [TEXTS[5]], normalize_embeddings=True)
    )


def test_truncate_keeps_the_special_tokens(server, model):
    body = {"inputs": [LONG, TEXTS[0]], "truncate": True, "normalize": False}
    got = np.asarray(
        httpx.post(server.url + "/embed", json=body, headers=AUTH, timeout=60).json(), np.float32
    )
    with pytest.warns(UserWarning, match="truncated"):
        expected = offline(model, [LONG, TEXTS[0]], max_length=LIMIT)
    np.testing.assert_array_equal(got, expected)
    refused = httpx.post(server.url + "/embed", json={"inputs": [TEXTS[0], LONG]}, headers=AUTH, timeout=60)
    assert refused.status_code == 413
    assert "inputs[1]" in refused.json()["error"] and f"{LIMIT} tokens" in refused.json()["error"]


def test_decode_texts_and_recon_states(server, model):
    body = {"inputs": TEXTS[:4], "max_new_tokens": 12}
    answer = httpx.post(server.url + "/decode", json=body, headers=AUTH, timeout=120).json()
    assert [d["index"] for d in answer["data"]] == [0, 1, 2, 3]
    assert [d["text"] for d in answer["data"]] == model.decode(
        TEXTS[:4], max_new_tokens=12, instruction=DEFAULT
    )
    assert answer["usage"]["prompt_tokens"] == tokens(model, TEXTS[:4])

    _, recon = model.encode(TEXTS[4:7], get_recon_hidden_states=True)
    body = {"recon_states": recon.tolist(), "max_new_tokens": 9}
    answer = requests.post(server.url + "/decode", json=body, headers=AUTH, timeout=120).json()
    assert [d["text"] for d in answer["data"]] == model.decode(recon, max_new_tokens=9)


def test_health_models_metrics(server):
    health = requests.get(server.url + "/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ready"}
    models = httpx.get(server.url + "/v1/models", headers=AUTH, timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]
    metrics = httpx.get(server.url + "/metrics", timeout=10)
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("requests_total", "request_duration_seconds_bucket", "batch_size_bucket", "queue_depth",
                 "tokens_total", "requests_in_flight", "tokens_per_second"):  # fmt: skip
        assert "llm2vec_gen_" + name in metrics.text
    assert server.metric("llm2vec_gen_requests_total", route="/health", status="200") >= 1


BAD = [
    ("/v1/embeddings", b'{"input": ', 400, "not valid JSON"),
    ("/embed", b"nope", 422, "not valid JSON"),
    ("/v1/embeddings", {"input": 3}, 400, "input must be a string or a list of strings, got a number"),
    ("/v1/embeddings", {"input": ["a", 7]}, 400, "input[1] is a number, expected a string"),
    ("/v1/embeddings", {"input": [[1, 2, 3]]}, 400, "input[0] is a list"),
    ("/embed", {"inputs": ["a", None]}, 422, "inputs[1] is null"),
    ("/v1/embeddings", {"input": []}, 400, "input is an empty list"),
    ("/embed", {"inputs": ["a", ""]}, 422, "inputs[1] is an empty string"),
    ("/v1/embeddings", {"input": ["a"] * 9}, 413, "limit of 8"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "hex"}, 400, "encoding_format"),
    ("/v1/embeddings", {"input": "x", "dimensions": 16}, 400, "not Matryoshka-trained"),
    ("/v1/embeddings", {"input": LONG}, 413, f"limit of {LIMIT} tokens"),
    ("/embed", {"inputs": [LONG], "truncate": False}, 413, f"limit of {LIMIT} tokens"),
    ("/embed", {"inputs": "x", "prompt_name": "poem"}, 422, "unknown prompt_name 'poem'"),
    ("/embed", {"inputs": "x", "normalize": "maybe"}, 422, "normalize"),
    ("/embed", {"text": "x"}, 422, "inputs"),
    ("/decode", {"inputs": "x", "recon_states": [[[0.0]]]}, 422, "exactly one of inputs"),
    ("/decode", {"recon_states": [[[0.0] * 3]]}, 422, "recon_states[0] must be a 10 x 64 array"),
    ("/decode", {"inputs": "x", "max_new_tokens": 65}, 413, "limit of 64"),
    ("/decode", {"inputs": "x", "max_new_tokens": 0}, 422, "max_new_tokens"),
    ("/v1/embeddings", {"input": "a" * 150_000}, 413, "limit of 100000 bytes"),
]


def error_message(path: str, response: httpx.Response) -> str:
    """The message of a JSON error in ``path``'s API shape (OpenAI on /v1, TEI elsewhere)."""
    body = response.json()
    if path.startswith("/v1/"):
        assert set(body["error"]) == {"message", "type", "param", "code"}
        return body["error"]["message"]
    assert body["error_type"]
    return body["error"]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD, ids=[m for *_, m in BAD])
def test_bad_input_is_a_json_4xx(server, path, body, status, message):
    kwargs = {"content": body, "headers": {**AUTH, "Content-Type": "application/json"}}
    if not isinstance(body, bytes):
        kwargs = {"json": body, "headers": AUTH}
    response = httpx.post(server.url + path, timeout=60, **kwargs)
    assert response.status_code == status, response.text
    assert message in error_message(path, response)


def test_oversized_chunked_body_is_counted(server):
    """No Content-Length (chunked transfer): the body is counted as it arrives and refused at the limit."""
    chunks = (b'{"inputs": "' if i == 0 else b"a" * 10_000 for i in range(16))  # ~150 kB, never closed
    headers = {**AUTH, "Content-Type": "application/json"}
    response = httpx.post(server.url + "/embed", content=chunks, headers=headers, timeout=60)
    assert response.status_code == 413 and "limit of 100000 bytes" in response.json()["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_api_key_required(server, headers):
    for path, body in (
        ("/v1/embeddings", {"input": "x"}),
        ("/embed", {"inputs": "x"}),
        ("/decode", {"inputs": "x"}),
    ):
        response = httpx.post(server.url + path, json=body, headers=headers, timeout=30)
        assert response.status_code == 401 and "API key" in error_message(path, response)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="tiny", input="x"
        )


def test_unknown_route_and_method(server):
    assert httpx.get(server.url + "/nowhere", timeout=10).status_code == 404
    response = httpx.get(server.url + "/embed", headers=AUTH, timeout=10)
    assert response.status_code == 405 and response.json()["error"]


def test_still_serving_after_bad_input(server, model):
    """Runs last: every refusal above left the server healthy and exact."""
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    got = httpx.post(server.url + "/embed", json={"inputs": TEXTS[2]}, headers=AUTH, timeout=60).json()
    np.testing.assert_array_equal(
        np.asarray(got, np.float32), offline(model, [TEXTS[2]], normalize_embeddings=True)
    )
    assert server.metric("llm2vec_gen_requests_total", route="/embed", status="422") >= 5
