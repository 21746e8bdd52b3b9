"""Successive removal requests (paper Fig. 3 and Table 1): metrics after every request.

The forget set is cut into ``n_requests`` requests of ``request_size`` rows (a seeded random
order). Scenarios, one line each in Fig. 3:

- ``successive`` — :func:`mape_viz.unlearning.successive`: request t is unlearned from the model
  left by request t − 1 (mask re-scored each time); errors accumulate (Table 1).
- ``batch`` — request t's line point is one run from the original model on the union of the
  first t requests (the paper's "batch" scenario).
- ``eq12`` — :func:`mape_viz.unlearning.successive_so` (Appendix A.2, second order only): every
  update starts again from θ* with running sums and Eq. 13 masks (selectors ``mape`` and
  ``full`` only). The run's ``fisher_max_samples`` (> 0) estimates D's Fisher on that many
  seeded rows of D instead of all of them (4,000 on ``toy-sentiment``; docs/design.md §5).

One record per (scenario, selector, sparsity, request), request 0 being the original model.
Metrics: :func:`mape_viz.metrics.evaluate` with the forget split = **all** requested rows (the
whole planned D_f, so ``forget_acc`` falls as requests are served), plus ``removed_*`` = the
forget metrics on the rows removed so far (``None`` at request 0) — e.g. ``removed_acc``.
The records feed :func:`mape_viz.viz.successive_curves` (x ``request``, colour ``selector``,
dashes ``scenario``).
"""

from __future__ import annotations

import random
import time
import warnings
from typing import Any, Mapping, Sequence

from ..tasks import Task
from ..unlearning import as_config, successive_so, unlearn
from ..unlearning import successive as run_successive
from ..unlearning.result import count_changed
from ._common import (OnRecord, bar, check_overrides, concat, config_for, display_name,
                      evaluate_model, prefixed, require_task)

__all__ = ["successive", "make_requests", "SCENARIOS"]

SCENARIOS = ("successive", "batch", "eq12")


