"""Relearning attack (paper Fig. 4): fine-tune the unlearned model on a relearn set and track
the forget metrics per epoch.

**Relearn set.** A seeded random ``relearn_fraction`` (default 20 %, as in the paper) of the
forget set D_f — the usual relearning attack: the attacker holds part of the forgotten data —
optionally mixed with ``retain_rows`` random retain rows (benign data that hides the attack).
The rest of D_f is the *held-out* part: recovering it from the relearn rows shows that the
knowledge was hidden rather than removed.

**Attack.** Every parameter of a copy of the unlearned model is fine-tuned (the attacker
controls the whole model) with AdamW (weight decay 0, gradient clipping at 1), constant
``lr``, ``batch_size`` rows per step, ``epochs`` passes over the relearn set (seeded shuffle),
the task's training loss (:func:`mape_viz.losses.per_sample_loss`).

**Learning rate.** The paper relearns with lr 1e-5 for 10 epochs (Appendix D.2), the
fine-tuning learning rate of its 7B models. Our embedded tiny models were trained from
scratch with lr 1e-3 (toy-sentiment) / 3e-3 (tiny-tofu); at 1e-5 — even at 1e-4 — a few
relearning steps barely move them (toy-sentiment canaries: forget accuracy +3 points after 5
epochs at 1e-4, +16 points at 1e-3). So the default here is their training scale,
``lr = 1e-3`` (:data:`DEFAULT_LR`); the paper's value is :data:`PAPER_LR`.

One record per (method, selector, epoch), epoch 0 = right after unlearning: ``forget_*``
on the whole D_f, ``heldout_*`` on the held-out part, ``relearnset_*`` on the relearn rows
of D_f. The records feed :func:`mape_viz.viz.relearn_curves` (``y="forget_acc"`` or
``"heldout_acc"``; ``"forget_quality"`` for TOFU).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Any, Mapping, Sequence

import torch

from ..losses import LOSS_KINDS, per_sample_loss
from ..tasks import Task
from ..unlearning import as_config, unlearn
from ._common import (OnRecord, bar, check_overrides, concat, config_for, display_name,
                      evaluate_model, maskable, prefixed, require_task, subset)

__all__ = ["relearn", "relearn_split", "relearn_model", "PAPER_LR", "DEFAULT_LR"]

#: The paper's relearning learning rate (7B models, Appendix D.2).
PAPER_LR = 1e-5
#: Our default for the tiny embedded models (see the module doc).
DEFAULT_LR = 1e-3


def relearn_split(forget: Any, fraction: float = 0.2, seed: int = 0) -> tuple[Any, Any]:
    """(relearn rows, held-out rows) of the forget set: a seeded random
    ``ceil(fraction · |D_f|)`` rows (at least 1) and the rest."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"relearn_fraction must be in (0, 1], got {fraction!r}")
    n = len(forget)
    if n == 0:
        raise ValueError("the forget set is empty")
    k = min(n, max(1, math.ceil(round(fraction * n, 9))))
    return subset(forget, k, seed)


def relearn_model(task: Task, model: torch.nn.Module, rows: Any, *, epochs: int, lr: float,
                  batch_size: int = 8, seed: int = 0, max_grad_norm: float = 1.0,
                  after_epoch: Any = None) -> torch.nn.Module:
    """Fine-tune a copy of ``model`` on ``rows`` (all parameters, AdamW, constant ``lr``).

    ``after_epoch(epoch, model)`` is called after each epoch (1-based); the model is in eval
    mode during the call. Returns the relearned copy (``model`` is not modified).
    """
    if epochs < 0 or lr <= 0 or batch_size < 1:
        raise ValueError("epochs must be >= 0, lr > 0 and batch_size >= 1")
    kind = LOSS_KINDS.get(task.kind, task.kind)
    work = copy.deepcopy(model)
    for p in work.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(work.parameters(), lr=lr, weight_decay=0.0)
    for epoch in range(1, epochs + 1):
        work.train(False)  # dropout off: our tiny models have none; keeps runs deterministic
        for batch in task.batches(rows, batch_size, shuffle=True, seed=seed + epoch):
            opt.zero_grad(set_to_none=True)
            loss = per_sample_loss(work, batch, kind).mean()
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(work.parameters(), max_grad_norm)
            opt.step()
        if after_epoch is not None:
            with torch.no_grad():
                after_epoch(epoch, work)
    opt.zero_grad(set_to_none=True)
    for p in work.parameters():
        p.requires_grad_(False)
    return work.eval()


