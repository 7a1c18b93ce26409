import os

import pytest
import torch

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import distill_loss


def test_default_backend_on_cpu_is_cpp_when_built(monkeypatch):
    monkeypatch.delenv(_dispatch.ENV_VAR, raising=False)
    expected = "cpp" if _dispatch.extension() is not None else "torch"
    assert _dispatch.backend_for(torch.device("cpu")) == expected


def test_extension_is_built_when_required():
    if os.environ.get("LLM2VEC_GEN_REQUIRE_EXT") != "1":
        pytest.skip("set LLM2VEC_GEN_REQUIRE_EXT=1 to require the C++ extension")
    assert _dispatch.extension() is not None


@pytest.mark.parametrize("name", ["torch", "cpp", "triton"])
def test_forced_backend(monkeypatch, name):
    monkeypatch.setenv(_dispatch.ENV_VAR, name)
    if _dispatch._can_run(name, torch.device("cpu")) is None:
        assert _dispatch.backend_for(torch.device("cpu")) == name


def test_unknown_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="not one of torch, cpp, triton"):
        distill_loss(torch.randn(2, 3), torch.randn(2, 3))


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    if not _dispatch.triton_available():
        pytest.skip("triton is not installed")
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        distill_loss(torch.randn(2, 3), torch.randn(2, 3))
