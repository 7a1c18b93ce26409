"""The one query tokeniser (encode, training, the integrations and the server) and its input checks.

A query becomes::

    tok(instruction + text, special tokens split, truncated to max_length - K) + the K special ids

- The text is tokenised as given (no stripping: the reference's ``encode``). Training strips its
  records before calling it (the reference's collator does), see ``train.data.tokenize_records``.
- ``split_special_tokens=True``: a user text containing ``<question3>`` (or ``<|im_end|>``) gets
  the plain-text pieces of that string, never the special id, so user text cannot inject a
  trainable token. The K special tokens are appended as ids.
- Truncation cuts the text only, so the K special ids always end the row: the same row the
  reference gets by truncating ``text + specials`` to max_length and writing the specials over the
  last K positions. The tokenizer's own BOS (Llama) is kept, as the reference keeps it.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

from transformers import PreTrainedTokenizerBase


def check_int(name: str, value: Any) -> None:
    """TypeError naming ``name`` unless value is an integer (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")


def check_positive(name: str, value: Any) -> None:
    """TypeError unless ``value`` is an int, ValueError unless it is >= 1."""
    check_int(name, value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_tokenize_options(max_length: Any, instruction: Any, k: int) -> None:
    """max_length an int > K (room for text beside the K special tokens); instruction a str or None."""
    check_int("max_length", max_length)
    if max_length <= k:
        raise ValueError(
            f"max_length={max_length} cannot hold the {k} special tokens and any text: it must be > {k}"
        )
    if instruction is not None and not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str or None, got {type(instruction).__name__}")


def check_texts(texts: Any) -> list[str]:
    """texts as a list of str: a str, or any iterable of str (list, tuple, generator, numpy array,
    pandas Series). TypeError for None, bytes, a non-iterable, an unordered set or mapping, or naming
    the first non-str item."""
    if isinstance(texts, str):
        return [texts]
    unordered = isinstance(texts, (Set, Mapping))
    if texts is None or isinstance(texts, (bytes, bytearray)) or unordered or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or an iterable of str, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    return [str(t) for t in items]  # numpy.str_ -> str


def check_id_rows(ids: Any, vocab: int) -> list[Sequence[int]]:
    """Pre-tokenised rows as a list of non-empty rows of ids in [0, vocab); errors name the row."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"ids must be a sequence of token-id rows, got {type(ids).__name__}")
    rows = list(ids)
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) == 0:
            raise ValueError(f"ids[{i}] must be a non-empty sequence of token ids (from tokenize)")
        low, high = min(row), max(row)
        if low < 0 or high >= vocab:
            raise ValueError(f"ids[{i}] holds id {low if low < 0 else high} outside [0, {vocab})")
    return rows


def text_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int, instruction: str | None = None
) -> tuple[list[list[int]], int]:
    """(token ids of ``instruction + text`` per text, special tokens split, truncated on the right to
    ``max_tokens``; how many texts were truncated). The tokenizer's own BOS/EOS are kept."""
    joined = [(instruction or "") + t for t in texts]
    rows = tokenizer(joined, split_special_tokens=True, padding=False)["input_ids"] if joined else []
    long = [i for i, row in enumerate(rows) if len(row) > max_tokens]
    if long:
        cut = tokenizer(
            [joined[i] for i in long], split_special_tokens=True, truncation=True, max_length=max_tokens
        )["input_ids"]
        for i, row in zip(long, cut, strict=True):
            rows[i] = row
    return [list(row) for row in rows], len(long)


def query_ids(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    special_ids: Sequence[int],
    max_length: int,
    instruction: str | None = None,
) -> list[list[int]]:
    """Token ids per text, unpadded: ``text_ids`` of ``instruction + text`` within max_length - K, then
    the K ``special_ids``. One warning per call counts the truncated texts."""
    k = len(special_ids)
    check_tokenize_options(max_length, instruction, k)
    rows, cut = text_ids(tokenizer, texts, max_length - k, instruction)
    if cut:
        warnings.warn(
            f"{cut} of {len(rows)} texts are longer than max_length={max_length} tokens with the "
            f"{k} special tokens; they were truncated and end with the special tokens",
            stacklevel=3,
        )
    special = list(special_ids)
    return [row + special for row in rows]
