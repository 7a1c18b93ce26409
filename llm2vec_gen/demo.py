"""The offline end-to-end demo behind ``llm2vec-gen demo`` (the README's main-job command).

With no ``--model`` it needs nothing from a hub: it builds (or reuses from ``--cache-dir``) a tiny
Qwen3-architecture LLM with the real Qwen tokenizer, trained for a few seconds as a language model on
the bundled query/answer corpus (a random LLM would ignore any soft prompt), then runs the whole
LLM2Vec-Gen pipeline on that corpus:

    teach   all-MiniLM-L6-v2 (offline) embeds the answers once, cached by id
    train   the K special rows and both heads, the LLM frozen (prefix cache, fused CE, distill)
    save    a released-format checkpoint; reload it with ``LLM2VecGenModel.from_pretrained``
    eval    local retrieval (each query against every answer) before and after training, with the
            raw texts (the corpus is trained without instructions)
    decode  one query's embedding (its recon states) back into text

``--model DIR_OR_HUB_ID`` runs the same on a real model: a released LLM2Vec-Gen checkpoint (a
directory with ``run_config.yml``) is evaluated and decoded as is; a base LLM is first asked for its
own answers (``respond``), then trained.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

from llm2vec_gen.evaluate import RetrievalSet
from llm2vec_gen.io.records import read_records
from llm2vec_gen.train.data import DEMO_CORPUS

DEMO_K = 10
DEMO_HIDDEN, DEMO_LAYERS = 64, 2


def _metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "num_queries")


def corpus_retrieval_set(records: list[dict]) -> RetrievalSet:
    """Each query's relevant document is its own answer; every answer is in the corpus."""
    queries = {r["id"]: r["query"] for r in records}
    corpus = {r["id"]: r["answer"] for r in records}
    return queries, corpus, {r["id"]: {r["id"]: 1} for r in records}


def pretrain_lm(llm, tokenizer, texts: list[str], steps: int, seed: int = 0, max_length: int = 96):
    """Train ``llm`` in place as a causal LM on ``texts`` (AdamW, lr 1e-2, batch 16); returns it in eval mode.

    The softmax runs over the tokens that occur in ``texts`` only, which keeps a 151k-vocabulary
    model cheap to fit on a CPU; other tokens keep their small random logits.
    """
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    used = enc.input_ids[enc.attention_mask.bool()].unique()
    remap = torch.full((llm.config.vocab_size,), -100)
    remap[used] = torch.arange(len(used))
    labels = remap[enc.input_ids].masked_fill(enc.attention_mask == 0, -100)
    opt = torch.optim.AdamW(llm.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    llm.train()
    for _ in range(steps):
        idx = torch.randperm(len(texts), generator=gen)[:16]
        mask = enc.attention_mask[idx]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = llm.model(
            input_ids=enc.input_ids[idx], attention_mask=mask, position_ids=pos
        ).last_hidden_state
        logits = hidden[:, :-1] @ llm.lm_head.weight[used].T
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[idx][:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return llm.eval()


def tiny_base(cache_dir: Path, records: list[dict], seed: int, log) -> Path:
    """A directory holding the demo's tiny Qwen3 + the real Qwen tokenizer (built once, then reused)."""
    from llm2vec_gen.tiny import qwen_tokenizer, tiny_qwen3

    path = cache_dir / f"tiny-qwen3-h{DEMO_HIDDEN}-l{DEMO_LAYERS}-s{seed}"
    if (path / "config.json").exists():
        log(f"base LLM: reusing {path}")
        return path
    start = time.perf_counter()
    tokenizer = qwen_tokenizer()
    llm = tiny_qwen3(len(tokenizer), hidden_size=DEMO_HIDDEN, num_layers=DEMO_LAYERS, seed=seed)
    pretrain_lm(llm, tokenizer, [f"{r['query']} {r['answer']}" for r in records], steps=150, seed=seed)

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    llm.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, path)  # a killed build leaves only the .tmp directory, never a half-written base
    log(f"base LLM: built a tiny Qwen3 (hidden {DEMO_HIDDEN}, {DEMO_LAYERS} layers, vocab {len(tokenizer)}), "
        f"LM-trained on the corpus in {time.perf_counter() - start:.1f}s -> {path}")  # fmt: skip
    return path


def run_demo(
    model: str | None,
    output_dir: Path,
    cache_dir: Path,
    steps: int = 200,
    batch_size: int = 8,
    lr: float = 3e-3,
    seed: int = 42,
    device: str | None = None,
    log=print,
) -> dict:
    """Run the pipeline described in the module docstring; returns the metrics it printed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm2vec_gen.evaluate import evaluate_retrieval
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.train import TrainConfig, respond, teach, train

    total = time.perf_counter()
    torch.manual_seed(seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = read_records(DEMO_CORPUS)
    log(f"corpus: {len(records)} query/answer pairs from {DEMO_CORPUS.name}")
    eval_set = corpus_retrieval_set(records)
    results: dict = {}

    if model is not None and (Path(model) / "run_config.yml").exists():
        log(f"model: released LLM2Vec-Gen checkpoint {model}")
        trained = LLM2VecGenModel.from_pretrained(model, device=device)
    else:
        base_path = Path(model) if model is not None else tiny_base(cache_dir, records, seed, log)
        tokenizer = AutoTokenizer.from_pretrained(str(base_path) if model is None else model)
        llm = AutoModelForCausalLM.from_pretrained(str(base_path) if model is None else model)
        data_path = DEMO_CORPUS
        if model is not None:
            data_path = output_dir / "answers.jsonl"
            respond(llm, tokenizer, DEMO_CORPUS, data_path, max_new_tokens=256, progress=True)
            log(f"respond: the LLM's own answers -> {data_path}")
        start = time.perf_counter()
        cache = teach(data_path, output_dir / "teacher.safetensors", teacher="minilm", progress=False)
        log(f"teach: all-MiniLM-L6-v2 embedded {len(records)} answers in {time.perf_counter() - start:.1f}s")
        untrained = LLM2VecGenModel.from_base(llm, tokenizer, num_special_tokens=DEMO_K, teacher_dim=384,
                                              device=device, seed=seed)  # fmt: skip
        untrained.base_model_name_or_path = str(base_path)
        before = evaluate_retrieval(untrained, eval_set, query_instruction="", passage_instruction="")
        results["before"] = before
        log(
            "eval before training: "
            + ", ".join(f"{k} {v:.3f}" for k, v in before.items() if k != "num_queries")
        )
        start = time.perf_counter()
        config = TrainConfig(output_dir=str(output_dir / "run"), lr=lr, warmup_steps=min(20, steps // 10),
                             total_steps=steps, batch_size=batch_size, max_length=128, seed=seed,
                             save_every=0, resume=False)  # fmt: skip
        checkpoint = train(untrained, data_path, cache, config)
        seconds = time.perf_counter() - start
        log(f"train: {steps} steps of batch {batch_size} in {seconds:.1f}s -> {checkpoint}")
        trained = LLM2VecGenModel.from_pretrained(checkpoint, base_model=untrained.llm, device=device)
        log(f"save + reload: released-format checkpoint {checkpoint}")

    after = evaluate_retrieval(trained, eval_set, query_instruction="", passage_instruction="")
    results["after"] = after
    log(f"eval after training:  {_metrics(after)}")
    query = records[0]["query"]
    text = trained.decode([query], max_new_tokens=40)[0]
    results["decoded"] = text
    log(f"decode: the embedding of {query!r} reads back as: {text!r}")
    log(f"done in {time.perf_counter() - total:.1f}s")
    return results
