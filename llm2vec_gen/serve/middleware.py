"""Plain ASGI middleware (no per-request task or body copy beyond what each needs).

Outermost first: ``RecordMetrics`` (every answer, whatever refused it), ``RequireKey`` (401 before
a body is read), ``LimitBody`` (413 before the body is parsed).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm2vec_gen.serve.errors import APIError, error_response
from llm2vec_gen.serve.metrics import Metrics


class RecordMetrics:
    """Counts every answered HTTP request by route (``other`` for an unknown path) and status, and
    observes its latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[str]):
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        start = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.request(route, status, time.perf_counter() - start)


class RequireKey:
    """401 unless ``Authorization: Bearer <api_key>`` (compared in constant time) on paths that
    start with one of ``protected``."""

    def __init__(self, app: ASGIApp, api_key: str, protected: tuple[str, ...]):
        self.app, self.key, self.protected = app, api_key.encode(), protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.protected):
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                error = APIError(401, "missing or wrong API key: send the header Authorization: Bearer <key>")
                await error_response(scope["path"], error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class LimitBody:
    """413 for a request body over ``limit`` bytes (by Content-Length, or counted as it streams);
    otherwise the body is replayed to the app, and later receives (disconnects) pass through."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away while sending
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is larger than the limit of {self.limit} bytes (--max-body-bytes)"
        await error_response(scope["path"], APIError(413, message))(scope, receive, send)
