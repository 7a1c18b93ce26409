"""``LLM2VecGenModel``: the drop-in LLM2Vec-Gen encoder (encode, decode, load and save checkpoints).

One frozen causal LM serves both directions:

- encoding runs its backbone (no LM head) on ``inputs_embeds`` built by
  ``ops.special_token_embedding``: the base table with the K special rows swapped in (ids past the
  table are taken from the K rows), so the resized [len(tokenizer), H] table of the adapter is never
  held in memory;
- decoding runs the same model with its LM head and its original table.

Encoding follows the reference step by step (DESIGN.md section 3) but sorts texts by length so a
batch pads little, runs under ``torch.inference_mode`` (SDPA attention, bf16 on CUDA) and folds the
two affine heads into one map applied after pooling (``ops.fold_heads`` + ``ops.encode_tail``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from llm2vec_gen import checkpoint as ckpt
from llm2vec_gen.batching import left_pad, pad_token_id, positions, run_split_on_oom, token_batches
from llm2vec_gen.decode import eos_token_ids, greedy_decode
from llm2vec_gen.ops import encode_tail, fold_heads, special_token_embedding
from llm2vec_gen.tokenize import check_positive, check_texts, query_ids

Texts = str | Iterable[str]


def extra_special_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The tokenizer's additional special tokens (transformers 5: extra_special_tokens; 4: additional_)."""
    for attr in ("extra_special_tokens", "additional_special_tokens"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, (list, tuple)) and value:
            return [str(t) for t in value]
    return []


def _default_device(device: str | torch.device | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _default_dtype(dtype: str | torch.dtype | None, device: torch.device, saved: Any = None) -> torch.dtype:
    """Explicit dtype, else the checkpoint's (bf16) on CUDA, else fp32 (CPU bf16 matmuls are slow)."""
    if dtype is not None:
        return ckpt.dtype_from_string(dtype)
    if device.type == "cuda":
        return ckpt.dtype_from_string(saved) or torch.bfloat16
    return torch.float32


def _resolve_checkpoint(path_or_hub_id: str | os.PathLike) -> Path:
    """A local directory as is; otherwise a Hugging Face Hub repo id, downloaded (needs network)."""
    if os.path.isdir(path_or_hub_id):
        return Path(path_or_hub_id)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=str(path_or_hub_id)))
    except Exception as exc:
        raise FileNotFoundError(
            f"checkpoint {str(path_or_hub_id)!r} is not a local directory and could not be fetched from "
            f"the Hugging Face Hub ({type(exc).__name__}: {exc}). Offline, pass the path of a "
            "downloaded checkpoint directory."
        ) from exc


def _load_llm(name: str, dtype: torch.dtype, trust_remote_code: bool, source: str) -> PreTrainedModel:
    try:
        return AutoModelForCausalLM.from_pretrained(name, dtype=dtype, trust_remote_code=trust_remote_code)
    except OSError as exc:
        if os.path.isdir(name):
            raise
        raise OSError(
            f"base LLM {name!r} ({source}) is not a local directory and could not be loaded from the "
            f"Hugging Face Hub (offline?): {exc}. Pass base_model=<local directory or model>."
        ) from exc


