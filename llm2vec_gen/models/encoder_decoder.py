"""The reference's ``model.model`` (its ``EncoderDecoderModel``) as a view over one ``LLM2VecGenModel``.

    model.model.encoder_model       the encoder path: (input_ids, attention_mask) -> last_hidden_state
                                    [B, T, H] with the K special rows swapped in (the reference's
                                    PEFT TrainableTokens model over the backbone)
    model.model.decoder_model       the causal LM itself (lm_head, generate, get_input_embeddings)
    model.model.reconstruction_mlp  a ProjectionView whose ``.projection`` IS model.recon_head
    model.model.alignment_mlp       a ProjectionView whose ``.projection`` IS model.align_head
    model.model.encoding_mode, .config, .save_decoder (False)

Nothing is copied: the one LLM and the heads are shared, so a change through the view is a change
of the model. Setting a head to None removes it as the reference does (the logit-lens script sets
both to None to read the encoder's raw hidden states): ``encode`` then returns the encoder's last N
hidden states as recon states, and their mean passed through what is left as the embedding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from llm2vec_gen.heads import ProjectionHead


class ProjectionView(nn.Module):
    """The reference's ``ProjectionModel`` surface (size 1, pooling_mode "linear") over one head:
    ``projection`` is the model's nn.Linear itself. forward(x [..., in]) -> [..., out] in fp32."""

    def __init__(self, projection: nn.Linear) -> None:
        super().__init__()
        self.projection = projection
        self.input_dim, self.output_dim = projection.in_features, projection.out_features
        self.dtype, self.size, self.pooling_mode = projection.weight.dtype, 1, "linear"

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.projection(hidden_states.to(self.projection.weight.dtype))


class EncoderView:
    """The encoder path of the reference's ``encoder_model``: call it with input_ids [B, T] (left
    padded, the K special ids last) and attention_mask [B, T]; returns ``BaseModelOutput`` with
    ``last_hidden_state`` [B, T, H] (LM dtype)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    @property
    def config(self):
        """The base LLM's config (the reference adds ``num_special_tokens``: read it from the model)."""
        return self._model.llm.config

    @property
    def device(self) -> torch.device:
        return self._model.device

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> BaseModelOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self._model.sequence_hidden_states(input_ids, attention_mask)
        return BaseModelOutput(last_hidden_state=hidden)


def _view(head: nn.Module) -> nn.Module | None:
    """A model head as the reference exposes it: a ProjectionView over an nn.Linear, a ProjectionHead
    as is (it has ``.projection``), None for a removed head."""
    if isinstance(head, nn.Linear):
        return ProjectionView(head)
    return head if isinstance(head, ProjectionHead) else None


def _head(value: Any, name: str) -> nn.Module:
    """What a view assignment stores as the model's head: None -> nn.Identity, a ProjectionHead as is,
    a ProjectionView (or the reference's ProjectionModel with a single Linear) -> its ``.projection``,
    an nn.Linear as is."""
    if value is None:
        return nn.Identity()
    if isinstance(value, ProjectionHead):
        return value
    linear = getattr(value, "projection", value)
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"{name} must be None, an nn.Linear or a module whose .projection is one")
    return linear


class EncoderDecoderView:
    """``model.model``: the reference's ``EncoderDecoderModel`` attributes over ``LLM2VecGenModel``."""

    save_decoder = False

    def __init__(self, model: Any) -> None:
        object.__setattr__(self, "_model", model)

    @property
    def encoder_model(self) -> EncoderView:
        return EncoderView(self._model)

    @property
    def decoder_model(self) -> nn.Module:
        return self._model.llm

    @property
    def config(self):
        return self._model.llm.config

    @property
    def encoding_mode(self) -> str:
        return self._model.encoding_mode

    @property
    def reconstruction_mlp(self) -> nn.Module | None:
        return _view(self._model.recon_head)

    @reconstruction_mlp.setter
    def reconstruction_mlp(self, value: Any) -> None:
        self._model.recon_head = _head(value, "reconstruction_mlp")

    @property
    def alignment_mlp(self) -> nn.Module | None:
        return _view(self._model.align_head)

    @alignment_mlp.setter
    def alignment_mlp(self, value: Any) -> None:
        self._model.align_head = _head(value, "alignment_mlp")

    def __setattr__(self, name: str, value: Any) -> None:
        if not isinstance(getattr(type(self), name, None), property):
            raise AttributeError(f"model.model has no settable attribute {name!r}")
        object.__setattr__(self, name, value)
