"""Method comparison (paper Table 2 / Table 3): method × selector at one sparsity, with the
original model, retraining (RT) and sparsity-aware unlearning (SA) as reference rows.

Rows, in this order (the order of the printed table):

1. ``original`` — the task's model before unlearning (no run; ``seconds`` = 0);
2. ``rt`` — retraining on D_r, the gold standard. For the embedded tasks this is the cached
   model trained on D_r (``unlearn`` returns it), so its ``seconds`` is the recorded training
   time of that model (``seconds_source = "task training record"``), not a new run;
3. ``sa`` — fine-tuning on D_r with γ‖θ‖₁ (all parameters);
4. for each method: ``full`` (all parameters, named e.g. ``SO``), then each masked selector
   (``SURE-SO``, ``MAPE-SO``) at ``sparsity``.

One record per run and seed, with the fields of every run record (see
:func:`mape_viz.experiments.run_record`) and the ``forget`` / ``retain`` /
``test`` aliases that :func:`mape_viz.viz.comparison_table` reads by default.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..tasks import Task
from ..unlearning import as_config
from ._common import (COMPARE_SELECTORS, OnRecord, bar, check_overrides, config_for,
                      default_methods, display_name, evaluate_model, require_task, run_record)

__all__ = ["compare_methods", "compare_plan"]


def compare_plan(methods: Sequence[str], selectors: Sequence[str], *, include_rt: bool = True,
                 include_sa: bool = True, include_original: bool = True
                 ) -> list[tuple[str, str]]:
    """The (method, selector) rows of :func:`compare_methods`, in table order."""
    plan: list[tuple[str, str]] = []
    if include_original:
        plan.append(("original", "full"))
    if include_rt:
        plan.append(("rt", "full"))
    if include_sa:
        plan.append(("sa", "full"))
    sels = list(dict.fromkeys(selectors))
    if "full" in sels:  # the full run heads its method group, as in the paper
        sels = ["full"] + [s for s in sels if s != "full"]
    for m in methods:
        if m in ("rt", "sa", "original"):
            continue
        plan.extend((m, s) for s in sels)
    return plan


def compare_methods(task: Task, methods: Sequence[str] | None = None,
                    selectors: Sequence[str] = COMPARE_SELECTORS, sparsity: float = 0.9,
                    include_rt: bool = True, include_sa: bool = True, *,
                    include_original: bool = True, config: Any = None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None,
                    seeds: Sequence[int] = (0,), eval_max_samples: int | None = None,
                    eval_batch_size: int = 32, device: Any = None, progress: bool = True,
                    on_record: OnRecord | None = None) -> list[dict[str, Any]]:
    """Run the Table-2 comparison; one record per (method, selector, seed).

    Args:
        task: a :class:`~mape_viz.tasks.Task`.
        methods: unlearning methods (default for the task kind:
            :data:`~mape_viz.experiments.DEFAULT_METHODS`, Table 2 for classification / QA,
            Table 3 for causal LM).
        selectors: ``full`` (all parameters) and score selectors
            (``mape_viz.choices.list_selectors``); default ``full``, ``sure``, ``mape``.
        sparsity: sparsity of the masked runs (paper: 0.9).
        include_rt, include_sa, include_original: add the reference rows.
        config: ``UnlearnConfig`` or dict shared by every run.
        overrides: config overrides by target (see
            :func:`~mape_viz.experiments.config_for`): ``"*"``, ``"full"``, ``"masked"``, a
            method (``{"sa": {"epochs": 1}}``) or ``"method/selector"``.
        seeds: one run per seed (the table averages them); the original model is recorded
            once per seed too so that every row has the same ``n``.
        eval_max_samples: evaluate at most this many rows per split.
        device: run on this device.
        progress: a tqdm bar over the runs.
        on_record: called with each record as soon as it exists.
    """
    require_task(task)
    base = as_config(config)
    check_overrides(overrides)
    methods = list(methods) if methods is not None else list(default_methods(task.kind))
    plan = compare_plan(methods, selectors, include_rt=include_rt, include_sa=include_sa,
                        include_original=include_original)
    out: list[dict[str, Any]] = []
    original_metrics: dict[str, Any] | None = None
    with bar(len(plan) * len(seeds), "comparison", progress) as b:
        for seed in seeds:
            for method, sel in plan:
                b.set_postfix_str(f"{display_name(method, sel)} seed {seed}")
                if method == "original":
                    if original_metrics is None:
                        m, secs = evaluate_model(task, task.model, max_samples=eval_max_samples,
                                                 batch_size=eval_batch_size)
                        original_metrics = {**m, "eval_seconds": secs}
                    rec = {"task": task.name, "kind": task.kind, "experiment": "compare",
                           "method": "original", "selector": "full", "name": "Original",
                           "granularity": "all", "sparsity": 0.0, "seed": seed, "ok": True,
                           "error": None, "seconds": 0.0, "n_changed_params": 0,
                           **original_metrics}
                else:
                    cfg = config_for(base, overrides, method, sel)
                    rec, res = run_record(task, method, sel, sparsity, cfg, seed=seed,
                                        device=device, eval_max_samples=eval_max_samples,
                                        eval_batch_size=eval_batch_size,
                                        extra={"experiment": "compare"})
                    if res.meta.get("retrained_from") == "task.retrained_model":
                        _rt_seconds(task, rec)
                out.append(rec)
                if on_record is not None:
                    on_record(rec)
                b.update(1)
    return out


def _rt_seconds(task: Any, rec: dict[str, Any]) -> None:
    """RT on an embedded task reuses the cached retrained model: report its training time."""
    info = (task.meta.get("models") or {}).get("retrained") or {}
    if isinstance(info.get("seconds"), (int, float)):
        rec["run_seconds"] = rec["seconds"]
        rec["seconds"] = float(info["seconds"])
        rec["seconds_source"] = "task training record"
