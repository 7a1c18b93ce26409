"""One registry that picks an op's backend from its tensors' device.

Backends:
    ``torch``  the plain PyTorch reference (autograd does the backward), always available;
    ``cpp``    the C++ CPU kernels in ``llm2vec_gen._C`` (CPU tensors, when the extension is built);
    ``triton`` the Triton kernels in ``llm2vec_gen.kernels`` (CUDA tensors, or CPU tensors when
               ``TRITON_INTERPRET=1`` was set before the first import of a kernel module).

``LLM2VEC_GEN_BACKEND=torch|cpp|triton`` forces one; a forced backend that cannot run the given
tensors raises a ``RuntimeError`` that says why.

Kernel naming is the same in both compiled backends: op ``encode_tail`` exposes
``encode_tail_forward`` in ``llm2vec_gen._C`` and in ``llm2vec_gen/kernels/encode_tail.py``
(``distill_loss``'s cpp backend exposes its whole autograd node instead, ``distill_loss_apply``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

BACKENDS = ("torch", "cpp", "triton")
ENV_VAR = "LLM2VEC_GEN_BACKEND"
KERNELS = "llm2vec_gen.kernels"
SOURCE_KERNELS = Path(__file__).resolve().parents[1] / "kernels"
"""Where a source checkout keeps the Triton kernels: ``kernels/`` beside ``llm2vec_gen/``."""


class _SourceKernelsFinder(importlib.abc.MetaPathFinder):
    """Serves ``llm2vec_gen.kernels`` from ``SOURCE_KERNELS`` when it is not installed: setup.py maps
    ``kernels/`` to that name on install, a plain source checkout on ``sys.path`` has no such package.
    Last on ``sys.meta_path``, so an installed package always wins."""

    def find_spec(self, name: str, path=None, target=None):
        if name != KERNELS or not (SOURCE_KERNELS / "__init__.py").is_file():
            return None
        init = str(SOURCE_KERNELS / "__init__.py")
        return importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(SOURCE_KERNELS)]
        )


if not any(isinstance(finder, _SourceKernelsFinder) for finder in sys.meta_path):
    sys.meta_path.append(_SourceKernelsFinder())


@cache
def extension():
    """The compiled ``llm2vec_gen._C`` module, or None (with one warning) when it was not built."""
    try:
        from llm2vec_gen import _C
    except ImportError as exc:
        warnings.warn(
            f"llm2vec_gen._C is not built ({exc}); CPU ops fall back to the slower torch backend. "
            "Reinstall with `pip install --no-build-isolation .` and a C++ compiler to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return _C


def triton_interpreting() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _can_run(backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run tensors on ``device``, else the reason it cannot."""
    if backend == "torch":
        return None
    if backend == "cpp":
        if device.type != "cpu":
            return f"the cpp backend runs CPU tensors only, got {device.type} tensors"
        if extension() is None:
            return "llm2vec_gen._C is not built"
        return None
    if not triton_available():
        return "triton is not installed (pip install 'llm2vec-gen-fast[gpu]')"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and triton_interpreting():
        return None
    return (
        f"the triton backend needs CUDA tensors, got {device.type} tensors; to run Triton kernels "
        "on the CPU set TRITON_INTERPRET=1 before importing llm2vec_gen"
    )


def backend_for(device: torch.device, dtype: torch.dtype | None = None) -> str:
    """The backend that runs tensors on ``device``: forced by the environment, else the fastest.

    fp64 (``dtype``) never goes to Triton (its kernels accumulate in fp32 and fp64 tensor-core dots
    are no faster than the reference's): a triton choice, forced or not, becomes torch for fp64.
    """
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise RuntimeError(f"{ENV_VAR}={forced!r} is not one of {', '.join(BACKENDS)}")
        reason = _can_run(forced, device)
        if reason is not None:
            raise RuntimeError(f"{ENV_VAR}={forced} cannot run: {reason}")
        chosen = forced
    else:
        preferred = ("triton",) if device.type == "cuda" else ("cpp",) if device.type == "cpu" else ()
        chosen = next((b for b in preferred if _can_run(b, device) is None), "torch")
    return "torch" if chosen == "triton" and dtype == torch.float64 else chosen


def triton_kernels(op: str):
    """The module ``llm2vec_gen.kernels.<op>``; RuntimeError saying why when the package is missing."""
    try:
        return importlib.import_module(f"{KERNELS}.{op}")
    except ModuleNotFoundError as exc:
        if exc.name != KERNELS:
            raise
        raise RuntimeError(
            f"{KERNELS} is not installed (setup.py installs kernels/ under that name: "
            f"`pip install --no-build-isolation -e .`) and this is no source checkout with the kernels "
            f"beside the package ({SOURCE_KERNELS / '__init__.py'} does not exist)"
        ) from exc


def kernel(op: str, name: str, backend: str) -> Callable:
    """The compiled function ``<op>_<name>`` of ``backend`` ("cpp" or "triton")."""
    attr = f"{op}_{name}"
    if backend == "cpp":
        return getattr(extension(), attr)
    if backend == "triton":
        return getattr(triton_kernels(op), attr)
    raise ValueError(f"backend {backend!r} has no compiled kernels")
