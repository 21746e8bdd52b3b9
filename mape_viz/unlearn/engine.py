"""``unlearn()``: one unlearning run — mask, method, result (DESIGN §4).

Flow: resolve the data (a ``Task`` or a model + batches) → deep-copy the model (the input
is never modified) → make the module mask (``full``: none; ``mape``: MAPE scores with the
method's objective, greedy-refined; ``sure`` / ``random`` / ``magnitude``: baseline scores,
not refined) → run the method on a :class:`~mape_viz.unlearn.sparse.SparseParams` of the copy
(only selected slices train; everything else stays bit-identical) → count what changed.
"""

from __future__ import annotations

import copy
import math
import random
import resource
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..losses import infer_kind
from ..types import ModuleMask, ModuleScores
from .config import UnlearnConfig, as_config
from .methods import (IDK_PREFIX, LOSS_KINDS, METHODS, Callback, LossContext, Method, Source, check_method,
                      finetune)
from .result import UnlearnResult, count_changed, fingerprint, whole_changes
from .second_order import run_so
from .sparse import SparseParams

Batch = Mapping[str, Any]

#: Selector names accepted by ``unlearn`` besides the score selectors of ``mape_viz.scores``.
FULL = "full"


def selector_names() -> list[str]:
    """``full`` plus every registered score selector (``mape``, ``sure``, ``random``, ...)."""
    from ..scores import SELECTORS

    return [FULL] + SELECTORS.names()


# ---------------------------------------------------------------------------------------------
# Data


def is_task(obj: Any) -> bool:
    return (not isinstance(obj, nn.Module)) and hasattr(obj, "batches") and hasattr(obj, "model")


@dataclass
class RunData:
    """Everything a run reads, as re-iterable sources.

    Attributes:
        model: the input model (never modified).
        kind: task kind.
        forget, retain: training sources (batches of ``config.batch_size`` for task data).
        score_forget, score_retain: ``() -> list of batches`` for scoring (retain capped);
            lazy, so runs that do not score never collate them.
        fisher_retain: ``() -> batches`` for the SO Fisher (capped by ``fisher_max_samples``).
        task: the Task, if one was given.
        own_split: the forget set is the task's own (so ``task.retrained_model`` applies).
    """

    model: nn.Module
    kind: str
    forget: Source | None
    retain: Source | None
    score_forget: Callable[[], list[Batch]] | None
    score_retain: Callable[[], list[Batch]] | None
    fisher_retain: Callable[[], list[Batch]] | None
    task: Any = None
    own_split: bool = False


def _is_dataset(x: Any) -> bool:
    return hasattr(x, "select") and hasattr(x, "column_names")


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
    if _is_dataset(idk):
        col = next((c for c in ("answer", "text", "idk") if c in idk.column_names), None)
        if col is None:
            raise ValueError(f"extras['idk'] has no 'answer'/'text' column: {idk.column_names}")
        return [str(a) for a in idk[col]]
    answers = [a if isinstance(a, str) else (a.get("answer") or a.get("text")) for a in idk]
    if not answers:
        raise ValueError("extras['idk'] is empty")
    return [str(a) for a in answers]


