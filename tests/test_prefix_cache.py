"""forward_appended (prefix once without grad, K tokens with grad) equals the full-sequence forward."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel, Qwen3Config, Qwen3Model

from llm2vec_gen.prefix_cache import forward_appended, prefix_positions

SIZES = {
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}


def _qwen3():
    return Qwen3Model(Qwen3Config(**SIZES)).eval()


def _llama():
    return LlamaModel(LlamaConfig(**SIZES)).eval()


def _llama_causal_lm():
    return LlamaForCausalLM(LlamaConfig(**SIZES)).eval()


def _batch(pads, length, klen, hidden):
    input_ids = torch.randint(0, SIZES["vocab_size"], (len(pads), length))
    mask = (torch.arange(length)[None, :] >= torch.tensor(pads)[:, None]).long()
    appended = torch.randn(len(pads), klen, hidden, requires_grad=True)
    return input_ids, mask, appended


def _full_sequence(model, input_ids, mask, appended):
    base = model.base_model
    klen = appended.shape[1]
    full_mask = torch.cat([mask, torch.ones_like(mask[:, :klen])], dim=1)
    embeds = torch.cat([base.embed_tokens(input_ids), appended], dim=1)
    out = base(inputs_embeds=embeds, attention_mask=full_mask, position_ids=prefix_positions(full_mask))
    return out.last_hidden_state[:, -klen:]


@pytest.mark.parametrize("make_model", [_qwen3, _llama, _llama_causal_lm])
@pytest.mark.parametrize(("pads", "length", "klen"), [([0, 3, 6, 11], 11, 10), ([2, 0, 4], 7, 1)])
def test_matches_full_sequence(backend, make_model, pads, length, klen):
    model = make_model()
    implementation = model.config._attn_implementation
    input_ids, mask, appended = _batch(pads, length, klen, SIZES["hidden_size"])
    weight = torch.randn(len(pads), klen, SIZES["hidden_size"])

    hidden = forward_appended(model, input_ids, mask, appended)
    (grad,) = torch.autograd.grad((hidden * weight).sum(), appended)
    expected = _full_sequence(model, input_ids, mask, appended)
    (expected_grad,) = torch.autograd.grad((expected * weight).sum(), appended)

    assert hidden.shape == (len(pads), klen, SIZES["hidden_size"])
    assert (hidden - expected).abs().max().item() <= 1e-5
    assert (grad - expected_grad).abs().max().item() <= 1e-5
    assert model.config._attn_implementation == implementation


def test_backward_saves_no_prefix_activation(backend):
    """Autograd keeps activations of the K tokens only: nothing [B, T, H] or [B, T, intermediate]."""
    model = _qwen3()
    length = 9
    input_ids, mask, appended = _batch([0, 2], length, 3, SIZES["hidden_size"])
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hidden = forward_appended(model, input_ids, mask, appended)
    widths = (SIZES["hidden_size"], SIZES["intermediate_size"])
    prefix_sized = [s for s in shapes if len(s) >= 2 and s[-1] in widths and length in s[:-1]]
    assert hidden.requires_grad and shapes and not prefix_sized


def test_restores_attention_implementation_on_error():
    model = _qwen3()
    input_ids, mask, _ = _batch([0, 1], 5, 2, SIZES["hidden_size"])
    with pytest.raises(RuntimeError):
        forward_appended(model, input_ids, mask, torch.randn(2, 2, 7))
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    ("input_ids", "mask", "appended", "match"),
    [
        (torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0), torch.randn(2, 3, 64), r"T >= 1"),
        (torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 5), torch.randn(2, 3, 64), "attention_mask"),
        (torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4), torch.randn(3, 3, 64), "appended_embeds"),
    ],
)
def test_bad_input(input_ids, mask, appended, match):
    with pytest.raises(ValueError, match=match):
        forward_appended(_qwen3(), input_ids, mask, appended)
