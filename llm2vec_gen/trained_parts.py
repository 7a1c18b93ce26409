"""The trainable part of an LLM2Vec-Gen model alone: K special rows and the two heads, a few MB.

The released format stores the whole resized embedding table in the adapter (113 MB for
SmolLM2-135M); what training changed is only ``special_rows`` [K, H], ``recon_head`` (H -> H) and
``align_head`` (H -> D). ``save_parts`` writes those five fp32 tensors as one safetensors file with
string metadata (base, teacher, training command...); ``load_parts`` puts them into a model built
with ``LLM2VecGenModel.from_base`` on the same base, after which ``save_pretrained`` writes the full
released-format checkpoint. ``export_parts`` takes them from a released-format checkpoint:

    python -m llm2vec_gen.trained_parts runs/x/checkpoint-60 parts.safetensors [key=value ...]
"""

from __future__ import annotations

import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

TENSORS = ("special_rows", "recon_head.weight", "recon_head.bias", "align_head.weight", "align_head.bias")


def _tensors(model) -> dict[str, torch.Tensor]:
    return {
        "special_rows": model.special_rows,
        "recon_head.weight": model.recon_head.weight,
        "recon_head.bias": model.recon_head.bias,
        "align_head.weight": model.align_head.weight,
        "align_head.bias": model.align_head.bias,
    }


def save_parts(model, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s special rows [K, H] and heads (fp32) to ``path`` (.safetensors) atomically."""
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in _tensors(model).items()}
    meta = {"special_tokens": ",".join(model.special_tokens), **(metadata or {})}
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored with the parts (base, teacher, command, ...)."""
    with safe_open(os.fspath(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_parts(model, path: str | os.PathLike):
    """Copy the parts of ``path`` into ``model`` (same K, H and D); returns ``model``.

    ValueError naming the tensor when a shape does not match or the special tokens differ.
    """
    meta = read_metadata(path)
    if meta.get("special_tokens") != ",".join(model.special_tokens):
        raise ValueError(f"{path}: special tokens {meta.get('special_tokens')!r} differ from the model's")
    targets = _tensors(model)
    with safe_open(os.fspath(path), framework="pt") as f, torch.no_grad():
        for name in TENSORS:
            value = f.get_tensor(name)
            if value.shape != targets[name].shape:
                raise ValueError(
                    f"{path}: {name} has shape {tuple(value.shape)}, "
                    f"the model needs {tuple(targets[name].shape)}"
                )
            targets[name].copy_(value)
    return model


def export_parts(checkpoint: str | os.PathLike, path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """The parts of a released-format ``checkpoint`` (e.g. ``runs/x/checkpoint-60``) into ``path``."""
    from llm2vec_gen.model import LLM2VecGenModel

    save_parts(LLM2VecGenModel.from_pretrained(checkpoint, device="cpu"), path, metadata)


if __name__ == "__main__":  # python -m llm2vec_gen.trained_parts CHECKPOINT OUT.safetensors [key=value ...]
    import sys

    export_parts(sys.argv[1], sys.argv[2], dict(arg.split("=", 1) for arg in sys.argv[3:]))
