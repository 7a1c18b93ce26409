"""Inference precision (llm2vec_gen/precision.py, smooth.py): bf16 and int8 LLMs against the fp32 model.

A seeded random Llama of odd shape (hidden 72, 3 layers, 6 heads / 2 KV heads, intermediate 200)
saved as a checkpoint with the real Qwen tokenizer, loaded three times: fp32 (the reference), bf16
and int8. Texts of odd lengths, 1 to about 300 tokens.
"""

import warnings

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from llm2vec_gen import smooth
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.precision import (
    Bf16WeightLinear,
    PerTokenInt8Linear,
    calibration_texts,
    check_precision,
    describe,
    quantize_int8,
)
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


def test_bf16_where_the_cpu_multiplies_bf16(checkpoint, fp32_embeddings, monkeypatch):
    """On CUDA or a CPU with avx512_bf16/AMX the whole LLM runs in bf16 (here the bf16 matmuls are
    emulated, so the numbers are those hardware's); heads, rows and output stay fp32."""
    monkeypatch.setattr("llm2vec_gen.precision.cpu_has_native_bf16", lambda: True)
    model = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", dtype=torch.bfloat16)
    assert model.llm.dtype == torch.bfloat16 and describe(model.llm) == "torch.bfloat16"
    assert not any(isinstance(m, Bf16WeightLinear) for m in model.llm.modules())
    for param in (model.special_rows, model.recon_head.weight, model.align_head.bias):
        assert param.dtype == torch.float32
    emb = model.encode(TEXTS, batch_size=2, convert_to_tensor=True)
    assert emb.dtype == torch.float32 and emb.shape == fp32_embeddings.shape
    assert _row_cosines(emb, fp32_embeddings).min() >= 0.999


def test_bf16_weights_fp32_arithmetic_elsewhere(checkpoint, fp32_embeddings, monkeypatch):
    """On a CPU without bf16 hardware the backbone's linear weights stay bf16 (half their memory) and
    are multiplied in fp32: bit-equal to the fp32 model with its weights rounded to bf16."""
    monkeypatch.setattr("llm2vec_gen.precision.cpu_has_native_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: this is not the emulated path
        model = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", dtype=torch.bfloat16)
    linears = [m for m in model.llm.base_model.modules() if isinstance(m, Bf16WeightLinear)]
    assert len(linears) == 3 * 7 and not any(type(m) is nn.Linear for m in model.llm.base_model.modules())
    assert all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert describe(model.llm) == "torch.float32, bf16 linear weights"  # what the CLI records
    rest = [
        p for m in model.llm.modules() if not isinstance(m, Bf16WeightLinear) for p in m.parameters(False)
    ]
    assert rest and all(p.dtype == torch.float32 for p in rest) and model.llm.dtype == torch.float32
    emb = model.encode(TEXTS, batch_size=2, convert_to_tensor=True)
    rounded = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu")
    for param in rounded.llm.parameters():  # the weights as bf16 stores them; RoPE's buffers stay exact
        param.data = param.data.to(torch.bfloat16).float()
    assert torch.equal(emb, rounded.encode(TEXTS, batch_size=2, convert_to_tensor=True))
    assert _row_cosines(emb, fp32_embeddings).min() >= 0.999
    assert model.decode(TEXTS[:2], max_new_tokens=4) == rounded.decode(TEXTS[:2], max_new_tokens=4)


def test_bf16_weight_linear_against_fp64():
    torch.manual_seed(2)
    linear = nn.Linear(37, 19)
    x = torch.randn(3, 5, 37)
    got = Bf16WeightLinear(linear)(x)
    rounded = linear.weight.detach().to(torch.bfloat16).double()
    want = nn.functional.linear(x.double(), rounded, linear.bias.detach().double())
    assert got.dtype == torch.float32 and got.shape == (3, 5, 19)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    assert Bf16WeightLinear(nn.Linear(4, 2, bias=False))(torch.ones(1, 4)).shape == (1, 2)


def test_int8_backbone_linears(checkpoint, fp32_embeddings):
    with pytest.warns(UserWarning, match="per output channel"):
        model = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", quantize="int8")
    backbone = list(model.llm.base_model.modules())
    assert not any(type(m) is nn.Linear for m in backbone)
    assert sum(type(m) is PerTokenInt8Linear for m in backbone) == 3 * 7  # q k v o gate up down
    assert describe(model.llm) == "torch.float32, int8 linears"
    assert type(model.llm.get_output_embeddings()) is nn.Linear  # decode's LM head untouched
    assert model.recon_head.weight.dtype == torch.float32
    emb = model.encode(TEXTS, batch_size=2, convert_to_tensor=True)
    assert emb.dtype == torch.float32
    assert _row_cosines(emb, fp32_embeddings).min() >= 0.99
    assert len(model.decode(TEXTS[:2], max_new_tokens=3)) == 2
    with pytest.warns(UserWarning, match="per output channel"):  # calibration is deterministic
        again = LLM2VecGenModel.from_pretrained(checkpoint, device="cpu", quantize="int8")
    assert torch.equal(again.encode(TEXTS, batch_size=2, convert_to_tensor=True), emb)
    # one scale per token: a row's embedding does not depend on the rest of its batch
    alone = torch.cat([model.encode([t], convert_to_tensor=True) for t in TEXTS])
    assert torch.equal(alone, emb)


def test_quantize_int8_nested_modules_match_fp64():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(37, 129), nn.GELU(), nn.Sequential(nn.Linear(129, 61, bias=False)))
    x = torch.randn(5, 53, 37)
    with torch.no_grad():
        want = net.double()(x.double())
        net.float()
    quantize_int8(net)
    assert type(net[0]) is PerTokenInt8Linear and type(net[2][0]) is PerTokenInt8Linear
    got = net(x)
    assert got.dtype == torch.float32 and got.shape == (5, 53, 61)
    assert _row_cosines(got, want).min() >= 0.99


