"""Step 2 of training: the teacher's embeddings of the answers, computed once and cached by id.

The teacher is frozen and sees only the answer, so the reference's per-step teacher forward is
replaced by one pass here. The cache is one safetensors file: tensor ``embeddings`` fp32 [N, D] and
metadata ``ids`` (a JSON list, row order), ``teacher``, ``pooling`` and ``source`` (the input's
identity and the settings: a rerun on a finished cache returns at once).

The answers are streamed ``window`` records at a time (``llm2vec_gen.io.records.iter_records``)
through ``llm2vec_gen.io.stream.encode_file``: each window's embeddings are committed atomically to
``<output>.parts/`` with a manifest, a rerun after a kill skips the committed windows (when the
input file and the settings are unchanged; otherwise it starts over), and the windows are merged
into the cache (streamed; the header's id list is the only part that grows with the file).

Teachers: ``"minilm"`` (the offline all-MiniLM-L6-v2), any sentence-transformers directory (it has a
``modules.json``), or any transformers encoder with ``pooling="mean"`` (over the attention mask) or
``"cls"`` (first token), as the reference pools its LLM2Vec and BGE teachers. LLM2Vec-style teachers
are a decoder LLM with ``bidirectional=True`` (every token attends to every real token) and its peft
adapters (e.g. the MNTP then the unsupervised SimCSE LoRA) merged in order, with mean pooling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from llm2vec_gen.batching import positions
from llm2vec_gen.io.chunks import input_identity
from llm2vec_gen.io.records import iter_records, windows
from llm2vec_gen.io.rows import InputError
from llm2vec_gen.io.stream import encode_file

MINILM_NAMES = ("minilm", "all-minilm-l6-v2")
"""Names of the bundled offline teacher, all-MiniLM-L6-v2."""


class HFTeacher:
    """A transformers encoder with mean, CLS or last-token pooling: ``encode(texts) -> fp32 [N, D]``.

    ``adapters``: peft adapter directories merged into the model in order (LLM2Vec's MNTP, SimCSE).
    ``bidirectional``: run a decoder LLM without its causal mask (a [N, 1, T, T] additive mask that
    hides only the padding, positions following it), as LLM2Vec models are trained to be used.
    """

    def __init__(
        self,
        path: str,
        pooling: str = "mean",
        max_length: int = 512,
        device: str = "cpu",
        adapters: Sequence[str] = (),
        bidirectional: bool = False,
    ):
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("mean", "cls", "last"):
            raise InputError(f"pooling must be 'mean', 'cls' or 'last', got {pooling!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModel.from_pretrained(path)
        if adapters:
            from peft import PeftModel

            for adapter in adapters:
                model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.to(device).eval()
        self.pooling, self.max_length, self.device = pooling, max_length, device
        self.bidirectional = bidirectional
        self.embedding_dim = int(model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        if self.bidirectional:
            mask = enc["attention_mask"]
            dtype = next(self.model.parameters()).dtype
            full = torch.zeros(
                mask.shape[0], 1, mask.shape[1], mask.shape[1], dtype=dtype, device=mask.device
            )
            full.masked_fill_(mask[:, None, None, :] == 0, torch.finfo(dtype).min)
            hidden = self.model(input_ids=enc["input_ids"], attention_mask=full, position_ids=positions(mask))
            hidden = hidden.last_hidden_state.float()
        else:
            hidden = self.model(**enc).last_hidden_state.float()  # [N, T, D]
        if self.pooling == "cls":
            return hidden[:, 0].cpu()
        if self.pooling == "last":  # the last real token, on either padding side
            mask = enc["attention_mask"]
            last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)
            return hidden[torch.arange(hidden.shape[0], device=mask.device), last].cpu()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)).cpu()


class STTeacher:
    """A sentence-transformers model: ``encode(texts) -> fp32 [N, D]`` (its own pooling)."""

    def __init__(self, path: str, max_length: int = 512, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device=device)
        self.model.max_seq_length = min(self.model.max_seq_length or max_length, max_length)
        self.embedding_dim = int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.model.encode(list(texts), convert_to_tensor=True, show_progress_bar=False)
        return out.float().cpu()


def load_teacher(
    name: str,
    pooling: str | None = None,
    max_length: int = 512,
    device: str = "cpu",
    adapters: Sequence[str] = (),
    bidirectional: bool = False,
):
    """``"minilm"`` | a sentence-transformers dir | a transformers model (needs ``pooling``; with
    ``adapters`` / ``bidirectional`` an LLM2Vec-style decoder, see ``HFTeacher``)."""
    if name.lower() in MINILM_NAMES:
        from llm2vec_gen.teachers import minilm_path

        return STTeacher(str(minilm_path()), max_length, device)
    if pooling is None and (Path(name) / "modules.json").is_file():
        return STTeacher(name, max_length, device)
    if pooling is None:
        raise InputError(
            f"teacher {name!r} is not a sentence-transformers model: give pooling='mean' or 'cls'"
        )
    return HFTeacher(name, pooling, max_length, device, adapters, bidirectional)


class _Windowed:
    """A teacher as ``encode_file`` drives it: one window of answers, stripped and sorted by length
    into batches of ``batch_size``; fp32 [n, D] in the window's order."""

    def __init__(self, teacher, batch_size: int, progress: bool):
        self.teacher, self.embedding_dim, self.batch_size = teacher, teacher.embedding_dim, batch_size
        self.bar = tqdm(desc="teach", unit="answer", disable=not progress)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        batch_size = self.batch_size
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.embedding_dim)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.teacher.encode([texts[i].strip() for i in idx]).float()
            self.bar.update(len(idx))
        return out.numpy()