def _dpo_source(task: Any, ds: Any, batch_size: int, seed: int) -> Source:
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
                 retain: Any = None, kind: str | None = None, seed: int = 0) -> tuple[RunData, Method]:
    """Turn ``unlearn``'s inputs into a :class:`RunData` and check the method fits.

    ``forget`` / ``retain`` may be a ``datasets.Dataset`` (with a Task: batched by the task's
    collator) or an iterable of batches (used as given: their order and batch size).
    """
    if is_task(task_or_model):
        task = task_or_model
        model = task.model
        kind = kind or task.kind
        # multiple choice (WMDP / MMLU) trains with the causal-LM loss on its text
        kind = LOSS_KINDS.get(kind, kind)
        m = check_method(method, kind)
        own = forget is None
        f_ds = task.forget if forget is None else forget
        r_ds = task.retain if retain is None else retain

        def source(x: Any, name: str, bs: int) -> Source:
            if _is_dataset(x):
                return Source(lambda e, x=x: task.batches(x, bs, shuffle=True, seed=seed + e),
                              len(x), name, math.ceil(len(x) / bs))
            return _given_source(x, name)

        def listed(x: Any, n: int, bs: int) -> Callable[[], list[Batch]]:
            # lazy: only the passes a method needs collate their data
            if _is_dataset(x):
                return lambda: list(task.batches(_subset(x, n, seed), bs, shuffle=False))
            return lambda: take_samples(x, n)

        if m.name == "dpo" and _is_dataset(f_ds):
            f_src = _dpo_source(task, f_ds, cfg.batch_size, seed)
        else:
            f_src = source(f_ds, "forget", cfg.batch_size)
        r_src = source(r_ds, "retain", cfg.retain_batch_size or cfg.batch_size) \
            if r_ds is not None else None
        data = RunData(
            model=model, kind=kind, forget=f_src, retain=r_src,
            score_forget=listed(f_ds, 0, cfg.score_batch_size),
            score_retain=listed(r_ds, cfg.score_max_retain, cfg.score_batch_size) if r_ds is not None else None,
            fisher_retain=listed(r_ds, cfg.fisher_max_samples, cfg.score_batch_size) if r_ds is not None else None,
            task=task, own_split=own)
        return data, m
    if not isinstance(task_or_model, nn.Module):
        raise TypeError("unlearn() takes a Task (from mape_viz.tasks.load_task) or a model, "
                        f"got {type(task_or_model).__name__}")
    model = task_or_model
    if forget is None:
        raise ValueError("with a model, pass forget= (an iterable of batches)")
    f_list = _materialise(forget, "forget")
    r_list = _materialise(retain, "retain") if retain is not None else None
    kind = kind or infer_kind(f_list[0])
    m = check_method(method, kind)
    if m.name == "dpo" and not any(k.startswith(IDK_PREFIX) for k in f_list[0]):
        raise ValueError("DPO on a model + batches needs forget batches with 'idk_input_ids', "
                         "'idk_attention_mask' and 'idk_labels' (the \"I don't know\" answers)")
    data = RunData(
        model=model, kind=kind, forget=_given_source(f_list, "forget"),
        retain=_given_source(r_list, "retain") if r_list is not None else None,
        score_forget=lambda: f_list,
        score_retain=(lambda: take_samples(r_list, cfg.score_max_retain)) if r_list is not None else None,
        fisher_retain=(lambda: take_samples(r_list, cfg.fisher_max_samples)) if r_list is not None else None)
    return data, m


def _materialise(batches: Any, name: str) -> list[Batch]:
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
    lst = _materialise(batches, name)
    return Source(lambda e: lst, _n_samples(lst), name, len(lst))


# ---------------------------------------------------------------------------------------------
# Masks and memory


def make_mask(model: nn.Module, data: RunData, objective: str, selector: str, sparsity: float,
              cfg: UnlearnConfig, seed: int = 0, progress: bool = False
              ) -> tuple[ModuleScores, ModuleMask]:
    """Score modules with ``selector`` (MAPE: the method's objective) and select the top
    ``1 − sparsity`` per kind; MAPE masks are refined by ``cfg.refine``."""
    from ..scores import score_modules
    from ..selection import select_modules

    if data.score_retain is None:
        raise ValueError("scoring needs a retain set: pass retain=")
    scores = score_modules(model, data.score_forget(), data.score_retain(), objective=objective,
                           selector=selector, kind=data.kind, seed=seed, progress=progress)
    refine = cfg.refine if selector == "mape" and cfg.refine not in (None, "none") else None
    mask = select_modules(scores, sparsity=sparsity, granularity=cfg.granularity,
                          refine=refine, seed=seed)
    return scores, mask


