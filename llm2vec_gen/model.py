"""``LLM2VecGenModel``: the drop-in LLM2Vec-Gen model; it owns every forward pass.

One frozen causal LM serves both directions:

- encoding runs its backbone (no LM head) on ``inputs_embeds`` built by
  ``ops.special_token_embedding``: the base table with the K special rows swapped in (ids past the
  table are taken from the K rows), so the resized [len(tokenizer), H] table of the adapter is never
  held in memory;
- decoding runs the same model with its LM head and its original table.

The stages, each one public method, that encode, training and every integration call::

    tokenize (llm2vec_gen.tokenize)  -> pad (llm2vec_gen.batching) -> forward [B, N, H] -> pool [B, D]
    training: appended_hidden_states [B, K, H] (prefix cache) -> heads (r, a) -> decoder_hidden_states
              -> lm_head_rows (the loss is assembled in train/step.py)

Encoding follows the reference but sorts texts by length so a batch pads little, runs under
``torch.inference_mode`` and folds the two affine heads into one map applied after pooling
(``ops.fold_heads`` + ``ops.encode_tail``). The checkpoint format lives in ``llm2vec_gen.checkpoint``;
where models come from in ``llm2vec_gen.loading``; the reference's ``model.model`` view in
``llm2vec_gen.models``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from llm2vec_gen import checkpoint as ckpt
from llm2vec_gen import fresh, invariant, loading, precision
from llm2vec_gen.bases import resolve_base
from llm2vec_gen.batching import (
    batch_token_budget,
    left_pad,
    pad_token_id,
    positions,
    run_split_on_oom,
    token_batches,
)
from llm2vec_gen.decode import GenerateMixin
from llm2vec_gen.heads import head_fits, head_positions
from llm2vec_gen.lora import LoRASwitch, apply_encoder_lora, encoder_deltas
from llm2vec_gen.ops import encode_tail, fold_heads, special_token_embedding
from llm2vec_gen.prefix_cache import forward_appended
from llm2vec_gen.tokenize import check_id_rows, check_positive, check_texts, query_ids

Texts = str | Iterable[str]


class LLM2VecGenModel(GenerateMixin, nn.Module):
    """LLM2Vec-Gen: a frozen causal LM, K trainable token rows and two affine heads.

    Attributes:
        llm                the causal LM (frozen; one copy serves encoding and decoding)
        tokenizer          left-padding tokenizer holding the K special tokens
        special_tokens     the K token strings, in order
        special_ids        LongTensor [K] (buffer): their ids (may lie past the LM's table)
        special_rows       nn.Parameter [K, H] fp32: their input embeddings (replace the base rows)
        recon_head         nn.Linear H -> H (the "reconstruction_mlp"; a heads.ProjectionHead for the
                           reference's other head kinds; nn.Identity when removed)
        align_head         nn.Linear H -> D (the "alignment_mlp"), likewise; D is the embedding size
        num_special_tokens K
        num_encode_tokens  N of encoding_mode "last_N_tokens" (N = K in the released models)
        model              the reference's view: encoder_model, decoder_model, reconstruction_mlp,
                           alignment_mlp over this one model (``llm2vec_gen.models``)
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
        if llm.config.hidden_size != hidden or not head_fits(recon_head, hidden):
            raise ValueError(
                f"hidden sizes disagree: LLM {llm.config.hidden_size}, special_rows {hidden}, "
                f"recon_head input {recon_head.in_features}"
            )
        if not head_fits(align_head, recon_head.out_features):
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
        self._lora: LoRASwitch | None = None  # a LoRA encoder's switch (llm2vec_gen.lora)

    # ------------------------------------------------------------------------------ constructors

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        torch_dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        base_model: str | PreTrainedModel | None = None,
        quantize: str | None = None,
    ) -> LLM2VecGenModel:
        """Load a released-format checkpoint (a local directory or a Hub repo id).

        The reference's kwargs that make sense here: ``revision``, ``token``, ``cache_dir``,
        ``local_files_only`` (for the checkpoint and the base LLM), ``dtype``/``torch_dtype``,
        ``device``, ``trust_remote_code``; any other kwarg is a TypeError naming it. The base LLM is
        run_config.yml's ``model_name_or_path`` unless ``base_model`` (a path, a Hub id or a loaded
        causal LM, which is copied, never changed) overrides it. dtype: ``"auto"`` follows
        run_config's torch_dtype (bf16 for the released models) as the reference; None (default)
        is that on CUDA and fp32 on the CPU. device: CUDA when available. The heads, the K rows and
        pooling stay fp32 whatever the LLM's dtype. bf16 on a CPU without avx512_bf16/AMX keeps the
        backbone's linear weights in bf16 and multiplies them in fp32 (``precision.bf16_weights``:
        emulated bf16 would be ~8x slower). ``quantize="int8"`` (CPU, fp32): the LLM's backbone
        linear layers become dynamic int8 for inference, after SmoothQuant calibrated on 16 built-in
        texts (``llm2vec_gen.precision``).
        """
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            raise TypeError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree: pass one")
        hub = loading.HubOptions(revision, token, cache_dir, local_files_only)
        parts = ckpt.read_checkpoint(loading.resolve_checkpoint(name_or_path, hub), trust_remote_code)
        device = loading.default_device(device)
        dtype = loading.resolve_dtype(dtype or torch_dtype, device, parts.run_config.get("torch_dtype"))
        precision.check_precision(dtype, quantize, device)
        name = base_model if base_model is not None else parts.base_model_name_or_path
        name = resolve_base(name) if isinstance(name, (str, os.PathLike)) else name
        if name is None:
            raise ValueError(f"{parts.root}: run_config.yml has no model_name_or_path; pass base_model=")
        source = "base_model argument" if base_model is not None else "model_name_or_path in run_config.yml"
        llm = loading.load_llm(name, dtype, trust_remote_code, source, hub)
        lora = None
        if parts.lora is not None:
            if quantize is not None:
                raise ValueError(f"{parts.root}: quantize={quantize!r} is not supported with a LoRA encoder")
            lora = apply_encoder_lora(llm.base_model, parts.lora)  # our own copy of the LLM
        if parts.special_rows.shape[1] != llm.config.hidden_size:
            raise ValueError(
                f"{ckpt.ADAPTER_WEIGHTS}: rows of width {parts.special_rows.shape[1]} do not fit the base "
                f"LLM's hidden size {llm.config.hidden_size}"
            )
        model = cls(
            llm,
            parts.tokenizer,
            parts.special_tokens,
            parts.special_rows,
            parts.recon_head,
            parts.align_head,
            encoding_mode=parts.encoding_mode,
            run_config=parts.run_config,
            base_model_name_or_path=base_model
            if isinstance(base_model, str)
            else parts.base_model_name_or_path,
        )
        model._lora = lora
        model = model.to(device)
        precision.prepare(model, dtype, quantize)
        return model

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
        """A fresh model for training, with ``<question1>..<questionK>`` added to a copy of ``tokenizer``.

        A loaded ``base`` or ``tokenizer`` is never changed in place (copied when it must change).
        Initial rows and heads: ``llm2vec_gen.fresh`` (seeded by ``seed``); heads fp32
        nn.Linear(H, H) and nn.Linear(H, teacher_dim).
        """
        special_tokens = fresh.special_token_names(num_special_tokens, teacher_dim, special_tokens)
        device = loading.default_device(device)
        dtype = loading.resolve_dtype(dtype, device)
        hub = loading.HubOptions()
        base = resolve_base(base) if isinstance(base, (str, os.PathLike)) else base
        llm = loading.load_llm(base, dtype, trust_remote_code, "from_base argument", hub)
        name = (base.name_or_path or None) if isinstance(base, PreTrainedModel) else str(base)
        if isinstance(tokenizer, str):
            tokenizer = resolve_base(tokenizer)
            tokenizer = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=trust_remote_code)
        tokenizer, rows, recon, align = fresh.fresh_parts(llm, tokenizer, special_tokens, teacher_dim, seed)
        run_config = {"model_name_or_path": name, "torch_dtype": str(dtype).removeprefix("torch.")}
        model = cls(llm, tokenizer, special_tokens, rows, recon, align, run_config=run_config)
        model.base_model_name_or_path = name
        return model.to(device)

    def save_pretrained(
        self, save_directory: str | os.PathLike, base_model_name_or_path: str | None = None
    ) -> None:
        """Write the released format (``llm2vec_gen.checkpoint.write_checkpoint``), each file atomically.
        run_config.yml names ``base_model_name_or_path`` (default: the model this one was built from)."""
        if self._lora is not None:
            raise NotImplementedError(
                "saving a model with a LoRA encoder is not supported (it loads for inference)"
            )
        base_name = base_model_name_or_path or self.base_model_name_or_path
        if not base_name:
            raise ValueError(
                "the base LLM has no name or path to record in run_config.yml: pass "
                "base_model_name_or_path= (save the base model with save_pretrained first)"
            )
        ckpt.write_checkpoint(self, save_directory, str(base_name))

    # ------------------------------------------------------------------------------- properties

    @property
    def device(self) -> torch.device:
        return self.special_rows.device

    @property
    def embedding_dim(self) -> int:
        """D, the size of an embedding (the teacher's dimension)."""
        for head in (self.align_head, self.recon_head):  # a removed head (nn.Identity) has none
            if hasattr(head, "out_features"):
                return head.out_features
        return self.special_rows.shape[1]

    @property
    def model(self):
        """The reference's ``EncoderDecoderModel`` surface over this model (no second LLM copy)."""
        from llm2vec_gen.models.encoder_decoder import EncoderDecoderView

        return EncoderDecoderView(self)

    # ------------------------------------------------------------------------ forward pieces

    def encoder_path(self) -> contextlib.AbstractContextManager:
        """Inside: the LLM runs as the encoder (a LoRA encoder's deltas on, ``llm2vec_gen.lora``);
        outside, and for decoding, it is the plain frozen LLM."""
        return encoder_deltas(self._lora)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings [B, T, H] (LM dtype) of input_ids [B, T]: the K rows replace the base rows."""
        table = self.llm.get_input_embeddings().weight
        return special_token_embedding(input_ids, table, self.special_ids, self.special_rows)

    def sequence_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, T, H] (LM dtype) of left-padded input_ids [B, T], the K rows swapped in;
        positions count real tokens only (``batching.positions``). Differentiable w.r.t. ``special_rows``.

        Batch-invariant (``llm2vec_gen.invariant``): each row attends over its own tokens only and the
        rows are widened so every GEMM has a multiple of 8 rows, so a row's states (at its real
        positions) are those of the row alone, bit for bit on the CPU. A mask that is not left padding
        is a ValueError.
        """
        width = input_ids.shape[1]
        ids, mask, lengths = invariant.aligned(input_ids, attention_mask)
        with self.encoder_path(), invariant.row_attention(self.llm.config):
            out = self.llm.base_model(
                inputs_embeds=self.embed_tokens(ids),
                attention_mask=mask,
                position_ids=positions(mask),
                use_cache=False,
                **{invariant.LENGTHS_KWARG: lengths},
            )
        return out.last_hidden_state[:, -width:]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, N, H] (LM dtype) at the last N positions of left-padded ids [B, T]."""
        return self.sequence_hidden_states(input_ids, attention_mask)[:, -self.num_encode_tokens :]

    def appended_hidden_states(self, query_ids: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, K, H] (LM dtype) of the K special tokens appended to left-padded
        queries [B, Tq] (without them): the prefix runs once under no_grad into a KV cache, only the K
        tokens carry a gradient (``prefix_cache.forward_appended``). Equals ``forward`` on the full rows."""
        table = self.llm.get_input_embeddings().weight
        bsz, k = query_ids.shape[0], self.num_special_tokens
        ids = self.special_ids.expand(bsz, k)
        appended = special_token_embedding(ids, table, self.special_ids, self.special_rows)  # [B, K, H]
        with self.encoder_path():
            hidden = forward_appended(self.llm, query_ids, query_mask, appended)
        return hidden[:, -self.num_encode_tokens :]

    def heads(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r [B, N, H], a [B, N, D]) in the heads' dtype (fp32): the recon states (the decoder's soft
        prompt) and the aligned states of hidden [B, N, H] (differentiable; ``pool`` is the fast path)."""
        r = self.recon_head(hidden.to(self.special_rows.dtype))  # the heads' dtype (fp64 in an fp64 model)
        return r, self.align_head(r)

    def folded_heads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W [D, H], b [D]) fp32 of align(recon(.)); recomputed only when a head's weights change."""
        params = (self.recon_head.weight, self.recon_head.bias, self.align_head.weight, self.align_head.bias)
        key = tuple((p.data_ptr(), p._version, p.device) for p in params)
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, fold_heads(self.recon_head, self.align_head))
        return self._folded[1]

    def pool(self, hidden: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Embeddings [B, D] fp32 of final hidden states [B, N, H] (``forward``'s output): the folded
        heads after the mean over N (heads replaced through ``model.model``: applied one by one).
        Each row's embedding is the same bits whatever B (``invariant.row_padded``)."""
        if isinstance(self.recon_head, nn.Linear) and isinstance(self.align_head, nn.Linear):
            weight, bias = self.folded_heads()
            return invariant.row_padded(lambda h: encode_tail(h, weight, bias, normalize), hidden)
        out = invariant.row_padded(lambda h: self.heads(h)[1], hidden).mean(1)
        return nn.functional.normalize(out, dim=-1) if normalize else out

    def decoder_hidden_states(self, soft_prompt: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, N + L - 1, H] of the frozen LLM on ``[soft_prompt][ids[:, :-1]]``:
        soft_prompt [B, N, H] (recon states), ids [B, L] right-padded answers (causal attention: no
        mask needed, pads sit after every real token)."""
        tokens = self.llm.get_input_embeddings()(ids[:, :-1])  # [B, L-1, H], frozen table
        inputs = torch.cat([soft_prompt.to(tokens.dtype), tokens], dim=1)
        return self.llm.base_model(inputs_embeds=inputs, use_cache=False).last_hidden_state

    def lm_head_rows(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """LM head weight [V', H] (and bias [V'] or None), V' = min(rows, len(tokenizer)): the
        reference's vocabulary (its table is resized to the tokenizer)."""
        head = self.llm.get_output_embeddings()
        rows = min(head.weight.shape[0], len(self.tokenizer))
        bias = getattr(head, "bias", None)
        return head.weight[:rows], None if bias is None else bias[:rows]

    # --------------------------------------------------------------------------------- encoding

    def tokenize(
        self, texts: Texts, max_length: int = 512, instruction: str | None = None
    ) -> list[list[int]]:
        """Token ids per text, unpadded: ``instruction + text`` (special tokens in it split into
        plain pieces, truncated to max_length - K) + the K special ids (see ``llm2vec_gen.tokenize``)."""
        special = self.special_ids.tolist()
        return query_ids(self.tokenizer, check_texts(texts), special, max_length, instruction)

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded rows: (input_ids [B, T] int64, attention_mask [B, T] int64) on the model's device."""
        vocab = self.llm.get_input_embeddings().weight.shape[0]
        ids, mask = left_pad(rows, pad_token_id(self.tokenizer, vocab))
        return ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)

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

        Rows run longest first in batches of at most ``batch_size`` rows and at most
        ``max_batch_tokens`` padded tokens (None: ``batching.default_batch_tokens`` of the model's
        device, 2,048 on a CPU and 16,384 on a GPU); a row longer than the budget runs alone, and a
        batch that runs out of memory is split in two and retried. The batches do not change the
        result (encode is batch-invariant, ``llm2vec_gen.invariant``), only speed and memory. Every
        row must be non-empty, its ids in [0, len(tokenizer)).
        """
        check_positive("batch_size", batch_size)
        max_batch_tokens = batch_token_budget(self.device, max_batch_tokens)
        check_positive("max_batch_tokens", max_batch_tokens)
        rows = check_id_rows(ids, len(self.tokenizer))
        n, hidden = len(rows), self.special_rows.shape[1]
        emb = torch.empty(n, self.embedding_dim, device=self.device)
        recon = None
        if get_recon_hidden_states:
            recon_positions = head_positions(self.recon_head, self.num_encode_tokens)
            width = getattr(self.recon_head, "out_features", hidden)
            recon = torch.empty(n, recon_positions, width, device=self.device)

        def run(index: list[int]) -> None:
            h = self(*self.pad([rows[i] for i in index]))  # [b, N, H]
            where = torch.tensor(index, device=self.device)
            emb[where] = self.pool(h, normalize_embeddings)
            if recon is not None:
                recon[where] = invariant.row_padded(self.recon_head, h.float())

        batches = token_batches([len(r) for r in rows], batch_size, max_batch_tokens)
        if show_progress_bar:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Encoding", unit="batch")
        with torch.inference_mode():
            for batch in batches:
                run_split_on_oom(run, batch)
        return (emb, recon) if recon is not None else emb

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
    ) -> torch.Tensor | Any:
        """Embed texts: [n, D] fp32, 2-D even for a single str (as the reference).

        Positional order and defaults are the reference's (texts, max_length, get_recon_hidden_states);
        ours are keyword-only. With get_recon_hidden_states=True returns (embeddings, recon states
        [n, N, H] fp32), the soft prompts ``generate``/``decode`` turn into text.

        Output type: a torch tensor on the model's device (the reference's). As in
        sentence-transformers, ``convert_to_tensor=True`` wins over ``convert_to_numpy``; otherwise
        ``convert_to_numpy=True`` gives numpy arrays on the CPU. ``instruction`` is prepended to every
        text; ``device`` moves the model there first. ``batch_size`` and ``max_batch_tokens`` (None:
        2,048 padded tokens on a CPU, 16,384 on a GPU) bound each batch, as in ``encode_ids``.
        texts: a str or any iterable of str. Bad
        arguments raise TypeError/ValueError naming them (bytes are not text; a non-str item names
        its index; batch_size an int >= 1; max_length an int > K; instruction a str or None).
        """
        if device is not None and torch.device(device) != self.device:
            self.to(device)
        texts = check_texts(texts)
        check_positive("batch_size", batch_size)
        out = self.encode_ids(
            self.tokenize(texts, max_length, instruction),
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            normalize_embeddings=normalize_embeddings,
            get_recon_hidden_states=get_recon_hidden_states,
            show_progress_bar=show_progress_bar,
        )
        if convert_to_numpy and not convert_to_tensor:
            return tuple(t.cpu().numpy() for t in out) if get_recon_hidden_states else out.cpu().numpy()
        return out
