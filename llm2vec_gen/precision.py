"""Inference precision of the LLM: bf16 weights, or dynamic int8 linear layers on the CPU.

The K special rows, the two heads and the pooling always stay fp32 (``LLM2VecGenModel`` keeps
them so); only the frozen LLM changes:

- ``dtype=torch.bfloat16``: where the hardware multiplies bf16 (CUDA; x86 CPUs with avx512_bf16 or
  AMX) the whole LLM runs in bf16. On any other CPU oneDNN would emulate bf16 at about 1/8 of the
  fp32 GEMM rate (benchmarks/bench_cpu_limits.py), so there the backbone's linear weights stay in
  bf16 (half their memory; ``Bf16WeightLinear``) and are multiplied in fp32, with the embedding
  table, norms and LM head in fp32 (``bf16_weights``): fp32 arithmetic on bf16 weights.
- ``quantize="int8"``: every ``nn.Linear`` of the LLM's backbone becomes ``PerTokenInt8Linear``:
  torch's dynamic int8 linear (``torch.ao.nn.quantized.dynamic.Linear``: weights int8 per output
  channel, the fbgemm/x86 int8 GEMM) fed rows scaled to max |x| = 1, so each token is quantized with
  its own scale instead of one per tensor. Before that, SmoothQuant (``llm2vec_gen.smooth``) moves
  the activation outlier channels into the weights, with scales from a calibration pass over
  ``calibration_texts()`` (16 fixed texts, one at a time: deterministic, about a second on a 135M
  model). The LM head (used only by ``decode``; tied to the input table in some models) and the
  embedding table stay as they are. Inference only: the quantized layers have no gradient. Rounding
  the weights to int8 per output channel is itself too coarse for some small LLMs: of two trained
  SmolLM2-135M-Instruct students, int8 keeps the self-taught one at a worst row cosine of 0.998 to
  fp32 and the MiniLM-taught one at 0.863, where the weights alone (fp32 activations) already give
  0.962; that head reads a per-text signal that is small next to what all texts share, and int8's
  error is not. Loading warns (benchmarks/RESULTS.md, "CPU limits").

torch 2.13 deprecates the quantized dtypes this kernel's packed weights use (pytorch#184982; the
warning is silenced here) and names torchao as the way forward, but torchao's
``Int8DynamicActivationInt8WeightConfig`` (the suggested replacement for
``torch.ao.quantization.quantize_dynamic``) runs ``torch._int_mm`` on the CPU: about 1.3 GFLOP/s on
the 2-core AVX2 VM (torchao 0.18, eager or compiled) against about 100 GFLOP/s for the fbgemm kernel.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from importlib import resources

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
from torch.ao.quantization.qconfig import per_channel_dynamic_qconfig

from llm2vec_gen import smooth

QUANTIZE_OPTIONS = ("int8",)
SMOOTH_ALPHA = 0.65
"""SmoothQuant's migration strength (0: none, 1: all into the weights); best measured on SmolLM2."""


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (avx512_bf16 or AMX), as oneDNN needs."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def check_precision(dtype: torch.dtype, quantize: str | None, device: torch.device) -> None:
    """ValueError for an unsupported (dtype, quantize, device); a warning for int8 (quality on small
    LLMs).

    ``quantize`` is None or "int8"; "int8" needs the CPU and fp32 activations (dtype float32).
    """
    if quantize is not None and quantize not in QUANTIZE_OPTIONS:
        raise ValueError(f"quantize must be None or one of {QUANTIZE_OPTIONS}, got {quantize!r}")
    if quantize == "int8":
        if device.type != "cpu":
            raise ValueError(
                f"quantize='int8' is a CPU option (torch's fbgemm/x86 int8 linear), not for {device}; "
                "on a GPU pass dtype=torch.bfloat16"
            )
        if dtype != torch.float32:
            raise ValueError(
                f"quantize='int8' quantizes fp32 activations on the fly: pass dtype=torch.float32 "
                f"(or no dtype), not {dtype}"
            )
        warnings.warn(
            "quantize='int8' rounds weights to int8 per output channel: small LLMs can lose embedding "
            "quality (two SmolLM2-135M students: worst row cosine 0.998 and 0.863 to fp32); compare "
            "with fp32 on your data first",
            stacklevel=3,
        )


