"""The server's settings: one frozen dataclass, filled by ``llm2vec-gen serve``'s options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm2vec_gen.batching import batch_token_budget
from llm2vec_gen.integrations.instructions import PROMPTS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ServeConfig:
    """What the server loads and the limits it enforces (the ``serve`` options of the same names).

    Lengths count tokens as the model sees them: instruction + text + the K special tokens.
    """

    checkpoint: str
    served_model_name: str | None = None
    device: str | None = None
    dtype: str | None = None
    quantize: str | None = None
    api_key: str | None = None
    default_prompt_name: str | None = None
    max_input_length: int = 512
    auto_truncate: bool = False
    max_client_batch_size: int = 2048
    max_concurrent_requests: int = 512
    max_batch_tokens: int | None = None
    max_batch_size: int = 256
    max_padding: float = 0.25
    max_body_bytes: int = 2_000_000
    max_decode_tokens: int = 512

    def __post_init__(self) -> None:
        if self.default_prompt_name is not None and self.default_prompt_name not in PROMPTS:
            names = ", ".join(PROMPTS)
            raise ValueError(f"default_prompt_name must be one of {names}, got {self.default_prompt_name!r}")
        if not 0.0 <= self.max_padding <= 1.0:
            raise ValueError(f"max_padding must be a fraction in [0, 1], got {self.max_padding!r}")
        for name in (
            "max_input_length",
            "max_client_batch_size",
            "max_concurrent_requests",
            "max_batch_tokens",
            "max_batch_size",
            "max_body_bytes",
            "max_decode_tokens",
        ):
            value = getattr(self, name)
            if value is None and name == "max_batch_tokens":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")

    def batch_tokens(self, device: torch.device) -> int:
        """Padded tokens per forward pass: ``max_batch_tokens``, else ``batching.default_batch_tokens``."""
        return batch_token_budget(device, self.max_batch_tokens)

    @property
    def model_name(self) -> str:
        """The ``model`` the API reports: ``served_model_name``, else the checkpoint as given."""
        return self.served_model_name or self.checkpoint

    def instruction(self, prompt_name: str | None) -> str | None:
        """The instruction of ``prompt_name`` (None: the server's default prompt, if any).

        KeyError for an unknown name (the caller turns it into a 400 listing the names)."""
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        return None if name is None else PROMPTS[name]