def make_requests(rows: Any, n_requests: int, request_size: int | None = None,
                  seed: int = 0) -> list[Any]:
    """``n_requests`` disjoint requests of ``request_size`` rows (default: as many as fit,
    ``len(rows) // n_requests``) drawn in a seeded random order from ``rows``."""
    n = len(rows)
    if n_requests < 1:
        raise ValueError(f"n_requests must be >= 1, got {n_requests}")
    size = request_size if request_size is not None else n // n_requests
    if size < 1 or size * n_requests > n:
        raise ValueError(f"{n_requests} requests of {size} rows need {n_requests * size} "
                         f"rows; the forget set has {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    out = []
    for t in range(n_requests):
        idx = sorted(order[t * size:(t + 1) * size])
        out.append(rows.select(idx) if hasattr(rows, "select") else [rows[i] for i in idx])
    return out


def _union(parts: Sequence[Any]) -> Any:
    acc = parts[0]
    for p in parts[1:]:
        acc = concat(acc, p)
    return acc


def successive(task: Task, n_requests: int = 4, request_size: int | None = None,
               selectors: Sequence[str] = ("full", "mape"), method: str = "so",
               sparsity: float | Sequence[float] = 0.9, config: Any = None, *,
               overrides: Mapping[str, Mapping[str, Any]] | None = None,
               scenarios: Sequence[str] = ("successive",), seed: int = 0,
               eval_splits: Sequence[str] | None = None, eval_max_samples: int | None = None,
               eval_batch_size: int = 32, device: Any = None, progress: bool = True,
               on_record: OnRecord | None = None) -> list[dict[str, Any]]:
    """Serve removal requests one after another and measure after each.

    Args:
        task: a :class:`~mape_viz.tasks.Task`; requests are cut from ``task.forget``;
            ``task.retain`` is the retain set.
        n_requests: number of requests.
        request_size: rows per request (default ``len(task.forget) // n_requests``).
        selectors: ``full`` and/or score selectors (``mape_viz.choices.list_selectors``).
        method: the unlearning method (``so`` in the paper's Fig. 3; any method works for the
            ``successive`` and ``batch`` scenarios).
        sparsity: one sparsity or several (Fig. 3 labels lines by sparsity); ignored for
            ``full``.
        config: ``UnlearnConfig`` or dict for every run.
        overrides: config overrides by target (``"*"``, ``"full"``, ``"masked"``, the method,
            ``"method/selector"``; see ``config_for``).
        scenarios: any of :data:`SCENARIOS`.
        seed: request order and run seeds.
        eval_splits, eval_max_samples, eval_batch_size: see :func:`evaluate_model`; the
            forget split is always evaluated.
        progress: a tqdm bar over the requests.
        on_record: called with each record as soon as it exists.

    Returns:
        Records with ``scenario``, ``method``, ``selector``, ``name``, ``sparsity``,
        ``request`` (0 = original model), ``n_removed``, ``seconds`` (this request),
        ``total_seconds``, ``ok``, ``n_changed_params`` (vs the original model), every
        ``evaluate`` metric, the score aliases and ``removed_*`` metrics.
    """
    require_task(task)
    for s in scenarios:
        if s not in SCENARIOS:
            raise ValueError(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    if "eq12" in scenarios and method != "so":
        raise ValueError("scenario 'eq12' is the second-order Eq. 12 update: method must be 'so'")
    base = as_config(config)
    check_overrides(overrides)
    sparsities = [float(sparsity)] if isinstance(sparsity, (int, float)) else \
        [float(s) for s in sparsity]
    requests = make_requests(task.forget, n_requests, request_size, seed)
    pool = _union(requests)
    splits = None if eval_splits is None else sorted({"forget", *eval_splits})
    original = task.model

    def measure(model: Any, t: int) -> dict[str, Any]:
        m, secs = evaluate_model(task, model, splits=splits, max_samples=eval_max_samples,
                                 batch_size=eval_batch_size, forget=pool)
        m["eval_seconds"] = secs
        if t > 0:
            removed, _ = evaluate_model(task, model, splits=("forget",),
                                        batch_size=eval_batch_size,
                                        forget=_union(requests[:t]))
            m.update(prefixed(removed, "removed"))
        return m

    runs = []
    for scen in scenarios:
        for sel in selectors:
            if scen == "eq12" and sel not in ("mape", "full"):
                continue  # successive_so takes mape (Eq. 13 + Eq. 9 masks) or full only
            for sp in ([0.0] if sel == "full" else sparsities):
                runs.append((scen, sel, sp))

    base0: dict[str, Any] | None = None
    out: list[dict[str, Any]] = []
    with bar(len(runs) * n_requests, "successive requests", progress) as b:
        for scen, sel, sp in runs:
            cfg = config_for(base, overrides, method, sel)
            ident = {"task": task.name, "kind": task.kind,
                     "experiment": "successive", "scenario": scen, "method": method,
                     "selector": sel, "name": display_name(method, sel), "sparsity": sp,
                     "granularity": cfg.granularity if sel != "full" else "all", "seed": seed,
                     "n_requests": n_requests, "request_size": len(requests[0])}
            if base0 is None:
                base0 = measure(original, 0)
            out.append(_emit({**ident, "request": 0, "n_removed": 0, "seconds": 0.0,
                              "total_seconds": 0.0, "ok": True, "n_changed_params": 0,
                              **base0}, on_record))
            total = 0.0
            b.set_postfix_str(f"{scen} {display_name(method, sel)} {sp:g}")
            if scen == "successive":
                steps: list[dict[str, Any]] = []

                def metrics(model: Any, t: int, steps: list = steps) -> Mapping[str, Any]:
                    if t == 0:
                        return {}
                    m = measure(model, t)
                    m["n_changed_params"] = count_changed(original, model)
                    b.update(1)
                    return m

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    res = run_successive(task, requests, method, sel, sp, cfg, metrics=metrics,
                                         device=device, seed=seed)
                for st in res.steps:
                    total += st["seconds"]
                    row = {**ident, "request": st["request"],
                           "n_removed": st["request"] * len(requests[0]), **st,
                           "total_seconds": total}
                    row.pop("n_selected", None)
                    out.append(_emit(row, on_record))
            elif scen == "batch":
                for t in range(1, n_requests + 1):
                    forget_t = _union(requests[:t])
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        res = unlearn(task, method, sel, sp, cfg, forget=forget_t,
                                      device=device, seed=seed)
                    secs = time.perf_counter() - t0
                    m = measure(res.model, t)
                    out.append(_emit({**ident, "request": t, "n_removed": len(forget_t),
                                      "seconds": secs, "total_seconds": secs, "ok": res.ok,
                                      "n_changed_params": res.n_changed_params, **m},
                                     on_record))
                    b.update(1)
            else:  # eq12
                def metrics12(model: Any, t: int) -> Mapping[str, Any]:
                    if t == 0:
                        return {}
                    m = measure(model, t)
                    m["n_changed_params"] = count_changed(original, model)
                    b.update(1)
                    return m

                res = successive_so(task, requests, cfg, selector=sel, sparsity=sp,
                                    metrics=metrics12, device=device, seed=seed)
                for st in res.steps:
                    secs = st["seconds"] + st.get("precompute_seconds", 0.0)
                    total += secs
                    row = {**ident, **{k: v for k, v in st.items() if k != "n_selected"},
                           "seconds": secs, "total_seconds": total,
                           "ok": bool(st.get("finite", True))}
                    out.append(_emit(row, on_record))
    return out


def _emit(rec: dict[str, Any], on_record: OnRecord | None) -> dict[str, Any]:
    if on_record is not None:
        on_record(rec)
    return rec
