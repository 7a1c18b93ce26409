"""The trainer end to end on tiny models: learning, exact resume, NaN handling, bad input, teach.

Tiny LLMs use the offline all-MiniLM-L6-v2 WordPiece tokenizer (vocab 30,522): a real tokenizer
whose vocabulary keeps CPU steps cheap (the Qwen vocabulary is exercised in test_train_step.py).
"""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from llm2vec_gen.demo import pretrain_lm
from llm2vec_gen.io.records import read_records
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.teachers import minilm_path
from llm2vec_gen.tiny import tiny_qwen3
from llm2vec_gen.train import TrainConfig, Trainer, teach
from llm2vec_gen.train.data import DEMO_CORPUS, collate
from llm2vec_gen.train.state import MARKER, last_checkpoint, load_state
from llm2vec_gen.train.teach import load_teacher_cache

K = 4


def bert_tokenizer():
    return AutoTokenizer.from_pretrained(str(minilm_path()))


def tiny_model(llm=None, teacher_dim=384, seed=0):
    tok = bert_tokenizer()
    llm = llm if llm is not None else tiny_qwen3(len(tok), hidden_size=32, num_layers=1, seed=seed)
    model = LLM2VecGenModel.from_base(llm, tok, num_special_tokens=K, teacher_dim=teacher_dim, device="cpu")
    model.base_model_name_or_path = "tiny-qwen3"
    return model


def random_cache(records, dim=384, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [r["id"] for r in records], torch.randn(len(records), dim, generator=g)


def pretrained_tiny_lm(records, steps=60):
    """A tiny Qwen3 trained briefly as an LM on "query answer" text, so that a soft prompt standing
    for the query can lower its answer CE (a random LLM ignores any prompt)."""
    tok = bert_tokenizer()
    llm = tiny_qwen3(len(tok), hidden_size=64, num_layers=2)
    return pretrain_lm(
        llm, tok, [r["query"] + " " + r["answer"] for r in records], steps=steps, max_length=64
    )


@torch.no_grad()
def mean_ce(trainer, indices):
    from llm2vec_gen.train.step import step_loss

    batch = collate(trainer.data, indices, trainer.teacher, trainer.pad_id)
    out = step_loss(trainer.model, batch, 1, len(indices))
    return out.ce_sum.item() / out.ce_count


def test_short_run_lowers_reconstruction_ce(tmp_path):
    records = read_records(DEMO_CORPUS)[:16]  # a slice of the corpus, seen for 20 epochs
    cache = teach(DEMO_CORPUS, tmp_path / "teacher.safetensors", progress=False)  # real MiniLM teacher
    model = tiny_model(pretrained_tiny_lm(records))
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), lr=3e-2, warmup_steps=3, total_steps=1000,
                      max_steps=40, batch_size=8, max_length=64, save_every=0, progress=False)  # fmt: skip
    trainer = Trainer(model, records, cache, cfg)
    probe = list(range(16))
    before = mean_ce(trainer, probe)
    final = trainer.fit()
    after = mean_ce(trainer, probe)
    assert after <= 0.7 * before, f"CE {before:.3f} -> {after:.3f}"
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert all(r["tokens_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in log)
    reloaded = LLM2VecGenModel.from_pretrained(final, base_model=model.llm, device="cpu")
    torch.testing.assert_close(reloaded.special_rows, model.special_rows)
    torch.testing.assert_close(reloaded.align_head.weight, model.align_head.weight, rtol=0.01, atol=1e-3)


def _run(out_dir, records, cache, steps, resume=True, save_every=2, **kw):
    model = tiny_model()
    cfg = TrainConfig(output_dir=str(out_dir), lr=1e-3, warmup_steps=2, total_steps=10, max_steps=steps,
                      batch_size=6, micro_batch_size=3, max_length=40, save_every=save_every,
                      resume=resume, progress=False, **kw)  # fmt: skip
    trainer = Trainer(model, records, cache, cfg)
    trainer.fit()
    return trainer


def test_resume_is_exact(tmp_path):
    records = read_records(DEMO_CORPUS)[:30]  # 5 batches per epoch: the resumed run crosses an epoch
    cache = random_cache(records)
    straight = _run(tmp_path / "a", records, cache, steps=6, save_every=3)
    _run(tmp_path / "b", records, cache, steps=3, save_every=3)
    (tmp_path / "b" / ".tmp-checkpoint-5").mkdir()  # a torn save is ignored, then cleaned up
    log = tmp_path / "b" / "train_log.jsonl"
    with log.open("a") as f:  # as if killed during step 5: steps 4-5 logged, the last line torn
        f.write(json.dumps({"step": 4}) + "\n" + json.dumps({"step": 5}) + "\n" + '{"step": 6, "lo')
    resumed = _run(tmp_path / "b", records, cache, steps=6, save_every=3)
    assert resumed.step == straight.step == 6
    assert not (tmp_path / "b" / ".tmp-checkpoint-5").exists()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))  # once each: the killed run's 4-5 dropped
    assert all("loss" in r for r in rows)
    for p, q in zip(straight.params, resumed.params, strict=True):
        assert torch.equal(p, q)
    assert last_checkpoint(tmp_path / "b").name == "checkpoint-6"
    s1, s2 = load_state(tmp_path / "a" / "checkpoint-6"), load_state(tmp_path / "b" / "checkpoint-6")
    assert s1["scheduler"] == s2["scheduler"]
    ckpt = tmp_path / "b" / "checkpoint-3"
    (ckpt / MARKER).unlink()  # an incomplete checkpoint is never picked
    (tmp_path / "b" / "checkpoint-6" / MARKER).unlink()
    assert last_checkpoint(tmp_path / "b") is None


