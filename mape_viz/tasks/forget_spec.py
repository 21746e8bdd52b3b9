"""Forget sets a researcher uses, as one ``forget`` option (docs/design.md §7.2).

Accepted values (Python objects, or strings as the command line's ``--forget`` gives them):

- ``"random"``: ``n_forget`` random training rows by ``seed`` (the paper: 128);
- ``128``, ``"128"`` or ``"random:128"``: that many random rows by ``seed``;
- ``0.05``, ``"0.05"`` or ``"random:0.05"``: that fraction of the training rows (at least one);
- ``"random:128@16"``: the same with seed 16 (overrides ``seed``);
- ``[3, 17, 42]``, ``"ids:3,17,42"`` or ``"3,17,42"``: those row ids (one id: ``"ids:3"``);
- ``"file:ids.txt"`` (or a ``Path``): the ids in a file, one per line (``#`` comments) or a
  JSON list;
- ``"column:is_forget"``: the rows whose boolean column is true (``true/1/yes``);
- ``"label-flip:16"`` (``"label-flip:16@7"``): 16 random rows (by ``seed``) whose label is
  changed to another label *before* fine-tuning, so the model must memorise them — the
  real-data analogue of the toy task's canaries.

Row ids are the values of the ``idx`` column; a data set without one gets ``idx`` = the
row's position in its file (0 = the first row after the header), before any row is dropped.
A task may also name its own sets (``named``, e.g. ``toy-sentiment``'s ``"canaries"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .readers import DataError
from .splits import random_forget_indices

__all__ = ["ForgetPlan", "ForgetSpec", "ID_COLUMN", "flip_labels", "parse_forget",
           "plan_forget"]

ID_COLUMN = "idx"
KINDS = ("random", "ids", "file", "column", "label-flip", "named")
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f", ""}

ForgetOption = str | int | float | Sequence[int] | os.PathLike


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed ``forget`` option.

    Attributes:
        kind: one of ``random``, ``ids``, ``file``, ``column``, ``label-flip``, ``named``.
        count: how many rows (``random``, ``label-flip``), or ``None`` = ``n_forget``.
        fraction: a fraction of the training rows instead of ``count`` (``random``).
        ids: the row ids (``ids``).
        path: the file of ids (``file``).
        column: the boolean column (``column``) or the set's name (``named``).
        seed: a seed given in the spec (``@16``), else ``None`` = the task's ``seed``.
    """

    kind: str
    count: int | None = None
    fraction: float | None = None
    ids: tuple[int, ...] = ()
    path: str | None = None
    column: str | None = None
    seed: int | None = None


@dataclass
class ForgetPlan:
    """Which training rows are forgotten, and how.

    Attributes:
        positions: the forget rows' positions in the training set (sorted).
        description: the spec as text, for records (``"random:128@42"``, ``"ids:3"`` ...).
        flips: ``label-flip`` only: ``[{"idx", "position", "original", "flipped"}, ...]``,
            one per flipped row (labels as class ids).
    """

    positions: list[int]
    description: str
    flips: list[dict[str, int]] = field(default_factory=list)

    @property
    def label_flip(self) -> bool:
        return bool(self.flips)


def _bad(value: Any, why: str) -> DataError:
    return DataError(f"bad forget set {value!r}: {why}. Accepted: 'random', an int N or "
                     f"'random:N' (N random rows), a fraction 0<f<1 or 'random:f', "
                     f"'random:N@SEED', a list of row ids or 'ids:3,17', 'file:PATH' (ids, one "
                     f"per line or a JSON list), 'column:NAME' (a boolean column), "
                     f"'label-flip:N'")


def _count_or_fraction(text: str, value: Any) -> tuple[int | None, float | None]:
    try:
        number = float(text)
    except ValueError:
        raise _bad(value, f"{text!r} is not a number") from None
    if number.is_integer() and number >= 1:
        return int(number), None
    if 0 < number < 1:
        return None, number
    raise _bad(value, f"{text!r} must be a count >= 1 or a fraction between 0 and 1")


