"""The files of the released LLM2Vec-Gen checkpoint format (McGill-NLP llm2vec-gen 0.1.3), one by one.

``llm2vec_gen.checkpoint`` reads and writes a whole checkpoint with these. A directory holds::

    tokenizer files             the K special tokens as additional special tokens, left padding
    run_config.yml              plain ``key: value`` lines; model_name_or_path, torch_dtype, special_tokens
    encoder_decoder_config.json {"encoding_mode": "last_10_tokens", "save_decoder": false}
    encoder/adapter_config.json PEFT TrainableTokens config (token_indices = the K ids)
    encoder/adapter_model.safetensors
        base_model.model.embed_tokens.trainable_tokens_delta  [K, H] fp32 (REPLACES the base rows)
        base_model.model.embed_tokens.base_layer.weight       [len(tokenizer), H] the resized table
    encoder/config.json         the base LLM's config with vocab_size = len(tokenizer)
    reconstruction_mlp          torch.save({"state_dict": {"projection.weight", "projection.bias"},
    alignment_mlp                           "config": {input_dim, output_dim, dtype, size, pooling_mode}})

Reading never loads the [len(tokenizer), H] table of the adapter (only the K rows). A file that
cannot be parsed (truncated, corrupted) raises ValueError naming it; a head whose pickle holds
anything but tensors and plain data is refused by ``weights_only`` (UnpicklingError naming the file,
nothing is executed). Every file is written atomically: to a temporary file in the same directory,
fsync'ed, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from llm2vec_gen.heads import ProjectionHead
from llm2vec_gen.io.atomic import atomic_write, fsync_dir

RUN_CONFIG = "run_config.yml"
ENCODER_DECODER_CONFIG = "encoder_decoder_config.json"
ENCODER_DIR = "encoder"
ADAPTER_CONFIG = f"{ENCODER_DIR}/adapter_config.json"
ADAPTER_WEIGHTS = f"{ENCODER_DIR}/adapter_model.safetensors"
ENCODER_CONFIG = f"{ENCODER_DIR}/config.json"
RECON_HEAD = "reconstruction_mlp"
ALIGN_HEAD = "alignment_mlp"
TOKENIZER_FILES = ("tokenizer_config.json",)
REQUIRED_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, RECON_HEAD, ALIGN_HEAD, *TOKENIZER_FILES)

DELTA_KEY = "base_model.model.embed_tokens.trainable_tokens_delta"
BASE_TABLE_KEY = "base_model.model.embed_tokens.base_layer.weight"
DEFAULT_ENCODING_MODE = "last_10_tokens"


# ------------------------------------------------------------------------------------------- reading

# What reading a damaged file raises: torch.load (RuntimeError from its zip reader, OSError, EOFError,
# ValueError), safetensors, json and text decoding (JSONDecodeError, UnicodeDecodeError: ValueErrors).
_PARSE_ERRORS = (OSError, EOFError, RuntimeError, ValueError, SafetensorError)


@contextlib.contextmanager
def _parsing(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a failure to parse ``path`` as ValueError naming it. A missing or unreadable file keeps
    its OSError; a pickle refused by ``weights_only`` stays UnpicklingError, now naming the file."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except pickle.UnpicklingError as exc:
        raise pickle.UnpicklingError(f"{path}: {exc}") from exc
    except _PARSE_ERRORS as exc:
        raise ValueError(f"{path}: truncated or corrupted ({type(exc).__name__}: {exc})") from exc


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file holding one object; ValueError naming the file if it does not parse or is not one."""
    with _parsing(path):
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


# ---------------------------------------------------------------------------------------- atomic I/O


def _write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


# ------------------------------------------------------------------------------------------ run config


class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that reads ``!!python/...`` tags (written by the reference's arguments) as plain data."""


def _plain(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/", _plain)


def read_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """Parse run_config.yml. The reference appends ``f"{key}: {value}"`` lines; values that are not
    valid YAML (a repr such as ``<Enum.X: 'x'>``) are kept as raw strings, line by line."""
    with _parsing(path):
        text = Path(path).read_text(encoding="utf-8")
    try:
        config = yaml.load(text, Loader=_TolerantLoader)
    except yaml.YAMLError:
        config = {}
        for line in text.splitlines():
            match = re.match(r"^([^\s:#][^:]*):\s?(.*)$", line)
            if not match:
                continue
            key, raw = match.group(1).strip(), match.group(2)
            try:
                config[key] = yaml.load(raw, Loader=_TolerantLoader) if raw.strip() else None
            except yaml.YAMLError:
                config[key] = raw
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected `key: value` lines, got {type(config).__name__}")
    return config


def _yaml_value(value: Any) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), allow_unicode=True)
    return dumped.strip().removesuffix("...").strip()