def test_nan_steps_are_skipped_then_stop(tmp_path):
    records = read_records(DEMO_CORPUS)[:12]
    model = tiny_model()
    with torch.no_grad():
        model.recon_head.bias.fill_(float("nan"))
    rows = model.special_rows.detach().clone()
    cfg = TrainConfig(output_dir=str(tmp_path), batch_size=4, max_steps=10, save_every=0, max_bad_steps=3,
                      max_length=32, progress=False)  # fmt: skip
    trainer = Trainer(model, records, random_cache(records), cfg)
    with pytest.raises(RuntimeError, match="3 consecutive steps had a NaN/inf"):
        trainer.fit()
    assert trainer.bad_steps == 3 and trainer.step == 3
    assert torch.equal(model.special_rows.detach(), rows)  # no update was applied


def _write_jsonl(path: Path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "rows,match",
    [
        ([{"id": "a", "query": "q"}], "line 1: no field 'answer'"),
        ([{"id": "a", "answer": "x"}], "line 1: no field 'query'"),
        ([{"query": "q", "answer": "x"}], "line 1: no field 'id'"),
        ([{"id": "a", "query": "q", "answer": "   "}], "empty 'answer'"),
        ([{"id": "a", "query": "q", "answer": "x"}, {"id": "a", "query": "r", "answer": "y"}], "repeats id"),
    ],
)
def test_bad_data_fails_before_training(tmp_path, rows, match):
    data = _write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(ValueError, match=match):
        Trainer(tiny_model(), data, (["a"], torch.zeros(1, 384)), TrainConfig(output_dir=str(tmp_path)))


def test_bad_teacher_cache_fails_before_training(tmp_path):
    records = read_records(DEMO_CORPUS)[:8]
    cfg = TrainConfig(output_dir=str(tmp_path), batch_size=4)
    with pytest.raises(ValueError, match="teacher embeddings are 128-d but the alignment head outputs 384-d"):
        Trainer(tiny_model(), records, random_cache(records, dim=128), cfg)
    ids, emb = random_cache(records)
    with pytest.raises(ValueError, match="has no embedding for 2 of 8 training ids"):
        Trainer(tiny_model(), records, (ids[2:] + ["x", "y"], emb), cfg)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(tiny_model(), records, (ids, emb), TrainConfig(output_dir=str(tmp_path), batch_size=16))
    assert not list(tmp_path.iterdir())  # nothing was written


def test_teach_hf_encoder_mean_pooling_matches_sentence_transformers(tmp_path):
    rows = read_records(DEMO_CORPUS)[:5]
    data = _write_jsonl(tmp_path / "d.jsonl", [{"id": r["id"], "answer": r["answer"]} for r in rows])
    st = teach(data, tmp_path / "st.safetensors", teacher="minilm", progress=False)
    hf = teach(data, tmp_path / "hf.safetensors", teacher=str(minilm_path()), pooling="mean", progress=False)
    ids, a = load_teacher_cache(st)
    ids2, b = load_teacher_cache(hf)
    assert ids == ids2 == [r["id"] for r in rows] and a.shape == (5, 384)
    torch.testing.assert_close(a, torch.nn.functional.normalize(b, dim=-1), rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    records = read_records(DEMO_CORPUS)[:12]
    cache = random_cache(records)
    plain = _run(tmp_path / "plain", records, cache, steps=1, save_every=0)
    ckpt = _run(tmp_path / "ckpt", records, cache, steps=1, save_every=0, gradient_checkpointing=True)
    assert ckpt.model.llm.is_gradient_checkpointing and not ckpt.model.llm.training
    for p, q in zip(plain.params, ckpt.params, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)
