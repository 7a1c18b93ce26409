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
import subprocess
from pathlib import Path

import pytest
import torch
from dropin_examples import COSINE_EXAMPLES, DECODE_TEXT, load, run

from llm2vec_gen.format import write_tokenizer
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
