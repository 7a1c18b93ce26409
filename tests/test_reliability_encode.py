"""Streaming, resumable ``llm2vec-gen encode``: kills lose and duplicate nothing, memory does not
grow with the input, malformed input fails naming its line.

Three layers:
- real subprocesses of the CLI on a tiny checkpoint (and the peak memory of encoding 2,000 vs
  20,000 lines: reading the whole file would grow it ~10x; streaming keeps it flat), SIGKILLed
  once 1, then 3 more chunks are committed, and resumed with --resume; the result equals an
  uninterrupted run row for row;
- the chunk store driven in-process by a deterministic stand-in model, with crashes injected before
  a commit, torn files left where a kill leaves them, and kills during the merge (a hypothesis
  property over chunk sizes and crash points);
- malformed inputs: non-UTF-8 bytes, enormous lines, bad JSON, missing fields.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cli_runs import finish, kill_when, spawn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm2vec_gen.cli import main
from llm2vec_gen.io import InputError, iter_texts, read_embeddings, read_texts, rows, stream
from llm2vec_gen.io.chunks import MANIFEST, ChunkStore, parts_dir
from llm2vec_gen.io.embeddings import OUTPUT_SUFFIXES

WORDS = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
)
# Runs the CLI; the peak RSS of the encoding phase alone is measured by resetting the kernel's
# high-water mark (/proc/self/clear_refs, 5) once the model is loaded and reading VmHWM at the end
# (getrusage's ru_maxrss cannot be reset and is dominated by the model load). ru_maxrss is printed too.
# The work whose memory the CLI runs measure (model loading excluded).
MEASURED = "llm2vec_gen.io.stream:encode_file"
CHUNK_ROWS = 40


def _write_corpus(path: Path, rows: int, width: int) -> Path:
    """JSON lines {id, text}; texts of ``width`` characters that differ row by row."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            text = " ".join(WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(width // 4))
            f.write(json.dumps({"id": f"doc-{i}", "text": f"{i}: {text}"[:width]}) + "\n")
    return path


def _argv(ckpt: Path, source: Path, out: Path, *extra: str) -> list[str]:
    return ["encode", str(ckpt), str(source), str(out), "--max-length", "16", "--batch-size", "20", *extra]


