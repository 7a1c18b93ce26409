"""benchmarks/gpu_check.py runs end to end (``--dry-run``: CPU tensors, Triton interpreter, tiny
shapes), so the one prepared GPU command does not crash on its first minutes of a GPU."""

import importlib.util
import json
from pathlib import Path

import pytest

from llm2vec_gen import _dispatch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not _dispatch.triton_interpreting(), reason="the dry run needs the Triton interpreter")
def test_dry_run_writes_every_section(tmp_path, monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    sections = "accuracy,resources,timing,sanitize"
    assert _driver().main(["--dry-run", "--sections", sections, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["sections"]) == set(sections.split(","))
    assert all(s["status"] == "ok" for s in report["sections"].values())
    ops = {row["case"].split()[0] for row in report["sections"]["accuracy"]["rows"]}
    assert len(ops) == 5
    assert "## timing: ok" in (tmp_path / "gpu_check.md").read_text()


def test_bad_arguments_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        _driver().main(["--dry-run", "--sections", "accuracy,nonsense", "--out", str(tmp_path)])
    assert exc.value.code == 2
