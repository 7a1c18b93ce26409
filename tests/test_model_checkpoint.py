"""LLM2VecGenModel and the released checkpoint format: load, save, PEFT compatibility, errors.

Checkpoints are written the way the reference package writes them (``tiny.tiny_checkpoint``: PEFT's
own TrainableTokens adapter on a resized tiny Qwen3 with the real Qwen tokenizer). The oracle below
encodes the way the reference does: AutoModel + resize_token_embeddings + PeftModel.from_pretrained,
pad to longest in the given order, last K hidden states, recon head, align head, mean.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from reference_forward import reference_forward
from safetensors import safe_open

from llm2vec_gen import checkpoint as ckpt
from llm2vec_gen.loading import dtype_from_string
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import QWEN_PADDED_VOCAB_SIZE, QWEN_VOCAB_SIZE, qwen_tokenizer

K = 10
HIDDEN = 32
TEACHER_DIM = 24
MAX_LENGTH = 24
TEXTS = [
    "What is the capital of France?",
    "",
    "Summarize: the quick brown fox jumps over the lazy dog. " * 4,  # longer than MAX_LENGTH
    "héllo wörld 12345 ✓",
    "a",
]


def reference_encode(path: Path, texts: list[str], max_length: int) -> torch.Tensor:
    """The reference's encode, fp32: [n, D]."""
    return reference_forward(path, texts, max_length, torch.float32)[0]


def _assert_cosine(actual, expected, min_cos: float = 0.99999) -> None:
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    assert actual.shape == expected.shape
    cos = torch.nn.functional.cosine_similarity(actual, expected, dim=-1)
    assert bool((cos >= min_cos).all()), f"cosine per row {cos.tolist()}"
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module", params=["ids-inside-table", "ids-past-table"])
def released(request, tmp_path_factory) -> Path:
    """A reference-written checkpoint; Qwen3-like padded table (ids inside) or exact vocab (past)."""
    from llm2vec_gen.tiny import tiny_checkpoint

    inside = request.param == "ids-inside-table"
    return tiny_checkpoint(
        tmp_path_factory.mktemp(request.param),
        base_vocab_size=QWEN_PADDED_VOCAB_SIZE if inside else QWEN_VOCAB_SIZE,
        k=K,
        hidden_size=HIDDEN,
        teacher_dim=TEACHER_DIM,
        head_dtype=torch.float32 if inside else torch.bfloat16,
    )


@pytest.fixture(scope="module")
def loaded(released) -> LLM2VecGenModel:
    return LLM2VecGenModel.from_pretrained(released, device="cpu")


def test_load_matches_reference(released, loaded):
    rows = loaded.llm.get_input_embeddings().weight.shape[0]
    assert bool((loaded.special_ids < rows).all()) == (rows == QWEN_PADDED_VOCAB_SIZE)
    assert loaded.llm.dtype == torch.float32 and loaded.special_rows.dtype == torch.float32
    with pytest.warns(UserWarning, match="1 of 5 texts are longer than max_length=24"):
        ours = loaded.encode(TEXTS, batch_size=2, max_length=MAX_LENGTH)
    assert (
        isinstance(ours, torch.Tensor)
        and ours.shape == (len(TEXTS), TEACHER_DIM)
        and ours.dtype == torch.float32
    )
    _assert_cosine(ours, reference_encode(released, TEXTS, MAX_LENGTH))


def test_one_copy_of_the_table(loaded):
    """The encoder holds no second V x H table: only the LM's own embedding and LM head."""
    big = [n for n, p in loaded.named_parameters() if p.shape[0] >= QWEN_VOCAB_SIZE]
    big += [n for n, b in loaded.named_buffers() if b.dim() and b.shape[0] >= QWEN_VOCAB_SIZE]
    assert sorted(big) == ["llm.lm_head.weight", "llm.model.embed_tokens.weight"]


