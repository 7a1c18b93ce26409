"""Atomic training checkpoints: ``<output_dir>/checkpoint-<step>/``.

Each holds the released format (``model.save_pretrained``) plus ``trainer_state.pt`` (fp32 trainable
tensors, optimizer, scheduler, RNG states, data position, bad-step counters). It is written into a
hidden temporary directory, every file fsynced, a ``complete`` marker written last, then the
directory renamed into place (atomic on POSIX) and the parent fsynced. ``last_checkpoint`` returns
the newest directory with the marker, so a crash mid-save leaves the previous checkpoint in use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

STATE_FILE = "trainer_state.pt"
MARKER = "complete"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    output_dir: str | Path, step: int, write_model: Callable[[Path], None], state: dict
) -> Path:
    """Write ``checkpoint-<step>`` atomically: ``write_model(dir)`` then ``state``; returns its path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_model(tmp)
    torch.save(state, tmp / STATE_FILE)
    _fsync_tree(tmp)
    with open(tmp / MARKER, "w") as f:
        json.dump({"step": step}, f)
        f.flush()
        os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    fd = os.open(output_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete ``checkpoint-<step>`` with the largest step, or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := _NAME.match(p.name)) and (p / MARKER).is_file() and (p / STATE_FILE).is_file()
    ]
    return max(found)[1] if found else None


def load_state(checkpoint: str | Path) -> dict:
    """The ``trainer_state.pt`` of a checkpoint directory (tensors on the CPU)."""
    return torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)
