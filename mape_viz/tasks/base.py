"""The ``Task`` bundle (model, tokenizer, forget / retain / test data, collator) and the
task registry behind ``load_task``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..registry import Registry

TASK_KINDS = ("classification", "causal_lm", "extractive_qa", "multiple_choice")

Collate = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]


@dataclass
class Task:
    """Everything an unlearning run needs, ready to use.

    Attributes:
        name: the registry name (``"toy-sentiment"``, ``"glue/sst2"``, ...).
        kind: ``"classification"`` | ``"causal_lm"`` | ``"extractive_qa"`` |
            ``"multiple_choice"`` (which loss and which batch keys, see ``collate``).
        model: the original model (trained on D = forget + retain), eval mode.
        tokenizer: its fast tokenizer (right padding).
        forget: D_f, the rows to unlearn.
        retain: D_r, the rows to keep.
        test: held-out rows (for generative tasks without a held-out split, see the task).
        collate: ``rows -> batch``; batch keys: ``input_ids`` (B, T) long,
            ``attention_mask`` (B, T), optional ``token_type_ids`` (B, T), and ``labels``
            (B,) for classification or (B, T) with -100 on prompt/padding for causal LM and
            multiple choice, or ``start_positions`` / ``end_positions`` (B,) for extractive
            QA. Right padding.
        extras: named extra sets; for generative tasks ``forget_perturbed`` /
            ``retain_perturbed`` (rows with ``paraphrased_answer`` and a
            ``perturbed_answer`` list, as TOFU's ``*_perturbed`` configs), ``world_facts``,
            ``real_authors`` (same columns) and ``idk`` ("I don't know" answers for DPO).
        retrained_model: the gold model trained on D_r only (``None`` when not available,
            e.g. for real tasks unless asked for).
        label_names: class names (classification, multiple choice), else ``None``.
        meta: options, cache paths, training times and other facts about the task.
    """

    name: str
    kind: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    forget: Dataset
    retain: Dataset
    test: Dataset
    collate: Collate
    extras: dict[str, Dataset] = field(default_factory=dict)
    retrained_model: PreTrainedModel | None = None
    label_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"kind must be one of {TASK_KINDS}, got {self.kind!r}")

    def split(self, name: str) -> Dataset:
        """``"forget"``, ``"retain"``, ``"test"`` or an ``extras`` key -> that dataset."""
        if name in ("forget", "retain", "test"):
            return getattr(self, name)
        if name in self.extras:
            return self.extras[name]
        raise ValueError(f"unknown split {name!r}; known: forget, retain, test, "
                         f"{', '.join(self.extras)}")

    def batches(self, split_or_dataset: str | Dataset | Sequence[dict[str, Any]],
                batch_size: int, shuffle: bool = False, seed: int = 0
                ) -> Iterator[dict[str, torch.Tensor]]:
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
        extras = ", ".join(f"{k}={len(v)}" for k, v in self.extras.items())
        return (f"Task({self.name!r}, kind={self.kind!r}, model={type(self.model).__name__}, "
                f"forget={len(self.forget)}, retain={len(self.retain)}, test={len(self.test)}"
                f"{', ' + extras if extras else ''}, retrained="
                f"{'yes' if self.retrained_model is not None else 'no'})")


TASKS: Registry[Callable[..., Task]] = Registry("task")

C = TypeVar("C")


def as_config(cls: type[C], value: C | Mapping[str, Any] | None, default: C | None = None) -> C:
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
            return replace(base, **value)
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
