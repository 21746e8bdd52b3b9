"""The data of one unlearning run: :func:`resolve_data` turns ``unlearn``'s inputs into a
:class:`RunData` (docs/design.md §5).

``unlearn`` takes a ``Task`` (its forget / retain sets, or ``Dataset`` s of its rows passed as
``forget=`` / ``retain=``, batched by the task's collator and reshuffled each epoch with the
seed) or a bare model with iterables of batches (used as given: their order and batch size).
Either way a run reads training :class:`~mape_viz.unlearning.finetune.Source` s and lazily
collated lists for the scoring and Fisher passes, so that a run that does not score never
collates them. DPO's forget batches carry their "I don't know" twin (``idk_*`` keys).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..losses import IDK_PREFIX, LOSS_KINDS, infer_kind
from .config import UnlearnConfig
from .finetune import Source
from .methods import Method, check_method

Batch = Mapping[str, Any]


def is_task(obj: Any) -> bool:
    """Whether ``obj`` is a task (has ``batches`` and ``model``) rather than a model."""
    return (not isinstance(obj, nn.Module)) and hasattr(obj, "batches") and hasattr(obj, "model")


def is_dataset(x: Any) -> bool:
    """Whether ``x`` is a ``datasets.Dataset`` (rows to collate) rather than batches."""
    return hasattr(x, "select") and hasattr(x, "column_names")


@dataclass
class RunData:
    """Everything a run reads, as re-iterable sources.

    Attributes:
        model: the input model (never modified).
        kind: the task kind the losses use (multiple choice → ``causal_lm``).
        forget, retain: training sources (batches of ``config.batch_size`` for task data).
        score_forget, score_retain: ``() -> list of batches`` for scoring (retain capped);
            lazy, so runs that do not score never collate them.
        fisher_retain: ``() -> batches`` for the SO Fisher (capped by ``fisher_max_samples``).
        task: the Task, if one was given.
        retrained: the task's ``retrained_model`` when the forget set is the task's own (the
            model trained on D_r alone), else None.
        forget_rows: the forget rows as a dataset (task runs), for checks that generate.
        unseen_model: a model that never saw the forget rows — the task's retrained model
            when the forget rows are the task's forget rows or some of them — else None (the
            target of ``stop_when='retrained'``, looked up only for that rule; RT still
            returns ``retrained`` only for the task's own forget set).
    """

    model: nn.Module
    kind: str
    forget: Source | None
    retain: Source | None
    score_forget: Callable[[], list[Batch]] | None
    score_retain: Callable[[], list[Batch]] | None
    fisher_retain: Callable[[], list[Batch]] | None
    task: Any = None
    retrained: nn.Module | None = None
    forget_rows: Any = None
    unseen_model: nn.Module | None = None


def _n_samples(batches: Sequence[Batch]) -> int:
    return sum(int(torch.as_tensor(b["input_ids"]).shape[0]) for b in batches)


def take_samples(batches: Iterable[Batch], n: int) -> list[Batch]:
    """The first ``n`` samples of ``batches`` (0 = all), cutting the last batch if needed."""
    out, count = [], 0
    for b in batches:
        if n and count >= n:
            break
        size = int(torch.as_tensor(b["input_ids"]).shape[0])
        if n and count + size > n:
            keep = n - count
            b = {k: (v[:keep] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == size
                     else v) for k, v in b.items()}
            size = keep
        out.append(b)
        count += size
    return out


def materialise(batches: Any, name: str) -> list[Batch]:
    """``batches`` (one batch dict or an iterable of them) as a checked, non-empty list."""
    if isinstance(batches, Mapping):
        batches = [batches]
    out = list(batches)
    if not out:
        raise ValueError(f"the {name} set is empty")
    for b in out:
        if not isinstance(b, Mapping) or "input_ids" not in b:
            raise TypeError(f"{name} batches must be dicts with 'input_ids', 'attention_mask' "
                            "and targets ('labels' or QA positions)")
    return out


def _given_source(batches: Any, name: str) -> Source:
    lst = materialise(batches, name)
    return Source(lambda e: lst, _n_samples(lst), name, len(lst))


def _subset(ds: Any, n: int, seed: int) -> Any:
    if not n or len(ds) <= n:
        return ds
    idx = sorted(random.Random(seed).sample(range(len(ds)), n))
    return ds.select(idx)


def _idk_answers(task: Any) -> list[str]:
    extras = getattr(task, "extras", None) or {}
    idk = extras.get("idk") if isinstance(extras, Mapping) else None
    if idk is None:
        raise ValueError("DPO needs \"I don't know\" answers: this task has no extras['idk']")
    if is_dataset(idk):
        col = next((c for c in ("answer", "text", "idk") if c in idk.column_names), None)
        if col is None:
            raise ValueError(f"extras['idk'] has no 'answer'/'text' column: {idk.column_names}")
        return [str(a) for a in idk[col]]
    answers = [a if isinstance(a, str) else (a.get("answer") or a.get("text")) for a in idk]
    if not answers:
        raise ValueError("extras['idk'] is empty")
    return [str(a) for a in answers]


def _idk_source(task: Any, ds: Any, batch_size: int, seed: int) -> Source:
    """Forget batches with their "I don't know" twin under ``idk_*`` keys."""
    answers = _idk_answers(task)
    answer_key = getattr(task.collate, "answer_key", "answer")

    def make(epoch: int):
        gen = torch.Generator().manual_seed(seed + epoch)
        rng = random.Random(seed + epoch)
        for chunk in torch.randperm(len(ds), generator=gen).split(batch_size):
            rows = [ds[int(i)] for i in chunk]
            idk_rows = [{**r, answer_key: rng.choice(answers)} for r in rows]
            batch = dict(task.collate(rows))
            batch.update({IDK_PREFIX + k: v for k, v in task.collate(idk_rows).items()})
            yield batch

    return Source(make, len(ds), "forget", math.ceil(len(ds) / batch_size))


def resolve_data(task_or_model: Any, method: str, cfg: UnlearnConfig, *, forget: Any = None,
                 retain: Any = None, kind: str | None = None,
                 seed: int = 0) -> tuple[RunData, Method]:
    """Turn ``unlearn``'s inputs into a :class:`RunData` and check the method fits.

    ``forget`` / ``retain`` may be a ``datasets.Dataset`` (with a Task: batched by the task's
    collator) or an iterable of batches (used as given: their order and batch size).
    """
    if is_task(task_or_model):
        return _task_data(task_or_model, method, cfg, forget, retain, kind, seed)
    if not isinstance(task_or_model, nn.Module):
        raise TypeError("unlearn() takes a Task (from mape_viz.tasks.load_task) or a model, "
                        f"got {type(task_or_model).__name__}")
    model = task_or_model
    if forget is None:
        raise ValueError("with a model, pass forget= (an iterable of batches)")
    f_list = materialise(forget, "forget")
    r_list = materialise(retain, "retain") if retain is not None else None
    kind = kind or infer_kind(f_list[0])
    m = check_method(method, kind)
    if "idk" in m.needs and not any(k.startswith(IDK_PREFIX) for k in f_list[0]):
        raise ValueError(f"{m.name.upper()} on a model + batches needs forget batches with "
                         "'idk_input_ids', 'idk_attention_mask' and 'idk_labels' (the \"I don't "
                         "know\" answers)")
    has_retain = r_list is not None
    data = RunData(
        model=model, kind=kind, forget=_given_source(f_list, "forget"),
        retain=_given_source(r_list, "retain") if has_retain else None,
        score_forget=lambda: f_list,
        score_retain=(lambda: take_samples(r_list, cfg.score_max_retain)) if has_retain else None,
        fisher_retain=(lambda: take_samples(r_list, cfg.fisher_max_samples)) if has_retain
        else None)
    return data, m


def _task_data(task: Any, method: str, cfg: UnlearnConfig, forget: Any, retain: Any,
               kind: str | None, seed: int) -> tuple[RunData, Method]:
    kind = kind or task.kind
    kind = LOSS_KINDS.get(kind, kind)
    m = check_method(method, kind)
    f_ds = task.forget if forget is None else forget
    r_ds = task.retain if retain is None else retain

    def source(x: Any, name: str, bs: int) -> Source:
        if is_dataset(x):
            return Source(lambda e, x=x: task.batches(x, bs, shuffle=True, seed=seed + e),
                          len(x), name, math.ceil(len(x) / bs))
        return _given_source(x, name)

    def listed(x: Any, n: int, bs: int) -> Callable[[], list[Batch]]:
        # lazy: only the passes a method needs collate their data
        if is_dataset(x):
            return lambda: list(task.batches(_subset(x, n, seed), bs, shuffle=False))
        return lambda: take_samples(x, n)

    if "idk" in m.needs and is_dataset(f_ds):
        f_src = _idk_source(task, f_ds, cfg.batch_size, seed)
    else:
        f_src = source(f_ds, "forget", cfg.batch_size)
    has_retain = r_ds is not None
    r_src = source(r_ds, "retain", cfg.retain_batch_size or cfg.batch_size) if has_retain else None
    retrained = getattr(task, "retrained_model", None) if forget is None else None
    unseen = retrained
    if unseen is None and str(cfg.stop_when).strip().lower() == "retrained" \
            and getattr(task, "retrained_model", None) is not None \
            and rows_within(f_ds, task.forget):  # only the 'retrained' rule reads it
        unseen = task.retrained_model
    bs = cfg.score_batch_size
    data = RunData(
        model=task.model, kind=kind, forget=f_src, retain=r_src,
        score_forget=listed(f_ds, 0, bs),
        score_retain=listed(r_ds, cfg.score_max_retain, bs) if has_retain else None,
        fisher_retain=listed(r_ds, cfg.fisher_max_samples, bs) if has_retain else None,
        task=task, retrained=retrained, forget_rows=f_ds if is_dataset(f_ds) else None,
        unseen_model=unseen)
    return data, m


def rows_within(rows: Any, of: Any) -> bool:
    """Whether every row of ``rows`` is a row of ``of`` (two datasets): by the ``idx`` column
    when both have one, else by equal column values. False for anything else."""
    if not (is_dataset(rows) and is_dataset(of)) or len(rows) == 0:
        return False
    if "idx" in rows.column_names and "idx" in of.column_names:
        return set(rows["idx"]) <= set(of["idx"])
    cols = [c for c in rows.column_names if c in of.column_names]
    if cols != list(rows.column_names):
        return False
    key = lambda r: tuple(repr(r[c]) for c in cols)  # noqa: E731
    return {key(r) for r in rows} <= {key(r) for r in of}