def write_run_config(path: str | os.PathLike, config: dict[str, Any]) -> None:
    """Write ``key: value`` lines (flow-style YAML values), readable by the reference and yaml."""
    _write_text(path, "".join(f"{key}: {_yaml_value(value)}\n" for key, value in config.items()))


def read_encoder_decoder_config(path: str | os.PathLike) -> dict[str, Any]:
    """encoder_decoder_config.json, with the reference's defaults when the file is absent."""
    config = {"encoding_mode": DEFAULT_ENCODING_MODE, "save_decoder": False}
    file = Path(path) / ENCODER_DECODER_CONFIG
    if file.is_file():
        config.update(read_json(file))
    return config


def encoding_tokens(encoding_mode: str, num_special_tokens: int) -> int:
    """N of ``last_N_tokens`` (the only mode of the released models); N <= K."""
    match = re.fullmatch(r"last_(\d+)_tokens", encoding_mode)
    if not match:
        raise ValueError(f"unsupported encoding_mode {encoding_mode!r}: only 'last_<N>_tokens' exists")
    n = int(match.group(1))
    if not 1 <= n <= num_special_tokens:
        raise ValueError(f"encoding_mode {encoding_mode!r} needs 1 <= N <= K = {num_special_tokens}")
    return n


# ----------------------------------------------------------------------------------------- adapter


def read_token_indices(path: str | os.PathLike) -> list[int]:
    """The K special ids of ``path``/encoder/adapter_config.json: token_indices (TRAINABLE_TOKENS) or
    trainable_token_indices["embed_tokens"] (a LoRA encoder)."""
    config = read_json(Path(path) / ADAPTER_CONFIG)
    if config.get("peft_type") == "LORA":  # the "supervised" recipe: LoRA + trainable_token_indices
        indices = (config.get("trainable_token_indices") or {}).get("embed_tokens")
    elif config.get("peft_type") == "TRAINABLE_TOKENS":
        indices = config.get("token_indices")
    else:
        raise ValueError(
            f"{ADAPTER_CONFIG}: peft_type {config.get('peft_type')!r} is not supported "
            "(LLM2Vec-Gen encoders are TRAINABLE_TOKENS or LORA with trainable_token_indices adapters)"
        )
    if not isinstance(indices, list) or not indices:
        raise ValueError(f"{ADAPTER_CONFIG}: token_indices must be a non-empty list, got {indices!r}")
    return [int(i) for i in indices]


def read_delta(path: str | os.PathLike, k: int) -> torch.Tensor:
    """trainable_tokens_delta [K, H] fp32 of ``path``/encoder; the [V', H] table is never read."""
    file = Path(path) / ADAPTER_WEIGHTS
    with _parsing(file), safe_open(file, framework="pt") as f:
        keys = [key for key in f.keys() if key.endswith("trainable_tokens_delta")]  # noqa: SIM118
        delta = f.get_tensor(keys[0]).float() if len(keys) == 1 else None
    if delta is None:
        raise ValueError(f"{ADAPTER_WEIGHTS}: expected one trainable_tokens_delta tensor, found {keys}")
    if delta.dim() != 2 or delta.shape[0] != k:
        raise ValueError(
            f"{ADAPTER_WEIGHTS}: trainable_tokens_delta has shape {tuple(delta.shape)}, expected "
            f"[{k}, H] for the {k} token_indices"
        )
    return delta


