"""The FastAPI application: routes, limits and the engine's lifetime.

    POST /v1/embeddings   OpenAI embeddings (L2-normalised vectors, float or base64 float32)
    POST /embed           text-embeddings-inference embed (normalize, truncate, prompt_name)
    POST /decode          texts or recon states -> the LLM's greedy reading of each embedding
    GET  /v1/models       the served model
    GET  /health          200 once the model is loaded and warmed up, 503 before
    GET  /metrics         Prometheus

The routes hold no state across requests (one process per GPU, replicas behind any load balancer).
A work request (embed, decode) beyond ``max_concurrent_requests`` gets a 429; a client that goes
away while its request waits has its rows dropped from the queue (answered 499 in the metrics).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from llm2vec_gen.integrations.instructions import PROMPTS
from llm2vec_gen.serve import errors
from llm2vec_gen.serve.batcher import Engine, Job
from llm2vec_gen.serve.config import ServeConfig
from llm2vec_gen.serve.errors import APIError
from llm2vec_gen.serve.metrics import Metrics
from llm2vec_gen.serve.middleware import LimitBody, RecordMetrics, RequireKey
from llm2vec_gen.serve.schemas import (
    DecodeRequest,
    DecodeResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbedRequest,
    ModelList,
)

PROTECTED = ("/v1/", "/embed", "/decode")
_CLIENT_GONE = 499


def load_model(config: ServeConfig):
    """``config.checkpoint``'s ``LLM2VecGenModel`` as configured (device, dtype, quantize), in eval mode."""
    from llm2vec_gen.model import LLM2VecGenModel

    model = LLM2VecGenModel.from_pretrained(
        config.checkpoint, device=config.device, dtype=config.dtype, quantize=config.quantize
    )
    return model.eval()


def _json(content: object) -> Response:
    return Response(json.dumps(content, separators=(",", ":")), media_type="application/json")


def _vector(value: np.ndarray, encoding_format: str) -> list[float] | str:
    """A float32 vector as JSON floats (exact float32 values) or base64 of its little-endian bytes."""
    if encoding_format == "base64":
        return base64.b64encode(value.astype("<f4", copy=False).tobytes()).decode("ascii")
    return value.tolist()


