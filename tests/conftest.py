"""Test set-up: Triton kernels run in the interpreter, and each op test runs every backend."""

import os

# Must be set before any module defining Triton kernels is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from llm2vec_gen import _dispatch  # noqa: E402


def available_backends() -> list[str]:
    backends = ["torch"]
    if _dispatch.extension() is not None or os.environ.get("LLM2VEC_GEN_REQUIRE_EXT") == "1":
        backends.append("cpp")
    if _dispatch.triton_available():
        backends.append("triton")
    return backends


@pytest.fixture(params=available_backends())
def backend(request, monkeypatch) -> str:
    """Forces one backend for the test through LLM2VEC_GEN_BACKEND."""
    monkeypatch.setenv(_dispatch.ENV_VAR, request.param)
    return request.param


@pytest.fixture(params=[b for b in available_backends() if b != "triton"])
def fp64_backend(request, monkeypatch) -> str:
    """``backend`` for fp64 gradchecks: torch and cpp (Triton kernels accumulate in fp32)."""
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