def test_save_reload_identical(loaded, released, tmp_path):
    loaded.save_pretrained(tmp_path)
    again = LLM2VecGenModel.from_pretrained(tmp_path, device="cpu")
    before = loaded.encode(TEXTS, max_length=128)
    np.testing.assert_array_equal(again.encode(TEXTS, max_length=128), before)

    config = json.loads((tmp_path / ckpt.ADAPTER_CONFIG).read_text())
    assert config["peft_type"] == "TRAINABLE_TOKENS"
    assert config["target_modules"] == ["embed_tokens"]
    assert config["token_indices"] == loaded.special_ids.tolist()
    with safe_open(tmp_path / ckpt.ADAPTER_WEIGHTS, "pt") as f:
        assert sorted(f.keys()) == sorted([ckpt.DELTA_KEY, ckpt.BASE_TABLE_KEY])
        delta, table = f.get_tensor(ckpt.DELTA_KEY), f.get_tensor(ckpt.BASE_TABLE_KEY)
    assert delta.dtype == table.dtype == torch.float32
    assert delta.shape == (K, HIDDEN) and table.shape == (len(loaded.tokenizer), HIDDEN)
    torch.testing.assert_close(delta, loaded.special_rows.detach(), rtol=0, atol=0)
    assert json.loads((tmp_path / ckpt.ENCODER_CONFIG).read_text())["vocab_size"] == len(loaded.tokenizer)
    for name, out_dim in ((ckpt.RECON_HEAD, HIDDEN), (ckpt.ALIGN_HEAD, TEACHER_DIM)):
        saved = torch.load(tmp_path / name, weights_only=True)
        assert sorted(saved["state_dict"]) == ["projection.bias", "projection.weight"]
        assert saved["config"] == {
            "input_dim": HIDDEN,
            "output_dim": out_dim,
            "dtype": "torch.float32",
            "size": 1,
            "pooling_mode": "linear",
        }
    run_config = yaml.safe_load((tmp_path / ckpt.RUN_CONFIG).read_text())
    assert run_config["special_tokens"] == loaded.special_tokens
    assert run_config["model_name_or_path"] == str(released.parent / "base")
    assert run_config["torch_dtype"] == "bfloat16" and run_config["learning_rate"] == 0.0003
    assert json.loads((tmp_path / ckpt.ENCODER_DECODER_CONFIG).read_text()) == {
        "encoding_mode": f"last_{K}_tokens",
        "save_decoder": False,
    }
    tok_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tok_config["additional_special_tokens"] == loaded.special_tokens
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_saved_checkpoint_loads_in_peft(loaded, tmp_path):
    """What we write loads with PeftModel.from_pretrained and encodes, the reference way, the same."""
    loaded.save_pretrained(tmp_path)
    _assert_cosine(loaded.encode(TEXTS, max_length=MAX_LENGTH), reference_encode(tmp_path, TEXTS, MAX_LENGTH))


@pytest.mark.parametrize("vocab", [QWEN_VOCAB_SIZE, QWEN_PADDED_VOCAB_SIZE], ids=["past", "inside"])
def test_from_base_save_load(tmp_path, vocab):
    from llm2vec_gen.tiny import tiny_qwen3

    base = tiny_qwen3(vocab, hidden_size=HIDDEN, seed=3)
    base.save_pretrained(tmp_path / "base")
    tok = qwen_tokenizer()
    model = LLM2VecGenModel.from_base(str(tmp_path / "base"), tok, 4, teacher_dim=16, device="cpu", seed=5)
    assert model.special_tokens == [f"<question{i}>" for i in range(1, 5)]
    assert model.special_ids.tolist() == list(range(QWEN_VOCAB_SIZE, QWEN_VOCAB_SIZE + 4))
    assert model.tokenizer.convert_tokens_to_ids("<question4>") == QWEN_VOCAB_SIZE + 3  # added in place
    assert model.special_rows.requires_grad and model.special_rows.dtype == torch.float32
    assert not any(p.requires_grad for p in model.llm.parameters())
    assert (model.recon_head.in_features, model.recon_head.out_features) == (HIDDEN, HIDDEN)
    assert (model.align_head.in_features, model.align_head.out_features) == (HIDDEN, 16)
    table = base.get_input_embeddings().weight.detach()
    if vocab > QWEN_VOCAB_SIZE:  # Qwen3's spare rows: kept as they are
        torch.testing.assert_close(model.special_rows.detach(), table[QWEN_VOCAB_SIZE : QWEN_VOCAB_SIZE + 4])
    else:  # past the table: transformers' mean resizing (N(mean, 1e-9 cov), seeded)
        mean = table.double().mean(0).float().expand(4, HIDDEN)
        torch.testing.assert_close(model.special_rows.detach(), mean, rtol=0, atol=1e-3)
    again = LLM2VecGenModel.from_base(str(tmp_path / "base"), qwen_tokenizer(), 4, teacher_dim=16, seed=5)
    torch.testing.assert_close(again.special_rows, model.special_rows, rtol=0, atol=0)
    torch.testing.assert_close(again.align_head.weight, model.align_head.weight, rtol=0, atol=0)

    model.save_pretrained(tmp_path / "ckpt")
    reloaded = LLM2VecGenModel.from_pretrained(tmp_path / "ckpt", device="cpu")
    ours = model.encode(TEXTS, max_length=MAX_LENGTH)
    np.testing.assert_array_equal(reloaded.encode(TEXTS, max_length=MAX_LENGTH), ours)
    _assert_cosine(ours, reference_encode(tmp_path / "ckpt", TEXTS, MAX_LENGTH))


