"""Input checks shared by the ops: errors name the argument, its shape and its dtype."""

from __future__ import annotations

from collections.abc import Callable

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_tensor(
    name: str,
    t: object,
    ndims: tuple[int, ...],
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
) -> torch.Tensor:
    """Raise TypeError/ValueError unless ``t`` is a tensor of one of ``ndims`` ranks and ``dtypes``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() not in ndims:
        ranks = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must have rank {ranks}, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name} must have dtype {names}; got {str(t.dtype).removeprefix('torch.')}")
    return t


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    """The common device of ``tensors``; ValueError naming each device when they differ."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"tensors must share one device, got {listed}")
    return next(iter(devices.values()))


def require(ok: torch.Tensor, message: str, detail: Callable[[], str] | None = None) -> None:
    """Check a value-dependent condition (``ok``: a one-element bool tensor) without a host sync.

    CPU tensors: ValueError(``message`` + ``detail()``) when ``ok`` is False (reading a CPU tensor
    waits for nothing; ``detail`` may read values, e.g. the offending ids). CUDA tensors: a
    device-side assert (``torch._assert_async``) that runs in stream order, so the host never
    waits; a failure aborts the CUDA context with ``message``.
    """
    if ok.device.type != "cpu":
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise ValueError(message + (detail() if detail is not None else ""))


def scaled(grad: torch.Tensor | None, grad_loss: torch.Tensor) -> torch.Tensor | None:
    """``grad * grad_loss`` for a gradient computed in the forward of a scalar loss. A CPU
    ``grad_loss`` of exactly 1 (a loss used as is) skips the pass; on a device reading it would
    wait for the device, so the product is always taken there."""
    if grad is None or (grad_loss.device.type == "cpu" and grad_loss.item() == 1.0):
        return grad
    return grad * grad_loss.to(grad.dtype)
