"""The reference's public surface: ``llm2vec_gen.models``, ``from_pretrained`` kwargs, ``model.model``
views over one LLM copy, the checkpoint variants the reference loads, and no in-place changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reference_forward import reference_forward
from transformers.modeling_outputs import BaseModelOutput

from llm2vec_gen import checkpoint as ckpt
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.precision import cpu_has_native_bf16, describe
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_checkpoint, tiny_qwen3

TEXTS = ["where do polar bears live?", "", "a b c " * 10]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("released"), hidden_size=32, teacher_dim=16, k=4, seed=3)


@pytest.fixture(scope="module")
def loaded(released) -> LLM2VecGenModel:
    return LLM2VecGenModel.from_pretrained(released, device="cpu")


def test_reference_import_path():
    from llm2vec_gen import LLM2VecGenModel as top
    from llm2vec_gen.models import LLM2VecGenModel as models

    assert top is models is LLM2VecGenModel
    instead_of = {"EncoderDecoderModel": "from_pretrained", "ProjectionModel": "reconstruction_mlp"}
    for name, instead in {**instead_of, "apply_peft": "from_base"}.items():
        with pytest.raises(ImportError, match=f"llm2vec_gen.models.{name} .*use .*{instead}"):
            exec(f"from llm2vec_gen.models import {name}", {})  # noqa: S102


def test_from_pretrained_kwargs(released, loaded):
    with pytest.raises(TypeError, match="is_trainable"):
        LLM2VecGenModel.from_pretrained(released, is_trainable=True)
    with pytest.raises(TypeError, match="disagree"):
        LLM2VecGenModel.from_pretrained(released, dtype="float32", torch_dtype="bfloat16")
    auto = LLM2VecGenModel.from_pretrained(released, dtype="auto", local_files_only=True, revision=None)
    # run_config's torch_dtype, as the reference; on a CPU without bf16 hardware as bf16 weights
    bf16 = "torch.bfloat16" if cpu_has_native_bf16() else "torch.float32, bf16 linear weights"
    assert describe(auto.llm) == bf16
    assert loaded.llm.dtype == torch.float32  # the CPU default
    assert LLM2VecGenModel.from_pretrained(released, torch_dtype=torch.float16).llm.dtype == torch.float16
    emb = auto.encode(TEXTS)
    assert emb.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(emb, loaded.encode(TEXTS), dim=-1)
    assert bool((cos > 0.99).all()), cos.tolist()


def test_offline_hub_id_is_one_line(tmp_path):
    cache = str(tmp_path)
    code = (
        "from llm2vec_gen import LLM2VecGenModel\n"
        f"try:\n    LLM2VecGenModel.from_pretrained('no-such-org/LLM2Vec-Gen-x', cache_dir={cache!r})\n"
        "except FileNotFoundError as e:\n    print(repr(str(e)))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    message = eval(out.stdout.strip())  # noqa: S307
    assert "\n" not in message and "no-such-org/LLM2Vec-Gen-x" in message and "offline" in message


def test_model_model_views_share_one_llm(loaded, released):
    view = loaded.model
    assert view.decoder_model is loaded.llm
    assert view.reconstruction_mlp.projection is loaded.recon_head
    assert view.alignment_mlp.projection is loaded.align_head
    assert view.alignment_mlp.output_dim == 16 and view.encoding_mode == "last_4_tokens"
    ids, mask = loaded.pad(loaded.tokenize(TEXTS))
    with torch.no_grad():
        out = view.encoder_model(input_ids=ids, attention_mask=mask)
        assert isinstance(out, BaseModelOutput)
        torch.testing.assert_close(out.last_hidden_state[:, -4:], loaded(ids, mask))
    n_params = sum(p.numel() for p in loaded.parameters())
    assert n_params == sum(p.numel() for p in loaded.llm.parameters()) + loaded.special_rows.numel() + sum(
        p.numel() for head in (loaded.recon_head, loaded.align_head) for p in head.parameters()
    )
    with pytest.raises(AttributeError, match="decoder_model"):
        view.decoder_model = None
    with pytest.raises(AttributeError, match="no settable attribute 'encoder'"):
        view.encoder = None


def test_training_output_with_run_config_one_directory_up(released, tmp_path):
    """outputs/<run>/checkpoint-N (no run_config.yml) loads with outputs/<run>/run_config.yml."""
    run = tmp_path / "outputs" / "run"
    shutil.copytree(released, run / "checkpoint-100")
    (run / "checkpoint-100" / ckpt.RUN_CONFIG).rename(run / ckpt.RUN_CONFIG)
    model = LLM2VecGenModel.from_pretrained(run / "checkpoint-100", device="cpu")
    want = reference_forward(run / "checkpoint-100", TEXTS)[0]
    torch.testing.assert_close(model.encode(TEXTS).double(), want, rtol=1e-4, atol=1e-5)
    (run / ckpt.RUN_CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match=r"run_config.yml \(here or one directory up\)"):
        LLM2VecGenModel.from_pretrained(run / "checkpoint-100", device="cpu")


def _edit_json(path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_unsupported_variants_name_the_reason(released, tmp_path):
    decoder = shutil.copytree(released, tmp_path / "decoder")
    _edit_json(decoder / ckpt.ENCODER_DECODER_CONFIG, save_decoder=True)
    with pytest.raises(ValueError, match="save_decoder is true"):
        LLM2VecGenModel.from_pretrained(decoder, device="cpu")
    lora = shutil.copytree(released, tmp_path / "lora")
    _edit_json(lora / ckpt.ADAPTER_CONFIG, peft_type="PREFIX_TUNING")
    with pytest.raises(ValueError, match="peft_type 'PREFIX_TUNING' is not supported"):
        LLM2VecGenModel.from_pretrained(lora, device="cpu")
    heads = shutil.copytree(released, tmp_path / "heads")
    saved = torch.load(heads / ckpt.ALIGN_HEAD, weights_only=True)
    saved["config"]["pooling_mode"] = "max_linear"
    torch.save(saved, heads / ckpt.ALIGN_HEAD)
    with pytest.raises(ValueError, match="pooling_mode 'max_linear' is not one of the reference's"):
        LLM2VecGenModel.from_pretrained(heads, device="cpu")
    saved["config"].update(pooling_mode="linear", size=4)  # says 4 Linears, holds one
    torch.save(saved, heads / ckpt.ALIGN_HEAD)
    with pytest.raises(ValueError, match="alignment_mlp: expected"):
        LLM2VecGenModel.from_pretrained(heads, device="cpu")


def test_from_base_and_base_model_leave_the_callers_objects_alone(released):
    llm = tiny_qwen3(QWEN_VOCAB_SIZE, hidden_size=32, num_layers=1, seed=5).train()
    tok = qwen_tokenizer()
    tok.padding_side = "right"
    before = (len(tok), tok.padding_side, llm.training, llm.dtype, next(llm.parameters()).requires_grad)
    model = LLM2VecGenModel.from_base(llm, tok, 3, teacher_dim=8, device="cpu", dtype="bfloat16")
    after = (len(tok), tok.padding_side, llm.training, llm.dtype, next(llm.parameters()).requires_grad)
    assert after == before and model.llm is not llm and len(model.tokenizer) == len(tok) + 3
    base = LLM2VecGenModel.from_pretrained(released, device="cpu").llm
    base.train()
    LLM2VecGenModel.from_pretrained(released, device="cpu", base_model=base, dtype="bfloat16")
    assert base.training and base.dtype == torch.float32


def _lora_checkpoint(released, root):
    """The reference's "supervised" recipe: its apply_peft (LoRA r=8 on every projection +
    trainable_token_indices) on the resized backbone, random B and rows, saved by PEFT."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    path = Path(shutil.copytree(released, root / "lora"))
    shutil.rmtree(path / "encoder")
    run_config = ckpt.read_run_config(path / ckpt.RUN_CONFIG)
    tok = AutoTokenizer.from_pretrained(path)
    backbone = AutoModel.from_pretrained(run_config["model_name_or_path"], dtype=torch.float32)
    backbone.resize_token_embeddings(len(tok))
    targets = ["q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    ids = tok.convert_tokens_to_ids(run_config["special_tokens"])
    config = LoraConfig(r=8, lora_alpha=32, target_modules=targets, lora_dropout=0.05, bias="none",
                        trainable_token_indices={"embed_tokens": ids})  # fmt: skip
    peft_model = get_peft_model(backbone, config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    peft_model.save_pretrained(path / "encoder")
    peft_model.config.save_pretrained(path / "encoder")
    return path


def test_lora_encoder_on_the_encoder_path_only(released, loaded, tmp_path):
    """A LoRA encoder loads: embeddings equal the reference-style forward (PEFT's LoRA model in fp64);
    decoding reads the plain LLM (as the reference's separate decoder); one copy of the weights."""
    path = _lora_checkpoint(released, tmp_path)
    model = LLM2VecGenModel.from_pretrained(path, device="cpu")
    want, want_recon, _ = reference_forward(path, TEXTS)
    emb, recon = model.encode(TEXTS, get_recon_hidden_states=True)
    torch.testing.assert_close(emb.double(), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(recon.double(), want_recon, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(emb, loaded.encode(TEXTS), atol=1e-3)  # the deltas matter
    plain_llm = sum(p.numel() for p in loaded.llm.parameters())
    assert sum(p.numel() for p in model.llm.parameters()) == plain_llm  # LoRA A/B are buffers
    assert model.decode(recon, max_new_tokens=4) == loaded.decode(recon, max_new_tokens=4)
    bf16 = LLM2VecGenModel.from_pretrained(path, device="cpu", dtype=torch.bfloat16)  # LoRA in bf16 mode
    assert torch.nn.functional.cosine_similarity(bf16.encode(TEXTS), emb, dim=-1).min() > 0.999
    with torch.no_grad():  # outside the encoder path the LLM is the plain one
        ids = torch.tensor([[1, 2, 3]])
        torch.testing.assert_close(model.llm(ids).logits, loaded.llm(ids).logits)
    with pytest.raises(NotImplementedError, match="LoRA encoder"):
        model.save_pretrained(tmp_path / "again")
    _edit_json(path / ckpt.ADAPTER_CONFIG, use_dora=True)
    with pytest.raises(ValueError, match="use_dora"):
        LLM2VecGenModel.from_pretrained(path, device="cpu")
