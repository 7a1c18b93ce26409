"""Request and response bodies (pydantic v2).

Requests are validated here: texts are a string or a non-empty list of non-empty strings, and an
error names the item by index (``input[3] is number, expected a string``). Limits that depend on the
server's settings or the model (item count, token length, ``dimensions``, prompt names, recon-state
shapes) are checked by the routes. Response models document the API (OpenAPI); the routes write
their JSON directly, without a per-float validation pass.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

_JSON_TYPES = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    dict: "an object",
    list: "a list",
}


def check_texts(value: Any, field: str) -> Any:
    """``value`` unchanged if it is a str or a non-empty list of str, none of them empty; else
    ValueError naming ``field`` and the first bad item's index."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"{field} must be a string or a list of strings, got {_JSON_TYPES[type(value)]}")
    if not items:
        raise ValueError(f"{field} is an empty list")
    for i, item in enumerate(items):
        where = field if isinstance(value, str) else f"{field}[{i}]"
        if not isinstance(item, str):
            raise ValueError(f"{where} is {_JSON_TYPES[type(item)]}, expected a string")
        if not item:
            raise ValueError(f"{where} is an empty string")
    return value


class EmbeddingRequest(BaseModel):
    """OpenAI ``POST /v1/embeddings``. ``dimensions`` other than the model's own is refused (the
    models are not Matryoshka-trained); ``user`` is ignored; ``model`` is echoed as the served name."""

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        return check_texts(value, "input")


class EmbedRequest(BaseModel):
    """text-embeddings-inference ``POST /embed``: ``truncate`` None takes the server's
    ``--auto-truncate``; ``prompt_name`` None takes ``--default-prompt-name``."""

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool | None = None
    prompt_name: str | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        return check_texts(value, "inputs")


class DecodeRequest(BaseModel):
    """``POST /decode``: texts (encoded first, as ``/embed`` would) or recon states, each [N, H] as
    ``encode(..., get_recon_hidden_states=True)`` gives them; the greedy text the LLM reads from each."""

    inputs: str | list[str] | None = None
    recon_states: list[list[list[float]]] | None = None
    max_new_tokens: int = Field(64, ge=1)
    truncate: bool | None = None
    prompt_name: str | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        return value if value is None else check_texts(value, "inputs")

    @model_validator(mode="after")
    def _one_source(self) -> DecodeRequest:
        if (self.inputs is None) == (self.recon_states is None):
            raise ValueError("give exactly one of inputs (texts) and recon_states")
        if self.recon_states is not None and not self.recon_states:
            raise ValueError("recon_states is an empty list")
        return self


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class Decoding(BaseModel):
    object: Literal["decoding"] = "decoding"
    index: int
    text: str


class DecodeResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Decoding]
    model: str
    usage: Usage


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm2vec-gen"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
