"""``respond``: batched KV-cached generation through the chat template, resumable without duplicates."""

import json

import torch

from llm2vec_gen.tiny import qwen_tokenizer, tiny_qwen3
from llm2vec_gen.train import respond
from llm2vec_gen.train.respond import prompt_text


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_respond_resumes_without_duplicates(tmp_path):
    tok = qwen_tokenizer()
    llm = tiny_qwen3(len(tok), hidden_size=32, num_layers=1)
    queries = ["What is rain?", "Name a prime number.", "Why is the sea salty?", "Define gravity briefly.",
               "Who wrote Hamlet?", "What is a noun?", "How far is the Moon?"]  # fmt: skip
    src = tmp_path / "queries.jsonl"
    src.write_text("".join(json.dumps({"id": i, "query": q}) + "\n" for i, q in enumerate(queries)))
    kw = {"batch_size": 3, "max_new_tokens": 5, "progress": False}

    full = tmp_path / "full.jsonl"
    assert respond(llm, tok, src, full, **kw) == 7
    out = tmp_path / "out.jsonl"
    rows = _rows(full)
    # an interrupted run: three rows written, then a torn line
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]) + '{"id": "3", "que')
    assert respond(llm, tok, src, out, **kw) == 4
    assert respond(llm, tok, src, out, **kw) == 0
    resumed = _rows(out)
    assert sorted(r["id"] for r in resumed) == [str(i) for i in range(7)]
    assert {r["id"]: r["answer"] for r in resumed} == {r["id"]: r["answer"] for r in rows}
    assert all(r["query"] == queries[int(r["id"])] for r in resumed)


def test_prompt_uses_chat_template_without_thinking():
    tok = qwen_tokenizer()
    text = prompt_text(tok, "Hi?")
    assert text.startswith("<|im_start|>user\nHi?<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    assert prompt_text(tok, "Hi?", chat_template=False) == "Hi?"


def test_greedy_answers_match_unbatched_generation(tmp_path):
    tok = qwen_tokenizer()
    llm = tiny_qwen3(len(tok), hidden_size=32, num_layers=1)
    src = tmp_path / "q.jsonl"
    queries = ["A short one?", "A somewhat longer question about the weather today?"]
    src.write_text("".join(json.dumps({"id": f"q{i}", "query": q}) + "\n" for i, q in enumerate(queries)))
    respond(llm, tok, src, tmp_path / "o.jsonl", batch_size=2, max_new_tokens=4, progress=False)
    got = {r["id"]: r["answer"] for r in _rows(tmp_path / "o.jsonl")}
    for i, q in enumerate(queries):  # one at a time: no padding
        ids = tok(prompt_text(tok, q), return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            new = llm.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)[
                0, ids.shape[1] :
            ]
        assert got[f"q{i}"] == tok.decode(new, skip_special_tokens=True).strip()


def test_cli_respond_bad_model_or_input_exits_2_with_one_line(tmp_path, capsys):
    from llm2vec_gen.cli import main

    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"id": "a", "query": "Hi?"}) + "\n")
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "out.jsonl")
    cases = [
        ([str(tmp_path / "no-model"), str(src), out], "no such directory"),  # not a hub "repo id" error
        ([str(tmp_path / "empty"), str(src), out], "no config.json"),  # a directory without a model
        ([str(tmp_path / "empty"), str(tmp_path / "none.jsonl"), out], "no such file"),
    ]
    for argv, reason in cases:
        assert main(["respond", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("llm2vec-gen respond: error: ") and err.count("\n") == 1 and reason in err, err
    assert not (tmp_path / "out.jsonl").exists()
