"""The fine-tuning loop of GA / GD / NPO / DPO / SA / RT (docs/design.md §5).

:func:`finetune` runs a method loss (``mape_viz.losses``) with AdamW over epochs of the
driving set — the forget set for GA/GD/NPO/DPO, the retain set for SA/RT — optionally pairing
each forget batch with a retain batch (GD; NPO with a retain term). It works on whatever
tensors it is given: for a masked run those are the slice values of a
:class:`~mape_viz.unlearning.sparse.SparseParams`, and ``after_step`` writes them into the model.

Data arrive as :class:`Source` s, produced afresh for each epoch (so task data can be
reshuffled per epoch with a seed) and cycled endlessly for the side set (:func:`cycle`).

With a :class:`~mape_viz.unlearning.stopping.Monitor` the loop checks the model before the
first update, every ``monitor.every`` updates and after the last one, and stops at the first
check where the stop rule holds (``criterion``) or the guard trips (``guard``: the trained
tensors are set back to the last check within the guard). The checks change nothing the
training reads (no RNG draw, the model's mode is restored), so a run stopped at step s holds
the same model as the run with ``max_steps = s`` (same lr schedule: a ``linear`` schedule
decays over min(epochs · batches, max_steps) whether or not the run stops early).

Under ``accelerate launch`` (several processes; docs/design.md §10) every rank walks the same
global batches and takes its rows of each step's forget and retain batch
(:func:`mape_viz.distributed.shard_step`: the same fraction of both), multiplies its loss by
that fraction, and the trained gradients are summed across ranks before clipping
(:func:`mape_viz.distributed.all_reduce_grads_`). The loss terms of the history, the NaN/inf
checks and the gradient norm are therefore global, every rank takes the same branch, and each
applies the same AdamW step: the run equals one process with the same global batches (up to
the order of floating-point sums). The stop checks agree because every rank adopts rank 0's
check metrics (``Monitor.check``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..distributed import all_reduce_floats, all_reduce_grads_, process_info, shard_step
from ..losses import LossContext, Terms
from .stopping import CRITERION, EPOCHS_DONE, ERROR, GUARD, MAX_STEPS, Monitor

Batch = Mapping[str, Any]
#: ``loss(ctx, forget_batch | None, retain_batch | None) -> {"loss": ..., other terms}``.
LossFn = Callable[[LossContext, "Batch | None", "Batch | None"], Terms]
#: ``callback(step, model, row) -> dict | None``: extra metrics merged into the history row.
Callback = Callable[[int, nn.Module, dict], "dict | None"]


@dataclass
class Source:
    """Batches of one data set, produced afresh for each epoch.

    ``make(epoch) -> iterable of batches``; ``n_samples`` and ``n_batches`` (per epoch) when
    known.
    """

    make: Callable[[int], Iterable[Batch]]
    n_samples: int | None = None
    name: str = ""
    n_batches: int | None = None

    def epoch(self, e: int) -> Iterable[Batch]:
        return self.make(e)


def cycle(source: Source, start_epoch: int = 0) -> Iterator[Batch]:
    """Endless batches of ``source``, one epoch after another (for GD's retain side)."""
    e = start_epoch
    while True:
        empty = True
        for b in source.epoch(e):
            empty = False
            yield b
        if empty:
            raise ValueError(f"the {source.name or 'data'} set is empty")
        e += 1


@dataclass
class FinetuneOutcome:
    """``history`` rows (one per update in the returned model, plus the row of a NaN/inf
    stop), ``steps``: updates applied to the returned model, the NaN/inf ``error`` (or None),
    ``stop_reason`` (``criterion``, ``guard``, ``max_steps``, ``epochs done`` or ``error``),
    and the bytes held by the optimizer state (AdamW moments + step counters) after the
    first step."""

    history: list[dict] = field(default_factory=list)
    steps: int = 0
    error: str | None = None
    optimizer_state_bytes: int = 0
    stop_reason: str | None = None


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``opt.state`` (AdamW: exp_avg, exp_avg_sq, step)."""
    return sum(t.numel() * t.element_size() for st in opt.state.values()
               for t in st.values() if isinstance(t, torch.Tensor))


def _terms_to_floats(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in terms.items()}


def finetune(loss: LossFn, ctx: LossContext, *, forget: Source | None, retain: Source | None,
             drive: str, with_retain: bool, params: Sequence[torch.Tensor], lr: float,
             epochs: int, max_steps: int, schedule: str = "constant", weight_decay: float,
             max_grad_norm: float, after_step: Callable[[], None],
             callbacks: Sequence[Callback] = (), progress: bool = False,
             history: list[dict] | None = None, name: str = "",
             monitor: Monitor | None = None) -> FinetuneOutcome:
    """Minimise ``loss`` with AdamW over ``epochs`` of the driving set.

    Args:
        loss: a method loss of ``mape_viz.losses``.
        ctx: what the loss reads (model, reference, kind, config, trained tensors).
        forget, retain: the run's sources (None when absent).
        drive: ``"forget"`` (each step: ``loss(ctx, forget_batch, retain_batch | None)``) or
            ``"retain"`` (``loss(ctx, None, retain_batch)``).
        with_retain: with ``drive="forget"``, pair every forget batch with the next batch of
            an endless cycle over ``retain``.
        params: the tensors AdamW updates.
        schedule: ``constant`` lr, or ``linear`` decay to 0 over the run (needs the driving
            set's size; falls back to constant when it is unknown).
        after_step: runs after every optimizer step (writes sparse values into the model).
        history: rows are appended here (and returned in the outcome).
        name: the method's name, for messages and the progress bar.
        monitor: stop rule and guard checks (see module doc); None = run every step.

    Before each step the loss terms and the gradient norm are checked; a NaN/inf stops the
    run *before* the step is applied, so the model keeps the last good state and the outcome
    carries the error.
    """
    out = FinetuneOutcome(history=history if history is not None else [])
    params = [p for p in params]
    if not params:
        raise ValueError("nothing to train: the mask selects no parameter slice")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    batches = forget if drive == "forget" else retain
    if batches is None:
        raise ValueError(f"method {name!r} needs a {drive} set")
    side = None
    if drive == "forget" and with_retain:
        if retain is None:
            raise ValueError(f"method {name!r} needs a retain set")
        side = cycle(retain)
    total = None
    if batches.n_batches is not None:
        total = epochs * batches.n_batches
        if max_steps:
            total = min(total, max_steps)
    sched = None
    if schedule == "linear" and total:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))
    info = process_info()
    bar = tqdm(total=total, desc=name, disable=not progress or not info.is_main, leave=False)
    step = 0
    if monitor is not None:  # the starting model: maybe nothing is left to forget
        monitor.save(params)
        if monitor.check(0, ctx.model) == CRITERION:
            bar.close()
            out.stop_reason = CRITERION
            return out
    try:
        for epoch in range(epochs):
            for batch in batches.epoch(epoch):
                if max_steps and step >= max_steps:
                    break
                f, r = (batch, next(side) if side is not None else None) \
                    if drive == "forget" else (None, batch)
                opt.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                (f, r), weight = shard_step([f, r], info)
                terms = loss(ctx, f, r) if weight > 0 else {}
                local = {k: weight * v for k, v in _terms_to_floats(terms).items()}
                row = {"step": step, "epoch": epoch, **all_reduce_floats(local, info)}
                if not math.isfinite(row["loss"]):
                    terms_txt = ", ".join(f"{k}={v:.4g}" for k, v in row.items()
                                          if k not in ("step", "epoch"))
                    out.error = (f"non-finite loss at step {step} (epoch {epoch}): {terms_txt}; "
                                 f"stopped: the model keeps its last good state, after {step} "
                                 f"update(s)")
                    row["stopped"] = True
                    out.history.append(row)
                    break
                if terms:
                    (terms["loss"] * weight if weight != 1.0 else terms["loss"]).backward()
                all_reduce_grads_(params, info)
                norm = torch.nn.utils.clip_grad_norm_(
                    params, max_grad_norm if max_grad_norm > 0 else float("inf"))
                row["grad_norm"] = float(norm)
                if not math.isfinite(row["grad_norm"]):
                    out.error = (f"non-finite gradient at step {step} (epoch {epoch}); stopped: "
                                 f"the model keeps its last good state, after {step} update(s)")
                    row["stopped"] = True
                    out.history.append(row)
                    break
                row["lr"] = opt.param_groups[0]["lr"]
                opt.step()
                if sched is not None:
                    sched.step()
                after_step()
                if step == 0:
                    out.optimizer_state_bytes = optimizer_state_bytes(opt)
                step += 1
                row["seconds"] = time.perf_counter() - t0
                for cb in callbacks:
                    extra = cb(step, ctx.model, row)
                    if extra:
                        row.update(extra)
                out.history.append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                if monitor is not None and monitor.due(step):
                    out.stop_reason = _check(monitor, step, ctx.model, params, after_step, row)
                    if out.stop_reason:
                        break
            if out.error or out.stop_reason or (max_steps and step >= max_steps):
                break
    finally:
        bar.close()
        opt.zero_grad(set_to_none=True)
    if out.error:
        out.stop_reason = ERROR
    elif out.stop_reason is None:
        out.stop_reason = MAX_STEPS if (max_steps and step >= max_steps) else EPOCHS_DONE
        if monitor is not None and not monitor.checked(step):  # the last update is checked too
            reason = _check(monitor, step, ctx.model, params, after_step,
                            out.history[-1] if out.history else {})
            out.stop_reason = reason or out.stop_reason
    if out.stop_reason == GUARD:  # the model is the last one within the guard
        step = monitor.good_step
        del out.history[step:]
    out.steps = step
    return out


def _check(monitor: Monitor, step: int, model: nn.Module, params: Sequence[torch.Tensor],
           after_step: Callable[[], None], row: dict) -> str | None:
    """One monitor check after ``step`` updates: the check's metrics join ``row``; within the
    guard the trained tensors are saved, past it they are set back (and written into the
    model). Returns the verdict."""
    verdict = monitor.check(step, model)
    row.update({f"{k}": v for k, v in monitor.row_metrics().items() if k != "verdict"})
    if verdict == GUARD:
        monitor.restore(params)
        after_step()
    else:
        monitor.save(params)
    return verdict
