"""A LoRA encoder (the reference's "supervised" recipe: ``apply_peft`` with ``trainable_token_indices``)
on the encoder path only, with one copy of the base weights.

The reference loads two LLMs: the encoder (PEFT LoRA + the K trainable rows) and a plain causal LM as
the decoder. Here each LoRA target Linear of the one LLM is wrapped (``EncoderLoRALinear``): it adds
``scale * B(A(x))`` only inside ``model.encoder_path()`` (encoding, the prefix cache, the encoder
view); decoding and the training decoder read the plain weights. Supported: PEFT LoRA adapters on
Linear layers (``r``, ``lora_alpha``, ``use_rslora``), no bias, no DoRA, no per-module rank/alpha
patterns (each of those raises ValueError naming it).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

_PREFIX = "base_model.model."


@dataclass
class LoRAWeights:
    """A [r, in] and B [out, r] fp32 per module path of the backbone (e.g. "layers.0.self_attn.q_proj")."""

    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float


def check_lora_config(config: dict, where: str) -> float:
    """The scale (lora_alpha / r, or / sqrt(r) with use_rslora) of a LoRA adapter_config; ValueError
    naming what is not supported."""
    unsupported = {
        "use_dora": bool(config.get("use_dora")),
        "bias": config.get("bias", "none") != "none",
        "rank_pattern": bool(config.get("rank_pattern")),
        "alpha_pattern": bool(config.get("alpha_pattern")),
        "fan_in_fan_out": bool(config.get("fan_in_fan_out")),
    }
    bad = [name for name, on in unsupported.items() if on]
    if bad:
        raise ValueError(f"{where}: LoRA options {bad} are not supported (plain LoRA on Linear layers only)")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def read_lora(file: Path, scale: float) -> LoRAWeights:
    """The lora_A / lora_B pairs of adapter_model.safetensors, keyed by backbone module path."""
    pairs: dict[str, list] = {}
    with safe_open(file, framework="pt") as f:
        for key in f.keys():  # noqa: SIM118
            for part, slot in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
                if key.endswith(part):
                    name = key.removeprefix(_PREFIX).removesuffix(part)
                    pairs.setdefault(name, [None, None])[slot] = f.get_tensor(key).float()
    missing = [name for name, (a, b) in pairs.items() if a is None or b is None]
    if missing or not pairs:
        raise ValueError(f"{file}: LoRA pairs incomplete or absent (modules {missing or 'none'})")
    return LoRAWeights({name: (a, b) for name, (a, b) in pairs.items()}, scale)


class EncoderLoRALinear(nn.Module):
    """A Linear whose output gains ``scale * x A^T B^T`` while ``switch.on``; ``base`` is the LLM's own
    Linear (not copied). forward(x [..., in]) -> [..., out] in x's dtype."""

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor, scale: float, switch: LoRASwitch):
        super().__init__()
        self.base, self.scale, self.switch = base, scale, switch
        weight = base.weight
        self.register_buffer("lora_a", a.to(weight.device, weight.dtype))
        self.register_buffer("lora_b", b.to(weight.device, weight.dtype))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.switch.on:
            out = out + self.scale * nn.functional.linear(nn.functional.linear(x, self.lora_a), self.lora_b)
        return out


class LoRASwitch:
    """Whether the LoRA deltas apply (True only inside ``LLM2VecGenModel.encoder_path()``)."""

    on = False


def apply_encoder_lora(backbone: nn.Module, lora: LoRAWeights) -> LoRASwitch:
    """Wrap each target Linear of ``backbone`` (in place: the model's own LLM) in ``EncoderLoRALinear``;
    returns the switch that turns the deltas on. ValueError naming a module that is not a Linear or
    whose shapes do not fit."""
    switch = LoRASwitch()
    for name, (a, b) in lora.pairs.items():
        parent_name, _, child = name.rpartition(".")
        try:
            linear = backbone.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"LoRA module {name!r} does not exist in the base LLM") from exc
        if (
            not isinstance(linear, nn.Linear)
            or a.shape[1] != linear.in_features
            or b.shape[0] != linear.out_features
        ):
            raise ValueError(
                f"LoRA module {name!r}: A {tuple(a.shape)}, B {tuple(b.shape)} do not fit {linear}"
            )
        wrapped = EncoderLoRALinear(linear, a, b, lora.scale, switch)
        setattr(backbone.get_submodule(parent_name) if parent_name else backbone, child, wrapped)
    return switch


@contextlib.contextmanager
def encoder_deltas(switch: LoRASwitch | None) -> Iterator[None]:
    """Turn ``switch``'s deltas on for the block (nothing to do without a LoRA encoder)."""
    if switch is None:
        yield
        return
    switch.on = True
    try:
        yield
    finally:
        switch.on = False
