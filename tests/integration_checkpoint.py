"""One tiny LLM2Vec-Gen checkpoint for the integration tests, built once per test process.

A random 2-layer Qwen3 (H=64) with the real Qwen tokenizer, K=10 special tokens whose rows are
randomised (so embeddings depend on the text), teacher dimension 48; the base LM is saved beside
the checkpoint, whose run_config.yml points at it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_qwen3

HIDDEN, K, DIM = 64, 10, 48
TEXTS = [
    "How do I bake sourdough bread at home?",
    "What is the capital of France?",
    "Why is the sky blue? Explain it to a curious child who keeps asking why.",
    "hi",
    "Gradient descent moves parameters against the gradient of the loss.",
    "The Moon orbits about 384,400 kilometres from Earth.",
    "A haiku has three lines.",
]

_BUILT: dict[str, Path] = {}


def tiny_checkpoint(root: Path) -> Path:
    """Path of the checkpoint directory (built under ``root`` on the first call of the process)."""
    if "ckpt" not in _BUILT:
        base = tiny_qwen3(
            QWEN_VOCAB_SIZE, hidden_size=HIDDEN, num_layers=2, num_heads=4, num_kv_heads=2, seed=3
        )
        base.save_pretrained(root / "base")
        model = LLM2VecGenModel.from_base(base, qwen_tokenizer(), K, teacher_dim=DIM, device="cpu", seed=4)
        with torch.no_grad():
            model.special_rows.copy_(torch.randn(K, HIDDEN, generator=torch.Generator().manual_seed(5)))
        model.save_pretrained(root / "ckpt", base_model_name_or_path=str(root / "base"))
        _BUILT["ckpt"] = root / "ckpt"
    return _BUILT["ckpt"]
