"""CLI: encode writes ids + vectors that read back to encode's output in every format; decode and
eval run; --help works; bad arguments exit 2 with a one-line reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from integration_checkpoint import DIM, TEXTS

from llm2vec_gen.cli import main
from llm2vec_gen.integrations.instructions import QUERY_INSTRUCTION
from llm2vec_gen.io import OUTPUT_SUFFIXES, read_embeddings, read_texts, write_embeddings


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "body": t}) + "\n" for i, t in enumerate(TEXTS)))
    return path


@pytest.mark.parametrize("suffix", OUTPUT_SUFFIXES)
def test_files_round_trip(tmp_path, suffix):
    emb = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    write_embeddings(tmp_path / f"e{suffix}", list("abcde"), emb)
    ids, back = read_embeddings(tmp_path / f"e{suffix}")
    assert ids == list("abcde")
    np.testing.assert_array_equal(back, emb)


def test_read_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first\nsecond\n")
    (tmp_path / "a.tsv").write_text("id\ttext\nx1\thello\nx2\tworld\n")
    assert read_texts(tmp_path / "a.txt") == (["0", "1"], ["first", "second"])
    assert read_texts(tmp_path / "a.tsv") == (["x1", "x2"], ["hello", "world"])
    with pytest.raises(ValueError, match="no field 'body'"):
        read_texts(tmp_path / "a.tsv", text_field="body")


def test_encode_writes_ids_and_vectors(ckpt, model, jsonl, tmp_path, capsys):
    out = tmp_path / "emb.parquet"
    args = ["encode", str(ckpt), str(jsonl), str(out), "--text-field", "body", "--task", "query"]
    assert main([*args, "--batch-size", "3", "--save-recon", str(tmp_path / "recon.npy")]) == 0
    assert f"encoded {len(TEXTS)} texts" in capsys.readouterr().out
    ids, emb = read_embeddings(out)
    assert ids == [f"q{i}" for i in range(len(TEXTS))] and emb.shape == (len(TEXTS), DIM)
    want, recon = model.encode(TEXTS, 512, True, batch_size=3, instruction=QUERY_INSTRUCTION)
    np.testing.assert_array_equal(emb, want)
    np.testing.assert_array_equal(np.load(tmp_path / "recon.npy"), recon)

    assert main(["decode", str(ckpt), str(tmp_path / "recon.npy"), "--max-new-tokens", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == [str(i) for i in range(len(TEXTS))]
    assert [line["text"] for line in lines] == model.decode(recon, max_new_tokens=3)


def test_eval_and_bench(ckpt, capsys):
    assert main(["eval", str(ckpt), "--batch-size", "16"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert 0.0 <= results["retrieval"]["ndcg@10"] <= 1.0 and results["retrieval"]["num_queries"] == 16
    assert -1.0 <= results["sts"]["cosine_spearman"] <= 1.0
    assert main(["bench", str(ckpt), "--num-texts", "4", "--repeats", "1", "--max-length", "32"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["num_texts"] == 4 and bench["texts_per_s"] > 0


@pytest.mark.parametrize("command", ["encode", "decode", "eval", "bench"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: llm2vec-gen {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["encode", "{ckpt}", "{tmp}/missing.txt", "{tmp}/o.npy"], "missing.txt: no such file"),
        (["encode", "{ckpt}", "{tmp}/in.jsonl", "{tmp}/o.csv"], "output {tmp}/o.csv: use one of"),
        (["encode", "{tmp}/nockpt", "{tmp}/in.jsonl", "{tmp}/o.npy"], "no such directory"),
        (["encode", "{tmp}", "{tmp}/in.jsonl", "{tmp}/o.npy"], "is not a complete LLM2Vec-Gen checkpoint"),
        (["encode", "{ckpt}", "{tmp}/in.jsonl", "{tmp}/o.npy"], "no field 'text'"),
        (["decode", "{ckpt}", "{tmp}/bad.npy"], "recon states must be [N, K, H]"),
        (["eval", "{ckpt}", "--data", "{tmp}"], "corpus.jsonl: missing"),
    ],
)
def test_bad_arguments_exit_2(ckpt, jsonl, tmp_path, capsys, argv, reason):
    np.save(tmp_path / "bad.npy", np.zeros((2, 3), np.float32))
    argv = [a.format(ckpt=ckpt, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"llm2vec-gen {argv[0]}: error: ")
    assert reason.format(tmp=tmp_path) in err


@pytest.mark.parametrize(
    "argv",
    [
        ["encode"],
        ["encode", "c", "i", "o", "--batch-size", "0"],
        ["decode", "c", "i", "--max-new-tokens", "x"],
    ],
)
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"llm2vec-gen {argv[0]}: error: ")
