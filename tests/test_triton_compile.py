"""The Triton kernels compile for Hopper (sm_90) within its limits, checked without a GPU:
benchmarks/triton_compile_check.py --quick (head dim 128, bf16: the training path) in its own
process, since compiling needs the kernels imported without TRITON_INTERPRET."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_kernels_compile_for_sm90_without_spills(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "triton_compile_check.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(out.read_text())
    kernels = {row["kernel"] for row in rows}
    assert len(kernels) == 9  # every @triton.jit kernel of the five ops
    for row in rows:
        assert row["shared_bytes"] <= 227 * 1024 and row["spill_bytes"] == 0, row
    attention = [row for row in rows if row["kernel"].startswith("_appended_attention")]
    assert all(row["wgmma"] > 0 for row in attention), "bf16 attention dots must lower to wgmma"
