"""Sparsity sweep (paper Fig. 2 and Fig. 7): sparsity × method × selector × granularity.

Every (method, selector, granularity, sparsity, seed) is one :func:`mape_viz.unlearning.unlearn`
run from the task's original model, evaluated with :func:`mape_viz.metrics.evaluate`; one
tidy record per run (:func:`~mape_viz.experiments.run_record`). A full-parameter run
(selector ``full``) is recorded once per method and seed at ``sparsity = 0`` with
``granularity = "all"``. The records feed
:func:`mape_viz.viz.sparsity_curves` directly (Fig. 7: ``color="granularity"``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..selection import GRANULARITIES
from ..tasks import Task
from ..unlearning import as_config
from ._common import (OnRecord, bar, check_overrides, config_for, display_name, maskable,
                      run_record)

__all__ = ["sweep_sparsity", "sweep_plan"]


def sweep_plan(methods: Sequence[str], selectors: Sequence[str], sparsities: Sequence[float],
               granularities: Sequence[str] = ("both",), seeds: Sequence[int] = (0,)
               ) -> list[dict[str, Any]]:
    """The runs :func:`sweep_sparsity` makes, in order: dicts with ``method``, ``selector``,
    ``granularity``, ``sparsity``, ``seed``. Full runs (``full`` selector, or a method that
    takes no mask such as ``rt``: ``Method.maskable``) appear once per method and seed."""
    if not methods or not selectors:
        raise ValueError("give at least one method and one selector")
    for s in sparsities:
        if not 0.0 <= float(s) < 1.0:
            raise ValueError(f"sparsities must be in [0, 1), got {s!r}")
    for g in granularities:
        if g not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, "
                             f"got {g!r}")
    plan: list[dict[str, Any]] = []
    for seed in seeds:
        for m in methods:
            if not maskable(m):
                plan.append({"method": m, "selector": "full", "granularity": "all",
                             "sparsity": 0.0, "seed": seed})
                continue
            for sel in selectors:
                if sel == "full":
                    plan.append({"method": m, "selector": "full", "granularity": "all",
                                 "sparsity": 0.0, "seed": seed})
                    continue
                for g in granularities:
                    for s in sparsities:
                        plan.append({"method": m, "selector": sel, "granularity": g,
                                     "sparsity": float(s), "seed": seed})
    return plan


def sweep_sparsity(task: Task, methods: Sequence[str], selectors: Sequence[str] = ("mape",),
                   sparsities: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 0.9, 0.95),
                   granularities: Sequence[str] = ("both",), config: Any = None,
                   seeds: Sequence[int] = (0,), *,
                   overrides: Mapping[str, Mapping[str, Any]] | None = None,
                   eval_splits: Sequence[str] | None = None,
                   eval_max_samples: int | None = None, eval_batch_size: int = 32,
                   device: Any = None, progress: bool = True,
                   on_record: OnRecord | None = None) -> list[dict[str, Any]]:
    """Unlearn at several sparsities and granularities; one record per run.

    Args:
        task: a :class:`~mape_viz.tasks.Task` (``load_task``, ``load_local_task`` ...).
        methods: names in ``mape_viz.unlearning.METHODS`` (``so``, ``ga``, ``gd``, ``npo`` ...).
        selectors: score selectors (``mape``, ``sure`` ...: ``mape_viz.choices.list_selectors``)
            and/or ``full`` (one unmasked run per method, recorded at sparsity 0).
        sparsities: fractions of modules frozen, each in [0, 1).
        granularities: any of ``mape_viz.selection.GRANULARITIES`` (``both``, ``heads``,
            ``filters``; Fig. 7 compares them).
        config: an ``UnlearnConfig`` or dict shared by every run; ``granularity`` is set per
            run.
        seeds: seeds of the runs (selection, shuffling); records keep ``seed`` so the figures
            average over them.
        overrides: config overrides by target, least specific first: ``"*"``, ``"full"`` /
            ``"masked"`` runs, a method (``{"so": {"eta": 1e-7}}``), ``"method/selector"``
            (see :func:`~mape_viz.experiments._common.config_for`).
        eval_splits: evaluate only these splits (``None``: all; MIA needs all three).
        eval_max_samples: evaluate at most this many rows per split.
        device: run on this device (default: the model's).
        progress: a tqdm bar over the runs.
        on_record: called with each record as soon as it exists.

    Returns:
        Records with ``method``, ``selector``, ``name``, ``granularity``, ``sparsity``,
        ``seed``, ``seconds``, ``n_changed_params`` (and the other fields of a run record),
        every metric of ``evaluate`` (``forget_acc``, ``retain_acc``, ``test_acc``, ``mia``,
        ``mia_auc`` ... for classification) and the ``forget`` / ``retain`` / ``test``
        aliases.
    """
    base = as_config(config)
    check_overrides(overrides)
    plan = sweep_plan(methods, selectors, sparsities, granularities, seeds)
    out: list[dict[str, Any]] = []
    with bar(len(plan), "sparsity sweep", progress) as b:
        for p in plan:
            b.set_postfix_str(f"{display_name(p['method'], p['selector'])} "
                              f"{p['granularity']} {p['sparsity']:g}")
            cfg = config_for(base, overrides, p["method"], p["selector"])
            if p["granularity"] != "all":
                cfg = cfg.replace(granularity=p["granularity"])
            rec, _ = run_record(task, p["method"], p["selector"], p["sparsity"], cfg,
                                seed=p["seed"], device=device, eval_splits=eval_splits,
                                eval_max_samples=eval_max_samples,
                                eval_batch_size=eval_batch_size,
                                extra={"experiment": "sweep"})
            rec["granularity"] = p["granularity"]
            out.append(rec)
            if on_record is not None:
                on_record(rec)
            b.update(1)
    return out