def _load_tokenizer(root: Path, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer; a tokenizer file that does not parse raises ValueError naming root."""
    try:
        return AutoTokenizer.from_pretrained(root, trust_remote_code=trust_remote_code)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(
            f"{root}: the tokenizer files are truncated or corrupted ({type(exc).__name__}: {exc})"
        ) from exc


def _mean_resized_rows(table: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` new rows [n, H] fp32 drawn as transformers' ``mean_resizing`` does, but seeded:
    N(mean, 1e-9 * cov) of the existing rows (just the mean if that covariance is not positive
    definite). Mean and covariance accumulate in fp64 over chunks of rows."""
    hidden = table.shape[1]
    total = torch.zeros(hidden, dtype=torch.float64)
    gram = torch.zeros(hidden, hidden, dtype=torch.float64)
    for chunk in table.detach().split(16_384):
        chunk = chunk.to("cpu", torch.float64)
        total += chunk.sum(0)
        gram += chunk.T @ chunk
    mean = total / table.shape[0]
    cov = gram / table.shape[0] - torch.outer(mean, mean)
    chol, info = torch.linalg.cholesky_ex(1e-9 * cov)
    if int(info) != 0:
        return mean.float().expand(n, hidden).clone()
    noise = torch.randn(n, hidden, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return (mean + noise @ chol.T).float()


class LLM2VecGenModel(nn.Module):
    """LLM2Vec-Gen encoder: a frozen causal LM, K trainable token rows and two affine heads.

    Attributes:
        llm                the causal LM (frozen; one copy serves encoding and decoding)
        tokenizer          left-padding tokenizer holding the K special tokens
        special_tokens     the K token strings, in order
        special_ids        LongTensor [K] (buffer): their ids (may lie past the LM's table)
        special_rows       nn.Parameter [K, H] fp32: their input embeddings (replace the base rows)
        recon_head         nn.Linear H -> H (the "reconstruction_mlp")
        align_head         nn.Linear H -> D (the "alignment_mlp"); D is the embedding size
        num_special_tokens K
        num_encode_tokens  N of encoding_mode "last_N_tokens" (N = K in the released models)
    """

    def __init__(
        self,
        llm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        special_tokens: list[str],
        special_rows: torch.Tensor,
        recon_head: nn.Linear,
        align_head: nn.Linear,
        encoding_mode: str | None = None,
        run_config: dict[str, Any] | None = None,
        base_model_name_or_path: str | None = None,
    ):
        super().__init__()
        k, hidden = special_rows.shape
        if len(special_tokens) != k:
            raise ValueError(f"{len(special_tokens)} special tokens but special_rows has {k} rows")
        if llm.config.hidden_size != hidden or recon_head.in_features != hidden:
            raise ValueError(
                f"hidden sizes disagree: LLM {llm.config.hidden_size}, special_rows {hidden}, "
                f"recon_head input {recon_head.in_features}"
            )
        if recon_head.out_features != align_head.in_features:
            raise ValueError(
                f"recon_head gives {recon_head.out_features} features, "
                f"align_head takes {align_head.in_features}"
            )
        ids = tokenizer.convert_tokens_to_ids(list(special_tokens))
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise ValueError(f"the tokenizer lacks special tokens of {special_tokens}")
        self.llm = llm.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.special_tokens = list(special_tokens)
        self.register_buffer("special_ids", torch.tensor(ids, dtype=torch.long, device=special_rows.device))
        self.special_rows = nn.Parameter(special_rows.detach().float().clone())
        self.recon_head = recon_head.float()
        self.align_head = align_head.float()
        self.num_special_tokens = k
        self.encoding_mode = encoding_mode or f"last_{k}_tokens"
        self.num_encode_tokens = ckpt.encoding_tokens(self.encoding_mode, k)
        self.run_config = dict(run_config or {})
        self.base_model_name_or_path = base_model_name_or_path
        self._folded: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    # ------------------------------------------------------------------------------ constructors

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        trust_remote_code: bool = False,
        base_model: str | PreTrainedModel | None = None,
    ) -> LLM2VecGenModel:
        """Load a released-format checkpoint (local directory or Hub repo id).

        The base LLM is run_config.yml's ``model_name_or_path`` unless ``base_model`` (a path, a hub
        id or a loaded causal LM) overrides it. dtype defaults to the checkpoint's (bf16) on CUDA and
        fp32 on the CPU; device to CUDA when available.
        """
        root = _resolve_checkpoint(path_or_hub_id)
        ckpt.check_files(root)
        run_config = ckpt.read_run_config(root / ckpt.RUN_CONFIG)
        enc_dec = ckpt.read_encoder_decoder_config(root)
        if enc_dec.get("save_decoder"):
            raise ValueError(
                f"{root}: save_decoder is true (a separately fine-tuned decoder); only checkpoints whose "
                "decoder is the frozen base LLM are supported"
            )
        token_indices = ckpt.read_token_indices(root)
        tokenizer = _load_tokenizer(root, trust_remote_code)
        special_tokens = run_config.get("special_tokens") or extra_special_tokens(tokenizer)
        if not isinstance(special_tokens, list) or not special_tokens:
            raise ValueError(f"{root}: no special tokens in run_config.yml nor in the tokenizer")
        ids = tokenizer.convert_tokens_to_ids(special_tokens)
        if len(special_tokens) != len(token_indices) or ids != token_indices:
            raise ValueError(
                f"{root}: the tokenizer's K={len(special_tokens)} special tokens (ids {ids}) do not match "
                f"the adapter's K={len(token_indices)} token_indices {token_indices} ({ckpt.ADAPTER_CONFIG})"
            )
        delta = ckpt.read_delta(root, len(token_indices))
        device = _default_device(device)
        dtype = _default_dtype(dtype, device, run_config.get("torch_dtype"))
        base_name = run_config.get("model_name_or_path")
        if isinstance(base_model, PreTrainedModel):
            llm = base_model.to(dtype)
        else:
            name = base_model or base_name
            if not name:
                raise ValueError(f"{root}/{ckpt.RUN_CONFIG} has no model_name_or_path; pass base_model=")
            source = "base_model argument" if base_model else f"model_name_or_path in {ckpt.RUN_CONFIG}"
            llm = _load_llm(str(name), dtype, trust_remote_code, source)
        if delta.shape[1] != llm.config.hidden_size:
            raise ValueError(
                f"{ckpt.ADAPTER_WEIGHTS}: rows of width {delta.shape[1]} do not fit the base LLM's "
                f"hidden size {llm.config.hidden_size}"
            )
        model = cls(
            llm,
            tokenizer,
            special_tokens,
            delta,
            ckpt.read_head(root / ckpt.RECON_HEAD),
            ckpt.read_head(root / ckpt.ALIGN_HEAD),
            encoding_mode=enc_dec.get("encoding_mode"),
            run_config=run_config,
            base_model_name_or_path=base_model if isinstance(base_model, str) else base_name,
        )
        return model.to(device)

    @classmethod
    def from_base(
        cls,
        base: str | PreTrainedModel,
        tokenizer: str | PreTrainedTokenizerBase,
        num_special_tokens: int = 10,
        teacher_dim: int | None = None,
        special_tokens: list[str] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        seed: int = 0,
        trust_remote_code: bool = False,
    ) -> LLM2VecGenModel:
        """A fresh model for training: adds ``<question1>..<questionK>`` to ``tokenizer`` (in place).

        Initial special rows (as the reference's resize + PEFT would give): an id inside the LM's
        table (Qwen3's padded rows) keeps that row; an id past it gets transformers' mean-resizing
        draw N(mean, 1e-9 cov) of the table, seeded by ``seed``. Heads are nn.Linear(H, H) and
        nn.Linear(H, teacher_dim) in fp32 with PyTorch's default init under ``seed``.
        """
        if teacher_dim is None or teacher_dim < 1:
            raise TypeError(
                f"from_base needs teacher_dim >= 1 (the teacher's embedding size), got {teacher_dim}"
            )
        if num_special_tokens < 1:
            raise ValueError(f"num_special_tokens must be >= 1, got {num_special_tokens}")
        device = _default_device(device)
        dtype = _default_dtype(dtype, device)
        if isinstance(base, PreTrainedModel):
            llm, name = base.to(dtype), base.name_or_path or None
        else:
            llm, name = _load_llm(str(base), dtype, trust_remote_code, "from_base argument"), str(base)
        if isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=trust_remote_code)
        special_tokens = special_tokens or [f"<question{i}>" for i in range(1, num_special_tokens + 1)]
        if len(special_tokens) != num_special_tokens:
            raise ValueError(
                f"{len(special_tokens)} special_tokens given for num_special_tokens={num_special_tokens}"
            )
        missing = [t for t in special_tokens if t not in extra_special_tokens(tokenizer)]
        if missing:  # existing extras are listed again: transformers 4 would otherwise replace them
            tokenizer.add_special_tokens(
                {"additional_special_tokens": extra_special_tokens(tokenizer) + missing}
            )
        ids = torch.tensor(tokenizer.convert_tokens_to_ids(special_tokens), dtype=torch.long)
        table = llm.get_input_embeddings().weight.detach()
        hidden = table.shape[1]
        rows = torch.empty(num_special_tokens, hidden)
        inside = ids < table.shape[0]
        rows[inside] = table[ids[inside].to(table.device)].float().cpu()
        if not bool(inside.all()):
            rows[~inside] = _mean_resized_rows(table, int((~inside).sum()), seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            recon, align = nn.Linear(hidden, hidden), nn.Linear(hidden, teacher_dim)
        run_config = {"model_name_or_path": name, "torch_dtype": str(dtype).removeprefix("torch.")}
        model = cls(
            llm,
            tokenizer,
            special_tokens,
            rows,
            recon,
            align,
            run_config=run_config,
            base_model_name_or_path=name,
        )
        return model.to(device)

    # ------------------------------------------------------------------------------- checkpoint

    def save_pretrained(
        self, save_directory: str | os.PathLike, base_model_name_or_path: str | None = None
    ) -> None:
        """Write the released format (DESIGN.md section 3), each file atomically.

        run_config.yml names ``base_model_name_or_path`` (default: the model this one was built from).
        The adapter's base_layer.weight is the resized table [len(tokenizer), H] fp32: the LM's rows,
        then for ids past them the special rows (or the table's mean row for a non-special id).
        """
        base_name = base_model_name_or_path or self.base_model_name_or_path
        if not base_name:
            raise ValueError(
                "the base LLM has no name or path to record in run_config.yml: pass "
                "base_model_name_or_path= (save the base model with save_pretrained first)"
            )
        root = Path(save_directory)
        root.mkdir(parents=True, exist_ok=True)
        ckpt.write_tokenizer(root, self.tokenizer, self.special_tokens)
        run_config = dict(self.run_config)
        run_config.update(
            model_name_or_path=str(base_name),
            torch_dtype=run_config.get("torch_dtype") or str(self.llm.dtype).removeprefix("torch."),
            special_tokens=list(self.special_tokens),
            encoding_mode=self.encoding_mode,
        )
        ckpt.write_run_config(root / ckpt.RUN_CONFIG, run_config)
        ckpt.write_json(
            root / ckpt.ENCODER_DECODER_CONFIG, {"encoding_mode": self.encoding_mode, "save_decoder": False}
        )
        encoder_config = json.loads(self.llm.config.to_json_string())
        encoder_config["vocab_size"] = len(self.tokenizer)
        ckpt.write_adapter(
            root,
            self.special_ids.tolist(),
            self.special_rows,
            self._resized_table(),
            encoder_config,
            str(base_name),
        )
        ckpt.write_head(root / ckpt.RECON_HEAD, self.recon_head)
        ckpt.write_head(root / ckpt.ALIGN_HEAD, self.align_head)

    @torch.no_grad()
    def _resized_table(self) -> torch.Tensor:
        """[len(tokenizer), H] fp32 on the CPU: what the reference's resized embedding table holds."""
        table = self.llm.get_input_embeddings().weight
        vocab, rows = table.shape[0], len(self.tokenizer)
        out = torch.empty(rows, table.shape[1])
        keep = min(vocab, rows)
        out[:keep] = table[:keep].float().cpu()
        if rows > vocab:
            out[vocab:] = table.float().mean(0).cpu()
            beyond = self.special_ids >= vocab
            out[self.special_ids[beyond].cpu()] = self.special_rows[beyond].float().cpu()
        return out

    # --------------------------------------------------------------------------------- encoding

    @property
    def device(self) -> torch.device:
        return self.special_rows.device

    @property
    def embedding_dim(self) -> int:
        """D, the size of an embedding (the teacher's dimension)."""
        return self.align_head.out_features

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings [B, T, H] (LM dtype) of input_ids [B, T]: the K rows replace the base rows."""
        table = self.llm.get_input_embeddings().weight
        return special_token_embedding(input_ids, table, self.special_ids, self.special_rows)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, N, H] (LM dtype) at the last N positions of left-padded input_ids [B, T].

        Positions count real tokens only (``mask.cumsum - 1``), so a text's states do not depend on
        how much padding its batch has. Differentiable with respect to ``special_rows``.
        """
        out = self.llm.base_model(
            inputs_embeds=self.embed_tokens(input_ids),
            attention_mask=attention_mask,
            position_ids=positions(attention_mask),
            use_cache=False,
        )
        return out.last_hidden_state[:, -self.num_encode_tokens :]

    def tokenize(
        self, texts: Texts, max_length: int = 512, instruction: str | None = None
    ) -> list[list[int]]:
        """Token ids per text, unpadded: ``instruction + text`` (special tokens in it split into
        plain pieces, truncated to max_length - K) + the K special ids (see ``llm2vec_gen.tokenize``)."""
        return query_ids(
            self.tokenizer, check_texts(texts), self.special_ids.tolist(), max_length, instruction
        )

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded rows: (input_ids [B, T] int64, attention_mask [B, T] int64) on the model's device."""
        vocab = self.llm.get_input_embeddings().weight.shape[0]
        ids, mask = left_pad(rows, pad_token_id(self.tokenizer, vocab))
        return ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)

    def folded_heads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W [D, H], b [D]) fp32 of align(recon(.)); recomputed only when a head's weights change."""
        params = (self.recon_head.weight, self.recon_head.bias, self.align_head.weight, self.align_head.bias)
        key = tuple((p.data_ptr(), p._version, p.device) for p in params)
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, fold_heads(self.recon_head, self.align_head))
        return self._folded[1]

    def pool(self, hidden: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Embeddings [B, D] fp32 of final hidden states [B, N, H] (``forward``'s output): the folded
        heads after the mean over N, L2-normalised on request."""
        weight, bias = self.folded_heads()
        return encode_tail(hidden, weight, bias, normalize)

    def encode_ids(
        self,
        ids: Sequence[Sequence[int]],
        *,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        normalize_embeddings: bool = False,
        get_recon_hidden_states: bool = False,
        show_progress_bar: bool | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Embeddings fp32 [n, D] on the model's device, in input order, of pre-tokenised rows (from
        ``tokenize``); with ``get_recon_hidden_states`` also the recon states [n, N, H] fp32.

        Rows run longest first in batches of at most ``batch_size`` rows and, with
        ``max_batch_tokens``, at most that many padded tokens; a batch that runs out of memory is
        split in two and retried. Every row must be non-empty, its ids in [0, len(tokenizer)).
        """
        check_positive("batch_size", batch_size)
        if max_batch_tokens is not None:
            check_positive("max_batch_tokens", max_batch_tokens)
        rows = self._check_ids(ids)
        n, hidden = len(rows), self.special_rows.shape[1]
        emb = torch.empty(n, self.embedding_dim, device=self.device)
        recon = (
            torch.empty(n, self.num_encode_tokens, hidden, device=self.device)
            if get_recon_hidden_states
            else None
        )

        def run(index: list[int]) -> None:
            h = self(*self.pad([rows[i] for i in index]))  # [b, N, H]
            where = torch.tensor(index, device=self.device)
            emb[where] = self.pool(h, normalize_embeddings)
            if recon is not None:
                recon[where] = self.recon_head(h.float())

        batches = token_batches([len(r) for r in rows], batch_size, max_batch_tokens)
        if show_progress_bar:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Encoding", unit="batch")
        with torch.inference_mode():
            for batch in batches:
                run_split_on_oom(run, batch)
        return (emb, recon) if recon is not None else emb

    def _check_ids(self, ids: Any) -> list[Sequence[int]]:
        """``ids`` as a list of non-empty rows of ids in [0, len(tokenizer)); errors name the row."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"ids must be a sequence of token-id rows, got {type(ids).__name__}")
        rows, vocab = list(ids), len(self.tokenizer)
        for i, row in enumerate(rows):
            if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) == 0:
                raise ValueError(f"ids[{i}] must be a non-empty sequence of token ids (from tokenize)")
            low, high = min(row), max(row)
            if low < 0 or high >= vocab:
                raise ValueError(f"ids[{i}] holds id {low if low < 0 else high} outside [0, {vocab})")
        return rows

    def encode(
        self,
        texts: Texts,
        max_length: int = 512,
        get_recon_hidden_states: bool = False,
        *,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        instruction: str | None = None,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = False,
        convert_to_tensor: bool | None = None,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
    ) -> torch.Tensor | np.ndarray | tuple:
        """Embed texts: [n, D] fp32, 2-D even for a single str (as the reference).

        Positional order and defaults are the reference's (texts, max_length, get_recon_hidden_states);
        ours are keyword-only. With get_recon_hidden_states=True returns (embeddings, recon states
        [n, N, H] fp32), the soft prompts ``generate``/``decode`` turn into text.

        Output type: a torch tensor on the model's device (the reference's). As in
        sentence-transformers, ``convert_to_tensor=True`` wins over ``convert_to_numpy``; otherwise
        ``convert_to_numpy=True`` gives numpy arrays on the CPU. ``instruction`` is prepended to every
        text; ``device`` moves the model there first. texts: a str or any iterable of str. Bad
        arguments raise TypeError/ValueError naming them (bytes are not text; a non-str item names
        its index; batch_size an int >= 1; max_length an int > K; instruction a str or None).
        """
        if device is not None and torch.device(device) != self.device:
            self.to(device)
        texts = check_texts(texts)
        check_positive("batch_size", batch_size)
        ids = self.tokenize(texts, max_length, instruction)
        out = self.encode_ids(
            ids,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            normalize_embeddings=normalize_embeddings,
            get_recon_hidden_states=get_recon_hidden_states,
            show_progress_bar=show_progress_bar,
        )
        if convert_to_numpy and not convert_to_tensor:
            return tuple(t.cpu().numpy() for t in out) if get_recon_hidden_states else out.cpu().numpy()
        return out

    # --------------------------------------------------------------------------------- decoding

    def decode(
        self,
        recon_states_or_texts: Texts | torch.Tensor | np.ndarray,
        max_new_tokens: int = 64,
        batch_size: int = 32,
        max_length: int = 512,
        instruction: str | None = None,
    ) -> list[str]:
        """Greedy text of each soft prompt: recon states [B, N, H] or [N, H], or texts (encoded first).

        Batched with a KV cache; each row stops at its own EOS. Returns B strings (special tokens
        skipped), one per input.
        """
        check_positive("batch_size", batch_size)
        if isinstance(recon_states_or_texts, (torch.Tensor, np.ndarray)):
            recon = torch.as_tensor(recon_states_or_texts)
        else:
            _, recon = self.encode(
                recon_states_or_texts, max_length, True, batch_size=batch_size, instruction=instruction
            )
        if recon.dim() == 2:
            recon = recon.unsqueeze(0)
        if recon.dim() != 3 or recon.shape[-1] != self.special_rows.shape[1]:
            raise ValueError(
                f"recon states must be [B, N, {self.special_rows.shape[1]}], got {tuple(recon.shape)}"
            )
        eos = eos_token_ids(self.llm, self.tokenizer)
        ids: list[list[int]] = []
        for start in range(0, recon.shape[0], batch_size):
            ids += greedy_decode(self.llm, recon[start : start + batch_size], max_new_tokens, eos)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def generate(
        self,
        input_text: Texts = "",
        max_new_tokens: int = 256,
        get_align_hidden_states: bool = False,
        recon_hidden_states: torch.Tensor | None = None,
    ) -> str | list[str] | tuple:
        """The reference's ``generate``: greedy text of ``recon_hidden_states`` ([N, H] or [B, N, H]),
        or of ``input_text`` encoded first when no states are given (as ``encode`` tokenises it).

        Returns a str for one input (a str, or states of batch 1), a list of B str for a batch; with
        ``get_align_hidden_states=True`` also the embedding fp32 [B, D] of the input (for a text,
        exactly ``encode``'s). Unlike the reference it runs on any device and for a batch.
        """
        if recon_hidden_states is None:
            texts = check_texts(input_text)
            emb, recon = self.encode(texts, get_recon_hidden_states=True)
            single = isinstance(input_text, str)
        else:
            recon = torch.as_tensor(recon_hidden_states)
            if recon.dim() == 2:
                recon = recon.unsqueeze(0)
            single = recon.shape[0] == 1
            emb = (
                self.align_head(recon.to(self.device, torch.float32)).mean(1)
                if get_align_hidden_states
                else None
            )
        out = self.decode(recon, max_new_tokens=max_new_tokens)
        text = out[0] if single else out
        return (text, emb) if get_align_hidden_states else text
