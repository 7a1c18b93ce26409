"""An append-only store of committed chunks beside an output, ``<output>.parts/``, with its manifest.

    chunk-000000.npy        fp32 [n, D] embeddings of chunk 0
    chunk-000000.ids.json   its n ids
    chunk-000000.recon.npy  fp32 [n, K, H] recon states (only when a recon output is asked for)
    manifest.json           the settings, the number of committed chunks and rows, whether the
                            input is exhausted (a few hundred bytes, however long the run)

A chunk's files are written to temporary names, fsynced and renamed; the manifest is rewritten the
same way (and the directory fsynced) only after them, so it counts only chunks that are complete on
disk: a kill at any point loses at most the chunk being written, and files of a chunk the manifest
does not list are overwritten by the next commit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from llm2vec_gen.io.atomic import atomic_write_file, fsync_dir
from llm2vec_gen.io.embeddings import write_npy_stream
from llm2vec_gen.io.rows import InputError

MANIFEST = "manifest.json"
FORMAT = 1
_SUFFIXES = {"emb": ".npy", "ids": ".ids.json", "recon": ".recon.npy"}


def input_identity(path: str | Path) -> dict:
    """What a resumed run checks to know its input is unchanged: its path, size and mtime."""
    path = Path(path)
    stat = path.stat()
    return {"input": str(path.resolve()), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}


def parts_dir(output: str | Path) -> Path:
    """The chunk store of ``output``: ``<output>.parts`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


class ChunkStore:
    """The chunk store of ``output`` (see the module docstring); ``manifest`` is its committed state:
    ``{"format", "settings", "chunks", "rows", "done"}``."""

    def __init__(self, output: str | Path):
        self.dir = parts_dir(output)
        self.manifest: dict = {}

    def chunk_file(self, index: int, kind: str) -> Path:
        """File of chunk ``index``: kind "emb" (.npy), "ids" (.ids.json) or "recon" (.recon.npy)."""
        return self.dir / f"chunk-{index:06d}{_SUFFIXES[kind]}"

    def open(self, settings: dict, resume: bool, restart_on_change: bool = False) -> dict:
        """The manifest to continue from (``resume`` and the same ``settings``), else a fresh, empty
        store. Settings that changed raise InputError naming each change, unless
        ``restart_on_change`` (then the store starts over)."""
        path = self.dir / MANIFEST
        if resume and path.is_file():
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: unreadable ({exc}); delete {self.dir} to start over") from exc
            if manifest.get("format") != FORMAT:
                raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT}")
            old = manifest.get("settings", {})
            changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
            if changed and not restart_on_change:
                details = "; ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in changed)
                raise InputError(
                    f"cannot resume from {self.dir}: {details}. Re-run with the same input and options, "
                    f"or without --resume to start over"
                )
            if not changed:
                self.manifest = manifest
                return manifest
        self.remove()
        self.dir.mkdir(parents=True)
        self.manifest = {"format": FORMAT, "settings": settings, "chunks": 0, "rows": 0, "done": False}
        self._write_manifest()
        return self.manifest

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1).encode()
        atomic_write_file(self.dir / MANIFEST, lambda f: f.write(text))
        fsync_dir(self.dir)

    def commit(self, ids: list[str], emb: ArrayLike, recon: ArrayLike | None = None) -> None:
        """Appends one chunk: ``ids`` [n], ``emb`` [n, D] and (optional) ``recon`` [n, K, H], saved fp32."""
        index = self.manifest["chunks"]
        for kind, array in (("emb", emb), ("recon", recon)):
            if array is not None:
                data = np.ascontiguousarray(array, dtype=np.float32)
                atomic_write_file(self.chunk_file(index, kind), lambda f, data=data: np.save(f, data))
        atomic_write_file(self.chunk_file(index, "ids"), lambda f: f.write(json.dumps(ids).encode()))
        self.manifest["chunks"] += 1
        self.manifest["rows"] += len(ids)
        self._write_manifest()

    def finish(self) -> None:
        """Records that the input is exhausted: every chunk is committed."""
        self.manifest["done"] = True
        self._write_manifest()

    def parts(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """``(ids [n], embeddings fp32 [n, D] memory-mapped)`` of each committed chunk, in order."""
        for index in range(self.manifest["chunks"]):
            ids = json.loads(self.chunk_file(index, "ids").read_text(encoding="utf-8"))
            yield ids, np.load(self.chunk_file(index, "emb"), mmap_mode="r")

    def write_recon(self, path: str | Path, trailing: tuple[int, ...]) -> None:
        """Concatenates the committed recon states into one fp32 [rows, *trailing] .npy, atomically."""
        chunks = range(self.manifest["chunks"])
        blocks = (np.load(self.chunk_file(index, "recon"), mmap_mode="r") for index in chunks)
        atomic_write_file(path, lambda f: write_npy_stream(f, blocks, (self.manifest["rows"], *trailing)))

    def remove(self) -> None:
        """Deletes the store (after its chunks were merged into the output)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
