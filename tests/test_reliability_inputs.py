"""Bad input at the public boundary fails early and says why.

- ``LLM2VecGenModel.encode``: wrong types raise TypeError naming the bad item's index, bad options
  TypeError/ValueError naming the option;
- every op in ``llm2vec_gen.ops``: wrong rank, dtype, device or empty inputs raise
  ValueError/TypeError naming the argument's shape, dtype or device (never an error from inside torch);
- the CLI: bad arguments exit 2 with the reason on the last line of stderr;
- checkpoints: a truncated or corrupted file raises ValueError naming it;
- safety: no ``torch.load`` without ``weights_only=True`` and no ``trust_remote_code=True`` default in
  the package, and a checkpoint head holding a pickled callable fails to load instead of running it.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import llm2vec_gen
from llm2vec_gen import ops
from llm2vec_gen.checkpoint import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ALIGN_HEAD,
    ENCODER_DECODER_CONFIG,
    RECON_HEAD,
    RUN_CONFIG,
)
from llm2vec_gen.cli import main
from llm2vec_gen.model import LLM2VecGenModel

PACKAGE = Path(llm2vec_gen.__file__).parent


# ------------------------------------------------------------------------------------- model.encode


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (None, "texts must be a str or an iterable of str, got NoneType"),
        (7, "texts must be a str or an iterable of str, got int"),
        ({"a": "b"}, "got dict"),
        ({"a"}, "got set"),
        (b"bytes", "texts must be a str or an iterable of str, got bytes"),
        (bytearray(b"raw"), "got bytearray"),
        ([["nested"]], r"texts\[0\] is list"),
        (["ok", None], r"texts\[1\] is NoneType"),
        (["ok", "fine", 3], r"texts\[2\] is int"),
        (("ok", b"raw"), r"texts\[1\] is bytes"),
        (["ok", ["a", "b"]], r"texts\[1\] is list"),
    ],
)
def test_encode_wrong_types_name_the_index(model, texts, message):
    with pytest.raises(TypeError, match=message):
        model.encode(texts)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"batch_size": "4"}, TypeError, "batch_size must be an int, got str"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int, got float"),
        ({"batch_size": True}, TypeError, "batch_size must be an int, got bool"),
        ({"max_length": 3}, ValueError, "max_length=3 cannot hold the 10 special tokens"),
        ({"max_length": 10}, ValueError, "max_length=10 cannot hold the 10 special tokens and any text"),
        ({"max_length": None}, TypeError, "max_length must be an int, got NoneType"),
        ({"max_length": "64"}, TypeError, "max_length must be an int, got str"),
        ({"instruction": 5}, TypeError, "instruction must be a str or None, got int"),
        ({"instruction": b"query: "}, TypeError, "instruction must be a str or None, got bytes"),
    ],
)
def test_encode_bad_options_name_the_option(model, options, error, message):
    for texts in (["a"], []):  # checked before any work, even with nothing to encode
        with pytest.raises(error, match=message):
            model.encode(texts, **options)
    with pytest.raises(error, match=message):
        model.encode(["a"], get_recon_hidden_states=True, **options)


def test_encode_recovers_after_bad_options(model):
    with pytest.raises(TypeError, match="batch_size must be an int, got str"):
        model.decode(torch.zeros(1, model.num_encode_tokens, model.special_rows.shape[1]), batch_size="4")
    assert model.encode(["a"], batch_size=np.int64(2), max_length=11).shape == (1, model.embedding_dim)
    assert model.encode([]).shape == (0, model.embedding_dim)
    assert model.encode("still works").shape == (1, model.embedding_dim)


# ---------------------------------------------------------------------------------------------- ops

META = torch.device("meta")


def _valid_inputs() -> dict[str, tuple]:
    """Per op: (function, valid keyword arguments), odd sizes."""
    b, h, hkv, k, length, d = 2, 4, 2, 3, 5, 8
    return {
        "appended_attention": (
            ops.appended_attention,
            dict(
                q=torch.randn(b, h, k, d),
                k=torch.randn(b, hkv, k, d),
                v=torch.randn(b, hkv, k, d),
                k_cache=torch.randn(b, hkv, length, d),
                v_cache=torch.randn(b, hkv, length, d),
                prefix_mask=torch.ones(b, length, dtype=torch.bool),
            ),
        ),
        "distill_loss": (ops.distill_loss, dict(student=torch.randn(3, 4, 7), teacher=torch.randn(3, 7))),
        "encode_tail": (
            ops.encode_tail,
            dict(h=torch.randn(3, 4, 7), weight=torch.randn(5, 7), bias=torch.randn(5)),
        ),
        "fused_linear_cross_entropy": (
            ops.fused_linear_cross_entropy,
            dict(hidden=torch.randn(7, 6), weight=torch.randn(11, 6), labels=torch.randint(0, 11, (7,))),
        ),
        "special_token_embedding": (
            ops.special_token_embedding,
            dict(
                input_ids=torch.randint(0, 13, (2, 5)),
                weight=torch.randn(13, 6),
                special_ids=torch.tensor([13, 14]),
                special_rows=torch.randn(2, 6),
            ),
        ),
    }


def _bad_variants(t: torch.Tensor) -> dict[str, tuple[object, type[Exception], str]]:
    """name -> (bad value, exception type, text the message must contain)."""
    wrong_dtype = t.long() if t.is_floating_point() else t.float()
    flat = t.reshape(-1)
    return {
        "rank + 1": (t.unsqueeze(0), ValueError, str(tuple(t.unsqueeze(0).shape))),
        "rank - 1": (flat if t.dim() > 1 else flat[None, None], ValueError, "must have"),
        "empty": (t[:0], ValueError, "(0,"),  # one argument empty: its shape or a mismatch with it
        "other device": (torch.empty_like(t, device=META), ValueError, "on meta"),
        "wrong dtype": (wrong_dtype, TypeError, str(wrong_dtype.dtype).removeprefix("torch.")),
        "not a tensor": (t.tolist(), TypeError, "got list"),
    }


def _op_cases():
    for op, (_, kwargs) in _valid_inputs().items():
        for arg, tensor in kwargs.items():
            for variant in _bad_variants(tensor):
                if (op, arg, variant) == ("special_token_embedding", "input_ids", "empty"):
                    continue  # an empty batch is valid: checked below
                yield pytest.param(op, arg, variant, id=f"{op}-{arg}-{variant.replace(' ', '_')}")


@pytest.mark.parametrize(("op", "arg", "variant"), list(_op_cases()))
def test_op_rejects_bad_input_with_a_clear_message(op, arg, variant):
    fn, kwargs = _valid_inputs()[op]
    bad, error, text = _bad_variants(kwargs[arg])[variant]
    with pytest.raises(error) as info:
        fn(**{**kwargs, arg: bad})
    message = str(info.value)
    assert text in message, message
    if variant in ("rank + 1", "rank - 1", "wrong dtype", "not a tensor"):
        assert arg in message, message


BATCH_ARGS = {
    "appended_attention": ("q", "k", "v", "k_cache", "v_cache", "prefix_mask"),
    "distill_loss": ("student", "teacher"),
    "encode_tail": ("h",),
    "fused_linear_cross_entropy": ("hidden", "labels"),
    "special_token_embedding": ("input_ids",),
}


def test_ops_on_valid_inputs_and_on_an_empty_batch():
    """Every batch argument empty at once: a ValueError naming the empty shape, or an empty result."""
    for op, (fn, kwargs) in _valid_inputs().items():
        assert torch.isfinite(fn(**kwargs)).all()
        empty = {a: (t[:0] if a in BATCH_ARGS[op] else t) for a, t in kwargs.items()}
        if op in ("appended_attention", "distill_loss", "encode_tail"):
            with pytest.raises(ValueError, match=r"of shape \(0, .* is empty"):
                fn(**empty)
        else:
            out = fn(**empty)
            assert out.shape == ((0, 5, 6) if op == "special_token_embedding" else ())


def test_fold_heads_rejects_non_linear_and_mismatched_heads():
    with pytest.raises(TypeError, match="must be an nn.Linear, got Conv1d"):
        ops.fold_heads(nn.Conv1d(4, 4, 1), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="align takes 5 features but recon gives 4"):
        ops.fold_heads(nn.Linear(4, 4), nn.Linear(5, 3))


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["encode", "c", "in.txt", "o.npy", "--chunk-rows", "0"], "--chunk-rows: must be >= 1, got 0"),
        (["encode", "c", "in.txt", "o.npy", "--bad-bytes", "skip"], "--bad-bytes: invalid choice: 'skip'"),
        (["encode", "c", "in.txt", "o.npy", "--batch-size", "-3"], "--batch-size: must be >= 1, got -3"),
        (["encode", "c", "in.txt", "o.npy", "--max-length", "ten"], "--max-length: invalid"),
        (["encode", "c", "in.txt"], "the following arguments are required: output"),
        (["encode", "c", "in.txt", "o.npy", "--dtype", "int8"], "--dtype: invalid choice: 'int8'"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_cli_parse_errors_exit_2(argv, reason, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert reason in capsys.readouterr().err.strip().splitlines()[-1]


def test_cli_usage_errors_exit_2_with_one_line(ckpt, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(5)))
    cases = [
        (
            ["encode", str(ckpt), str(source), str(tmp_path / "o.npy"), "--save-recon", "r.txt"],
            "use a .npy file",
        ),
        (["encode", str(ckpt), str(tmp_path / "in.docx"), str(tmp_path / "o.npy")], "unsupported input type"),
        (["encode", str(ckpt), str(source), str(tmp_path / "o.npy"), "--id-field", "text"], None),
    ]
    for argv, reason in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        if reason is None:
            assert code == 0
            continue
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("llm2vec-gen encode: error: ")
        assert reason in err


# ------------------------------------------------------------------------------------------- safety


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_sources_load_weights_only_and_never_trust_remote_code_by_default():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    unsafe = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(PACKAGE.parent)
        for call in _calls(tree):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "load" and ast.unparse(func.value) == "torch":
                flag = _keyword(call, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
            flag = _keyword(call, "trust_remote_code")
            if isinstance(flag, ast.Constant) and flag.value is True:
                unsafe.append(f"{where}:{call.lineno}: trust_remote_code=True passed")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
                defaults += node.args.kw_defaults
                for arg, default in zip(args, defaults, strict=True):
                    if arg.arg == "trust_remote_code" and isinstance(default, ast.Constant) and default.value:
                        unsafe.append(f"{where}:{node.lineno}: {node.name}(trust_remote_code=True) default")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("pickle.load"):
                unsafe.append(f"{where}:{node.lineno}: pickle.load")
    assert not unsafe, "\n".join(unsafe)


class _Payload:
    """Unpickling this object would create ``marker``: proof that the pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_object_in_a_head_is_refused_not_run(ckpt, tmp_path):
    bad = tmp_path / "ckpt"
    shutil.copytree(ckpt, bad)
    marker = tmp_path / "pwned"
    head = torch.load(bad / RECON_HEAD, weights_only=True)
    head["config"]["payload"] = _Payload(marker)
    torch.save(head, bad / RECON_HEAD)
    with pytest.raises(Exception, match="(?i)weights.only") as info:
        LLM2VecGenModel.from_pretrained(bad, device="cpu")
    assert not marker.exists(), "unpickling ran arbitrary code"
    assert type(info.value).__name__ == "UnpicklingError"
    assert str(info.value).startswith(f"{bad / RECON_HEAD}: ")