def write_adapter(
    path: str | os.PathLike,
    token_indices: list[int],
    delta: torch.Tensor,
    base_table: torch.Tensor,
    encoder_config: dict[str, Any],
    base_model_name_or_path: str | None,
) -> None:
    """Write encoder/{adapter_config.json, adapter_model.safetensors, config.json} as PEFT does.

    delta [K, H] and base_table [len(tokenizer), H] are stored fp32; ``encoder_config`` is the base
    LLM's config dict (its vocab_size should be len(tokenizer)).
    """
    import peft

    root = Path(path)
    write_json(
        root / ADAPTER_CONFIG,
        {
            "auto_mapping": None,
            "base_model_name_or_path": base_model_name_or_path,
            "inference_mode": True,
            "init_weights": True,
            "peft_type": "TRAINABLE_TOKENS",
            "peft_version": peft.__version__,
            "revision": None,
            "target_modules": ["embed_tokens"],
            "task_type": None,
            "token_indices": [int(i) for i in token_indices],
        },
    )
    tensors = {
        BASE_TABLE_KEY: base_table.detach().float().cpu().contiguous(),
        DELTA_KEY: delta.detach().float().cpu().contiguous(),
    }
    atomic_write(root / ADAPTER_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_json(root / ENCODER_CONFIG, encoder_config)


# ------------------------------------------------------------------------------------------- heads


def read_head(path: str | os.PathLike) -> nn.Module:
    """Load a reconstruction_mlp / alignment_mlp file (weights_only), fp32: an nn.Linear for the
    released heads (size 1, pooling_mode "linear"), else a ``heads.ProjectionHead``."""
    with _parsing(path):
        saved = torch.load(path, map_location="cpu", weights_only=True)
    name = Path(path).name
    try:
        config, state = dict(saved["config"]), dict(saved["state_dict"])
        size, mode = int(config.get("size", 1)), str(config.get("pooling_mode", "linear"))
        weight = state["projection.weight"] if size == 1 else state["projection.0.weight"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{name}: expected {{'state_dict': {{'projection.weight', 'projection.bias'}}, 'config': ...}}"
        ) from exc
    out_dim, in_dim = weight.shape
    if (config.get("input_dim", in_dim), config.get("output_dim", out_dim)) != (in_dim, out_dim):
        raise ValueError(f"{name}: config dims disagree with the projection weight {tuple(weight.shape)}")
    if (size, mode) == (1, "linear"):
        head, prefix = nn.Linear(in_dim, out_dim), "projection."
    else:
        head, prefix = ProjectionHead(in_dim, out_dim, size, mode), ""
    try:
        head.load_state_dict({k.removeprefix(prefix): v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise ValueError(f"{name}: the state_dict does not fit a size-{size} {mode!r} head: {exc}") from exc
    return head


def write_head(path: str | os.PathLike, head: nn.Module, dtype: torch.dtype | None = None) -> None:
    """torch.save a head (nn.Linear or ``ProjectionHead``) in the reference's dict layout, its tensors
    in ``dtype`` (default: its own)."""
    dtype = dtype or next(head.parameters()).dtype
    prefix = "" if isinstance(head, ProjectionHead) else "projection."  # ProjectionHead's keys have it
    payload = {
        "state_dict": {prefix + k: v.detach().to("cpu", dtype).clone() for k, v in head.state_dict().items()},
        "config": {
            "input_dim": head.in_features,
            "output_dim": head.out_features,
            "dtype": str(dtype),
            "size": getattr(head, "size", 1),
            "pooling_mode": getattr(head, "pooling_mode", "linear"),
        },
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


# --------------------------------------------------------------------------------------- tokenizer


def write_tokenizer(path: str | os.PathLike, tokenizer, special_tokens: list[str]) -> None:
    """tokenizer.save_pretrained into a temporary directory, then each file renamed into ``path``.

    tokenizer_config.json lists the K tokens as ``additional_special_tokens``, the key both
    transformers 4 and 5 read; the list-valued ``extra_special_tokens`` that transformers 5 writes
    is dropped because transformers 4 (the reference package's) expects a dict there and fails.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=root))
    try:
        tokenizer.save_pretrained(staging)
        config_file = staging / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["additional_special_tokens"] = list(special_tokens)
        config.pop("extra_special_tokens", None)
        if config.get("tokenizer_class") == "TokenizersBackend":
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config.pop("is_local", None)
        # the released format pads on the left; transformers 5 does not save a padding_side set on
        # the instance, and the reference then pads right and pools pad positions
        config["padding_side"] = "left"
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for file in staging.iterdir():
            if file.is_file():
                with open(file, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(file, root / file.name)
        fsync_dir(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