class PerTokenInt8Linear(nn.Module):
    """``nn.Linear`` on torch's dynamic int8 kernel with one activation scale per token.

    The kernel quantizes its whole input with one (min, max) range. Each row x is divided by its
    max |x| (r), and one constant row (-1, 1, 0, ...) is appended, so the range is always exactly
    [-1, 1]: every row is quantized on the same grid relative to its own r, whatever else is in the
    batch (a row's output does not depend on the other rows). The output rows are multiplied back
    by r and the bias (fp32) is added after.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        plain = nn.Linear(linear.in_features, linear.out_features, bias=False)
        plain.weight = nn.Parameter(linear.weight.detach().float(), requires_grad=False)
        plain.qconfig = per_channel_dynamic_qconfig
        with warnings.catch_warnings():  # torch 2.13: qint8 tensors deprecated (pytorch#184982)
            warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per")
            self.linear = DynamicInt8Linear.from_float(plain)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)
        pin = torch.zeros(1, linear.in_features)
        pin[0, 0], pin[0, -1] = -1.0, 1.0
        self.register_buffer("pin", pin, persistent=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] fp32 -> [..., out] fp32."""
        rows = x.reshape(-1, self.in_features)
        r = rows.abs().amax(-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)  # [T, 1]
        y = self.linear(torch.cat([rows / r, self.pin]))[:-1].mul_(r)  # [T, out]
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


class Bf16WeightLinear(nn.Module):
    """``nn.Linear`` whose weight is stored in bf16 and multiplied in fp32 (upcast per call).

    Half the weight memory of fp32, fp32 arithmetic: only the weights' rounding to bf16 differs from
    the fp32 model. The bias stays fp32. Inference only (the weight is a buffer, no gradient).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] fp32 -> [..., out] fp32."""
        return nn.functional.linear(x, self.weight.to(x.dtype), self.bias)


@torch.no_grad()
def replace_linears(module: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replace every ``nn.Linear`` under ``module`` (in place) by ``make(linear)``; returns it."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, make(child))
        else:
            replace_linears(child, make)
    return module


def quantize_int8(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` under ``module`` (in place) by ``PerTokenInt8Linear``; returns it."""
    return replace_linears(module, PerTokenInt8Linear)


@torch.no_grad()
def bf16_weights(llm: nn.Module) -> None:
    """Make a bf16 causal LM compute in fp32 in place, keeping its backbone's linear weights in bf16
    (``Bf16WeightLinear``, exact: they are bf16 already); every other parameter and buffer (embedding
    table, LM head, norms) becomes fp32."""
    replace_linears(llm.base_model, Bf16WeightLinear)
    for module in llm.modules():
        if isinstance(module, Bf16WeightLinear):
            continue
        for param in module.parameters(recurse=False):
            param.data = param.data.float()
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and buf.is_floating_point():
                setattr(module, name, buf.float())


def describe(llm: nn.Module) -> str:
    """The LLM's precision as results and resumable runs record it: ``str`` of its dtype (e.g.
    "torch.float32"), plus ", int8 linears" after ``quantize_int8`` or ", bf16 linear weights" after
    ``bf16_weights`` (both leave the dtype float32)."""
    kinds = {type(m) for m in llm.modules()}
    suffix = ", int8 linears" if PerTokenInt8Linear in kinds else ""
    suffix += ", bf16 linear weights" if Bf16WeightLinear in kinds else ""
    return f"{llm.dtype}{suffix}"


def prepare(model: nn.Module, dtype: torch.dtype, quantize: str | None) -> None:
    """What ``from_pretrained`` does after loading an ``LLM2VecGenModel`` (on its device, LLM in
    ``dtype``, arguments passed ``check_precision``): int8 (``smooth_and_quantize_int8``), or on a CPU
    without bf16 hardware ``bf16_weights`` for a bf16 LLM; otherwise nothing."""
    if quantize == "int8":
        smooth_and_quantize_int8(model)
    elif dtype == torch.bfloat16 and model.device.type == "cpu" and not cpu_has_native_bf16():
        bf16_weights(model.llm)


def calibration_texts() -> list[str]:
    """The 16 built-in calibration texts (``data/int8-calibration.json``, frozen): the first 8
    query/answer pairs of the demo's SmolLM2 training answers, with the retrieval query and passage
    instructions; none is an evaluation text."""
    data = resources.files("llm2vec_gen").joinpath("data/int8-calibration.json").read_text()
    return json.loads(data)["texts"]


@torch.no_grad()
def smooth_and_quantize_int8(model: nn.Module, alpha: float = SMOOTH_ALPHA) -> None:
    """Make an fp32 ``LLM2VecGenModel``'s backbone int8 in place: SmoothQuant calibrated by encoding
    ``calibration_texts()`` one at a time (``smooth.smooth_decoder``), then ``quantize_int8``."""
    backbone = model.llm.base_model
    run = lambda: model.encode(calibration_texts(), batch_size=1)  # noqa: E731
    smooth.smooth_decoder(backbone, run, alpha, model.llm.config.num_key_value_heads)
    quantize_int8(backbone)
