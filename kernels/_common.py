"""Launch-side helpers shared by the Triton kernels: dot operand dtypes and the device's SM count."""

from __future__ import annotations

import torch
import triton.language as tl

# H100 SXM / H200: 132 SMs. Used where no CUDA device is at hand (the interpreter), so grid choices
# made from the SM count are the same on the CPU as on the chip the kernels are tuned for.
HOPPER_SMS = 132

_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def dot_dtype(dtype: torch.dtype, device: torch.device) -> tl.dtype:
    """The ``tl.dot`` operand dtype for inputs of ``dtype``: the inputs' own (bf16 / fp16 on tensor
    cores with fp32 accumulation, fp32 as tf32 or IEEE, see ``dot_precision``).

    Exception: the CPU interpreter holds bf16 as raw uint16, so its dots would multiply bit patterns;
    there bf16 operands are widened to fp32 (the values are the same, only the products are exact).
    """
    if dtype == torch.bfloat16 and device.type == "cpu":
        return tl.float32
    return _TL_DTYPES[dtype]


def dot_precision(dtype: torch.dtype) -> str:
    """``input_precision`` of fp32 dots: "tf32" only where PyTorch's own matmuls may use it
    (``torch.backends.cuda.matmul.allow_tf32``), else exact "ieee". 16-bit operands ignore it."""
    allow = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return "tf32" if allow else "ieee"


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (``HOPPER_SMS`` for CPU tensors)."""
    if device.type != "cuda":
        return HOPPER_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count


def compiled_kernels(fn) -> list:
    """Every compiled variant of the ``@triton.jit`` function ``fn`` launched so far in this process
    (Triton's own per-device cache), each with ``n_regs``, ``n_spills`` and ``metadata.shared``
    (bytes) once launched. For resource checks on a GPU; empty under the interpreter."""
    if hasattr(fn, "device_caches"):  # triton >= 3.2: device -> (kernel cache, ...)
        caches = [entry[0] for entry in fn.device_caches.values()]
    else:  # older triton: device -> kernel cache
        caches = list(getattr(fn, "cache", {}).values())
    return [k for cache in caches for k in cache.values() if hasattr(k, "metadata")]


def max_shared_memory(device: torch.device) -> int:
    """Bytes of shared memory one block may use on ``device`` (227 KiB on Hopper), as Triton checks."""
    from triton.runtime import driver

    return driver.active.utils.get_device_properties(device.index or 0)["max_shared_mem"]