# --------------------------------------------------------------------------------- damaged checkpoints


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        (RECON_HEAD, _truncate, "truncated or corrupted"),
        (ALIGN_HEAD, lambda data: b"", "truncated or corrupted (EOFError"),
        (ADAPTER_WEIGHTS, _truncate, "truncated or corrupted (SafetensorError"),
        (ADAPTER_CONFIG, _truncate, "truncated or corrupted (JSONDecodeError"),
        (ADAPTER_CONFIG, lambda data: b"[]", "expected a JSON object, got list"),
        (ENCODER_DECODER_CONFIG, lambda data: b"", "truncated or corrupted (JSONDecodeError"),
        (
            RUN_CONFIG,
            lambda data: b"\xff\xfe" + data,
            "truncated or corrupted (UnicodeDecodeError",
        ),
    ],
    ids=[
        "recon-half",
        "align-empty",
        "adapter-half",
        "adapter-config-half",
        "adapter-config-list",
        "enc-dec-empty",
        "run-config-bytes",
    ],
)
def test_damaged_checkpoint_file_is_named(ckpt, tmp_path, name, damage, message):
    bad = Path(shutil.copytree(ckpt, tmp_path / "ckpt"))
    (bad / name).write_bytes(damage((bad / name).read_bytes()))
    with pytest.raises(ValueError) as info:
        LLM2VecGenModel.from_pretrained(bad, device="cpu")
    assert str(info.value).startswith(f"{bad / name}: "), info.value
    assert message in str(info.value), info.value


def test_damaged_tokenizer_is_named(ckpt, tmp_path):
    bad = Path(shutil.copytree(ckpt, tmp_path / "ckpt"))
    (bad / "tokenizer.json").write_bytes(_truncate((bad / "tokenizer.json").read_bytes()))
    with pytest.raises(ValueError, match="tokenizer files are truncated or corrupted") as info:
        LLM2VecGenModel.from_pretrained(bad, device="cpu")
    assert str(info.value).startswith(f"{bad}: ")
