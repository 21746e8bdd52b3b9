"""Command-line pieces shared by the subcommands (docs/design.md §9): the usage error, one
``--flag`` per dataclass field, and the ``KEY=VALUE`` / ``TARGET:KEY=VALUE`` / comma-list
parsers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any, Mapping, Sequence


class UsageError(Exception):
    """Bad command-line input: printed without a traceback, exit code 2."""


def flag_name(field_name: str) -> str:
    """``score_max_retain`` -> ``--score-max-retain``."""
    return "--" + field_name.replace("_", "-")


def _field_type(f: dataclasses.Field, hints: dict[str, Any]) -> Any:
    t = hints.get(f.name, f.type)
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """One ``--flag`` per dataclass field, grouped by ``metadata["group"]``, help from
    ``metadata["help"]``, choices from ``metadata["choices"]``, default = unset (``None``), so
    only the flags given on the command line override the config."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        group_name = f.metadata.get("group", "options")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{title}: {group_name}")
        g = groups[group_name]
        typ = _field_type(f, hints)
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        if typ is bool:
            g.add_argument(flag_name(f.name), dest=f"cfg_{f.name}",
                           action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            choices = f.metadata.get("choices")
            g.add_argument(flag_name(f.name), dest=f"cfg_{f.name}", type=typ, default=None,
                           choices=choices, metavar=None if choices else typ.__name__.upper(),
                           help=help_)


def dataclass_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dataclass fields given on the command line (flags added by
    :func:`add_dataclass_flags`), as ``{field: value}``."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}


def key_values(items: Sequence[str] | None, flag: str = "--task-option") -> dict[str, Any]:
    """``["forget=canaries", "n_forget=64"]`` -> dict, values parsed as JSON when they parse."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise UsageError(f"{flag} takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def target_overrides(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["so:eta=1e-7", "masked:lr=5e-3", "ga/mape:epochs=5"]`` ->
    ``{"so": {"eta": 1e-7}, "masked": {"lr": 5e-3}, "ga/mape": {"epochs": 5}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        if ":" not in item or "=" not in item.split(":", 1)[1]:
            raise UsageError(f"--override takes TARGET:KEY=VALUE, got {item!r}")
        target, kv = item.split(":", 1)
        out.setdefault(target.strip(), {}).update(key_values([kv], "--override"))
    return out


def merge_targets(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{target: {field: value}}`` layers merged per target (later layers win field by field)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for target, fields in layer.items():
            out.setdefault(target, {}).update(fields)
    return out


def csv_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; ``None`` stays ``None``; an empty list is an error."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"empty list {text!r}")
    return items
