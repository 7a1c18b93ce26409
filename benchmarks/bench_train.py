"""One training step (forward + backward of the loss of B=8 examples): ours against the reference
implementation itself, PyPI llm2vec-gen==0.1.3, run in its own venv as a subprocess.

    bash benchmarks/reference_env.sh      # once: creates benchmarks/.refenv
    pytest benchmarks/bench_train.py --benchmark-only --benchmark-json=/tmp/bt.json
    python benchmarks/report.py /tmp/bt.json

Same random batch for both (seeded): queries of 10-200 tokens + K=10 special tokens, answers of
20-500 tokens, B=8, fp32 on the CPU, the same thread count (``torch.get_num_threads()`` here).

- "reference": the package's training step, driven by benchmarks/reference_train_driver.py in
  benchmarks/.refenv (the driver's docstring says what is the package's code and what is glue). It
  loads the checkpoint our ``save_pretrained`` writes from the very model "ours" trains, with the
  package's ``EncoderDecoderModel.from_pretrained``: PEFT TrainableTokens over the resized
  [len(tokenizer), H] table (rebuilt by ``index_copy`` every forward, dense table gradient), the
  full query + K tokens with gradient and gradient checkpointing, a separate frozen decoder copy of
  the LLM, the per-sample decoder-input loop, logits over every decoder position (transformers'
  causal-LM loss) and the MiniLM teacher's forward on the answer texts every step. Each round is one
  ``train`` command, timed by our clock around the round trip (the driver's own seconds are in
  ``driver_s``).
- "ours": ``train.step.step_loss`` as the trainer runs it: the query prefix through the KV cache
  without grad, only the K tokens with grad, one LLM, the decoder on right-padded answers with the
  fused linear cross-entropy on labelled rows, the teacher embeddings read from the cache, and the
  batch split into 4 length-sorted micro-batches (``micro_batch_size=2``: less padding).

Shapes: (a) tiny Qwen3 hidden 512, 8 layers, vocab 8192 (speed), with a word-level tokenizer of
8192 tokens so that the package's table is resized to V + K as for a real model (the Qwen tokenizer
would make it 151,679 rows); (b) the real Qwen tokenizer and vocabulary 151,669 with hidden 256,
4 layers (memory). ``peak_mb`` is the resident memory the first (warm-up) step adds to its process
(VmHWM after resetting it minus VmRSS before: ``conftest.peak_memory_mb`` here, the same reading in
the driver); the reference also keeps its decoder copy resident (``decoder_copy_mb``).

Losses: the reference's loss on the same batch and weights is checked against ours (relative
1e-3) with ours' distillation taken against the package's teacher embeddings, which differ from
our cached ones (sentence-transformers: right padding, 256 tokens, L2-normalised; the package:
left padding, 512 tokens, raw mean pooling). Both sides predict the same answer ids: the ids are
given, so the package's collator's ``"<|end_of_text|>"`` text suffix is not appended on either side.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from bench_reference import _Reference
from bench_reference import pytestmark as needs_refenv
from conftest import peak_memory_mb

from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.teachers import minilm_embed, minilm_path
from llm2vec_gen.tiny import qwen_tokenizer, tiny_qwen3
from llm2vec_gen.train.data import TokenizedData, collate, split_batch
from llm2vec_gen.train.step import step_loss

K, B, TEACHER_DIM = 10, 8, 384
MICRO_BATCH = 2  # examples per micro-batch (`--micro-batch-size 2`): length-sorted pairs pad little
SHAPES = {"a": (8192, 512, 8), "b": (151_669, 256, 4)}
ROUNDS = 3  # timed steps per side, after one untimed warm-up step that also measures the peak
DRIVER = Path(__file__).resolve().parent / "reference_train_driver.py"


def _word_tokenizer(vocab: int):
    """A tokenizer of exactly ``vocab`` tokens ("t0" .. "t{vocab-1}", split on spaces; pad "t0")."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", padding_side="left")


def _setup(shape: str):
    vocab, hidden, layers = SHAPES[shape]
    qwen = qwen_tokenizer()
    tok = qwen if vocab == len(qwen) else _word_tokenizer(vocab)
    llm = tiny_qwen3(vocab, hidden_size=hidden, num_layers=layers, num_heads=8, num_kv_heads=4)
    model = LLM2VecGenModel.from_base(llm, tok, num_special_tokens=K, teacher_dim=TEACHER_DIM, device="cpu")
    rng = random.Random(0)
    queries = [[rng.randrange(vocab) for _ in range(rng.randint(10, 200))] for _ in range(B)]
    answers = [[rng.randrange(vocab) for _ in range(rng.randint(20, 500))] for _ in range(B)]
    data = TokenizedData([str(i) for i in range(B)], queries, answers, answers)
    texts = qwen.batch_decode(answers)  # the teacher's input text
    return model, data, texts, minilm_embed(texts)


