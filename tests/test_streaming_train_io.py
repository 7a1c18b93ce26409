"""``respond``, ``teach`` and sharded ``encode`` on large inputs: streamed, resumable after SIGKILL.

- real CLI subprocesses of ``respond`` and ``teach`` on a tiny Qwen3 (the WordPiece tokenizer of
  MiniLM; the same directory is the mean-pooled teacher) are SIGKILLed at two points and rerun:
  the result equals an uninterrupted run row for row, with every id once, and finished rows are
  neither recomputed nor rewritten. The peak RSS of the work (model loading excluded) for 2,000
  and 20,000 input lines shows memory does not grow with the file;
- in-process crashes (an exception from the model) at chosen batches, a stale progress sidecar,
  an older output written without one, and the input checks of the streaming record reader;
- ``encode_file_distributed`` on two gloo ranks equals the single-process result, in input order.

This module imports nothing heavy at the top: spawned children import it to find ``_shard_worker``.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runs import finish, kill_when, spawn

from llm2vec_gen.io import embeddings, texts
from llm2vec_gen.io.chunks import MANIFEST, ChunkStore, parts_dir

RESPOND = importlib.import_module("llm2vec_gen.train.respond")  # the package re-exports the function
GENERATE = RESPOND.generate_answers
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")
ROWS, LARGE, NOTES = 2000, 20000, 1200
# The work whose memory the CLI runs measure (model loading excluded): respond's loop, and teach's
# windows (llm2vec_gen.io.stream.encode_file drives them; teach imports it by name).
MEASURED = ("llm2vec_gen.train.respond:respond", "llm2vec_gen.train.teach:encode_file")


def _run(argv: list[str], log: Path) -> subprocess.Popen:
    return spawn(argv, log, *MEASURED)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny Qwen3 causal LM with MiniLM's WordPiece tokenizer, saved as a transformers directory."""
    from transformers import AutoTokenizer

    from llm2vec_gen.teachers import minilm_path
    from llm2vec_gen.tiny import tiny_qwen3

    root = tmp_path_factory.mktemp("stream_base") / "base"
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    tiny_qwen3(len(tok), hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, seed=0).save_pretrained(
        root
    )
    tok.save_pretrained(root)
    return root


