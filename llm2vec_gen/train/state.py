"""Atomic training checkpoints: ``<output_dir>/checkpoint-<step>/``.

Each holds the released format (``model.save_pretrained``) plus ``trainer_state.pt`` (fp32 trainable
tensors, optimizer, scheduler, RNG states, data position, bad-step counters). It is written into a
hidden temporary directory ``.tmp-checkpoint-<step>``, every file fsynced, a ``complete`` marker
(the step and the SHA-256 of ``trainer_state.pt``) written last, then the directory renamed into
place (atomic on POSIX) and the parent fsynced. ``last_checkpoint`` returns the newest directory
with the marker, so a crash mid-save leaves the previous checkpoint in use.

Saving a step that already has a checkpoint (after a resume from an older one) first renames the
old directory aside to ``.old-checkpoint-<step>``, renames the new one into place, then deletes the
old one; ``clean_stale`` (run when a trainer starts) renames an orphaned ``.old-`` directory back if
a kill landed between the two renames, and deletes leftover ``.tmp-`` directories.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from llm2vec_gen.io.atomic import fsync_dir

STATE_FILE = "trainer_state.pt"
MARKER = "complete"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_OLD = re.compile(r"^\.old-checkpoint-(\d+)$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(path)


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
        json.dump({"step": step, "sha256": _sha256(tmp / STATE_FILE)}, f)
        f.flush()
        os.fsync(f.fileno())
    old = output_dir / f".old-checkpoint-{step}"
    if final.exists():  # never delete the only complete copy of this step before the new one is in place
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(output_dir)
    shutil.rmtree(old, ignore_errors=True)
    return final


def clean_stale(output_dir: str | Path) -> None:
    """Recover from a save killed part-way: an orphaned ``.old-checkpoint-<step>`` (its replacement
    never renamed into place) is renamed back, one whose replacement exists is deleted, and every
    ``.tmp-checkpoint-*`` is deleted. Call only while no process is saving into ``output_dir``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    for path in output_dir.iterdir():
        if m := _OLD.match(path.name):
            final = output_dir / f"checkpoint-{m.group(1)}"
            if final.exists():
                shutil.rmtree(path)
            else:
                os.rename(path, final)
    for path in output_dir.glob(".tmp-checkpoint-*"):
        shutil.rmtree(path)
    fsync_dir(output_dir)


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Every ``checkpoint-<step>`` holding the marker and the state file, newest (largest step) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := _NAME.match(p.name)) and (p / MARKER).is_file() and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found, reverse=True)]


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete ``checkpoint-<step>`` with the largest step, or None."""
    found = complete_checkpoints(output_dir)
    return found[0] if found else None


def load_state(checkpoint: str | Path) -> dict:
    """The ``trainer_state.pt`` of a checkpoint directory (tensors on the CPU).

    ValueError ``"<path>: truncated or corrupted checkpoint (<cause>)"`` when the file is missing,
    cut short, empty, unreadable, or does not match the SHA-256 its marker records (markers written
    before the checksum existed are not verified).
    """
    path = Path(checkpoint) / STATE_FILE
    try:
        marker = json.loads((Path(checkpoint) / MARKER).read_text())
        want = marker.get("sha256") if isinstance(marker, dict) else None
    except (OSError, ValueError):
        want = None
    try:
        if want is not None and (got := _sha256(path)) != want:
            raise ValueError(f"SHA-256 {got[:12]}... differs from the marker's {want[:12]}...")
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # one line (EOFError: empty)
        raise ValueError(f"{path}: truncated or corrupted checkpoint ({cause})") from exc