def create_app(config: ServeConfig, engine: Engine | None = None) -> FastAPI:
    """The server for ``config``. ``engine`` defaults to one that loads ``config.checkpoint``; it is
    started and stopped (after the last request) with the app's lifespan."""
    metrics = engine.metrics if engine is not None else Metrics()
    engine = engine or Engine(config, metrics, lambda: load_model(config))
    created = int(time.time())
    in_flight = 0

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        await asyncio.to_thread(engine.stop)

    app = FastAPI(title="llm2vec-gen", lifespan=lifespan)
    errors.install(app)

    def instruction(prompt_name: str | None) -> str | None:
        try:
            return config.instruction(prompt_name)
        except KeyError:
            raise APIError(
                400, f"unknown prompt_name {prompt_name!r}: one of {', '.join(PROMPTS)}", "prompt_name"
            ) from None

    def check_count(texts: list[str] | str, field: str) -> list[str]:
        texts = [texts] if isinstance(texts, str) else texts
        if len(texts) > config.max_client_batch_size:
            raise APIError(
                413,
                f"{field} holds {len(texts)} items, more than the limit of {config.max_client_batch_size} "
                "(--max-client-batch-size)",
                field,
            )
        return texts

    def truncating(requested: bool | None) -> bool:
        return config.auto_truncate if requested is None else requested

    def listing(data: list[dict], tokens: int) -> Response:
        """The OpenAI-style envelope of /v1/embeddings and /decode."""
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"object": "list", "data": data, "model": config.model_name, "usage": usage})

    def check_ready() -> None:
        if not engine.ready:
            raise APIError(503, f"the model is not ready ({engine.state})")

    async def run(request: Request, job: Job) -> tuple:
        """Queues ``job`` and waits for it; a client that disconnects first has its rows dropped."""
        nonlocal in_flight
        if in_flight >= config.max_concurrent_requests:
            raise APIError(
                429,
                f"more than {config.max_concurrent_requests} concurrent requests "
                "(--max-concurrent-requests): retry later",
            )
        in_flight += 1
        metrics.in_flight.inc()
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            engine.submit(job)
            await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not job.future.done():
                raise _ClientGone
            return job.future.result()
        finally:
            gone.cancel()
            job.cancel()  # no-op once done; drops the rows when the client left or the task was cancelled
            in_flight -= 1
            metrics.in_flight.dec()

    @app.exception_handler(_ClientGone)
    async def _gone(request: Request, exc: _ClientGone) -> Response:
        return Response(status_code=_CLIENT_GONE)

    @app.post("/v1/embeddings", response_model=EmbeddingResponse)
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        check_ready()
        texts = check_count(body.input, "input")
        dim = engine.model.embedding_dim
        if body.dimensions is not None and body.dimensions != dim:
            raise APIError(
                400,
                f"dimensions={body.dimensions} is not supported: this model gives {dim}-d "
                "vectors and is not Matryoshka-trained (omit dimensions)",
                "dimensions",
            )
        job = Job(
            "embed", texts=texts, instruction=instruction(None), truncate=config.auto_truncate, normalize=True
        )
        vectors, tokens = await run(request, job)
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        return listing(data, tokens)

    @app.post("/embed", response_model=list[list[float]])
    async def embed(body: EmbedRequest, request: Request) -> Response:
        check_ready()
        texts = check_count(body.inputs, "inputs")
        job = Job(
            "embed",
            "inputs",
            texts=texts,
            instruction=instruction(body.prompt_name),
            truncate=truncating(body.truncate),
            normalize=body.normalize,
        )
        vectors, _ = await run(request, job)
        return _json(vectors.tolist())

    @app.post("/decode", response_model=DecodeResponse)
    async def decode(body: DecodeRequest, request: Request) -> Response:
        check_ready()
        if body.max_new_tokens > config.max_decode_tokens:
            raise APIError(
                413,
                f"max_new_tokens={body.max_new_tokens} is over the limit of "
                f"{config.max_decode_tokens} (--max-decode-tokens)",
                "max_new_tokens",
            )
        job = Job(
            "decode",
            "inputs",
            instruction=instruction(body.prompt_name),
            truncate=truncating(body.truncate),
            max_new_tokens=body.max_new_tokens,
        )
        if body.inputs is not None:
            job.texts = check_count(body.inputs, "inputs")
        else:
            job.recon = _recon_states(check_count(body.recon_states, "recon_states"), engine)
        texts, tokens = await run(request, job)
        return listing([{"object": "decoding", "index": i, "text": t} for i, t in enumerate(texts)], tokens)

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> Response:
        model = {"id": config.model_name, "object": "model", "created": created, "owned_by": "llm2vec-gen"}
        return _json({"object": "list", "data": [model]})

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": engine.state}, status_code=200 if engine.ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    app.add_middleware(LimitBody, limit=config.max_body_bytes)
    if config.api_key:
        app.add_middleware(RequireKey, api_key=config.api_key, protected=PROTECTED)
    app.add_middleware(RecordMetrics, metrics=metrics, routes=[r.path for r in app.routes])
    return app


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _recon_states(states: list, engine: Engine) -> list[np.ndarray]:
    """Each item as fp32 [N, H] with the model's N and H and finite values; else a 400 naming it."""
    model = engine.model
    shape = (model.num_encode_tokens, model.special_rows.shape[1])
    arrays = []
    for i, item in enumerate(states):
        try:
            array = np.asarray(item, dtype=np.float32)
        except ValueError:
            array = None
        if array is None or array.shape != shape:
            raise APIError(
                400, f"recon_states[{i}] must be a {shape[0]} x {shape[1]} array of numbers", "recon_states"
            )
        if not np.isfinite(array).all():
            raise APIError(400, f"recon_states[{i}] holds a non-finite value", "recon_states")
        arrays.append(array)
    return arrays
