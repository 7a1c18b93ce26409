"""Inference precision of the LLM: bf16 weights, or dynamic int8 linear layers on the CPU.

The K special rows, the two heads and the pooling always stay fp32 (``LLM2VecGenModel`` keeps
them so); only the frozen LLM changes:

- ``dtype=torch.bfloat16``: the whole LLM in bf16. Fast where the hardware multiplies bf16
  (CUDA; x86 CPUs with avx512_bf16 or AMX); on a CPU without it oneDNN emulates bf16 and a matmul
  is several times slower than fp32 (benchmarks/bench_cpu_limits.py measures both), so loading
  warns there.
- ``quantize="int8"``: every ``nn.Linear`` of the LLM's backbone becomes torch's dynamic int8 linear
  (``torch.ao.nn.quantized.dynamic.Linear``: weights int8 per output channel, activations quantized
  per call, the fbgemm/x86 int8 GEMM). The LM head (used only by ``decode``; tied to the input table
  in some models) and the embedding table stay as they are. Inference only: the quantized layers
  have no gradient. One scale per activation tensor cannot represent LLMs with outlier channels:
  on the trained SmolLM2-135M-Instruct checkpoint the embeddings lose their meaning (mean cosine
  0.44 to fp32; per-token scales would give 0.92), while random and tiny models stay >= 0.996.
  Loading warns; compare against fp32 on your data (benchmarks/precision_quality.py) before use.

torch 2.13 deprecates the quantized dtypes this kernel's packed weights use (pytorch#184982; the
warning is silenced here) and names torchao as the way forward, but torchao's
``Int8DynamicActivationInt8WeightConfig`` (the suggested replacement for
``torch.ao.quantization.quantize_dynamic``) runs ``torch._int_mm`` on the CPU: about 1.3 GFLOP/s on
the 2-core AVX2 VM (torchao 0.18, eager or compiled) against about 100 GFLOP/s for the fbgemm kernel.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
from torch.ao.quantization.qconfig import per_channel_dynamic_qconfig

QUANTIZE_OPTIONS = ("int8",)


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (avx512_bf16 or AMX), as oneDNN needs."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def check_precision(dtype: torch.dtype, quantize: str | None, device: torch.device) -> None:
    """ValueError for an unsupported (dtype, quantize, device); warnings for int8 (quality on LLMs
    with outlier channels) and for emulated CPU bf16.

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
            "quantize='int8' quantizes each activation tensor with one scale: LLMs with outlier "
            "channels (e.g. SmolLM2-135M-Instruct) lose most of their embedding quality; compare "
            "with fp32 on your data first",
            stacklevel=3,
        )
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "this CPU has no avx512_bf16 or AMX: bf16 matmuls are emulated and encode runs several "
            "times slower than in fp32 (the default on the CPU)",
            stacklevel=3,
        )


@torch.no_grad()
def quantize_int8(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` under ``module`` (in place) by torch's dynamic int8 linear.

    Weights become int8 with one fp32 scale per output channel (symmetric); each call quantizes its
    fp32 input [..., in] per tensor and returns fp32 [..., out]. Returns ``module``.
    """
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            child.qconfig = per_channel_dynamic_qconfig
            with warnings.catch_warnings():  # torch 2.13: qint8 tensors deprecated (pytorch#184982)
                warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per")
                setattr(module, name, DynamicInt8Linear.from_float(child.float()))
        else:
            quantize_int8(child)
    return module