class MemoryMeter:
    """Peak memory of a block: CUDA max allocated, else growth of the process's max RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        self.start = self._rss()

    @staticmethod
    def _rss() -> int:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r) if sys.platform == "darwin" else int(r) * 1024  # Linux: KiB

    def peak(self) -> tuple[int, str]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device)), "cuda_max_allocated"
        return max(0, self._rss() - self.start), "cpu_maxrss_delta"


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# unlearn()


def unlearn(task_or_model: Any, method: str, selector: str = "mape", sparsity: float = 0.9,
            config: UnlearnConfig | Mapping[str, Any] | None = None, *, forget: Any = None,
            retain: Any = None, kind: str | None = None, mask: ModuleMask | None = None,
            callbacks: Sequence[Callback] = (), progress: bool = False,
            device: str | torch.device | None = None, seed: int = 0) -> UnlearnResult:
    """Unlearn a forget set from a model, optionally updating only selected modules.

    Args:
        task_or_model: a ``Task`` (``mape_viz.tasks.load_task``) or a model (then pass
            ``forget`` and, for most methods, ``retain`` as iterables of batches).
        method: a name in ``METHODS``: ``so``, ``ga``, ``gd``, ``npo``, ``dpo`` (causal LM
            only), ``sa``, ``rt``.
        selector: ``full`` (no mask), ``mape`` (MLR scores for ``so``, MLF for fine-tuning
            methods; refined by ``config.refine``), ``sure``, ``random``, ``magnitude``.
            Ignored (with a warning) for ``rt``, which always retrains fully.
        sparsity: fraction of modules (per kind) left frozen, in [0, 1).
        config: ``UnlearnConfig`` (used as is), or a dict of its fields laid over the defaults
            (the paper's, plus the ``library`` presets of :mod:`mape_viz.presets` for a known
            embedded task), or None.
        forget, retain: override the task's sets (a ``Dataset`` or batches), or the data for a
            bare model. Batches: dicts with ``input_ids`` (B, T), ``attention_mask`` (B, T) and
            ``labels`` ((B,) classes or (B, T) tokens with -100) or QA positions; DPO batches
            also carry ``idk_input_ids`` / ``idk_attention_mask`` / ``idk_labels``.
        kind: task kind (inferred when None).
        mask: use this ``ModuleMask`` instead of scoring (``selector`` is recorded as
            ``"given"``).
        callbacks: ``cb(step, model, row) -> dict | None`` after every update; returned
            metrics are merged into that history row.
        progress: tqdm bars.
        device: run on this device (default: the model's).
        seed: seeds shuffling, random selectors and dropout.

    Returns:
        an :class:`UnlearnResult`; ``result.ok`` is False if a NaN/inf loss stopped the run
        (``result.model`` then holds the last good state; a ``RuntimeWarning`` says so).

    Raises:
        ValueError: unknown method/selector, a method that does not fit the task (the message
            lists the methods that do), empty data, sparsity outside [0, 1).
    """
    if not (isinstance(sparsity, (int, float)) and 0.0 <= float(sparsity) < 1.0):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if mask is not None:
        selector = "given"
    elif selector not in selector_names():
        raise ValueError(f"unknown selector {selector!r}; known: {', '.join(selector_names())}")
    METHODS.get(method)
    masked = mask is not None or (selector != FULL and METHODS.get(method).family != "retrain")
    cfg = as_config(config, task_or_model if is_task(task_or_model) else None, method=method,
                    selector=selector, masked=masked)
    data, m = resolve_data(task_or_model, method, cfg, forget=forget, retain=retain, kind=kind,
                           seed=seed)
    if m.family == "retrain" and (selector != FULL):
        warnings.warn(f"method 'rt' retrains the whole model; selector {selector!r} ignored",
                      stacklevel=2)
        selector, mask = FULL, None
    if "retain" in m.needs and data.retain is None:
        raise ValueError(f"method {m.name!r} needs a retain set: pass retain=")

    model_in = data.model
    dev = torch.device(device) if device is not None else _device_of(model_in)
    torch.manual_seed(seed)
    meter = MemoryMeter(dev)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    work = copy.deepcopy(model_in).to(dev)
    work.train(cfg.train_mode)

    scores = None
    if mask is None and selector != FULL:
        t0 = time.perf_counter()
        scores, mask = make_mask(work, data, m.objective, selector, sparsity, cfg, seed, progress)
        timings["mask_seconds"] = time.perf_counter() - t0
    masked = mask is not None
    history: list[dict] = []
    error = None
    meta: dict[str, Any] = {"kind": data.kind, "base_fingerprint": fingerprint(model_in),
                            "family": _family(model_in),
                            "task": getattr(data.task, "name", None) if data.task is not None else None}

    t0 = time.perf_counter()
    if m.family == "retrain" and data.task is not None and data.own_split \
            and getattr(data.task, "retrained_model", None) is not None:
        # The embedded tasks ship the model trained on D_r alone: that *is* retraining.
        work = copy.deepcopy(data.task.retrained_model).to(dev)
        history.append({"step": 0, "source": "task.retrained_model"})
        changes = whole_changes(work)
        n_trainable = sum(p.numel() for p in work.parameters())
        meta["retrained_from"] = "task.retrained_model"
    else:
        sparse = SparseParams(work, mask, include_head=cfg.include_head)
        n_trainable = sparse.n_trainable()
        if m.family == "second_order":
            eta = cfg.eta_for(masked)
            meta["eta"] = eta
            info = run_so(work, sparse, data.forget.epoch(0), data.fisher_retain(), data.kind,
                          eta=eta, damping=cfg.damping, chunk=cfg.fisher_batch_size,
                          progress=progress, engine=cfg.fisher_engine)
            row = {"step": 0, **info}
            if not info["finite"]:
                error = "the SO update has NaN/inf entries (Fisher + damping too small?); not applied"
                row["stopped"] = True
            else:
                for cb in callbacks:
                    extra = cb(1, work, row)
                    if extra:
                        row.update(extra)
            history.append(row)
            timings.update(grad_seconds=info["grad_seconds"], fisher_seconds=info["fisher_seconds"])
        else:
            lr = cfg.lr_for(masked)
            meta["lr"] = lr
            reference = _reference(model_in, dev) if "reference" in m.needs else None
            ctx = LossContext(model=work, reference=reference, kind=data.kind, config=cfg,
                              trainable=sparse.trainable(), device=dev)
            with sparse.attached():
                outcome = finetune(m, ctx, forget=data.forget, retain=data.retain,
                                   params=sparse.trainable(), lr=lr, epochs=cfg.epochs,
                                   schedule=cfg.lr_schedule,
                                   max_steps=cfg.max_steps, weight_decay=cfg.weight_decay,
                                   max_grad_norm=cfg.max_grad_norm, after_step=sparse.sync_,
                                   callbacks=callbacks, progress=progress, history=history)
            error = outcome.error
            meta["optimizer_state_bytes"] = outcome.optimizer_state_bytes
        sparse.detach_()
        changes = sparse.state() if masked else whole_changes(work)
    timings["unlearn_seconds"] = time.perf_counter() - t0
    # hand the model back like the input came: same requires_grad flags, eval mode
    flags = {n: p.requires_grad for n, p in model_in.named_parameters()}
    for n, p in work.named_parameters():
        p.requires_grad_(flags.get(n, p.requires_grad))
    work.eval()
    peak, peak_kind = meter.peak()
    seconds = time.perf_counter() - t_start
    if error:
        warnings.warn(f"unlearning stopped early: {error}", RuntimeWarning, stacklevel=2)
    meta["timings"] = timings
    return UnlearnResult(
        model=work, mask=mask, history=history, seconds=seconds, peak_memory_bytes=peak,
        peak_memory_kind=peak_kind, n_changed_params=count_changed(model_in, work),
        n_trainable_params=n_trainable, config=cfg, method=m.name, selector=selector,
        sparsity=float(sparsity), seed=seed, ok=error is None, error=error, scores=scores,
        changes=changes, meta=meta)


def _reference(model_in: nn.Module, dev: torch.device) -> nn.Module:
    """π_ref: the input model itself when it can be used as is (eval mode, same device) —
    it is never written to — else a frozen copy."""
    if not model_in.training and _device_of(model_in) == dev:
        return model_in
    ref = copy.deepcopy(model_in).to(dev).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _family(model: nn.Module) -> str | None:
    try:
        from ..sitemaps import get_sites

        return get_sites(model).family
    except Exception:
        return None