def _int_list(text: str, value: Any) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise _bad(value, "row ids must be integers") from None


def parse_forget(forget: ForgetOption, named: Sequence[str] = ()) -> ForgetSpec:
    """``forget`` (see the module docstring) as a :class:`ForgetSpec`; ``named`` are the
    task's own set names. Raises :class:`~mape_viz.tasks.readers.DataError` for anything
    else, listing what is accepted."""
    if isinstance(forget, bool):
        raise _bad(forget, "a bool is not a forget set")
    if isinstance(forget, (int, np.integer)):
        if forget < 1:
            raise _bad(forget, "a count must be >= 1")
        return ForgetSpec("random", count=int(forget))
    if isinstance(forget, (float, np.floating)):
        count, fraction = _count_or_fraction(repr(float(forget)), forget)
        return ForgetSpec("random", count=count, fraction=fraction)
    if isinstance(forget, os.PathLike):
        return ForgetSpec("file", path=str(forget))
    if isinstance(forget, str):
        text = forget.strip()
        if text in named:
            return ForgetSpec("named", column=text)
        if text == "random":
            return ForgetSpec("random")
        head, sep, rest = text.partition(":")
        head = head.strip().lower()
        if not sep:
            if "," in text and text.replace(",", "").replace(" ", "").isdigit():
                return ForgetSpec("ids", ids=_int_list(text, forget))
            try:
                float(text)
            except ValueError:
                pass
            else:  # "128" or "0.05" as the command line gives an int or a float
                count, fraction = _count_or_fraction(text, forget)
                return ForgetSpec("random", count=count, fraction=fraction)
            raise _bad(forget, "unknown form" + (f" (this task's own sets: {list(named)})"
                                                  if named else ""))
        if head == "ids":
            ids = _int_list(rest, forget)
            if not ids:
                raise _bad(forget, "no row ids")
            return ForgetSpec("ids", ids=ids)
        if head == "file":
            return ForgetSpec("file", path=rest.strip())
        if head == "column":
            if not rest.strip():
                raise _bad(forget, "no column name")
            return ForgetSpec("column", column=rest.strip())
        if head in ("random", "label-flip"):
            amount, _, seed_text = rest.partition("@")
            seed = None
            if seed_text:
                if not seed_text.strip().isdigit():
                    raise _bad(forget, f"seed {seed_text!r} is not an integer")
                seed = int(seed_text)
            count, fraction = _count_or_fraction(amount.strip(), forget)
            if head == "label-flip" and fraction is not None:
                raise _bad(forget, "label-flip takes a count of rows")
            return ForgetSpec(head, count=count, fraction=fraction, seed=seed)
        raise _bad(forget, f"unknown kind {head!r}")
    if isinstance(forget, (Sequence, range, np.ndarray)):
        try:
            ids = tuple(int(i) for i in forget)
        except (TypeError, ValueError):
            raise _bad(forget, "row ids must be integers") from None
        if not ids:
            raise _bad(forget, "no row ids")
        return ForgetSpec("ids", ids=ids)
    raise _bad(forget, f"a {type(forget).__name__} is not a forget set")


def _read_ids(path: str) -> tuple[int, ...]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"forget-id file not found: {p}")
    text = p.read_text(encoding="utf-8").strip()
    try:
        if text.startswith("["):
            return tuple(int(i) for i in json.loads(text))
        lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        return tuple(int(ln) for ln in lines if ln)
    except (ValueError, TypeError) as err:
        raise DataError(f"forget-id file {p}: expected one integer row id per line or a JSON "
                        f"list of integers ({err})") from None