def _ours(model, data, teacher, backward: bool = True) -> tuple[float, float]:
    """One step of ours (without ``backward``: only the loss); returns its (CE, distillation)."""
    lengths = data.lengths(K)
    count = sum(len(a) for a in data.labels)
    ce = distill = 0.0
    for micro in split_batch(list(range(B)), lengths, B // MICRO_BATCH):
        batch = collate(data, micro, teacher, pad_id=0)
        out = step_loss(model, batch, ce_count=count, rows=B)
        if backward:
            out.loss.backward()
        ce += float(out.ce_sum) / count
        distill += float(out.distill) * out.rows / B
    return ce, distill


def _train_reference(root: Path, model, data: TokenizedData, texts: list[str]) -> _Reference:
    """The package's training step in its venv (reference_train_driver.py), on our checkpoint of
    ``model`` and the batch ``data``: answers ``peak`` / ``train`` commands."""
    model.llm.save_pretrained(root / "base")
    model.save_pretrained(root / "ckpt", base_model_name_or_path=str(root / "base"))
    batch = {"query_ids": data.query_ids, "answer_ids": data.answer_ids, "answer_texts": texts}
    (root / "batch.json").write_text(json.dumps(batch))
    return _Reference(DRIVER, str(root / "ckpt"), str(root / "batch.json"), "--teacher", str(minilm_path()))


def _check_losses(benchmark, model, data, teacher, reply: dict) -> None:
    """The package's loss against ours on the same batch and weights (see the module docstring)."""
    with torch.no_grad():
        ce, distill = _ours(model, data, torch.tensor(reply["teacher"]), backward=False)
        _, own_distill = _ours(model, data, teacher, backward=False)
    benchmark.extra_info.update(
        reference_loss=reply["loss"], reference_ce=reply["ce"], reference_mse=reply["mse"],
        ours_loss=ce + distill, ours_ce=ce, ours_mse=distill, ours_mse_own_teacher=own_distill,
    )  # fmt: skip
    for name, ref, got in (("CE", reply["ce"], ce), ("MSE", reply["mse"], distill)):
        assert abs(got - ref) <= 1e-3 * abs(ref), f"{name}: ours {got} vs the package's {ref}"


@pytest.mark.parametrize("provider", [pytest.param("reference", marks=needs_refenv), "ours"])
@pytest.mark.parametrize("shape", ["a", "b"])  # varies slowest: the two sides of a shape run back to back
def bench_train_step(benchmark, provider, shape, tmp_path):
    model, data, texts, teacher = _setup(shape)
    vocab, hidden, layers = SHAPES[shape]
    benchmark.group = f"train step B={B} K={K} V={vocab} H={hidden} L={layers} fp32 fwd+bwd"
    real = sum(len(q) + K + len(a) for q, a in zip(data.query_ids, data.answer_ids, strict=True))
    benchmark.extra_info.update(
        provider=provider, baseline=provider == "reference", real_tokens=real,
        threads=torch.get_num_threads(),
        peak_method="resident memory the first step adds to its process: VmHWM (reset) - VmRSS before",
    )  # fmt: skip
    if provider == "ours":
        model.special_rows.requires_grad_(True)

        def step():
            model.zero_grad(set_to_none=True)
            _ours(model, data, teacher)

        model.zero_grad(set_to_none=True)
        peak = peak_memory_mb(lambda: _ours(model, data, teacher))  # also the warm-up
        benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=0, iterations=1)
    else:
        reference = _train_reference(tmp_path, model, data, texts)
        try:
            first = reference.ask("peak")  # also the warm-up
            driver_s = []
            benchmark.pedantic(
                lambda: driver_s.append(reference.ask("train")["s"]),
                rounds=ROUNDS,
                warmup_rounds=0,
                iterations=1,
            )
        finally:
            reference.close()
        peak = first["peak_mb"]
        info = reference.info
        benchmark.extra_info.update(
            driver_s=driver_s, reference_versions=info["versions"], decoder_copy_mb=info["decoder_copy_mb"],
            encoder_table_rows=info["encoder_table_rows"], reference_rss_mb=info["rss_mb"],
        )  # fmt: skip
        _check_losses(benchmark, model, data, teacher, first)
    benchmark.extra_info.update(peak_mb=peak, ms_per_example=benchmark.stats.stats.median * 1000 / B)