def test_per_token_scales_against_per_tensor():
    """A row 1000x larger than the others: one scale per tensor rounds the small rows to noise, one
    scale per token keeps every row (fp64 oracle); the bias is added in fp32."""
    torch.manual_seed(1)
    linear = nn.Linear(67, 31)
    x = torch.randn(23, 67)
    x[7] *= 1000.0
    want = nn.functional.linear(x.double(), linear.weight.double(), linear.bias.double())
    plain = nn.Linear(67, 31)
    plain.load_state_dict(linear.state_dict())
    plain.qconfig = torch.ao.quantization.qconfig.per_channel_dynamic_qconfig
    per_tensor = DynamicInt8Linear.from_float(plain)(x)
    per_token = PerTokenInt8Linear(linear)(x)
    assert _row_cosines(per_tensor, want).min() < 0.9
    assert _row_cosines(per_token, want).min() >= 0.999
    assert torch.equal(PerTokenInt8Linear(linear)(x[:3]), per_token[:3])  # rows independent
    assert torch.equal(PerTokenInt8Linear(linear)(torch.zeros(2, 67)), linear.bias.detach().expand(2, -1))


def _llama_layer(bias: bool) -> tuple[nn.Module, int]:
    """A seeded decoder layer of odd shape with grouped-query attention (hidden 60, 6 heads / 2 KV
    heads, intermediate 97), outlier input channels, and q/k/v biases when ``bias`` (Qwen2 style)."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    config = LlamaConfig(hidden_size=60, intermediate_size=97, num_attention_heads=6, num_key_value_heads=2,
                         attention_bias=bias, attn_implementation="eager")  # fmt: skip
    torch.manual_seed(2)
    layer = LlamaDecoderLayer(config, 0).double()
    with torch.no_grad():
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.weight.copy_(torch.rand(60) + 0.5)
            norm.weight[[3, 41]] *= 40.0  # outlier channels
    return layer, config


@pytest.mark.parametrize("bias", [False, True])
def test_smooth_layer_keeps_the_function(bias):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    layer, config = _llama_layer(bias)
    h = torch.randn(3, 11, 60, dtype=torch.float64)
    rope = LlamaRotaryEmbedding(config)(h, torch.arange(11)[None].expand(3, -1))
    run = lambda: layer(h, position_embeddings=rope, attention_mask=None)  # noqa: E731
    want = run()
    seen = [getattr(layer.self_attn if n in smooth.ATTENTION else layer.mlp, n) for n in smooth.SEEN]
    absmax = dict(zip(smooth.SEEN, smooth.activation_absmax(seen, run), strict=True))
    assert absmax["q_proj"][[3, 41]].min() > 5 * absmax["q_proj"].median()
    smooth.smooth_layer(layer, absmax, 0.65, config.num_key_value_heads)
    torch.testing.assert_close(run(), want, rtol=1e-10, atol=1e-10)
    after = dict(zip(smooth.SEEN, smooth.activation_absmax(seen, run), strict=True))
    for name in smooth.SEEN:  # the spread across channels shrinks
        spread = lambda a: (a.max() / a.median()).item()  # noqa: E731
        assert spread(after[name]) < spread(absmax[name])


def test_smooth_scales_formula():
    absmax = torch.tensor([4.0, 1.0, 0.0])
    w = torch.tensor([[1.0, -0.25, 2.0], [-2.0, 0.5, 1.0]])
    s = smooth.smooth_scales(absmax, [w], 0.5)
    want = torch.tensor([4.0**0.5 / 2.0**0.5, 1.0 / 0.5**0.5, 1e-5**0.5 / 2.0**0.5], dtype=torch.float64)
    torch.testing.assert_close(s, want)


def test_decoder_layers_rejects_other_layouts():
    with pytest.raises(ValueError, match="has no .layers"):
        smooth.decoder_layers(nn.Linear(3, 3))
    layer, _ = _llama_layer(False)

    class OnePlusWeightNorm(nn.Module):  # Gemma's RMSNorm: x * (1 + w), the weight cannot absorb s
        def __init__(self, n: int):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(n))

        def forward(self, x):
            return x * (1 + self.weight)

    layer.post_attention_layernorm = OnePlusWeightNorm(60).double()
    with pytest.raises(ValueError, match="does not scale with its weight"):
        smooth.decoder_layers(_backbone(layer))
    layer.mlp.up_proj = nn.Identity()
    with pytest.raises(ValueError, match="is not Llama-style"):
        smooth.decoder_layers(_backbone(layer))


def _backbone(layer: nn.Module) -> nn.Module:
    backbone = nn.Module()
    backbone.layers = nn.ModuleList([layer])
    return backbone


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


def test_calibration_texts_are_frozen_and_not_evaluation_texts():
    from llm2vec_gen.evaluate import sample_retrieval_set
    from llm2vec_gen.integrations.human_eval import lee_documents

    texts = calibration_texts()
    assert len(texts) == 16 and len(set(texts)) == 16 and all(t.strip() for t in texts)
    queries, corpus, _ = sample_retrieval_set()
    evaluation = [*queries.values(), *corpus.values(), *lee_documents()]
    assert not any(e in t for t in texts for e in evaluation)
