"""The README examples print the same numbers as the llm2vec-gen 0.1.3 package itself.

The same checkpoint (tiny Qwen3 written the reference's way, run_config torch_dtype float32) is
run by the reference package in benchmarks/.refenv (tests/dropin_reference_side.py, a subprocess)
and by this project's package here: the cosine matrices of the retrieval, similarity and
classification examples agree within 1e-3 (fp32), and the greedy decode of the recon states is the
same text. Skipped, saying why, when the reference env does not exist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from dropin_examples import COSINE_EXAMPLES, DECODE_TEXT, load, run

from llm2vec_gen.format import write_tokenizer
from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.tiny import qwen_tokenizer, special_token_names, tiny_checkpoint

HERE = Path(__file__).resolve().parent
REFENV_PYTHON = (
    Path(os.environ.get("LLM2VEC_GEN_REFENV", HERE.parent / "benchmarks" / ".refenv")) / "bin" / "python"
)
MAX_NEW_TOKENS = 20

pytestmark = pytest.mark.skipif(
    not REFENV_PYTHON.exists(),
    reason=f"reference env absent ({REFENV_PYTHON}): run `bash benchmarks/reference_env.sh` first",
)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """fp32 run_config (the reference loads the base in run_config's dtype); the tokenizer written as
    transformers 4 (the reference's) reads it."""
    path = tiny_checkpoint(tmp_path_factory.mktemp("released"), hidden_size=64, teacher_dim=48, seed=11)
    config = path / "run_config.yml"
    config.write_text(config.read_text().replace("torch_dtype: bfloat16", "torch_dtype: float32"))
    write_tokenizer(path, qwen_tokenizer(special_token_names(10)), special_token_names(10))
    return path


@pytest.fixture(scope="module")
def reference(released) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    out = subprocess.run(
        [str(REFENV_PYTHON), str(HERE / "dropin_reference_side.py"), str(released), str(MAX_NEW_TOKENS)],
        capture_output=True,
        text=True,
        cwd=HERE,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_cosine_matrices_and_decode_as_the_package(released, reference):
    namespace = load(str(released))
    for name, snippet in COSINE_EXAMPLES.items():
        run(snippet, namespace)
        ours, theirs = namespace["cos_sim"], torch.tensor(reference["cos_sim"][name])
        assert float((ours - theirs).abs().max()) <= 1e-3, (name, ours.tolist(), theirs.tolist())
    model = namespace["model"]
    _, recon = model.encode(DECODE_TEXT, get_recon_hidden_states=True)
    assert model.generate(recon_hidden_states=recon, max_new_tokens=MAX_NEW_TOKENS) == reference["decoded"]


def _reference_head(path: Path, in_dim: int, out_dim: int, size: int, mode: str, seed: int) -> None:
    """A head file exactly as the reference's ProjectionModel.save writes it."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(size):
        key = "projection." if size == 1 else f"projection.{i}."
        state[key + "weight"] = torch.randn(out_dim, in_dim, generator=gen) / in_dim**0.5
        state[key + "bias"] = torch.randn(out_dim, generator=gen) * 0.1
    config = {"input_dim": in_dim, "output_dim": out_dim, "dtype": "torch.float32", "size": size,
              "pooling_mode": mode}  # fmt: skip
    torch.save({"state_dict": state, "config": config}, path)


@pytest.mark.parametrize(
    ("recon", "align"),
    [((64, 10, "linear"), (64, 1, "linear")), ((64, 1, "linear"), (64, 1, "mean_linear")),
     ((32, 1, "first_32_linear"), (64, 1, "linear"))],
    ids=["recon-size-10", "align-mean-linear", "recon-first-32"],
)  # fmt: skip
def test_other_head_kinds_match_the_package(released, tmp_path, recon, align):
    """Heads of other sizes / pooling modes (the reference's ProjectionModel) load and encode as the
    package does (its own encode in its venv, benchmarks/reference_driver.py)."""
    path = Path(shutil.copytree(released, tmp_path / "ckpt"))
    _reference_head(path / "reconstruction_mlp", recon[0], 64, recon[1], recon[2], seed=1)
    _reference_head(path / "alignment_mlp", align[0], 48, align[1], align[2], seed=2)
    texts = ["where do polar bears live?", "", "a b c " * 20, "hello"]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    driver = HERE.parent / "benchmarks" / "reference_driver.py"
    args = [str(path), str(tmp_path / "texts.json"), "--out", str(tmp_path / "ref.npy"), "--repeats", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    out = subprocess.run(
        [str(REFENV_PYTHON), str(driver), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    model = LLM2VecGenModel.from_pretrained(path, device="cpu")
    ours, theirs = model.encode(texts, convert_to_numpy=True), np.load(tmp_path / "ref.npy")
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() >= 0.99999, cos
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    _, states = model.encode(texts[:2], get_recon_hidden_states=True)
    assert states.shape == (2, 1 if recon[2] == "mean_linear" else 10, 64)
    assert len(model.decode(states, max_new_tokens=3)) == 2
    model.save_pretrained(tmp_path / "again")
    again = LLM2VecGenModel.from_pretrained(tmp_path / "again", device="cpu")
    torch.testing.assert_close(again.encode(texts), model.encode(texts), rtol=0, atol=0)
