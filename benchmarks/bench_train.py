"""One training step (forward + backward of the loss of B=8 examples): ours against the reference recipe.

    pytest benchmarks/bench_train.py --benchmark-only --benchmark-json=/tmp/bt.json
    python benchmarks/report.py /tmp/bt.json

Same random batch for both (seeded): queries of 10-200 tokens + K=10 special tokens, answers of
20-500 tokens, B=8, fp32 on the CPU.

- "reference": the recipe as llm2vec-gen 0.1.3 runs it: the K rows index_copy'd into a rebuilt
  [V+K, H] table every step (PEFT TrainableTokens; dense V x H embedding gradient), the full
  query + K tokens through the LLM with gradient and gradient checkpointing on, a separate decoder
  copy of the LLM, the decoder input built by a per-sample loop, logits over every position
  (transformers' causal-LM loss), and the MiniLM teacher's forward on the answer texts every step.
- "ours": ``train.step.step_loss`` as the trainer runs it: the query prefix through the KV cache
  without grad, only the K tokens with grad, one LLM, the decoder on right-padded answers with the
  fused linear cross-entropy on labelled rows, the teacher embeddings read from the cache, and the
  batch split into 4 length-sorted micro-batches (``micro_batch_size=2``: less padding).

Shapes: (a) tiny Qwen3 hidden 512, 8 layers, vocab 8192 (speed); (b) the real Qwen vocabulary
151,669 with hidden 256, 4 layers (memory). ``peak_mb`` is the step's added peak RSS; the
reference's extra decoder copy is resident on top of it (``decoder_copy_mb``).
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import peak_memory_mb

from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.teachers import minilm_embed
from llm2vec_gen.tiny import qwen_tokenizer, tiny_qwen3
from llm2vec_gen.train.data import TokenizedData, collate, split_batch
from llm2vec_gen.train.step import step_loss

K, B, TEACHER_DIM = 10, 8, 384
MICRO_BATCH = 2  # examples per micro-batch (`--micro-batch-size 2`): length-sorted pairs pad little
SHAPES = {"a": (8192, 512, 8), "b": (151_669, 256, 4)}


def _setup(shape: str):
    vocab, hidden, layers = SHAPES[shape]
    tok = qwen_tokenizer()
    llm = tiny_qwen3(vocab, hidden_size=hidden, num_layers=layers, num_heads=8, num_kv_heads=4)
    model = LLM2VecGenModel.from_base(llm, tok, num_special_tokens=K, teacher_dim=TEACHER_DIM, device="cpu")
    rng = random.Random(0)
    queries = [[rng.randrange(vocab) for _ in range(rng.randint(10, 200))] for _ in range(B)]
    answers = [[rng.randrange(vocab) for _ in range(rng.randint(20, 500))] for _ in range(B)]
    data = TokenizedData([str(i) for i in range(B)], queries, answers, answers)
    texts = tok.batch_decode([a[:256] for a in answers])  # the teacher's input text
    teacher = minilm_embed(texts)
    return model, data, texts, teacher


def _ours(model, data, teacher):
    lengths = data.lengths(K)
    count = sum(len(a) for a in data.labels)
    for micro in split_batch(list(range(B)), lengths, B // MICRO_BATCH):
        batch = collate(data, micro, teacher, pad_id=0)
        step_loss(model, batch, ce_count=count, rows=B).loss.backward()


def _reference_inputs(model, data):
    """Left-padded query + K ids (specials at V..V+K-1 of the resized table) and left-padded answers."""
    vocab = model.llm.get_input_embeddings().weight.shape[0]
    ids = list(range(vocab, vocab + K))
    q = [s + ids for s in data.query_ids]
    width_q, width_a = max(map(len, q)), max(map(len, data.answer_ids))
    q_ids = torch.tensor([[0] * (width_q - len(s)) + s for s in q])
    q_mask = torch.tensor([[0] * (width_q - len(s)) + [1] * len(s) for s in q])
    a_ids = torch.tensor([[0] * (width_a - len(s)) + s for s in data.answer_ids])
    a_mask = torch.tensor([[0] * (width_a - len(s)) + [1] * len(s) for s in data.answer_ids])
    return torch.tensor(ids), q_ids, q_mask, a_ids, a_mask


def _reference(model, decoder, inputs, texts):
    ids, q_ids, q_mask, a_ids, a_mask = inputs
    table = model.llm.get_input_embeddings().weight
    resized = torch.cat([table, table.new_zeros(K, table.shape[1])]).index_copy(0, ids, model.special_rows)
    h = model.llm.base_model(
        inputs_embeds=F.embedding(q_ids, resized), attention_mask=q_mask
    ).last_hidden_state
    r = model.recon_head(h[:, -K:])
    a = model.align_head(r)
    tok_embeds = decoder.get_input_embeddings()(a_ids)
    labels = torch.where(a_mask.bool(), a_ids, -100)
    rows, masks, labs = [], [], []
    for i in range(B):
        pad, real = a_mask[i] == 0, a_mask[i] == 1
        rows.append(torch.cat([tok_embeds[i][pad], r[i], tok_embeds[i][real]]))
        masks.append(torch.cat([torch.zeros(int(pad.sum())), torch.ones(K + int(real.sum()))]).long())
        labs.append(torch.cat([labels[i][pad], torch.full((K,), -100), labels[i][real]]))
    ce = decoder(
        inputs_embeds=torch.stack(rows), attention_mask=torch.stack(masks), labels=torch.stack(labs)
    ).loss
    with torch.no_grad():
        teacher = minilm_embed(texts).clone()  # out of inference mode
    (ce + F.mse_loss(a.mean(1), teacher)).backward()


@pytest.mark.parametrize("shape", ["a", "b"])
@pytest.mark.parametrize("provider", ["reference", "ours"])
def bench_train_step(benchmark, provider, shape):
    model, data, texts, teacher = _setup(shape)
    model.special_rows.requires_grad_(True)
    extra = {}
    if provider == "ours":
        fn = lambda: _ours(model, data, teacher)  # noqa: E731
    else:
        decoder = copy.deepcopy(model.llm)
        extra["decoder_copy_mb"] = sum(p.numel() * p.element_size() for p in decoder.parameters()) / 2**20
        for m in (model.llm, decoder):
            m.gradient_checkpointing_enable()
            m.train()
        inputs = _reference_inputs(model, data)
        fn = lambda: _reference(model, decoder, inputs, texts)  # noqa: E731

    def step():
        model.zero_grad(set_to_none=True)
        fn()

    model.zero_grad(set_to_none=True)
    peak = peak_memory_mb(fn)  # also the warm-up: first calls pay one-off allocation costs
    vocab, hidden, layers = SHAPES[shape]
    benchmark.group = f"train step B={B} K={K} V={vocab} H={hidden} L={layers} fp32 fwd+bwd"
    benchmark.pedantic(step, rounds=2, warmup_rounds=0, iterations=1)
    real = sum(len(q) + K + len(a) for q, a in zip(data.query_ids, data.answer_ids, strict=True))
    benchmark.extra_info.update(
        provider=provider, baseline=provider == "reference", peak_mb=peak, real_tokens=real,
        ms_per_example=benchmark.stats.stats.median * 1000 / B, **extra,
    )  # fmt: skip
