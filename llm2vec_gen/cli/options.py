"""Command-line options generated from a dataclass: one ``--field-name`` per field, typed, with its
default and the ``help`` (and ``choices`` / ``min``) of the field's metadata."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any


def _bounded(base: Callable[[str], Any], low: int | float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = base(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = base.__name__  # argparse names the type in "invalid int value"
    return parse


def _scalar(hint: Any) -> tuple[type, bool]:
    """(the type of a field hint, whether None is allowed): ``int | None`` -> (int, True)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"cannot make a command-line option of type {hint}")
        return args[0], True
    return hint, False


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = ()) -> None:
    """Adds an option for every field of dataclass ``cls`` except ``skip``.

    bool fields become ``--name`` and ``--no-name``, mutually exclusive (``bool | None`` defaults to
    None: "let the program decide"); int, float and str fields take one value of that type.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, _ = _scalar(hints[f.name])
        meta = dict(f.metadata)
        help_text = meta.pop("help", None)
        if help_text is None:
            raise TypeError(f"{cls.__name__}.{f.name} has no help in its metadata")
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        shown = help_text if "default" in help_text else f"{help_text} (default: {default})"
        if kind is bool:
            both = parser.add_mutually_exclusive_group()
            both.add_argument(flag, dest=f.name, action="store_true", default=default, help=shown)
            both.add_argument("--no-" + flag[2:], dest=f.name, action="store_false", default=default)
            continue
        if kind not in (int, float, str):
            raise TypeError(f"cannot make a command-line option of {cls.__name__}.{f.name}: {kind}")
        low = meta.pop("min", None)
        parse = _bounded(kind, low) if low is not None else kind
        parser.add_argument(flag, type=parse, default=default, help=shown, **meta)


def dataclass_from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """An instance of ``cls`` from the options ``add_dataclass_options`` added, plus ``values``."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in values}
    return cls(**fields, **values)
