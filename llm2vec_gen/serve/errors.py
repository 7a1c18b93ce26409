"""Errors as JSON, in the shape each family of clients expects.

- ``/v1/...`` (OpenAI clients): ``{"error": {"message", "type", "param", "code"}}``;
- everything else (text-embeddings-inference clients): ``{"error": message, "error_type": type}``.

Route handlers and middleware raise or build ``APIError``; ``install`` maps it, FastAPI's request
validation errors and Starlette's HTTP errors (404, 405) to those shapes. A bad request is a 400 on
``/v1`` (OpenAI's status) and a 422 elsewhere (text-embeddings-inference's).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

_OPENAI_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
}
_TEI_TYPES = {401: "Unauthorized", 429: "Overloaded", 500: "Backend", 503: "Unhealthy"}


class APIError(Exception):
    """An error answered with ``status`` and ``message`` (``param``: the request field at fault)."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_response(path: str, error: APIError) -> JSONResponse:
    """``error`` as a JSON response in the shape of ``path``'s API family."""
    status = error.status
    if path.startswith("/v1/"):
        kind = _OPENAI_TYPES.get(status, "invalid_request_error")
        body: dict = {"error": {"message": error.message, "type": kind, "param": error.param, "code": None}}
    else:
        body = {"error": error.message, "error_type": _TEI_TYPES.get(status, "Validation")}
        status = 422 if status == 400 else status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple) -> str:
    """("body", "input", 3) -> "input[3]"; the body itself -> "body"."""
    parts = [p for p in loc if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def validation_error(exc: RequestValidationError) -> APIError:
    """The first validation error as a 400 naming the field."""
    first = exc.errors()[0]
    where = _location(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        message = f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
        message = message if message.startswith(where) else f"{where}: {message}"
    param = where.split("[")[0].split(".")[0]
    return APIError(400, message, None if param == "body" else param)


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every error into its family's JSON shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request.url.path, validation_error(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(request.url.path, APIError(exc.status_code, str(exc.detail)))