def _truth(value: Any, column: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if value is not None else ""
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise DataError(f"forget column {column!r} must be boolean (true/false, 1/0, yes/no); "
                    f"found {value!r}")


def _positions_of_ids(train: Dataset, ids: Sequence[int], what: str) -> list[int]:
    if len(set(ids)) != len(ids):
        raise DataError(f"{what} lists some row ids twice")
    where = {int(v): i for i, v in enumerate(train[ID_COLUMN])}
    unknown = [i for i in ids if i not in where]
    if unknown:
        lo, hi = min(where, default=0), max(where, default=-1)
        raise DataError(f"{what}: row ids {unknown[:5]}{' ...' if len(unknown) > 5 else ''} "
                        f"are not in the training set (its '{ID_COLUMN}' values run "
                        f"{lo}..{hi}, {len(where)} rows)")
    return sorted(where[i] for i in ids)


def plan_forget(train: Dataset, forget: ForgetOption, seed: int, n_forget: int = 128, *,
                label_column: str | None = None, n_labels: int | None = None,
                named: Mapping[str, Sequence[int]] | None = None) -> ForgetPlan:
    """The training rows ``forget`` names (see the module docstring).

    Args:
        train: the training set D, with an ``idx`` column (row ids).
        forget: the option.
        seed: the seed of random sets (a ``@SEED`` in the spec wins).
        n_forget: the size of ``"random"``.
        label_column, n_labels: integer class ids and their number (``label-flip`` only).
        named: the task's own sets: name -> row positions.
    Returns:
        A :class:`ForgetPlan`; for ``label-flip`` its ``flips`` say which labels to change
        (apply them with :func:`flip_labels`).
    """
    named = named or {}
    spec = parse_forget(forget, list(named))
    n = len(train)
    seed = spec.seed if spec.seed is not None else seed
    if spec.kind == "named":
        return ForgetPlan(sorted(int(i) for i in named[spec.column]), spec.column)
    if spec.kind in ("random", "label-flip"):
        count = spec.count if spec.count is not None else n_forget
        if spec.fraction is not None:
            count = max(1, round(spec.fraction * n))
        positions = random_forget_indices(n, count, seed)
        desc = f"{spec.kind}:{count}@{seed}"
        if spec.kind == "random":
            return ForgetPlan(positions, desc)
        if label_column is None or not n_labels or n_labels < 2:
            raise DataError("label-flip needs a classification set with at least 2 labels")
        rng = np.random.default_rng([seed, 1])
        ids, labels = train[ID_COLUMN], train[label_column]
        flips = []
        for p in positions:
            old = int(labels[p])
            others = [c for c in range(n_labels) if c != old]
            flips.append({"idx": int(ids[p]), "position": p, "original": old,
                          "flipped": int(others[int(rng.integers(len(others)))])})
        return ForgetPlan(positions, desc, flips)
    if spec.kind == "ids":
        return ForgetPlan(_positions_of_ids(train, spec.ids, "the forget set"),
                          f"ids:{len(spec.ids)}")
    if spec.kind == "file":
        ids = _read_ids(spec.path)
        if not ids:
            raise DataError(f"forget-id file {spec.path} lists no row ids")
        return ForgetPlan(_positions_of_ids(train, ids, f"forget-id file {spec.path}"),
                          f"file:{spec.path}")
    # column
    if spec.column not in train.column_names:
        raise DataError(f"forget column {spec.column!r} is not in the training set (columns: "
                        f"{train.column_names})")
    positions = [i for i, v in enumerate(train[spec.column]) if _truth(v, spec.column)]
    if not positions:
        raise DataError(f"forget column {spec.column!r} is false on every training row")
    return ForgetPlan(positions, f"column:{spec.column}")


def flip_labels(train: Dataset, plan: ForgetPlan, label_column: str) -> Dataset:
    """``train`` with ``plan``'s flipped labels in ``label_column`` and two new columns:
    ``is_flipped`` (bool) and ``original_label`` (the class id before the flip)."""
    new = {f["position"]: f["flipped"] for f in plan.flips}
    labels = [int(v) for v in train[label_column]]
    flipped = [new.get(i, v) for i, v in enumerate(labels)]
    features = train.features.copy()
    out = train.remove_columns([label_column]).add_column(label_column, flipped)
    out = out.cast_column(label_column, features[label_column]) \
        if hasattr(features[label_column], "names") else out
    out = out.add_column("is_flipped", [i in new for i in range(len(train))])
    out = out.add_column("original_label", labels)
    return out.select_columns(train.column_names + ["is_flipped", "original_label"])