def _write(path: Path, rows: int, field: str, width: int = 300, start: int = 0, notes: int = 0) -> Path:
    """JSON lines {id, field, notes}: texts of up to ``width`` characters that differ row by row, and
    ``notes`` characters of a field the commands do not read (inputs often carry more columns)."""
    with path.open("a", encoding="utf-8") as f:
        for i in range(start, start + rows):
            words = " ".join(WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(i % 60 + 1))
            row = {"id": f"r{i}", field: f"{i}: {words}"[:width], "notes": f"{i} " * (notes // 6)}
            f.write(json.dumps(row) + "\n")
    return path


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _answers(path: Path) -> list[dict]:
    """The whole rows of a respond output (a torn last line left by a kill is ignored)."""
    rows = []
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        rows.append(json.loads(line))
    return rows


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _check_memory(what: str, rss_small: int, rss_large: int, small: Path, large: Path) -> None:
    sizes = f"{small.stat().st_size >> 10} KiB and {large.stat().st_size >> 10} KiB of input"
    print(f"{what}: RSS growth during the work {rss_small} KiB and {rss_large} KiB for {sizes}")
    assert rss_large < 1.5 * rss_small + 16 * 1024, f"{what}: RSS grew {rss_large} KiB vs {rss_small} KiB"


# ------------------------------------------------------------------------------------ respond


def _respond_argv(base: Path, source: Path, out: Path) -> list[str]:
    return ["respond", str(base), str(source), str(out), "--batch-size", "32", "--max-new-tokens", "2",
            "--max-length", "16", "--window", "256", "--device", "cpu"]  # fmt: skip


def test_respond_sigkill_twice_then_resume_equals_uninterrupted_and_memory_is_flat(base, tmp_path):
    small = _write(tmp_path / "queries.jsonl", ROWS, "query", notes=NOTES)
    ref = tmp_path / "ref.jsonl"
    ref_stdout, rss_small = finish(_run(_respond_argv(base, small, ref), tmp_path / "ref"), tmp_path / "ref")
    assert f"wrote {ROWS} answers" in ref_stdout
    expected = {r["id"]: r["answer"] for r in _answers(ref)}
    assert len(expected) == ROWS

    out = tmp_path / "out.jsonl"
    sidecar = RESPOND.progress_path(out)
    kill_points = [  # after the first batch (window 0 unfinished); in window 2, after two commits
        lambda: _lines(out) >= 32,
        lambda: (_json(sidecar) or {}).get("windows", 0) >= 2 and _lines(out) >= 2 * 256 + 32,
    ]
    for attempt, ready in enumerate(kill_points):
        kill_when(_run(_respond_argv(base, small, out), tmp_path / f"kill{attempt}"), ready)
        rows = _answers(out)
        assert len({r["id"] for r in rows}) == len(rows), "a row was written twice"
        assert all(expected[r["id"]] == r["answer"] for r in rows)
    before = len(_answers(out))
    assert 2 * 256 + 32 <= before < ROWS

    stdout, _ = finish(_run(_respond_argv(base, small, out), tmp_path / "final"), tmp_path / "final")
    assert f"wrote {ROWS - before} answers" in stdout  # rows finished before the kills were not redone
    rows = _answers(out)
    assert len(rows) == ROWS and {r["id"]: r["answer"] for r in rows} == expected
    assert _lines(out) == ROWS  # no torn line left behind
    print(f"respond kills at {before} of {ROWS} rows; resumed run wrote {ROWS - before}")

    large = _write(tmp_path / "large.jsonl", LARGE, "query", notes=NOTES)
    stdout, rss_large = finish(
        _run(_respond_argv(base, large, tmp_path / "large.out.jsonl"), tmp_path / "large"),
        tmp_path / "large",
    )
    assert f"wrote {LARGE} answers" in stdout
    _check_memory("respond", rss_small, rss_large, small, large)


@pytest.fixture(scope="module")
def llm(base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(base).eval(), AutoTokenizer.from_pretrained(base)


class _Crash(RuntimeError):
    """Stands for a kill: raised by the generation instead of answering."""


def _counting(monkeypatch, crash_at: int | None = None) -> list[int]:
    """Counts the queries answered by each ``generate_answers`` call; raises _Crash at call ``crash_at``."""
    calls: list[int] = []
    real = GENERATE

    def generate(model, tokenizer, queries, *args):
        if crash_at is not None and len(calls) == crash_at:
            raise _Crash
        calls.append(len(queries))
        return real(model, tokenizer, queries, *args)

    monkeypatch.setattr(RESPOND, "generate_answers", generate)
    return calls


def _respond(llm, src: Path, out: Path, **kw) -> int:
    model, tok = llm
    return RESPOND.respond(model, tok, src, out, max_new_tokens=2, max_length=16, progress=False, **kw)


@pytest.mark.parametrize("crashes", [[1, 3], [4, 0, 2]])  # batch calls at which successive runs die
def test_respond_crashes_recompute_nothing(llm, tmp_path, monkeypatch, crashes):
    src = _write(tmp_path / "q.jsonl", 37, "query", width=80)
    kw = {"batch_size": 3, "window": 7}  # windows of 7: batches 3 + 3 + 1, the last window of 2
    ref = tmp_path / "ref.jsonl"
    assert _respond(llm, src, ref, **kw) == 37
    answered = 0
    for crash_at in crashes:
        calls = _counting(monkeypatch, crash_at)
        with pytest.raises(_Crash):
            _respond(llm, src, tmp_path / "out.jsonl", **kw)
        answered += sum(calls)
        assert len(_answers(tmp_path / "out.jsonl")) == answered
    calls = _counting(monkeypatch)
    assert _respond(llm, src, tmp_path / "out.jsonl", **kw) == 37 - answered == sum(calls)
    assert _answers(tmp_path / "out.jsonl") == _answers(ref)  # same rows, same order
    assert _respond(llm, src, tmp_path / "out.jsonl", **kw) == 0 and sum(calls) == 37 - answered


def test_respond_without_a_matching_sidecar_reads_every_id(llm, tmp_path, monkeypatch):
    """An output from before the sidecar (or for another input) is trusted by id: nothing twice."""
    src = _write(tmp_path / "q.jsonl", 20, "query", width=80)
    kw = {"batch_size": 2, "window": 5}
    ref = tmp_path / "ref.jsonl"
    _respond(llm, src, ref, **kw)
    expected = {r["id"]: r["answer"] for r in _answers(ref)}
    out = tmp_path / "out.jsonl"
    old = [r for r in _answers(ref) if int(r["id"][1:]) % 3 == 0]  # rows of every window, no sidecar
    out.write_text("".join(json.dumps(r) + "\n" for r in old) + '{"id": "r1", "qu')
    calls = _counting(monkeypatch, crash_at=3)
    with pytest.raises(_Crash):
        _respond(llm, src, out, **kw)
    assert _json(RESPOND.progress_path(out))["legacy_bytes"] > 0  # the old rows are read on resume
    calls = _counting(monkeypatch)
    _respond(llm, src, out, **kw)
    rows = _answers(out)
    assert sorted(r["id"] for r in rows) == sorted(expected) and len(rows) == 20
    assert {r["id"]: r["answer"] for r in rows} == expected
    # The input grows: the sidecar no longer matches, every id in the output counts as done.
    _write(src, 4, "query", width=80, start=20)
    calls = _counting(monkeypatch)
    assert _respond(llm, src, out, **kw) == 4 == sum(calls)
    assert sorted(r["id"] for r in _answers(out)) == sorted([*expected, "r20", "r21", "r22", "r23"])


def test_respond_redoes_a_last_row_cut_before_its_newline(llm, tmp_path):
    src = _write(tmp_path / "q.jsonl", 5, "query", width=80)
    ref = tmp_path / "ref.jsonl"
    _respond(llm, src, ref, batch_size=2)
    rows = _answers(ref)
    out = tmp_path / "out.jsonl"  # the kill landed after the last row's "}", before its "\n"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + json.dumps(rows[2]))
    assert _respond(llm, src, out, batch_size=2) == 3
    assert sorted(map(json.dumps, _answers(out))) == sorted(map(json.dumps, rows)) and _lines(out) == 5


BAD_INPUTS = [
    (
        b'{"id": "a", "query": "x"}\n{"id": "b", "query": "y"}\n{"id": "a", "query": "z"}\n',
        "line 3 repeats id 'a'",
    ),
    (b'{"id": "a", "query": "x"}\n{"id": "b"}\n', "line 2: no field 'query'"),
    (b'{"id": "a", "query": "x"}\n{"id": "b", "query": "  "}\n', "line 2 (id b) has an empty 'query'"),
    (b'{"id": "a", "query": "x"}\n{"id": "b", "query": "\xff"}\n', "line 2 is not valid UTF-8"),
    (
        b'{"id": "a", "query": "x"}\n{"id": "b", "query": ' + b"1" * (17 << 20) + b"}\n",
        "line 2 is longer than",
    ),
    (b'{"id": "a", "query": "x"}\n[1]\n', "line 2 is a JSON list"),
    (b"", "no rows"),
]


@pytest.mark.parametrize(("content", "message"), BAD_INPUTS)
def test_streamed_records_name_the_bad_line(tmp_path, content, message):
    from llm2vec_gen.io.records import iter_records

    src = tmp_path / "q.jsonl"
    src.write_bytes(content)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(iter_records(src, ("id", "query")))


def test_streamed_records_csv_parquet_and_renamed_fields(tmp_path):
    import pandas as pd

    from llm2vec_gen.io.records import iter_records, read_records

    rows = [{"key": i, "q": f"query {i}", "other": i * 2} for i in range(5)]
    pd.DataFrame(rows).to_csv(tmp_path / "q.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "q.parquet")
    names = {"id": "key", "query": "q"}
    for name in ("q.csv", "q.parquet"):
        got = list(iter_records(tmp_path / name, ("id", "query"), names))
        assert got == read_records(tmp_path / name, ("id", "query"), names)
        assert got[4] == {"id": "4", "query": "query 4"}
    with pytest.raises(ValueError, match="no field 'answer'"):
        list(iter_records(tmp_path / "q.parquet", ("id", "answer"), {"id": "key"}))
    with pytest.raises(FileNotFoundError, match="none.jsonl: no such file"):
        iter_records(tmp_path / "none.jsonl")


def test_cli_respond_duplicate_id_exits_2_with_one_line(base, tmp_path, capsys):
    from llm2vec_gen.cli import main

    src = tmp_path / "q.jsonl"
    src.write_bytes(BAD_INPUTS[0][0])
    argv = [
        "respond",
        str(base),
        str(src),
        str(tmp_path / "o.jsonl"),
        "--window",
        "1",
        "--max-new-tokens",
        "1",
    ]
    assert main(argv) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the loading and progress bars
    assert last.startswith("llm2vec-gen respond: error: ") and "line 3 repeats id 'a'" in last
    assert len(_answers(tmp_path / "o.jsonl")) == 2  # the rows before the bad line are kept


# ------------------------------------------------------------------------------------ teach


def _teach_argv(base: Path, source: Path, out: Path, window: int = 100) -> list[str]:
    return ["teach", str(source), str(out), "--teacher", str(base), "--pooling", "mean", "--batch-size",
            "32", "--max-length", "16", "--window", str(window), "--device", "cpu"]  # fmt: skip


def _chunks(store: Path) -> int:
    return (_json(store / MANIFEST) or {}).get("chunks", 0)


def _chunk_stamps(out: Path, manifest: dict) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of each committed chunk file of ``out``'s store, after checking it is whole."""
    stamps = {}
    chunk_file = ChunkStore(out).chunk_file
    for index in range(manifest["chunks"]):
        ids = json.loads(chunk_file(index, "ids").read_text())
        assert np.load(chunk_file(index, "emb")).shape == (len(ids), 16) == (100, 16)
        for kind in ("emb", "ids"):
            stat = chunk_file(index, kind).stat()
            stamps[f"{index}.{kind}"] = (stat.st_ino, stat.st_mtime_ns)
    return stamps


def test_teach_sigkill_twice_then_resume_equals_uninterrupted_and_memory_is_flat(base, tmp_path):
    from safetensors import safe_open

    from llm2vec_gen.train.teach import load_teacher_cache

    small = _write(tmp_path / "answers.jsonl", ROWS, "answer", notes=NOTES)
    ref = tmp_path / "ref.safetensors"
    _, rss_small = finish(_run(_teach_argv(base, small, ref), tmp_path / "ref"), tmp_path / "ref")
    ref_ids, ref_emb = load_teacher_cache(ref)
    assert ref_ids == [f"r{i}" for i in range(ROWS)] and ref_emb.shape == (ROWS, 16)

    out = tmp_path / "cache.safetensors"
    store = parts_dir(out)
    stamps: dict[str, tuple[int, int]] = {}
    committed = 0
    for attempt, more in enumerate([1, 3]):
        target = committed + more
        ready = lambda target=target: _chunks(store) >= target  # noqa: E731
        kill_when(_run(_teach_argv(base, small, out), tmp_path / f"kill{attempt}"), ready)
        manifest = _json(store / MANIFEST)
        assert not out.exists() and not manifest["done"] and manifest["chunks"] >= target
        now = _chunk_stamps(out, manifest)
        assert all(now[name] == stamp for name, stamp in stamps.items()), "a committed window was redone"
        stamps, committed = now, manifest["chunks"]
    finish(_run(_teach_argv(base, small, out), tmp_path / "final"), tmp_path / "final")
    ids, emb = load_teacher_cache(out)
    assert ids == ref_ids and len(set(ids)) == ROWS
    torch.testing.assert_close(emb, ref_emb, rtol=0, atol=1e-6)
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert {k: v for k, v in meta.items() if k not in ("ids", "source")} == {
        "teacher": str(base),
        "pooling": "mean",
    }
    assert json.loads(meta["source"])["input"] == str(small.resolve())
    assert not store.exists()
    print(f"teach kills after {committed} of {ROWS // 100} windows committed")

    large = _write(tmp_path / "large.jsonl", LARGE, "answer", notes=NOTES)
    _, rss_large = finish(
        _run(_teach_argv(base, large, tmp_path / "large.safetensors"), tmp_path / "large"),
        tmp_path / "large",
    )
    assert load_teacher_cache(tmp_path / "large.safetensors")[1].shape == (LARGE, 16)
    _check_memory("teach", rss_small, rss_large, small, large)


def test_teach_crash_resumes_and_changed_input_starts_over(base, tmp_path, monkeypatch):
    from llm2vec_gen.train import teach as teach_fn
    from llm2vec_gen.train.teach import HFTeacher, load_teacher_cache

    src = _write(tmp_path / "a.jsonl", 23, "answer", width=80)
    kw = {"teacher": str(base), "pooling": "mean", "batch_size": 4, "max_length": 16, "progress": False}
    ref_ids, ref_emb = load_teacher_cache(teach_fn(src, tmp_path / "ref.safetensors", window=5, **kw))
    calls: list[int] = []
    real = HFTeacher.encode

    def encode(self, texts):
        if len(calls) == limit:
            raise _Crash
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(HFTeacher, "encode", encode)
    out = tmp_path / "out.safetensors"
    limit = 5  # windows of 5 answers are 2 batches: dies in window 2 (windows 0 and 1 committed)
    with pytest.raises(_Crash):
        teach_fn(src, out, window=5, **kw)
    assert _json(parts_dir(out) / MANIFEST)["chunks"] == 2
    calls.clear()
    limit = None
    teach_fn(src, out, window=5, **kw)
    assert sum(calls) == 23 - 10  # the two committed windows were not embedded again
    ids, emb = load_teacher_cache(out)
    assert ids == ref_ids
    torch.testing.assert_close(emb, ref_emb, rtol=0, atol=1e-6)

    calls.clear()
    teach_fn(src, out, window=5, **kw)  # the finished cache of this input: nothing embedded
    assert calls == []
    limit = 2  # a fresh run killed, then the input changes: the stale windows are dropped, not mixed in
    with pytest.raises(_Crash):
        teach_fn(src, out, window=5, resume=False, **kw)
    _write(src, 2, "answer", width=80, start=23)
    calls.clear()
    limit = None
    ids, emb = load_teacher_cache(teach_fn(src, out, window=5, **kw))
    assert sum(calls) == 25 and ids == [*ref_ids, "r23", "r24"]
    torch.testing.assert_close(emb[:23], ref_emb, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="use a .safetensors file"):
        teach_fn(src, tmp_path / "cache.npy", **kw)


# ----------------------------------------------------------------------- sharded encode (torchrun)


class _RankEncoder:
    """Stand-in encoder: row i is [len(text), first char code, rank that encoded it]."""

    embedding_dim = 3

    def __init__(self, rank: int):
        self.rank = rank

    def encode(self, texts):
        return np.array([[len(t), ord(t[0]), self.rank] for t in texts], np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_worker(rank: int, world_size: int, port: int, src: str, out: str) -> None:
    import torch.distributed as dist

    from llm2vec_gen.integrations.distributed import encode_file_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        n = encode_file_distributed(
            _RankEncoder(rank).encode, src, f"{out}/shards", f"{out}/two.npz", dim=3, chunk_rows=4
        )
        assert n == 23
    finally:
        dist.destroy_process_group()


def test_streamed_shards_merge_in_input_order_like_one_process(tmp_path):
    import torch.multiprocessing as mp

    from llm2vec_gen.integrations.distributed import encode_file_distributed

    src = tmp_path / "in.txt"  # no ids: every rank numbers its records from the file's first line
    src.write_text("".join(chr(ord("a") + i % 26) * (i + 1) + "\n" for i in range(23)))
    assert [c for c in texts.iter_texts(src, chunk_rows=4, start=9, stop=14)] == [
        (["9", "10", "11", "12"], ["j" * 10, "k" * 11, "l" * 12, "m" * 13]),
        (["13"], ["n" * 14]),
    ]
    mp.spawn(_shard_worker, args=(2, _free_port(), str(src), str(tmp_path)), nprocs=2, join=True)
    one = encode_file_distributed(
        _RankEncoder(0).encode, src, tmp_path / "s1", tmp_path / "one.npz", dim=3, chunk_rows=4
    )
    assert one == 23
    ids, two = embeddings.read_embeddings(tmp_path / "two.npz")
    ids1, single = embeddings.read_embeddings(tmp_path / "one.npz")
    assert ids == ids1 == [str(i) for i in range(23)]
    np.testing.assert_array_equal(two[:, :2], single[:, :2])
    np.testing.assert_array_equal(two[:, 0], np.arange(1, 24))  # input order
    np.testing.assert_array_equal(two[:, 2], [0] * 11 + [1] * 12)  # contiguous shards 11 + 12
    assert not (tmp_path / "shards").exists() and not (tmp_path / "s1").exists()


class _ConstantTeacher:
    """A teacher without a model: every answer embeds to the same 8 numbers."""

    embedding_dim = 8

    def encode(self, texts):
        return torch.ones(len(texts), self.embedding_dim)


def _python_peak(fn) -> int:
    """Peak bytes of Python objects allocated while ``fn`` runs (tracemalloc: deterministic)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_python_memory_of_respond_and_teach_does_not_follow_the_file(tmp_path, monkeypatch):
    """The objects respond and teach hold for 20,000 lines stay near those for 2,000 (only the id set
    grows) and far below what reading the file's rows into memory costs: exact numbers, not RSS."""
    from llm2vec_gen.io.rows import iter_rows

    teach = importlib.import_module("llm2vec_gen.train.teach")
    monkeypatch.setattr(RESPOND, "generate_answers", lambda model, tok, queries, *a: ["ok"] * len(queries))
    monkeypatch.setattr(teach, "load_teacher", lambda *a, **k: _ConstantTeacher())
    peaks = {}
    for rows in (ROWS, LARGE):
        src = _write(tmp_path / f"in{rows}.jsonl", rows, "query", notes=NOTES)
        answers = tmp_path / f"answers{rows}.jsonl"
        kw = {"window": 500, "progress": False}
        peaks["respond", rows] = _python_peak(lambda: RESPOND.respond(None, None, src, answers, **kw))  # noqa: B023
        cache = tmp_path / f"teacher{rows}.safetensors"
        peaks["teach", rows] = _python_peak(lambda: teach.teach(answers, cache, **kw))  # noqa: B023
        assert teach.load_teacher_cache(cache)[1].shape == (rows, 8)
    whole = _python_peak(lambda: list(iter_rows(src)))  # the file's rows in memory: what streaming avoids
    print({k: f"{v / 2**20:.1f} MiB" for k, v in peaks.items()}, f"whole file {whole / 2**20:.1f} MiB")
    for what in ("respond", "teach"):
        small, large = peaks[what, ROWS], peaks[what, LARGE]
        # 18,000 more ids: ~170 bytes each (duplicate-id set, id lists), the rest is one window
        assert large - small < 6 * 2**20, f"{what}: {small} -> {large} bytes"
        assert large < whole / 4, f"{what}: {large} bytes vs {whole} for the whole file"


def test_teach_rerun_on_its_finished_cache_returns_at_once(tmp_path, monkeypatch):
    """A finished cache of the same input and teacher is kept as is; a changed input is redone."""
    teach = importlib.import_module("llm2vec_gen.train.teach")
    src = _write(tmp_path / "answers.jsonl", 30, "answer")
    cache = tmp_path / "teacher.safetensors"
    loads = []

    def load(*args, **kwargs):
        loads.append(args)
        return _ConstantTeacher()

    monkeypatch.setattr(teach, "load_teacher", load)
    teach.teach(src, cache, window=7, progress=False)
    before = cache.stat().st_mtime_ns
    teach.teach(src, cache, window=7, progress=False)
    assert len(loads) == 1 and cache.stat().st_mtime_ns == before
    teach.teach(src, cache, window=7, progress=False, teacher="other")  # another teacher: redone
    assert len(loads) == 2
    _write(src, 5, "answer", start=30)  # the input grew: redone, with the new rows
    teach.teach(src, cache, window=7, progress=False, teacher="other")
    assert len(loads) == 3 and teach.load_teacher_cache(cache)[1].shape == (35, 8)
