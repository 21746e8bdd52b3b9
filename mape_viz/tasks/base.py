"""The one ``Task`` type (model, tokenizer, forget / retain / test data, collator) and the
task registry behind ``load_task`` (docs/design.md §7).

Every task is a :class:`Task`: the embedded and real tasks of the registry, a local model and
data folder (:func:`mape_viz.tasks.local.load_local_task`), one built by hand, and the
variants the experiments and front ends make with :meth:`Task.replace` (other forget rows,
a split hidden from evaluation).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..registry import Registry

TASK_KINDS = ("classification", "causal_lm", "extractive_qa", "multiple_choice")
SPLIT_NAMES = ("forget", "retain", "test")

Collate = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
#: Rows of a split: a ``datasets.Dataset`` or a list of row dicts.
Rows = Dataset | Sequence[dict[str, Any]]


@dataclass(kw_only=True)
class Task:
    """Everything an unlearning run needs, ready to use. Keyword arguments only.

    Attributes:
        name: the registry name (``"toy-sentiment"``, ``"glue/sst2"``, ...); for your own
            task any label (run folders and records carry it), default ``"custom"``.
        kind: ``"classification"`` | ``"causal_lm"`` | ``"extractive_qa"`` |
            ``"multiple_choice"`` (which loss and which batch keys, see ``collate``).
        model: the original model (trained on D = forget + retain), eval mode.
        tokenizer: its fast tokenizer (right padding).
        forget: D_f, the rows to unlearn.
        retain: D_r, the rows to keep.
        test: held-out rows, or ``None`` (for generative tasks without a held-out split, see
            the task). Any split set to ``None`` (e.g. ``task.replace(retain=None)``) is
            skipped by :func:`mape_viz.metrics.evaluate`; unlearning needs forget and retain.
        collate: ``rows -> batch``; batch keys: ``input_ids`` (B, T) long,
            ``attention_mask`` (B, T), optional ``token_type_ids`` (B, T), and ``labels``
            (B,) for classification or (B, T) with -100 on prompt/padding for causal LM and
            multiple choice, or ``start_positions`` / ``end_positions`` (B,) for extractive
            QA. Right padding.
        extras: named extra sets; for generative tasks ``forget_perturbed`` /
            ``retain_perturbed`` (rows with ``paraphrased_answer`` and a
            ``perturbed_answer`` list, as TOFU's ``*_perturbed`` configs), ``world_facts``,
            ``real_authors`` (same columns) and ``idk`` ("I don't know" answers for DPO: rows
            with an ``answer`` column, or a list of strings).
        retrained_model: the gold model trained on D_r only (``None`` when not available,
            e.g. for real tasks unless asked for). RT on the task's own split returns it.
        label_names: class names (classification, multiple choice), else ``None``.
        meta: options, cache paths, training times and other facts about the task.
    """

    name: str = "custom"
    kind: str
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    forget: Rows | None
    retain: Rows | None
    test: Rows | None = None
    collate: Collate
    extras: dict[str, Any] = field(default_factory=dict)
    retrained_model: nn.Module | None = None
    label_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"kind must be one of {TASK_KINDS}, got {self.kind!r}")

    def replace(self, **changes: Any) -> Task:
        """A new ``Task`` with ``changes`` (field -> value), sharing everything else (model,
        datasets, extras: a shallow copy; nothing is copied or modified).

        E.g. ``task.replace(forget=task.forget.select(range(4)))`` (unlearn four rows) or
        ``task.replace(retain=None, test=None)`` (evaluate the forget split only). The
        ``extras`` and ``retrained_model`` stay as they are: replace them too when they
        describe the old rows (``forget_perturbed`` for the forget split; the retrained
        model, which RT returns, was trained on the old D_r).
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"Task has no field {', '.join(map(repr, unknown))}; fields: "
                             f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def split(self, name: str) -> Rows:
        """``"forget"``, ``"retain"``, ``"test"`` or an ``extras`` key -> that dataset."""
        if name in SPLIT_NAMES:
            rows = getattr(self, name)
            if rows is None:
                raise ValueError(f"task {self.name!r} has no {name!r} split")
            return rows
        if name in self.extras:
            return self.extras[name]
        raise ValueError(f"unknown split {name!r}; known: {', '.join(SPLIT_NAMES)}"
                         f"{''.join(', ' + k for k in self.extras)}")

    def batches(self, split_or_dataset: str | Rows, batch_size: int, shuffle: bool = False,
                seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Collated batches of a split (by name) or of any rows, in order or shuffled by
        ``seed``. The last batch may be smaller."""
        data = self.split(split_or_dataset) if isinstance(split_or_dataset, str) \
            else split_or_dataset
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = np.arange(len(data))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(data))
        for start in range(0, len(order), batch_size):
            idx = [int(i) for i in order[start:start + batch_size]]
            if isinstance(data, Dataset):
                cols = data[idx]  # dict of column -> list
                rows = [dict(zip(cols, vals)) for vals in zip(*cols.values())]
            else:
                rows = [data[i] for i in idx]
            yield self.collate(rows)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={'-' if getattr(self, s) is None else len(getattr(self, s))}"
                          for s in SPLIT_NAMES)
        extras = ", ".join(f"{k}={len(v)}" for k, v in self.extras.items())
        return (f"Task({self.name!r}, kind={self.kind!r}, model={type(self.model).__name__}, "
                f"{sizes}{', ' + extras if extras else ''}, retrained="
                f"{'yes' if self.retrained_model is not None else 'no'})")


TASKS: Registry[Callable[..., Task]] = Registry("task")

C = TypeVar("C")


def coerce_dataclass(cls: type[C], value: C | Mapping[str, Any] | None,
                     default: C | None = None) -> C:
    """``value`` as a ``cls`` dataclass: ``None`` -> ``default`` (or ``cls()``), a mapping
    (e.g. JSON from the command line) -> ``default`` with those fields replaced, an
    instance -> itself."""
    base = cls() if default is None else default
    if value is None:
        return base
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        try:
            return dataclasses.replace(base, **value)
        except TypeError as err:
            raise ValueError(f"bad {cls.__name__} options {dict(value)}: {err}") from None
    raise TypeError(f"expected a {cls.__name__}, a dict or None, got {type(value).__name__}")


def load_task(name: str, **options: Any) -> Task:
    """Build the task registered as ``name`` (see ``TASKS.names()``) with ``options``.

    Raises ``ValueError`` for an unknown name (listing the known ones) or an option the
    task does not take (listing the ones it does).
    """
    loader = TASKS.get(name)
    params = inspect.signature(loader).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        raise ValueError(f"task {name!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(params)}")
    return loader(**options)