def teach(
    input_path: str | Path,
    output_path: str | Path,
    teacher: str = "minilm",
    pooling: str | None = None,
    batch_size: int = 64,
    max_length: int = 512,
    device: str = "cpu",
    answer_field: str = "answer",
    id_field: str = "id",
    progress: bool = True,
    adapters: Sequence[str] = (),
    bidirectional: bool = False,
    window: int = 4096,
    resume: bool = True,
) -> Path:
    """Embed every answer of ``input_path`` with the teacher; write the cache atomically; its path.

    ``window``: answers per committed chunk (memory holds one). ``resume``: continue the chunks a
    killed run committed for the same input and settings, and return at once when ``output_path``
    is already the finished cache of them (``False``: start over). The output must be a
    .safetensors file; its metadata ``source`` records the input's identity and the settings.
    Input errors (ValueError) name the line.
    """
    output_path = Path(output_path)
    if output_path.suffix.lower() != ".safetensors":
        raise InputError(f"teacher cache {output_path}: use a .safetensors file")
    names = {"id": id_field, "answer": answer_field}
    settings = {"teacher": teacher, "pooling": pooling, "max_length": max_length}
    settings.update(adapters=[str(a) for a in adapters], bidirectional=bidirectional)
    source = None  # a missing input is reported by the record reader below
    if Path(input_path).is_file():
        identity = input_identity(input_path)
        source = json.dumps({**identity, **names, **settings}, sort_keys=True)
    if resume and source is not None and _cache_source(output_path) == source:
        return output_path  # finished before for this very input and teacher: nothing to redo
    records = iter_records(input_path, ("id", "answer"), names)
    loaded = load_teacher(teacher, pooling, max_length, device, adapters, bidirectional)
    model = _Windowed(loaded, batch_size, progress)
    chunks = (([r["id"] for r in w], [r["answer"] for r in w]) for w in windows(records, window))
    try:
        encode_file(
            model.encode,
            input_path,
            output_path,
            dim=model.embedding_dim,
            text_field=answer_field,
            id_field=id_field,
            chunk_rows=window,
            resume=resume,
            settings={**settings, "batch_size": batch_size},
            chunks=chunks,
            metadata={"teacher": teacher, "pooling": str(pooling), "source": str(source)},
            restart_on_change=True,
        )
    finally:
        model.bar.close()
    return output_path


def _cache_source(path: Path) -> str | None:
    """The ``source`` entry (input identity + teacher settings) of a finished cache, if readable."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("source")
    except (SafetensorError, OSError):
        return None


def load_teacher_cache(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """(ids, fp32 [N, D] embeddings) of a cache written by ``teach``.

    FileNotFoundError when ``path`` does not exist; ValueError naming it when it is not a readable
    teacher cache.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"teacher cache {path} does not exist (write it with `llm2vec-gen teach`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            if "ids" not in meta or "embeddings" not in names:
                raise ValueError(
                    f"{path} is not a teacher cache (needs tensor 'embeddings' and metadata 'ids')"
                )
            ids = json.loads(meta["ids"])
            emb = f.get_tensor("embeddings").float()
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a readable teacher cache ({exc})") from exc
    if emb.dim() != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"{path}: {len(ids)} ids but embeddings of shape {tuple(emb.shape)}")
    return ids, emb


def align_teacher(
    ids: Sequence[str], cache_ids: Sequence[str], embeddings: torch.Tensor, path
) -> torch.Tensor:
    """Rows of ``embeddings`` in the order of ``ids``; ValueError naming ids missing from the cache."""
    where = {i: n for n, i in enumerate(cache_ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise ValueError(
            f"teacher cache {path} has no embedding for {len(missing)} of {len(ids)} training ids "
            f"(e.g. {missing[:3]}): run `llm2vec-gen teach` on the same data file"
        )
    return embeddings[torch.tensor([where[i] for i in ids], dtype=torch.long)]
