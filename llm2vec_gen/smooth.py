"""SmoothQuant-style migration of activation outliers into the weights, before dynamic int8.

torch's dynamic int8 linear quantizes each activation tensor with one scale (7 bits on fbgemm:
``reduce_range``), so a few outlier channels take the whole range and the rest round to zero. For
every linear with input X [T, n] and weight W [m, n], SmoothQuant (Xiao et al. 2023, arXiv
2211.10438) picks per-input-channel scales

    s_j = max|X[:, j]| ** alpha / max|W[:, j]| ** (1 - alpha)

and runs ``(X / s) @ (W * s)^T``, exactly the same product, with the outliers moved into the
weights (quantized per output channel, so they absorb them better). ``X / s`` costs nothing: it is
folded into what produces X. In a Llama-style decoder layer (Llama, Mistral, Qwen2, Qwen3):

    q/k/v_proj     input = input_layernorm(h)          -> input_layernorm.weight /= s
    o_proj         input = softmax(q k^T) v, per head  -> v_proj rows (and bias) /= s
    gate/up_proj   input = post_attention_layernorm(h) -> post_attention_layernorm.weight /= s
    down_proj      input = silu(gate) * up             -> up_proj rows (and bias) /= s

With grouped-query attention one v channel feeds the same channel of every query head of its
group, so o_proj's scales are shared across the group (max over it). The fp32 model computes the
same function after smoothing (up to rounding); only the int8 model changes.

max|X| comes from a calibration pass (``activation_absmax``): the caller runs the model on a few
texts one at a time (no padding rows) and the hooks keep each linear's per-channel max |input|.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
SEEN = ("q_proj", "o_proj", "gate_proj", "down_proj")
"""The linears whose inputs set the scales (k/v share q's input, up shares gate's)."""


def decoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Llama-style backbone (``backbone.layers``); ValueError for any other
    layout (names, or a norm whose output does not scale with its weight, as Gemma's ``1 + w``)."""
    layers = getattr(backbone, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(f"{type(backbone).__name__} has no .layers: SmoothQuant needs a Llama-style decoder")
    for i, layer in enumerate(layers):
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        linears = [getattr(attn, n, None) for n in ATTENTION] + [getattr(mlp, n, None) for n in MLP]
        if not all(type(lin) is nn.Linear for lin in linears):
            raise ValueError(f"layer {i} ({type(layer).__name__}) is not Llama-style: needs nn.Linear "
                             f"self_attn.{{{','.join(ATTENTION)}}} and mlp.{{{','.join(MLP)}}}")  # fmt: skip
        for name in ("input_layernorm", "post_attention_layernorm"):
            _check_scalable_norm(getattr(layer, name, None), f"layer {i} {name}")
    return layers


@torch.no_grad()
def _check_scalable_norm(norm: nn.Module | None, where: str) -> None:
    """ValueError unless ``norm(x)`` is ``weight * f(x)`` (so dividing the weight divides the output)."""
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 1 or getattr(norm, "bias", None) is not None:
        raise ValueError(f"{where}: SmoothQuant folds into a norm with a 1-D weight and no bias")
    x = torch.randn(3, weight.numel(), generator=torch.Generator().manual_seed(0)).to(weight)
    saved = weight.clone()
    try:
        weight.fill_(1.0)
        unit = norm(x)
        weight.fill_(2.0)
        doubled = norm(x)
    finally:
        weight.copy_(saved)
    if not torch.allclose(doubled, 2 * unit, rtol=1e-3, atol=1e-5):
        raise ValueError(f"{where} ({type(norm).__name__}): its output does not scale with its weight")


@torch.no_grad()
def activation_absmax(linears: Iterable[nn.Linear], run: Callable[[], object]) -> list[torch.Tensor]:
    """Per-input-channel max |x| [in_features] (fp32) that each linear saw while ``run()`` ran."""
    linears = list(linears)
    stats = [torch.zeros(lin.in_features, dtype=torch.float32, device=lin.weight.device) for lin in linears]

    def hook(index: int):
        def record(_module, inputs):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(0).float()
            torch.maximum(stats[index], x, out=stats[index])

        return record

    handles = [lin.register_forward_pre_hook(hook(i)) for i, lin in enumerate(linears)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return stats


def smooth_scales(absmax: torch.Tensor, weights: Iterable[torch.Tensor], alpha: float) -> torch.Tensor:
    """s [n] (fp64, so that 1 / s is exact to the weights' precision) = max|X|^alpha / max|W|^(1 - alpha)
    per input channel; absmax [n], weights [m_i, n]."""
    w_max = torch.stack([w.detach().abs().amax(0).double() for w in weights]).amax(0)
    s = absmax.double().clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)
    return s.clamp(min=1e-5)


@torch.no_grad()
def smooth_layer(layer: nn.Module, absmax: dict[str, torch.Tensor], alpha: float, num_kv_heads: int) -> None:
    """Smooth one Llama-style decoder layer in place; ``absmax`` per linear name (q_proj, o_proj,
    gate_proj, down_proj; [in_features] each) from ``activation_absmax``. The layer's function is
    unchanged (up to fp32 rounding)."""
    attn, mlp = layer.self_attn, layer.mlp
    s = smooth_scales(absmax["q_proj"], [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight], alpha)
    layer.input_layernorm.weight.div_(s.to(layer.input_layernorm.weight))
    for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
        lin.weight.mul_(s.to(lin.weight))

    # o_proj: its input channel (head h, dim d) is v channel (h // group, d); one scale per v channel
    v_out = attn.v_proj.out_features
    head_dim = v_out // num_kv_heads
    group = attn.o_proj.in_features // v_out
    per_head = lambda t: t.reshape(num_kv_heads, group, head_dim)  # noqa: E731
    x_max = per_head(absmax["o_proj"]).amax(1).reshape(-1)
    w_max = per_head(attn.o_proj.weight.abs().amax(0)).amax(1).reshape(-1)
    s_v = smooth_scales(x_max, [w_max[None]], alpha)
    _scale_rows(attn.v_proj, 1 / s_v)
    attn.o_proj.weight.mul_(
        s_v.reshape(num_kv_heads, 1, head_dim).expand(-1, group, -1).reshape(-1).to(attn.o_proj.weight)
    )

    s = smooth_scales(absmax["gate_proj"], [mlp.gate_proj.weight, mlp.up_proj.weight], alpha)
    layer.post_attention_layernorm.weight.div_(s.to(layer.post_attention_layernorm.weight))
    for lin in (mlp.gate_proj, mlp.up_proj):
        lin.weight.mul_(s.to(lin.weight))

    s = smooth_scales(absmax["down_proj"], [mlp.down_proj.weight], alpha)
    _scale_rows(mlp.up_proj, 1 / s)
    mlp.down_proj.weight.mul_(s.to(mlp.down_proj.weight))


def _scale_rows(linear: nn.Linear, factor: torch.Tensor) -> None:
    """Multiply a linear's output channels (weight rows and bias) by factor [out_features]."""
    linear.weight.mul_(factor.to(linear.weight)[:, None])
    if linear.bias is not None:
        linear.bias.mul_(factor.to(linear.bias))


@torch.no_grad()
def smooth_decoder(backbone: nn.Module, run: Callable[[], object], alpha: float, num_kv_heads: int) -> None:
    """Calibrate (``run()`` passes a few texts through the model, one at a time) and smooth every
    decoder layer of a Llama-style ``backbone`` in place; ValueError for another layout."""
    layers = decoder_layers(backbone)
    linears = [
        (layer.self_attn if name in ATTENTION else layer.mlp, name) for layer in layers for name in SEEN
    ]
    absmax = activation_absmax([getattr(part, name) for part, name in linears], run)
    for i, layer in enumerate(layers):
        smooth_layer(layer, dict(zip(SEEN, absmax[i * len(SEEN) : (i + 1) * len(SEEN)], strict=True)), alpha,
                     num_kv_heads)  # fmt: skip
