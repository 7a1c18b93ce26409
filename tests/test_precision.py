"""Inference precision (llm2vec_gen/precision.py): bf16 and dynamic int8 LLMs against the fp32 model.

A seeded random Llama of odd shape (hidden 72, 3 layers, 6 heads / 2 KV heads, intermediate 200)
saved as a checkpoint with the real Qwen tokenizer, loaded three times: fp32 (the reference), bf16
and int8. Texts of odd lengths, 1 to about 300 tokens.
"""

import warnings

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.precision import check_precision, cpu_has_native_bf16, quantize_int8
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_llama

TEXTS = [
    "hi",
    "What is the capital of France?",
    "Gradient descent moves parameters against the gradient of the loss, one small step at a time.",
    " ".join(f"word{i}" for i in range(97)),
    "The Moon orbits about 384,400 kilometres from Earth; its light takes about 1.3 s to reach us. " * 7,
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    llm = tiny_llama(QWEN_VOCAB_SIZE, hidden_size=72, num_layers=3, num_heads=6, num_kv_heads=2, seed=11,
                     intermediate_size=200)  # fmt: skip
    llm.save_pretrained(root / "base")
    model = LLM2VecGenModel.from_base(llm, qwen_tokenizer(), 10, teacher_dim=40, device="cpu", seed=12)
    with torch.no_grad():
        model.special_rows.copy_(torch.randn(10, 72, generator=torch.Generator().manual_seed(13)))
    model.save_pretrained(root / "ckpt", base_model_name_or_path=str(root / "base"))
    return root / "ckpt"


@pytest.fixture(scope="module")
def fp32_embeddings(checkpoint) -> torch.Tensor:
    model = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu")
    return model.encode(TEXTS, batch_size=2, convert_to_tensor=True)


def _row_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def test_bf16_llm_fp32_heads(checkpoint, fp32_embeddings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", dtype=torch.bfloat16)
    emulated = [w for w in caught if "avx512_bf16" in str(w.message)]
    assert len(emulated) == (0 if cpu_has_native_bf16() else 1)
    assert model.llm.dtype == torch.bfloat16
    for param in (model.special_rows, model.recon_head.weight, model.align_head.bias):
        assert param.dtype == torch.float32
    emb = model.encode(TEXTS, batch_size=2, convert_to_tensor=True)
    assert emb.dtype == torch.float32 and emb.shape == fp32_embeddings.shape
    assert _row_cosines(emb, fp32_embeddings).min() >= 0.999


def test_int8_backbone_linears(checkpoint, fp32_embeddings):
    with pytest.warns(UserWarning, match="outlier"):
        model = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", quantize="int8")
    backbone = list(model.llm.base_model.modules())
    assert not any(type(m) is nn.Linear for m in backbone)
    assert sum(type(m) is DynamicInt8Linear for m in backbone) == 3 * 7  # q k v o gate up down
    assert type(model.llm.get_output_embeddings()) is nn.Linear  # decode's LM head untouched
    assert model.recon_head.weight.dtype == torch.float32
    emb = model.encode(TEXTS, batch_size=2, convert_to_tensor=True)
    assert emb.dtype == torch.float32
    assert _row_cosines(emb, fp32_embeddings).min() >= 0.99
    assert len(model.decode(TEXTS[:2], max_new_tokens=3)) == 2


def test_quantize_int8_nested_modules_match_fp64():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(37, 129), nn.GELU(), nn.Sequential(nn.Linear(129, 61, bias=False)))
    x = torch.randn(53, 37)
    with torch.no_grad():
        want = net.double()(x.double())
        net.float()
    quantize_int8(net)
    assert type(net[0]) is DynamicInt8Linear and type(net[2][0]) is DynamicInt8Linear
    got = net(x)
    assert got.dtype == torch.float32 and got.shape == (53, 61)
    assert _row_cosines(got, want).min() >= 0.99


@pytest.mark.parametrize(
    ("dtype", "quantize", "device", "match"),
    [
        (torch.float32, "int4", "cpu", "quantize must be None or one of"),
        (torch.float32, 8, "cpu", "quantize must be None or one of"),
        (torch.bfloat16, "int8", "cpu", "pass dtype=torch.float32"),
        (torch.float32, "int8", "cuda", "is a CPU option"),
    ],
)
def test_bad_precision(dtype, quantize, device, match):
    with pytest.raises(ValueError, match=match):
        check_precision(dtype, quantize, torch.device(device))


def test_bad_quantize_from_pretrained(checkpoint):
    with pytest.raises(ValueError, match="quantize must be None or one of"):
        LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", quantize="int4")
    with pytest.raises(ValueError, match="pass dtype=torch.float32"):
        LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", dtype="bfloat16", quantize="int8")


@pytest.mark.parametrize(("batch_size", "zero_waste"), [(1, True), (4, False)])
def test_cli_bench_int8_reports_padding(checkpoint, capsys, batch_size, zero_waste):
    import json

    from llm2vec_gen.cli import main

    argv = ["bench", str(checkpoint), "--quantize", "int8", "--num-texts", "6", "--repeats", "1"]
    assert main([*argv, "--batch-size", str(batch_size), "--max-batch-tokens", "64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["padded_tokens"] >= result["tokens"] > 0
    assert result["padding_waste"] == pytest.approx(1 - result["tokens"] / result["padded_tokens"], abs=1e-4)
    assert (result["padding_waste"] == 0) == zero_waste