def relearn(task: Task, methods: Sequence[str], selectors: Sequence[str] = ("full", "mape"),
            epochs: int = 5, relearn_fraction: float = 0.2, lr: float = DEFAULT_LR, *,
            sparsity: float = 0.9, config: Any = None,
            overrides: Mapping[str, Mapping[str, Any]] | None = None,
            batch_size: int = 8, retain_rows: int = 0, include_rt: bool = False,
            seed: int = 0, eval_splits: Sequence[str] | None = ("forget",),
            eval_max_samples: int | None = None, eval_batch_size: int = 32,
            device: Any = None, progress: bool = True,
            on_record: OnRecord | None = None) -> list[dict[str, Any]]:
    """Unlearn with each (method, selector), then run the relearning attack.

    Args:
        task: a :class:`~mape_viz.tasks.Task`.
        methods: unlearning methods (``ga``, ``gd``, ``npo``, ``so``, ...).
        selectors: ``full`` (dashed in Fig. 4) and/or ``mape`` / ``sure`` / ... (solid).
        epochs: relearning epochs (the paper: 10).
        relearn_fraction: share of D_f in the relearn set (paper: 20 %).
        lr: relearning learning rate (default 1e-3, the training scale of the tiny models;
            the paper's 1e-5 is :data:`PAPER_LR`).
        sparsity: sparsity of the masked unlearning runs.
        config, overrides: the unlearning configuration, shared and by target (``"*"``,
            ``"full"``, ``"masked"``, a method or ``"method/selector"``; see ``config_for``).
        batch_size: relearning rows per step.
        retain_rows: add this many random retain rows to the relearn set (0: forget rows
            only, the usual attack).
        include_rt: also attack the retrained model (RT: never saw D_f) as a reference.
        seed: relearn-set draw, shuffling and unlearning seed.
        eval_splits: splits evaluated each epoch besides the forget metrics (default: forget
            only, cheap; ``None`` = all, adds retain/test accuracy and MIA).
        eval_max_samples, eval_batch_size: passed to ``evaluate``.
        progress: a tqdm bar over (run, epoch).
        on_record: called with each record as soon as it exists.

    Returns:
        Records with ``method``, ``selector``, ``name``, ``sparsity``, ``epoch`` (0 = right
        after unlearning), ``relearn_lr``, ``relearn_fraction``, ``n_relearn``,
        ``n_heldout``, ``unlearn_seconds``, ``relearn_seconds`` (cumulative), the
        ``evaluate`` metrics (``forget_acc`` ...), ``heldout_*`` and ``relearnset_*``.
    """
    require_task(task)
    base = as_config(config)
    check_overrides(overrides)
    rl_forget, heldout = relearn_split(task.forget, relearn_fraction, seed)
    rows = rl_forget
    if retain_rows:
        extra, _ = subset(task.retain, min(int(retain_rows), len(task.retain)), seed + 1)
        rows = concat(rl_forget, extra)
    splits = None if eval_splits is None else sorted({"forget", *eval_splits})

    runs: list[tuple[str, str]] = []
    for m in methods:
        if not maskable(m):
            runs.append((m, "full"))
            continue
        runs.extend((m, s) for s in selectors)
    if include_rt and ("rt", "full") not in runs:
        runs.append(("rt", "full"))

    def measure(model: torch.nn.Module) -> dict[str, Any]:
        m, secs = evaluate_model(task, model, splits=splits, max_samples=eval_max_samples,
                                 batch_size=eval_batch_size)
        if len(heldout):
            h, _ = evaluate_model(task, model, splits=("forget",), batch_size=eval_batch_size,
                                  forget=heldout)
            m.update(prefixed(h, "heldout"))
        r, _ = evaluate_model(task, model, splits=("forget",), batch_size=eval_batch_size,
                              forget=rl_forget)
        m.update(prefixed(r, "relearnset"))
        m["eval_seconds"] = secs
        return m

    out: list[dict[str, Any]] = []
    with bar(len(runs) * (epochs + 1), "relearning attack", progress) as b:
        for method, sel in runs:
            b.set_postfix_str(display_name(method, sel))
            cfg = config_for(base, overrides, method, sel)
            sp = 0.0 if sel == "full" else float(sparsity)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                res = unlearn(task, method, sel, sp, cfg, device=device, seed=seed)
            ident = {"task": task.name, "kind": task.kind,
                     "experiment": "relearn", "method": method, "selector": sel,
                     "name": display_name(method, sel), "sparsity": sp, "seed": seed,
                     "granularity": cfg.granularity if sel != "full" else "all",
                     "unlearn_ok": res.ok, "unlearn_seconds": res.seconds,
                     "relearn_lr": float(lr), "relearn_fraction": float(relearn_fraction),
                     "relearn_batch_size": batch_size, "n_relearn": len(rows),
                     "n_relearn_forget": len(rl_forget), "n_heldout": len(heldout)}
            clock = {"start": time.perf_counter(), "eval": 0.0}

            def emit(epoch: int, model: torch.nn.Module, clock: dict = clock,
                     ident: dict = ident) -> None:
                train_secs = time.perf_counter() - clock["start"] - clock["eval"]
                t0 = time.perf_counter()
                metrics = measure(model)
                clock["eval"] += time.perf_counter() - t0
                rec = {**ident, "epoch": epoch, "relearn_seconds": train_secs, **metrics}
                out.append(rec)
                if on_record is not None:
                    on_record(rec)
                b.update(1)

            emit(0, res.model)
            relearn_model(task, res.model, rows, epochs=epochs, lr=lr, batch_size=batch_size,
                          seed=seed, after_epoch=emit)
    return out
