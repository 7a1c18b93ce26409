"""Where a model comes from: device and dtype defaults, a checkpoint directory from a path or a Hub id,
the base LLM. ``LLM2VecGenModel.from_pretrained`` and ``from_base`` use these.

Hub options (``HubOptions``) are the reference's ``from_pretrained`` kwargs that make sense here:
``revision``, ``token``, ``cache_dir``, ``local_files_only``; they apply to the checkpoint and to the
base LLM. Offline (no network, or ``HF_HUB_OFFLINE=1``), a Hub id that is not in the cache raises
one line saying so.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class HubOptions:
    """Hugging Face Hub options passed to every download (checkpoint and base LLM)."""

    revision: str | None = None
    token: str | bool | None = None
    cache_dir: str | os.PathLike | None = None
    local_files_only: bool = False

    def kwargs(self) -> dict[str, Any]:
        """The options that are set, as keyword arguments of ``from_pretrained``/``snapshot_download``."""
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}


def default_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; CUDA when available, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def dtype_from_string(name: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16"`` / ``"torch.bfloat16"`` / a dtype -> torch.dtype (None and "auto" -> None)."""
    if name is None or isinstance(name, torch.dtype):
        return name
    name = str(name).removeprefix("torch.")
    if name == "auto":
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    return dtype


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, saved: Any = None) -> torch.dtype:
    """The LLM's dtype: an explicit one; ``"auto"`` -> the checkpoint's (``saved``, run_config's
    torch_dtype; bf16 for the released models) as the reference does; None -> the checkpoint's on
    CUDA and fp32 on the CPU (CPU bf16 matmuls are slow without AMX)."""
    if dtype is not None and dtype != "auto":
        return dtype_from_string(dtype)
    if dtype == "auto" or device.type == "cuda":
        return dtype_from_string(saved) or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    return torch.float32


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def resolve_checkpoint(path_or_hub_id: str | os.PathLike, hub: HubOptions) -> Path:
    """A local directory as is; otherwise a Hub repo id, downloaded (or taken from the cache)."""
    if os.path.isdir(path_or_hub_id):
        return Path(path_or_hub_id)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=str(path_or_hub_id), **hub.kwargs()))
    except Exception as exc:
        raise FileNotFoundError(
            f"checkpoint {str(path_or_hub_id)!r} is not a local directory and is not in the Hugging Face "
            f"cache nor downloadable (offline?): {_one_line(exc)}"
        ) from None


def load_llm(
    name_or_model: str | PreTrainedModel,
    dtype: torch.dtype,
    trust_remote_code: bool,
    source: str,
    hub: HubOptions,
) -> PreTrainedModel:
    """The base causal LM in ``dtype``. A loaded model is copied (never changed in place: the copy is
    frozen, cast and moved); a name is loaded from a directory or the Hub."""
    if isinstance(name_or_model, PreTrainedModel):
        return copy.deepcopy(name_or_model).to(dtype)
    name = str(name_or_model)
    try:
        return AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, trust_remote_code=trust_remote_code, **hub.kwargs()
        )
    except OSError as exc:
        if os.path.isdir(name):
            raise
        raise OSError(
            f"base LLM {name!r} ({source}) is not a local directory and is not in the Hugging Face cache "
            f"nor downloadable (offline?): {_one_line(exc)}. Pass base_model=<local directory or model>."
        ) from None
