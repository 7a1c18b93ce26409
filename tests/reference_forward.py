"""The reference's encoder forward, re-stated with PEFT in this venv, in any dtype (fp64 for an oracle).

As llm2vec-gen 0.1.3 computes it: the base LM resized to len(tokenizer), PEFT's TrainableTokens
adapter from encoder/, ``tokenizer(text + specials, padding=True, truncation=True, max_length)``,
the specials written over the last K positions of truncated rows, the last N hidden states, then
the two heads (``reconstruction_mlp``, ``alignment_mlp``) and the mean over N.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import yaml
from peft import PeftModel
from transformers import AutoModel, AutoTokenizer


def reference_head(path: Path, dtype: torch.dtype) -> torch.nn.Linear:
    """A head file (the reference's torch.save layout) as an nn.Linear in ``dtype``."""
    state = torch.load(path, weights_only=True)["state_dict"]
    weight, bias = state["projection.weight"], state["projection.bias"]
    head = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(dtype)
    head.load_state_dict({"weight": weight.to(dtype), "bias": bias.to(dtype)})
    return head


@functools.lru_cache(maxsize=4)
def _reference_encoder(path: Path, dtype: torch.dtype):
    """(run_config, tokenizer, PEFT encoder) of a checkpoint, loaded once per (path, dtype)."""
    config_file = path / "run_config.yml"
    if not config_file.is_file():  # a training output: the run's config one directory up
        config_file = path.parent / "run_config.yml"
    run_config = yaml.safe_load(config_file.read_text())
    tok = AutoTokenizer.from_pretrained(path)
    backbone = AutoModel.from_pretrained(run_config["model_name_or_path"], dtype=dtype)
    backbone.resize_token_embeddings(len(tok))
    return run_config, tok, PeftModel.from_pretrained(backbone, path, subfolder="encoder").eval()


@torch.no_grad()
def reference_forward(
    path: Path, texts: list[str], max_length: int = 512, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embeddings [n, D], recon states [n, N, H], last-N hidden states [n, N, H]) in ``dtype``."""
    path = Path(path)
    config_file = path / "run_config.yml"
    run_config = yaml.safe_load(
        (config_file if config_file.is_file() else path.parent / "run_config.yml").read_text()
    )
    tok = AutoTokenizer.from_pretrained(path)
    specials = run_config["special_tokens"]
    backbone = AutoModel.from_pretrained(run_config["model_name_or_path"], dtype=dtype)
    backbone.resize_token_embeddings(len(tok))
    encoder = PeftModel.from_pretrained(backbone, path, subfolder="encoder").eval()
    batch = tok(
        [t + "".join(specials) for t in texts],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    special_ids = torch.tensor(tok.convert_tokens_to_ids(specials))
    ids = batch["input_ids"]
    cut = torch.isin(ids, special_ids).sum(1) < len(specials)
    ids[cut, -len(specials) :] = special_ids
    n = int(str(run_config.get("encoding_mode", f"last_{len(specials)}_tokens")).split("_")[1])
    hidden = encoder(input_ids=ids, attention_mask=batch["attention_mask"]).last_hidden_state[:, -n:]
    recon = reference_head(path / "reconstruction_mlp", dtype)(hidden)
    return reference_head(path / "alignment_mlp", dtype)(recon).mean(1), recon, hidden
