"""Sparsity sweep (paper Fig. 2 and Fig. 7): sparsity × method × selector × granularity.

Every (method, selector, granularity, sparsity, seed) is one :func:`mape_viz.unlearning.unlearn`
run from the task's original model, evaluated with :func:`mape_viz.metrics.evaluate`; one
tidy record per run (:func:`~mape_viz.experiments.run_record`). A full-parameter run
(selector ``full``) is recorded once per method and seed at ``sparsity = 0`` with
``granularity = "all"``. The records feed
:func:`mape_viz.viz.sparsity_curves` directly (Fig. 7: ``color="granularity"``).

At one step size per run the sweep compares points that forget different amounts. The paper
reads Fig. 2 / Fig. 7 *at comparable efficacy*, so :func:`sweep_frontier` runs the frontier's
step-size grid (:func:`~mape_viz.experiments.frontier.run_frontier`) at every (sparsity,
granularity) and :func:`frontier_by_setting` applies the frontier's one rule per setting:
fidelity at equal efficacy and efficacy at equal fidelity against sparsity / granularity
(docs/design.md §6). :func:`frontier_points` flattens those rows for ``sparsity_curves``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from ..selection import GRANULARITIES
from ..tasks import Task
from ..unlearning import as_config
from ._common import (OnRecord, bar, check_overrides, config_for, display_name, maskable,
                      run_record)
from .frontier import FrontierConfig, frontier_markdown, run_frontier, summarise

__all__ = ["sweep_sparsity", "sweep_plan", "sweep_frontier", "frontier_by_setting",
           "frontier_points", "frontier_setting_markdown"]


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


# ---------------------------------------------------------------------------------------------
# Sparsity / granularity on the frontier rule


def _setting(r: Mapping[str, Any]) -> tuple[float, str]:
    return (float(r.get("sparsity", 0.0) or 0.0), str(r.get("granularity", "both")))


def frontier_by_setting(records: Sequence[Mapping[str, Any]], original: Mapping[str, Any],
                        retrained: Mapping[str, Any] | None, fc: FrontierConfig | None = None
                        ) -> list[dict[str, Any]]:
    """:func:`~mape_viz.experiments.frontier.summarise` per (sparsity, granularity) of
    frontier ``records`` (each with ``sparsity`` and ``granularity``; a full run has sparsity
    0 and granularity ``all``): the same rule for every setting, so a row's fidelity at equal
    efficacy is comparable across sparsities and granularities (docs/design.md §6).

    Returns:
        the summary rows, each with ``sparsity`` and ``granularity`` added, sorted by method,
        selector, granularity, sparsity.
    """
    groups: dict[tuple[float, str], list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("method") in ("original", "rt") or r.get("anchor"):
            continue
        groups.setdefault(_setting(r), []).append(r)
    rows = []
    for (sp, gran), recs in groups.items():
        for row in summarise(recs, original, retrained, fc):
            rows.append({**row, "sparsity": sp, "granularity": gran})
    return sorted(rows, key=lambda r: (r["method"], r["selector"], r["granularity"],
                                       r["sparsity"]))


def frontier_points(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`frontier_by_setting` rows as flat points for
    :func:`mape_viz.viz.sparsity_curves`: ``method``, ``selector``, ``name``, ``sparsity``,
    ``granularity``, ``test_at_efficacy`` / ``forget_at_fidelity`` (seed means, None when not
    reached in any seed) with ``*_sd`` and ``*_n`` (seeds where reached)."""
    out = []
    for r in rows:
        p = {k: r.get(k) for k in ("method", "selector", "name", "sparsity", "granularity")}
        for key, name in (("fidelity_at_efficacy", "test_at_efficacy"),
                          ("efficacy_at_fidelity", "forget_at_fidelity")):
            s = r[key]
            p[name], p[name + "_sd"], p[name + "_n"] = s["mean"], s["sd"], s["n"]
        out.append(p)
    return out


def frontier_setting_markdown(rows: Sequence[Mapping[str, Any]], original: Mapping[str, Any],
                              retrained: Mapping[str, Any] | None,
                              fc: FrontierConfig | None = None) -> str:
    """The frontier table (:func:`~mape_viz.experiments.frontier.frontier_markdown`) of
    :func:`frontier_by_setting` rows, each name suffixed with its granularity and sparsity."""
    named = [{**r, "name": (f"{r['name']} ({r['granularity']}, {r['sparsity']:g})"
                            if r["selector"] != "full" else r["name"])} for r in rows]
    return frontier_markdown(named, original, retrained, fc)


def sweep_frontier(task: Task, methods: Sequence[str], selectors: Sequence[str] = ("mape",),
                   sparsities: Sequence[float] = (0.5, 0.7, 0.9, 0.95),
                   granularities: Sequence[str] = ("both",), fc: FrontierConfig | None = None,
                   *, config: Any = None,
                   overrides: Mapping[str, Mapping[str, Any]] | None = None,
                   eval_max_samples: int | None = None, device: Any = None,
                   progress: bool = True, on_record: OnRecord | None = None) -> dict[str, Any]:
    """The frontier's step-size grid × seeds (``fc``: multipliers, seeds, margins) at every
    (sparsity, granularity) of ``methods`` × ``selectors``; a ``full`` selector runs once
    (sparsity 0, granularity ``all``), like :func:`sweep_plan`.

    Returns:
        ``{"records", "original", "retrained", "summary"}``: every run's record (with
        ``sparsity`` and ``granularity``), the references and :func:`frontier_by_setting`.
    """
    fc = fc or FrontierConfig()
    plan = sweep_plan(methods, selectors, sparsities, granularities)  # validates the lists
    settings = list(dict.fromkeys((p["selector"], p["sparsity"], p["granularity"])
                                  for p in plan))
    base = as_config(config)
    records: list[dict[str, Any]] = []
    original = retrained = None
    for sel, sp, gran in settings:
        cfg = base if gran == "all" else base.replace(granularity=gran)
        sub = dataclasses.replace(fc, methods=tuple(dict.fromkeys(
            p["method"] for p in plan if p["selector"] == sel)), selectors=(sel,),
            sparsity=sp if sel != "full" else fc.sparsity)
        res = run_frontier(task, sub, config=cfg, overrides=overrides,
                           eval_max_samples=eval_max_samples, device=device,
                           progress=progress, on_record=on_record)
        original, retrained = res.original, res.retrained
        for rec in res.records:
            rec["granularity"] = gran
        records += res.records
    return {"records": records, "original": original, "retrained": retrained,
            "summary": frontier_by_setting(records, original, retrained, fc)}
