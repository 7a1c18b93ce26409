"""A whole LLM2Vec-Gen checkpoint (the released format, McGill-NLP llm2vec-gen 0.1.3): read with every
consistency check (``read_checkpoint``, what ``LLM2VecGenModel.from_pretrained`` loads) and written
(``write_checkpoint``, what ``save_pretrained`` writes). The files one by one: ``llm2vec_gen.format``.

What loads (and what the reference loads but we refuse, with the reason):

- run_config.yml in the directory, or one directory up (a training output ``<run>/checkpoint-N``);
- a TRAINABLE_TOKENS encoder (K special rows; the encoder is the frozen base LLM): yes;
- heads saved by the reference's ``ProjectionModel``: size 1 and pooling_mode "linear" (every
  released model, folded) and the others (``size`` > 1, "mean_linear", "first_<n>_linear",
  ``heads.ProjectionHead``): yes;
- a LoRA encoder (the "supervised" recipe): yes, its deltas on the encoder path only
  (``llm2vec_gen.lora``; such a model is not saved back);
- ``save_decoder: true`` (a separately fine-tuned decoder): ValueError naming it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from llm2vec_gen.format import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ALIGN_HEAD,
    BASE_TABLE_KEY,
    DELTA_KEY,
    ENCODER_CONFIG,
    ENCODER_DECODER_CONFIG,
    RECON_HEAD,
    REQUIRED_FILES,
    RUN_CONFIG,
    encoding_tokens,
    read_delta,
    read_encoder_decoder_config,
    read_head,
    read_json,
    read_run_config,
    read_token_indices,
    write_adapter,
    write_head,
    write_json,
    write_run_config,
    write_tokenizer,
)
from llm2vec_gen.heads import head_fits
from llm2vec_gen.lora import LoRAWeights, check_lora_config, read_lora

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "ALIGN_HEAD",
    "BASE_TABLE_KEY",
    "DELTA_KEY",
    "ENCODER_CONFIG",
    "ENCODER_DECODER_CONFIG",
    "RECON_HEAD",
    "RUN_CONFIG",
    "Checkpoint",
    "check_files",
    "extra_special_tokens",
    "find_run_config",
    "read_checkpoint",
    "read_run_config",
    "write_checkpoint",
]


def find_run_config(path: str | os.PathLike) -> Path | None:
    """``path``/run_config.yml, else the one a directory up (a training output ``<run>/checkpoint-N``:
    the reference looks for ``outputs/<run>/run_config.yml``), else None."""
    for where in (Path(path), Path(path).parent):
        if (where / RUN_CONFIG).is_file():
            return where / RUN_CONFIG
    return None


def check_files(path: str | os.PathLike) -> None:
    """Raise FileNotFoundError naming every file of the format missing under ``path`` (run_config.yml
    may sit one directory up)."""
    missing = [name for name in REQUIRED_FILES if not (Path(path) / name).is_file()]
    if find_run_config(path) is None:
        missing.insert(0, f"{RUN_CONFIG} (here or one directory up)")
    if missing:
        raise FileNotFoundError(
            f"{path} is not a complete LLM2Vec-Gen checkpoint: missing {', '.join(missing)}"
        )


def extra_special_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The tokenizer's additional special tokens (transformers 5: extra_special_tokens; 4: additional_)."""
    for attr in ("extra_special_tokens", "additional_special_tokens"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, (list, tuple)) and value:
            return [str(t) for t in value]
    return []