def _manifest(store: Path) -> dict | None:
    try:
        return json.loads((store / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _kill_after(proc: subprocess.Popen, store: Path, chunks: int) -> dict:
    """SIGKILL ``proc`` as soon as its manifest lists ``chunks`` chunks; the manifest it left."""
    kill_when(proc, lambda: (_manifest(store) or {"chunks": -1})["chunks"] >= chunks)
    return _manifest(store)


def _committed_files(out: Path, manifest: dict) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of each committed chunk file of ``out``'s store, after checking it is whole."""
    stamps = {}
    total = 0
    chunk_file = ChunkStore(out).chunk_file
    for index in range(manifest["chunks"]):
        emb = np.load(chunk_file(index, "emb"))
        ids = json.loads(chunk_file(index, "ids").read_text())
        assert emb.shape[0] == len(ids) == CHUNK_ROWS
        total += len(ids)
        for kind in ("emb", "ids"):
            stat = chunk_file(index, kind).stat()
            stamps[f"{index}.{kind}"] = (stat.st_ino, stat.st_mtime_ns)
    assert manifest["rows"] == total
    return stamps


def test_sigkill_then_resume_equals_uninterrupted_run_and_memory_is_flat(ckpt, tmp_path):
    rows = 2000
    small = _write_corpus(tmp_path / "small.jsonl", rows, 300)
    chunked = ["--chunk-rows", str(CHUNK_ROWS)]
    ref_out = tmp_path / "ref.npy"
    ref_log = tmp_path / "ref"
    ref_stdout, rss_small = finish(spawn(_argv(ckpt, small, ref_out, *chunked), ref_log, MEASURED), ref_log)
    assert f"encoded {rows} texts in {rows // CHUNK_ROWS} chunks" in ref_stdout
    ref_ids, ref_emb = read_embeddings(ref_out)

    out = tmp_path / "emb.npy"
    store = parts_dir(out)
    stamps: dict[str, tuple[int, int]] = {}
    committed = 0
    for attempt, more in enumerate([1, 3]):
        extra = chunked + (["--resume"] if attempt else [])
        log = tmp_path / f"kill{attempt}"
        manifest = _kill_after(spawn(_argv(ckpt, small, out, *extra), log, MEASURED), store, committed + more)
        assert not out.exists() and not manifest["done"]
        now = _committed_files(out, manifest)
        assert all(now[name] == stamp for name, stamp in stamps.items()), "a committed chunk was rewritten"
        assert manifest["chunks"] >= committed + more
        stamps, committed = now, manifest["chunks"]
    log = tmp_path / "final"
    stdout, _ = finish(spawn(_argv(ckpt, small, out, *chunked, "--resume"), log, MEASURED), log)
    assert f"{committed * CHUNK_ROWS} resumed" in stdout
    ids, emb = read_embeddings(out)
    assert ids == ref_ids == [f"doc-{i}" for i in range(rows)] and len(set(ids)) == rows
    np.testing.assert_array_equal(emb, ref_emb)
    assert not store.exists()

    # Memory: a 10x larger input of the same lines must not raise the peak RSS with its size.
    large = _write_corpus(tmp_path / "large.jsonl", 10 * rows, 300)
    log = tmp_path / "large"
    _, rss_large = finish(spawn(_argv(ckpt, large, tmp_path / "large.npy", *chunked), log, MEASURED), log)
    sizes = f"{small.stat().st_size >> 10} KiB and {large.stat().st_size >> 10} KiB of input"
    print(f"encode-phase RSS growth: {rss_small} KiB and {rss_large} KiB for {sizes}")
    assert rss_large < 1.5 * rss_small + 16 * 1024, f"RSS grew {rss_large} KiB vs {rss_small} KiB"


# ------------------------------------------------------------------ the store, with a stand-in model


class Crash(RuntimeError):
    """Stands for a kill: raised by the stand-in model instead of encoding."""


class StandInModel:
    """Deterministic encode: each text's vector is derived from its hash; counts the texts it encodes."""

    def __init__(self, crash_at_call: int | None = None):
        self.crash_at_call, self.calls, self.texts = crash_at_call, 0, 0

    def encode(self, texts, return_recon_states=False):
        if self.crash_at_call is not None and self.calls == self.crash_at_call:
            raise Crash
        self.calls += 1
        self.texts += len(texts)
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little") for t in texts]
        emb = np.stack([np.random.default_rng(s).standard_normal(5) for s in seeds]).astype(np.float32)
        recon = np.repeat(emb[:, :3, None], 2, axis=2).transpose(0, 2, 1).copy()
        return (emb, recon) if return_recon_states else emb


def _encode_file(model: StandInModel, source: Path, out: Path, recon_output=None, instruction=None, **kwargs):
    """``stream.encode_file`` driving the stand-in model as the CLI drives the real one (its options
    recorded as settings)."""
    return stream.encode_file(
        lambda texts: model.encode(texts, recon_output is not None), source, out, dim=5,
        recon_output=recon_output, recon_shape=(2, 3), settings={"instruction": instruction}, **kwargs,
    )  # fmt: skip


def _tear(store: Path, manifest: dict) -> None:
    """What a SIGKILL between a chunk's writes and its manifest entry leaves: a torn temporary
    file and a half-written chunk file the manifest does not name."""
    index = manifest["chunks"]
    (store / f".chunk-{index:06d}.npy.tmp").write_bytes(b"\x93NUMPY torn")
    (store / f"chunk-{index:06d}.npy").write_bytes(b"\x93NUMPY half")
    (store / f".{MANIFEST}.tmp").write_text('{"format": 1, "chunks": ')


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(0, 60),
    chunk_rows=st.integers(1, 17),
    crashes=st.lists(st.integers(0, 5), max_size=3),
    suffix=st.sampled_from(OUTPUT_SUFFIXES),
    recon=st.booleans(),
)
def test_crash_and_resume_property(rows, chunk_rows, crashes, suffix, recon):
    """Any sequence of crashes then resumes ends with exactly the uninterrupted output, and no
    chunk is encoded twice once committed."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "in.txt"
        source.write_text("".join(f"text {i} {WORDS[i % len(WORDS)]}\n" for i in range(rows)))
        kwargs = dict(chunk_rows=chunk_rows)
        ref = StandInModel()
        _encode_file(
            ref, source, tmp / f"ref{suffix}", recon_output=tmp / "ref_recon.npy" if recon else None, **kwargs
        )
        out, recon_out = tmp / f"out{suffix}", (tmp / "recon.npy" if recon else None)
        store = parts_dir(out)
        encoded = 0
        for attempt, crash_at in enumerate(crashes):
            model = StandInModel(crash_at_call=crash_at)
            try:
                _encode_file(model, source, out, resume=attempt > 0, recon_output=recon_out, **kwargs)
            except Crash:
                _tear(store, _manifest(store))
                assert _manifest(store)["rows"] == encoded + model.texts
            else:
                assert not store.exists()
            encoded += model.texts
            if out.exists():
                break
        if not out.exists():
            model = StandInModel()
            result = _encode_file(model, source, out, resume=True, recon_output=recon_out, **kwargs)
            encoded += model.texts
            assert result.rows == rows
        assert encoded == rows, "rows were encoded twice or skipped"
        ids, emb = read_embeddings(out)
        ref_ids, ref_emb = read_embeddings(tmp / f"ref{suffix}")
        assert ids == ref_ids == [str(i) for i in range(rows)]
        np.testing.assert_array_equal(emb, ref_emb)
        if recon:
            np.testing.assert_array_equal(np.load(recon_out), np.load(tmp / "ref_recon.npy"))
        assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []


def test_kill_during_merge_resumes_by_merging(tmp_path, monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"x{i}", "text": f"t{i}"}) + "\n" for i in range(23)))
    out = tmp_path / "emb.parquet"
    real = stream.write_embeddings_stream

    def killed(path, parts, rows, dim):
        Path(path).with_name(f".{Path(path).name}.tmp").write_bytes(b"PAR1 torn")
        raise Crash

    monkeypatch.setattr(stream, "write_embeddings_stream", killed)
    with pytest.raises(Crash):
        _encode_file(StandInModel(), source, out, chunk_rows=5)
    assert _manifest(parts_dir(out))["done"] and not out.exists()
    monkeypatch.setattr(stream, "write_embeddings_stream", real)
    model = StandInModel()
    result = _encode_file(model, source, out, chunk_rows=5, resume=True)
    assert model.texts == 0 and result.rows == 23 and result.resumed_rows == 23
    ids, emb = read_embeddings(out)
    assert ids == [f"x{i}" for i in range(23)]
    np.testing.assert_array_equal(emb, StandInModel().encode([f"t{i}" for i in range(23)]))


def test_resume_refuses_changed_input_or_settings(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line {i}\n" for i in range(12)))
    out = tmp_path / "emb.npy"
    with pytest.raises(Crash):
        _encode_file(StandInModel(crash_at_call=1), source, out, chunk_rows=4)
    with pytest.raises(ValueError, match=r"chunk_rows: 4 -> 5"):
        _encode_file(StandInModel(), source, out, chunk_rows=5, resume=True)
    with pytest.raises(ValueError, match=r"instruction: None -> 'q: '"):
        _encode_file(StandInModel(), source, out, chunk_rows=4, resume=True, instruction="q: ")
    with source.open("a") as f:
        f.write("appended\n")
    with pytest.raises(ValueError, match="input_bytes"):
        _encode_file(StandInModel(), source, out, chunk_rows=4, resume=True)
    model = StandInModel()  # without --resume: start over
    assert _encode_file(model, source, out, chunk_rows=4).rows == 13 and model.texts == 13


# --------------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.txt", b"ok\nfine\nbad \xff\xfe byte\n", r"line 3 is not valid UTF-8 \(byte 4"),
        ("a.jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n', "line 2 is not valid UTF-8"),
        ("a.csv", b'id,text\n1,a\n2,"multi\nline"\n3,\xc3\x28\n', "line 5 is not valid UTF-8"),
        ("a.jsonl", b'{"text": "a"}\n\n{"text": \n', r"line 3 is not valid JSON"),
        ("a.jsonl", b'{"text": "a"}\n["text"]\n', "line 2 is a JSON list, expected an object"),
        ("a.jsonl", b'{"text": "a"}\n{"body": "b"}\n', "line 2: no field 'text'"),
        ("a.jsonl", b'{"text": "a"}\n{"text": null}\n', "line 2: field 'text' is NoneType"),
        ("a.jsonl", b'{"text": "a", "id": 1}\n{"text": "b"}\n', "line 2 lacks the id field 'id'"),
        ("a.csv", b"id,text\n1,a\n2,b,c\n", "line 3 has 3 columns, the header 2"),
        ("a.txt", b"short\n" + b"x" * 5000 + b"\nshort\n", "line 2 is longer than 4096 bytes"),
    ],
)
def test_malformed_input_names_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        for _ in iter_texts(path, chunk_rows=1, max_line_bytes=4096):
            pass
    assert str(path) in str(info.value)


def test_replace_policy_and_line_endings(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfcaf\xe9\r\nplain\n\nlast")
    assert read_texts(path, bad_bytes="replace") == (["0", "1", "2", "3"], ["caf\ufffd", "plain", "", "last"])
    path = tmp_path / "a.csv"
    path.write_bytes(b'id,text\nq1,"two\nlines"\nq2,x\n')
    assert read_texts(path) == (["q1", "q2"], ["two\nlines", "x"])


def test_cli_bad_bytes_and_enormous_line_exit_2(ckpt, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_bytes(b"".join(b"row %d\n" % i for i in range(30)) + b"bad \xff\n")
    assert main(_argv(ckpt, source, tmp_path / "o.npy", "--chunk-rows", "8")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the loader's progress bar
    assert err.startswith("llm2vec-gen encode: error: ") and f"{source}: line 31 is not valid UTF-8" in err
    assert "--bad-bytes replace" in err
    assert main(_argv(ckpt, source, tmp_path / "o.npy", "--chunk-rows", "8", "--bad-bytes", "replace")) == 0
    ids, emb = read_embeddings(tmp_path / "o.npy")
    assert ids == [str(i) for i in range(31)] and np.isfinite(emb).all()
    capsys.readouterr()

    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.write(b"x" * (rows.MAX_LINE_BYTES + 1) + b"\n")
    assert main(_argv(ckpt, huge, tmp_path / "h.npy")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"line 1 is longer than {rows.MAX_LINE_BYTES} bytes" in err
