"""One training step of ours against the same step computed the reference package's way.

The reference way (llm2vec-gen 0.1.3), written out here: the full query + K special tokens through
the LLM with gradient everywhere, the K rows swapped into a materialised embedding table (PEFT's
``index_copy``), the decoder input ``[pads][r][answer]`` built by a per-sample loop, the causal-LM
loss on materialised logits (shifted labels, mean over labelled tokens) and MSE to the teacher.
"""

import pytest
import torch
import torch.nn.functional as F

from llm2vec_gen.io.records import read_records
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import qwen_tokenizer, tiny_llama, tiny_qwen3
from llm2vec_gen.train.data import DEMO_CORPUS, collate, tokenize_records
from llm2vec_gen.train.step import step_loss

K, TEACHER_DIM = 10, 24


def make_model(arch="qwen3", dtype=torch.float32, hidden=48):
    """A tiny random LLM with the real Qwen tokenizer (vocab 151,669 + K) as an LLM2VecGenModel."""
    tok = qwen_tokenizer()
    factory = tiny_qwen3 if arch == "qwen3" else tiny_llama
    llm = factory(len(tok), hidden_size=hidden, num_layers=2, dtype=dtype)
    model = LLM2VecGenModel.from_base(
        llm, tok, num_special_tokens=K, teacher_dim=TEACHER_DIM, device="cpu", dtype=dtype
    )
    with torch.no_grad():  # move the rows off the table's mean so the encoder sees distinct tokens
        model.special_rows.normal_(0, 0.02)
    return model


def reference_loss(model, records, teacher, kind="mse"):
    """The reference package's loss of one batch (left padding, full sequences, materialised logits)."""
    tok, llm = model.tokenizer, model.llm
    special = "".join(model.special_tokens)
    q = tok([r["query"].strip() + special for r in records], padding=True, return_tensors="pt")
    a = tok([r["answer"].strip() + "<|end_of_text|>" for r in records], padding=True, return_tensors="pt")
    labels = torch.where(a.input_ids == tok.pad_token_id, -100, a.input_ids)
    table = llm.get_input_embeddings().weight.detach()
    extra = len(tok) - table.shape[0]
    resized = torch.cat([table, table.new_zeros(max(extra, 0), table.shape[1])])
    resized = resized.index_copy(0, model.special_ids, model.special_rows.to(table.dtype))  # PEFT
    hidden = llm.base_model(inputs_embeds=F.embedding(q.input_ids, resized), attention_mask=q.attention_mask)
    h = hidden.last_hidden_state[:, -K:]
    r = model.recon_head(h.to(model.recon_head.weight.dtype))  # fp32 heads; fp64 for an fp64 oracle
    emb = model.align_head(r)
    tok_embeds = llm.get_input_embeddings()(a.input_ids)
    rows, masks, labs = [], [], []
    for i in range(len(records)):  # the reference's per-sample assembly
        pad, real = a.attention_mask[i] == 0, a.attention_mask[i] == 1
        rows.append(torch.cat([tok_embeds[i][pad], r[i].to(tok_embeds.dtype), tok_embeds[i][real]]))
        masks.append(torch.cat([torch.zeros(int(pad.sum())), torch.ones(K + int(real.sum()))]).long())
        labs.append(torch.cat([labels[i][pad], torch.full((K,), -100), labels[i][real]]))
    logits = llm(inputs_embeds=torch.stack(rows), attention_mask=torch.stack(masks)).logits.float()
    dec_labels = torch.stack(labs)
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), dec_labels[:, 1:].flatten(), ignore_index=-100)
    pooled = emb.mean(1)
    distill = (
        F.mse_loss(pooled, teacher) if kind == "mse" else (1 - F.cosine_similarity(pooled, teacher)).mean()
    )
    return ce + distill


def grads(model):
    return [model.special_rows.grad.clone()] + [
        p.grad.clone() for p in (*model.recon_head.parameters(), *model.align_head.parameters())
    ]


def rel_err(x, y):
    return ((x.double() - y.double()).norm() / y.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("arch,kind", [("qwen3", "mse"), ("llama", "cosine")])
def test_step_matches_reference(arch, kind):
    model = make_model(arch)
    records = read_records(DEMO_CORPUS)[:5]  # B = 5, uneven query and answer lengths
    teacher = torch.randn(5, TEACHER_DIM)
    data = tokenize_records(model.tokenizer, records, K)
    batch = collate(data, range(5), teacher, model.tokenizer.pad_token_id)
    count = int((batch.labels != -100).sum())

    ours = step_loss(model, batch, ce_count=count, rows=5, kind=kind)
    ours.loss.backward()
    ours_grads = grads(model)
    model.zero_grad(set_to_none=True)
    ref = reference_loss(model, records, teacher, kind)
    ref.backward()
    ref_grads = grads(model)

    assert abs(ours.loss.item() - ref.item()) <= 1e-5 * abs(ref.item())
    for name, g, rg in zip(
        ["special_rows", "recon.w", "recon.b", "align.w", "align.b"], ours_grads, ref_grads, strict=True
    ):
        assert rel_err(g, rg) <= 1e-4, f"{name}: relative error {rel_err(g, rg):.3g}"


def test_step_bf16_within_lowp_error():
    """bf16 LLM: our loss is as close to the fp32 reference as the reference itself run in bf16."""
    model = make_model()
    records = read_records(DEMO_CORPUS)[5:12]
    teacher = torch.randn(7, TEACHER_DIM)
    ref32 = reference_loss(model, records, teacher).item()
    model.llm.to(torch.bfloat16)
    ref16 = reference_loss(model, records, teacher).item()
    data = tokenize_records(model.tokenizer, records, K)
    batch = collate(data, range(7), teacher, model.tokenizer.pad_token_id)
    ours = step_loss(model, batch, int((batch.labels != -100).sum()), 7).loss.item()
    assert abs(ours - ref32) <= 2 * abs(ref16 - ref32) + 1e-2 * abs(ref32)