def test_save_needs_base_name(tmp_path):
    from llm2vec_gen.tiny import tiny_qwen3

    model = LLM2VecGenModel.from_base(tiny_qwen3(QWEN_VOCAB_SIZE, hidden_size=16), qwen_tokenizer(), 2, 8)
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        model.save_pretrained(tmp_path)


@pytest.mark.parametrize(
    "missing",
    [ckpt.RUN_CONFIG, ckpt.ADAPTER_CONFIG, ckpt.ADAPTER_WEIGHTS, ckpt.ALIGN_HEAD, "tokenizer_config.json"],
)
def test_missing_file(released, tmp_path, missing):
    copy = Path(shutil.copytree(released, tmp_path / "ckpt"))
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing.replace(".", r"\.")):
        LLM2VecGenModel.from_pretrained(copy, device="cpu")


def test_special_token_count_mismatch(released, tmp_path):
    copy = Path(shutil.copytree(released, tmp_path / "ckpt"))
    config_file = copy / ckpt.ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    config["token_indices"] = config["token_indices"][:-1]
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match"):
        LLM2VecGenModel.from_pretrained(copy, device="cpu")


def test_offline_hub_ids(released, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="no-such-org/llm2vec-gen-x"):
        LLM2VecGenModel.from_pretrained("no-such-org/llm2vec-gen-x")
    copy = Path(shutil.copytree(released, tmp_path / "ckpt"))
    run_config = (copy / ckpt.RUN_CONFIG).read_text()
    base = yaml.safe_load(run_config)["model_name_or_path"]
    (copy / ckpt.RUN_CONFIG).write_text(run_config.replace(base, "Qwen/Qwen3-nonexistent"))
    with pytest.raises(OSError, match="Qwen/Qwen3-nonexistent"):
        LLM2VecGenModel.from_pretrained(copy, device="cpu")
    # the base_model argument overrides run_config.yml
    model = LLM2VecGenModel.from_pretrained(copy, device="cpu", base_model=base)
    assert model.encode("ok").shape == (1, TEACHER_DIM)


def test_run_config_tolerates_reference_reprs(tmp_path):
    path = tmp_path / "run_config.yml"
    path.write_text(
        "model_name_or_path: Qwen/Qwen3-4B\nspecial_tokens: ['<question1>', '<question2>']\n"
        "save_strategy: <IntervalStrategy.STEPS: 'steps'>\ntorch_dtype: bfloat16\n\n"
    )
    config = ckpt.read_run_config(path)
    assert config["special_tokens"] == ["<question1>", "<question2>"]
    assert config["model_name_or_path"] == "Qwen/Qwen3-4B" and config["torch_dtype"] == "bfloat16"
    assert dtype_from_string(config["torch_dtype"]) == torch.bfloat16
