"""Loss curves of training runs (``train_log.jsonl`` written by ``llm2vec-gen train``) as one PNG:
reconstruction cross-entropy and distillation loss per step, one line per run.

    python benchmarks/plot_train_logs.py OUT.png NAME=RUN_DIR [NAME=RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_log(run_dir: str | Path) -> list[dict]:
    """The logged steps of a run, in order (one dict per step: step, loss, ce, distill, ...)."""
    lines = (Path(run_dir) / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot(out: str | Path, runs: dict[str, str | Path]) -> None:
    """Two panels (CE, distillation) with one curve per run, written to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, run_dir in runs.items():
        log = read_log(run_dir)
        steps = [r["step"] for r in log]
        axes[0].plot(steps, [r["ce"] for r in log], label=name)
        axes[1].plot(steps, [r["distill"] for r in log], label=name)
    titles = ("reconstruction CE (answer tokens)", "distillation (MSE to the teacher)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    plot(sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:]))