def _load_tokenizer(root: Path, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer; a tokenizer file that does not parse raises ValueError naming root."""
    try:
        return AutoTokenizer.from_pretrained(root, trust_remote_code=trust_remote_code)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(
            f"{root}: the tokenizer files are truncated or corrupted ({type(exc).__name__}: {exc})"
        ) from exc


@dataclass
class Checkpoint:
    """What a checkpoint directory holds, checked for consistency (everything but the base LLM).

    special_rows [K, H] fp32 (the adapter's trainable_tokens_delta); recon_head H -> H and
    align_head H -> D fp32 (nn.Linear, or ``heads.ProjectionHead`` for the other reference heads).
    """

    root: Path
    run_config: dict[str, Any]
    tokenizer: PreTrainedTokenizerBase
    special_tokens: list[str]
    special_rows: torch.Tensor
    recon_head: nn.Module
    align_head: nn.Module
    encoding_mode: str
    lora: LoRAWeights | None = None  # a LoRA encoder's deltas (llm2vec_gen.lora)

    @property
    def base_model_name_or_path(self) -> str | None:
        """run_config.yml's ``model_name_or_path``: the base LLM the checkpoint was trained on."""
        name = self.run_config.get("model_name_or_path")
        return str(name) if name else None


def read_checkpoint(root: str | os.PathLike, trust_remote_code: bool = False) -> Checkpoint:
    """Read and check a local checkpoint directory: every file present and parseable, the tokenizer's
    K special tokens equal to the adapter's token_indices, the rows [K, H], the heads' sizes chained,
    a supported encoder and decoder. Errors name the file and the reason."""
    root = Path(root)
    check_files(root)
    run_config = read_run_config(find_run_config(root))
    enc_dec = read_encoder_decoder_config(root)
    if enc_dec.get("save_decoder"):
        raise ValueError(
            f"{root}: save_decoder is true (a separately fine-tuned decoder under decoder/); only "
            "checkpoints whose decoder is the frozen base LLM are supported"
        )
    token_indices = read_token_indices(root)
    tokenizer = _load_tokenizer(root, trust_remote_code)
    special_tokens = run_config.get("special_tokens") or extra_special_tokens(tokenizer)
    if not isinstance(special_tokens, list) or not special_tokens:
        raise ValueError(f"{root}: no special tokens in run_config.yml nor in the tokenizer")
    ids = tokenizer.convert_tokens_to_ids(special_tokens)
    if len(special_tokens) != len(token_indices) or ids != token_indices:
        raise ValueError(
            f"{root}: the tokenizer's K={len(special_tokens)} special tokens (ids {ids}) do not match "
            f"the adapter's K={len(token_indices)} token_indices {token_indices} ({ADAPTER_CONFIG})"
        )
    recon, align = read_head(root / RECON_HEAD), read_head(root / ALIGN_HEAD)
    rows = read_delta(root, len(token_indices))
    if not head_fits(recon, rows.shape[1]) or not head_fits(align, recon.out_features):
        raise ValueError(
            f"{root}: head sizes do not chain: rows of width {rows.shape[1]}, {RECON_HEAD} "
            f"{recon.in_features} -> {recon.out_features}, {ALIGN_HEAD} {align.in_features} -> "
            f"{align.out_features}"
        )
    encoding_mode = str(enc_dec.get("encoding_mode") or run_config.get("encoding_mode"))
    encoding_tokens(encoding_mode, len(token_indices))
    adapter = read_json(root / ADAPTER_CONFIG)
    lora = None
    if adapter.get("peft_type") == "LORA":
        lora = read_lora(root / ADAPTER_WEIGHTS, check_lora_config(adapter, ADAPTER_CONFIG))
    parts = (root, run_config, tokenizer, list(special_tokens), rows, recon, align, encoding_mode, lora)
    return Checkpoint(*parts)


@torch.no_grad()
def resized_table(
    llm: nn.Module, vocab: int, special_ids: torch.Tensor, special_rows: torch.Tensor
) -> torch.Tensor:
    """[vocab, H] fp32 on the CPU: what the reference's table resized to ``vocab = len(tokenizer)``
    holds: the LM's rows, then for ids past them the special rows (the mean row for other ids)."""
    table = llm.get_input_embeddings().weight
    rows = table.shape[0]
    out = torch.empty(vocab, table.shape[1])
    keep = min(rows, vocab)
    out[:keep] = table[:keep].float().cpu()
    if vocab > rows:
        out[rows:] = table.float().mean(0).cpu()
        beyond = special_ids >= rows
        out[special_ids[beyond].cpu()] = special_rows[beyond].float().cpu()
    return out


def write_checkpoint(model: Any, root: str | os.PathLike, base_model_name_or_path: str) -> None:
    """Write ``model`` (an ``LLM2VecGenModel``) in the released format, each file atomically.

    run_config.yml names ``base_model_name_or_path``; the adapter's base_layer.weight is the resized
    table [len(tokenizer), H] fp32 (``resized_table``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_tokenizer(root, model.tokenizer, model.special_tokens)
    run_config = dict(model.run_config)
    run_config.update(
        model_name_or_path=str(base_model_name_or_path),
        torch_dtype=run_config.get("torch_dtype") or str(model.llm.dtype).removeprefix("torch."),
        special_tokens=list(model.special_tokens),
        encoding_mode=model.encoding_mode,
    )
    write_run_config(root / RUN_CONFIG, run_config)
    write_json(root / ENCODER_DECODER_CONFIG, {"encoding_mode": model.encoding_mode, "save_decoder": False})
    encoder_config = json.loads(model.llm.config.to_json_string())
    encoder_config["vocab_size"] = len(model.tokenizer)
    table = resized_table(model.llm, len(model.tokenizer), model.special_ids, model.special_rows)
    write_adapter(
        root,
        model.special_ids.tolist(),
        model.special_rows,
        table,
        encoder_config,
        str(base_model_name_or_path),
    )
    write_head(root / RECON_HEAD, model.recon_head)
    write_head(root / ALIGN_HEAD, model.align_head)
