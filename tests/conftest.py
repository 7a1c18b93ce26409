"""Test set-up: each op test runs every backend; Triton kernels run compiled on a CUDA machine and
in the CPU interpreter without one."""

import os

import torch

# Must be set before any module defining Triton kernels is imported, and only without CUDA: on a GPU
# the tests (and their timings) must exercise the compiled kernels, never the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from llm2vec_gen import _dispatch  # noqa: E402

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (compiled Triton kernels)")


def available_backends() -> list[str]:
    backends = ["torch"]
    if _dispatch.extension() is not None or os.environ.get("LLM2VEC_GEN_REQUIRE_EXT") == "1":
        backends.append("cpp")
    if _dispatch.triton_available() and _dispatch.triton_interpreting():
        backends.append("triton")  # CPU tensors; on a GPU the CUDA-only tests cover the kernels
    return backends


def on_cuda(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Copies of ``tensors`` on the GPU, leaves again (requires_grad kept); None stays None."""
    return [None if t is None else t.detach().cuda().requires_grad_(t.requires_grad) for t in tensors]


@pytest.fixture(params=available_backends())
def backend(request, monkeypatch) -> str:
    """Forces one backend for the test through LLM2VEC_GEN_BACKEND."""
    monkeypatch.setenv(_dispatch.ENV_VAR, request.param)
    return request.param


@pytest.fixture(params=[b for b in available_backends() if b != "triton"])
def fp64_backend(request, monkeypatch) -> str:
    """``backend`` for fp64 gradchecks: torch and cpp (fp64 never runs Triton: the dispatch hands it
    to the torch reference, which the torch parameter already covers)."""
    monkeypatch.setenv(_dispatch.ENV_VAR, request.param)
    return request.param


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny released-format checkpoint (tests/integration_checkpoint.py), one per test module."""
    from integration_checkpoint import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def model(ckpt):
    """``ckpt`` loaded on the CPU."""
    from llm2vec_gen.model import LLM2VecGenModel

    return LLM2VecGenModel.from_pretrained(ckpt, device="cpu")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
