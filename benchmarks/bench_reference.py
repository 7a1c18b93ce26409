"""This library against the reference implementation (PyPI llm2vec-gen==0.1.3) on one checkpoint.

The checkpoint is written by our ``save_pretrained`` (a random Qwen3 with the real Qwen tokenizer)
and loaded by both sides, which is itself the strongest format check: the reference must load what
we save. The reference runs in its own venv (benchmarks/reference_env.sh) as a subprocess
(benchmarks/reference_driver.py --serve) that times each pass on command, so both sides are timed
in one pytest run, on the same machine, one after the other, with the same thread count.

    bash benchmarks/reference_env.sh      # once: creates benchmarks/.refenv
    pytest benchmarks/bench_reference.py --benchmark-only --benchmark-json=/tmp/br.json
    python benchmarks/report.py /tmp/br.json

Encode: 64 texts of mixed length (7..~330 tokens), batch 16, max length 512, fp32 on the CPU
(bf16 where CUDA is present). Decode: greedy, 32 new tokens, first 4 texts. Embeddings must agree
to cosine >= 0.9999 and the decoded texts must be equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
REFENV_PYTHON = Path(os.environ.get("LLM2VEC_GEN_REFENV", HERE / ".refenv")) / "bin" / "python"
DRIVER = HERE / "reference_driver.py"

HIDDEN, LAYERS, HEADS, KV_HEADS, TEACHER_DIM = 256, 4, 8, 4, 384
BATCH, MAX_LENGTH, DECODE_TEXTS, NEW_TOKENS = 16, 512, 4, 32

pytestmark = pytest.mark.skipif(
    not REFENV_PYTHON.exists(),
    reason=f"reference env absent ({REFENV_PYTHON}): run `bash benchmarks/reference_env.sh` first",
)


def _texts() -> list[str]:
    """64 texts, lengths mixed so that unsorted batches pad a lot (as real corpora do)."""
    from llm2vec_gen.integrations.sample_data import SAMPLE_CORPUS, SAMPLE_QUERIES

    pool = list(SAMPLE_QUERIES.values()) + list(SAMPLE_CORPUS.values())
    return [" ".join([pool[i % len(pool)]] * (1 + (i * 5) % 8)) for i in range(64)]


class _Reference:
    """A driver script running in the reference venv (same thread count as here), answering one
    JSON line per command; its first line is a JSON header (``info``)."""

    def __init__(self, driver: Path, *args: str):
        cmd = [str(REFENV_PYTHON), str(driver), *args, "--threads", str(torch.get_num_threads())]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        header = self.proc.stdout.readline()
        if not header:
            raise RuntimeError(
                f"the reference failed to load our checkpoint:\n{self.proc.stderr.read()[-4000:]}"
            )
        self.info = json.loads(header)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.communicate("quit\n", timeout=60)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.tiny import QWEN_VOCAB_SIZE, qwen_tokenizer, tiny_qwen3

    root = tmp_path_factory.mktemp("bench_reference")
    base = tiny_qwen3(
        QWEN_VOCAB_SIZE, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS, num_kv_heads=KV_HEADS
    )
    base.save_pretrained(root / "base")
    model = LLM2VecGenModel.from_base(base, qwen_tokenizer(), teacher_dim=TEACHER_DIM, device="cpu", seed=1)
    with torch.no_grad():
        model.special_rows.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(2))
    model.save_pretrained(root / "ckpt", base_model_name_or_path=str(root / "base"))
    del model, base
    texts = _texts()
    (root / "texts.json").write_text(json.dumps(texts))
    reference = _Reference(
        DRIVER, str(root / "ckpt"), str(root / "texts.json"), "--out", str(root / "ref.npy"), "--serve",
        "--batch-size", str(BATCH), "--max-length", str(MAX_LENGTH), "--decode", str(DECODE_TEXTS),
        "--max-new-tokens", str(NEW_TOKENS),
    )  # fmt: skip
    ours = LLM2VecGenModel.from_pretrained(root / "ckpt")
    yield ours, reference, texts, np.load(root / "ref.npy")
    reference.close()


def _record(benchmark, what: str, provider: str, baseline: bool, ours) -> None:
    benchmark.group = (
        f"{what} Qwen3 H={HIDDEN} L={LAYERS} batch={BATCH} {ours.llm.dtype} {ours.device.type}".replace(
            "torch.", ""
        )
    )
    benchmark.extra_info.update(provider=provider, baseline=baseline, threads=torch.get_num_threads())


def bench_encode_reference(benchmark, setup):
    ours, reference, texts, _ = setup
    _record(benchmark, "encode 64 texts", "llm2vec-gen 0.1.3 (reference)", True, ours)
    benchmark.extra_info.update(reference_versions=reference.info["versions"])
    benchmark.pedantic(lambda: reference.ask("encode"), rounds=3, warmup_rounds=0, iterations=1)


def bench_encode_ours(benchmark, setup):
    ours, _, texts, ref_embeddings = setup
    _record(benchmark, "encode 64 texts", "llm2vec_gen (this library)", False, ours)
    emb = benchmark.pedantic(
        lambda: ours.encode(texts, MAX_LENGTH, batch_size=BATCH, convert_to_numpy=True),
        rounds=3,
        warmup_rounds=1,
        iterations=1,
    )
    cos = (emb * ref_embeddings).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref_embeddings, axis=1)
    benchmark.extra_info.update(min_cosine_vs_reference=float(cos.min()))
    assert cos.min() >= 0.9999, f"embeddings disagree with the reference: min cosine {cos.min()}"


def bench_decode_reference(benchmark, setup):
    ours, reference, _, _ = setup
    _record(
        benchmark,
        f"decode {DECODE_TEXTS} texts x {NEW_TOKENS} tokens",
        "llm2vec-gen 0.1.3 (reference)",
        True,
        ours,
    )
    benchmark.pedantic(lambda: reference.ask("decode"), rounds=1, warmup_rounds=0, iterations=1)


def bench_decode_ours(benchmark, setup):
    ours, reference, texts, _ = setup
    _record(
        benchmark,
        f"decode {DECODE_TEXTS} texts x {NEW_TOKENS} tokens",
        "llm2vec_gen (this library)",
        False,
        ours,
    )
    got = benchmark.pedantic(
        lambda: ours.decode(texts[:DECODE_TEXTS], max_new_tokens=NEW_TOKENS, max_length=MAX_LENGTH),
        rounds=1,
        warmup_rounds=1,
        iterations=1,
    )
    want = reference.ask("decode")["decoded"]
    # transformers 4 and 5 differ only in Unicode normalisation of decoded CJK compatibility ideographs
    assert [unicodedata.normalize("NFC", t) for t in got] == [unicodedata.normalize("NFC", t) for t in want]
