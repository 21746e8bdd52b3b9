"""Efficacy–fidelity frontiers: does a module mask give higher fidelity at equal efficacy?
(docs/design.md §6).

One learning rate per method cannot answer the paper's question: a masked run that forgets
less at one step size may forget as much at another and still keep more. So for each
(method, selector) :func:`run_frontier` runs a grid of step sizes — the learning rate, or η
for second-order methods — × seeds, each run one tidy record (forget accuracy, MIA, retain
and test accuracy, parameters changed, seconds, steps, stop reason), and summarises each
(method, selector) by **one rule, the same for every row**:

- **Pareto front** of a seed's runs: the runs no other run of the same seed beats on both
  efficacy (forget accuracy, lower is better) and fidelity (test accuracy, higher is better),
  plus the original model as the zero-step-size anchor (``anchor_original``), sorted by forget
  accuracy. On the front both go up together; it is read as a piecewise-linear curve.
- **Fidelity at equal efficacy**: the front's test accuracy at forget accuracy
  τ = RT's forget accuracy + ``efficacy_margin`` (5 points) — the best test accuracy among
  front points whose forget accuracy ≤ τ, linearly interpolated towards the next front point
  (at exactly τ). If no run forgets down to τ the value is *not reached*; past the front's
  last point it is that point's test accuracy.
- **Efficacy at equal fidelity**: the front's forget accuracy at test accuracy
  σ = the original's test accuracy − ``fidelity_margin`` (1 point) — the lowest forget
  accuracy among front points whose test accuracy ≥ σ, linearly interpolated towards the
  previous front point. With the anchor it is always defined (at worst the original's forget
  accuracy: nothing forgotten within the fidelity budget).
- Each is computed per seed; the table shows mean ± sd over the seeds where it is reached
  (and how many), and min–max. MIA and retain accuracy at the equal-efficacy point are
  interpolated with the same weights.

:func:`pareto_front`, :func:`at_efficacy`, :func:`at_fidelity` and :func:`summarise` are pure
functions on records (tested on hand-made points); :func:`frontier_markdown` writes the
Table-2-shaped table; :func:`mape_viz.viz.frontier` draws the curves.

The step-size grid is relative: each (method, selector)'s base step size — the run's ``lr``
(``eta`` for SO) after the presets and overrides, i.e. the tuned value of
:mod:`mape_viz.presets` — times :data:`DEFAULT_MULTIPLIERS`, so one grid fits tasks whose
scales differ by orders of magnitude. ``FrontierConfig.grid`` gives absolute step sizes
instead, by preset target (``"*"``, ``"full"``, ``"masked"``, a method, ``"method/selector"``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..presets import run_targets
from ..tasks import Task
from ..unlearning import METHODS, as_config
from ._common import (TABLE2_METHODS, OnRecord, bar, check_overrides, config_for, display_name,
                      evaluate_model, is_masked, maskable, require_task, run_record)

__all__ = ["FrontierConfig", "FrontierResult", "DEFAULT_MULTIPLIERS", "QUICK_MULTIPLIERS",
           "run_frontier", "frontier_plan", "pareto_front", "at_efficacy", "at_fidelity",
           "summarise", "frontier_markdown", "front_rows", "step_field", "rule_text",
           "mean_points"]

#: Step-size multipliers of the default grid, applied to each run's base lr / η (a factor 32
#: from the smallest to the largest: the tuned presets sit in the middle of it).
DEFAULT_MULTIPLIERS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: ``mape-viz bench --quick``'s grid.
QUICK_MULTIPLIERS: tuple[float, ...] = (0.5, 1.0, 4.0)
#: Record columns interpolated at the summary points besides efficacy and fidelity.
CARRIED = ("mia", "retain", "n_changed_params", "seconds", "steps")
#: Table names of the efficacy / fidelity columns.
COLUMN_LABELS = {"forget": "forget acc.", "test": "test acc.", "retain": "retain acc.",
                 "forget_acc": "forget acc.", "test_acc": "test acc.",
                 "forget_rouge": "forget ROUGE-L", "forget_prob": "forget prob.",
                 "model_utility": "model utility", "retain_rouge": "retain ROUGE-L"}


def _label(col: str) -> str:
    return COLUMN_LABELS.get(col, col.replace("_", " "))


@dataclass
class FrontierConfig:
    """What :func:`run_frontier` runs and how it summarises.

    Attributes:
        methods: unlearning methods (default: the paper's Table 2: so, ga, gd, npo).
        selectors: ``full`` and score selectors (``mape``, ``sure``, ``random`` ...).
        sparsity: sparsity of the masked runs (paper: 0.9).
        multipliers: the grid, as factors of each run's base lr / η (see module doc).
        grid: absolute step sizes by preset target (``{"full": [1e-4, ...], "so": [...]}``),
            the most specific target wins; replaces ``multipliers`` for the runs it targets.
        seeds: one run per grid point and seed.
        efficacy: the record column of efficacy (lower is better; ``forget`` = forget
            accuracy).
        fidelity: the record column of fidelity (higher is better; ``test`` = test accuracy).
        efficacy_margin: τ = RT's efficacy + this (0.05 = 5 points).
        fidelity_margin: σ = the original's fidelity − this (0.01 = 1 point).
        anchor_original: put the original model on every front (the zero step size).
    """

    methods: tuple[str, ...] = TABLE2_METHODS
    selectors: tuple[str, ...] = ("full", "mape")
    sparsity: float = 0.9
    multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS
    grid: Mapping[str, Sequence[float]] | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    efficacy: str = "forget"
    fidelity: str = "test"
    efficacy_margin: float = 0.05
    fidelity_margin: float = 0.01
    anchor_original: bool = True

    def __post_init__(self) -> None:
        problems = []
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            problems.append(f"methods {bad} (known: {', '.join(METHODS.names())})")
        if not self.methods or not self.selectors or not self.seeds:
            problems.append("methods, selectors and seeds must not be empty")
        if not 0.0 <= float(self.sparsity) < 1.0:
            problems.append(f"sparsity={self.sparsity!r} (must be in [0, 1))")
        if not self.multipliers or any(not float(v) > 0 for v in self.multipliers):
            problems.append(f"multipliers={self.multipliers!r} (positive numbers)")
        for target, values in (self.grid or {}).items():
            if not values or any(not float(v) > 0 for v in values):
                problems.append(f"grid[{target!r}]={values!r} (positive numbers)")
        for name in ("efficacy_margin", "fidelity_margin"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                problems.append(f"{name}={getattr(self, name)!r} (a fraction in [0, 1))")
        if problems:
            raise ValueError("invalid frontier config: " + "; ".join(problems))


def rule_text(fc: FrontierConfig) -> str:
    """The summary rule in one paragraph (printed under the table)."""
    e, f = _label(fc.efficacy), _label(fc.fidelity)
    return (f"Rule (the same for every row): per seed, the Pareto front of the runs "
            f"(min {e}, max {f}"
            f"{', with the original model as the zero-step anchor' if fc.anchor_original else ''}"
            f"), read as a piecewise-linear curve. Fidelity at equal efficacy = {f} "
            f"on the front at {e} = RT's + {fc.efficacy_margin * 100:g} points "
            f"(interpolated; not reached when no run forgets that much). Efficacy at equal "
            f"fidelity = {e} on the front at {f} = the original's − "
            f"{fc.fidelity_margin * 100:g} point(s) (interpolated). Mean ± sd over seeds "
            f"(n = seeds where reached), then min–max.")


# ---------------------------------------------------------------------------------------------
# Pure frontier math


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def pareto_front(points: Sequence[Mapping[str, Any]], x: str = "forget", y: str = "test"
                 ) -> list[Mapping[str, Any]]:
    """The non-dominated points (min ``x``, max ``y``), sorted by ``x`` ascending.

    A point is dominated when another has ``x`` ≤ and ``y`` ≥ with one strict; of points with
    equal (x, y) the first is kept. Points missing x or y (None / NaN) are ignored. On the
    returned front x and y both increase strictly.
    """
    pts = [p for p in points if _num(p.get(x)) is not None and _num(p.get(y)) is not None]
    # by x ascending, then y descending: a point is on the front iff its y beats every y seen
    order = sorted(range(len(pts)), key=lambda i: (_num(pts[i][x]), -_num(pts[i][y]), i))
    front: list[Mapping[str, Any]] = []
    best = -math.inf
    for i in order:
        yi = _num(pts[i][y])
        if yi > best:
            front.append(pts[i])
            best = yi
    return front


def _blend(a: Mapping[str, Any], b: Mapping[str, Any], w: float, keys: Sequence[str]
           ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        va, vb = _num(a.get(k)), _num(b.get(k))
        out[k] = None if va is None or vb is None else va + w * (vb - va)
    return out


def at_efficacy(front: Sequence[Mapping[str, Any]], target: float, x: str = "forget",
                y: str = "test", carry: Sequence[str] = CARRIED) -> dict[str, Any] | None:
    """The front (from :func:`pareto_front`) read at ``x = target``: ``{x, y, *carry,
    "between": (i, j), "weight": w}``, or None when no front point has ``x ≤ target``.

    Between front points i and i+1 (x_i ≤ target < x_{i+1}) every value is
    ``v_i + w (v_{i+1} − v_i)`` with ``w = (target − x_i) / (x_{i+1} − x_i)``; at or past the
    last point, the last point's values.
    """
    if not front or _num(front[0][x]) > target:
        return None
    keys = [x, y, *carry]
    for i in range(len(front) - 1):
        x0, x1 = _num(front[i][x]), _num(front[i + 1][x])
        if x0 <= target < x1:
            w = (target - x0) / (x1 - x0)
            return {**_blend(front[i], front[i + 1], w, keys), "between": (i, i + 1),
                    "weight": w}
    last = front[-1]
    return {**_blend(last, last, 0.0, keys), "between": (len(front) - 1, len(front) - 1),
            "weight": 0.0}


def at_fidelity(front: Sequence[Mapping[str, Any]], target: float, x: str = "forget",
                y: str = "test", carry: Sequence[str] = CARRIED) -> dict[str, Any] | None:
    """The front read at ``y = target``: the lowest ``x`` whose ``y ≥ target`` along the
    piecewise-linear front, with the other values interpolated alike; None when no front
    point has ``y ≥ target``. If the first point already has ``y ≥ target``: its values."""
    if not front or _num(front[-1][y]) < target:
        return None
    keys = [x, y, *carry]
    if _num(front[0][y]) >= target:
        return {**_blend(front[0], front[0], 0.0, keys), "between": (0, 0), "weight": 0.0}
    for i in range(len(front) - 1):
        y0, y1 = _num(front[i][y]), _num(front[i + 1][y])
        if y0 < target <= y1:
            w = (target - y0) / (y1 - y0)
            return {**_blend(front[i], front[i + 1], w, keys), "between": (i, i + 1),
                    "weight": w}
    return None  # unreachable on a front from pareto_front (y increases strictly)


def _spread(values: Sequence[float | None]) -> dict[str, Any]:
    got = [float(v) for v in values if v is not None]
    n = len(got)
    return {"mean": float(np.mean(got)) if n else None,
            "sd": float(np.std(got, ddof=1)) if n > 1 else (0.0 if n else None),
            "min": min(got) if n else None, "max": max(got) if n else None,
            "n": n, "of": len(values), "values": list(values)}


def _anchor(ref: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {**ref, "method": "original", "selector": "full", "anchor": True, "steps": 0,
            "n_changed_params": 0, "seconds": 0.0}


def summarise(records: Sequence[Mapping[str, Any]], original: Mapping[str, Any],
              retrained: Mapping[str, Any] | None, fc: FrontierConfig | None = None
              ) -> list[dict[str, Any]]:
    """One summary row per (method, selector) of frontier ``records`` (see module doc).

    Args:
        records: run records with ``method``, ``selector``, ``seed`` and the efficacy /
            fidelity columns (``forget`` / ``test``).
        original: the original model's metrics (same columns).
        retrained: RT's metrics, or None (then fidelity at equal efficacy is not computed).
        fc: margins and columns (default :class:`FrontierConfig`).

    Returns:
        rows with ``method``, ``selector``, ``name``, ``runs``, ``seeds``,
        ``fidelity_at_efficacy`` and ``efficacy_at_fidelity`` (each
        ``{mean, sd, min, max, n, of, values}`` over seeds), ``at_efficacy`` (per seed: the
        interpolated point or None), ``at_fidelity``, ``mia_at_efficacy`` /
        ``retain_at_efficacy`` (spreads), ``n_changed_params``, ``seconds``, ``steps``
        (means over runs), ``tau``, ``sigma``.
    """
    fc = fc or FrontierConfig()
    x, y = fc.efficacy, fc.fidelity
    tau = None
    if retrained is not None and _num(retrained.get(x)) is not None:
        tau = _num(retrained[x]) + fc.efficacy_margin
    sigma = _num(original.get(y))
    sigma = None if sigma is None else sigma - fc.fidelity_margin
    anchor = _anchor(original) if fc.anchor_original else None
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("method") in ("original", "rt") or r.get("anchor"):
            continue
        groups.setdefault((str(r["method"]), str(r["selector"])), []).append(r)
    rows = []
    for (method, selector), recs in groups.items():
        seeds = sorted({r.get("seed", 0) for r in recs})
        eff_pts, fid_pts = [], []
        for s in seeds:
            pts = [r for r in recs if r.get("seed", 0) == s]
            front = pareto_front(pts + ([anchor] if anchor else []), x, y)
            eff_pts.append(at_efficacy(front, tau, x, y) if tau is not None else None)
            fid_pts.append(at_fidelity(front, sigma, x, y) if sigma is not None else None)

        def col(pts: list, key: str) -> list:
            return [p.get(key) if p else None for p in pts]

        def mean_of(key: str) -> float | None:
            vals = [_num(r.get(key)) for r in recs]
            vals = [v for v in vals if v is not None]
            return float(np.mean(vals)) if vals else None

        rows.append({
            "method": method, "selector": selector, "name": display_name(method, selector),
            "runs": len(recs), "seeds": seeds, "tau": tau, "sigma": sigma,
            "fidelity_at_efficacy": _spread(col(eff_pts, y)),
            "efficacy_at_fidelity": _spread(col(fid_pts, x)),
            "mia_at_efficacy": _spread(col(eff_pts, "mia")),
            "retain_at_efficacy": _spread(col(eff_pts, "retain")),
            "at_efficacy": eff_pts, "at_fidelity": fid_pts,
            "n_changed_params": mean_of("n_changed_params"), "seconds": mean_of("seconds"),
            "steps": mean_of("steps"),
        })
    return rows


def front_rows(records: Sequence[Mapping[str, Any]], fc: FrontierConfig | None = None,
               original: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """``records`` with ``on_front`` (on its seed's front, the anchor included when
    ``original`` is given) — the rows of ``frontier.csv``."""
    fc = fc or FrontierConfig()
    anchor = _anchor(original) if (fc.anchor_original and original is not None) else None
    on: set[int] = set()
    keys = {(r.get("method"), r.get("selector"), r.get("seed", 0)) for r in records}
    for key in keys:
        pts = [r for r in records if (r.get("method"), r.get("selector"), r.get("seed", 0)) == key]
        on.update(id(p) for p in pareto_front(pts + ([anchor] if anchor else []),
                                              fc.efficacy, fc.fidelity))
    return [{**r, "on_front": id(r) in on} for r in records]


# ---------------------------------------------------------------------------------------------
# The table


def _pct(s: Mapping[str, Any]) -> str:
    if s["n"] == 0:
        return f"not reached (0/{s['of']})"
    txt = f"{s['mean'] * 100:.1f} ± {s['sd'] * 100:.1f}"
    if s["of"] > 1:
        txt += f" [{s['min'] * 100:.1f}–{s['max'] * 100:.1f}]"
    if s["n"] < s["of"]:
        txt += f" ({s['n']}/{s['of']} seeds)"
    return txt


def _count(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def frontier_markdown(summary: Sequence[Mapping[str, Any]], original: Mapping[str, Any],
                      retrained: Mapping[str, Any] | None, fc: FrontierConfig | None = None
                      ) -> str:
    """The Table-2-shaped markdown of :func:`summarise` rows, reference rows first and the
    rule stated under it."""
    fc = fc or FrontierConfig()
    x, y = fc.efficacy, fc.fidelity
    lx, ly = _label(x), _label(y)
    head = (f"| Method | Fidelity at equal efficacy: {ly} (%) at {lx} ≤ RT + "
            f"{fc.efficacy_margin * 100:g} pts ↑ | Efficacy at equal fidelity: {lx} (%) at "
            f"{ly} ≥ original − {fc.fidelity_margin * 100:g} pt ↓ | MIA at equal efficacy ↓ "
            f"| retain (%) at equal efficacy ↑ | params changed | seconds / run | "
            f"steps / run | runs |")
    lines = [head, "|" + "---|" * 9]

    def ref(name: str, r: Mapping[str, Any] | None) -> None:
        if r is None:
            return
        f, e, m, rt = (_num(r.get(k)) for k in (y, x, "mia", "retain"))
        pct = lambda v: "–" if v is None else f"{v * 100:.1f}"  # noqa: E731
        lines.append(f"| *{name}* | {ly} {pct(f)} | {lx} {pct(e)} | "
                     f"{'–' if m is None else f'{m:.3f}'} | {pct(rt)} | – | – | – | – |")

    ref("Original", original)
    ref("RT", retrained)
    for r in summary:
        mia = r["mia_at_efficacy"]
        mia_txt = "–" if mia["n"] == 0 else f"{mia['mean']:.3f} ± {mia['sd']:.3f}"
        ret = r["retain_at_efficacy"]
        ret_txt = "–" if ret["n"] == 0 else f"{ret['mean'] * 100:.1f} ± {ret['sd'] * 100:.1f}"
        secs = "–" if r["seconds"] is None else f"{r['seconds']:.1f}"
        steps = "–" if r["steps"] is None else f"{r['steps']:.0f}"
        fae = _pct(r["fidelity_at_efficacy"]) if r["tau"] is not None else "– (no RT)"
        lines.append(
            f"| {r['name']} | {fae} | {_pct(r['efficacy_at_fidelity'])} | {mia_txt} | "
            f"{ret_txt} | {_count(r['n_changed_params'])} | {secs} | {steps} | {r['runs']} |")
    return "\n".join(lines) + "\n\n" + rule_text(fc) + "\n"


# ---------------------------------------------------------------------------------------------
# Running the grid


def step_field(method: str) -> str:
    """``eta`` for a method that reads η (second order), else ``lr``."""
    return "eta" if "eta" in METHODS.get(method).fields else "lr"


def _grid_for(fc: FrontierConfig, method: str, selector: str, base: float) -> list[tuple[float, float | None]]:
    """[(step size, multiplier or None)] of one (method, selector)."""
    if fc.grid:
        chosen = None
        for t in run_targets(method, selector, is_masked(method, selector)):
            if t in fc.grid:
                chosen = fc.grid[t]
        if chosen is not None:
            return [(float(v), None) for v in chosen]
    return [(base * float(m), float(m)) for m in fc.multipliers]


def frontier_plan(task: Any, fc: FrontierConfig, config: Any = None,
                  overrides: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> list[dict[str, Any]]:
    """The runs of :func:`run_frontier`, in order: dicts with ``method``, ``selector``,
    ``seed``, ``step_field`` (``lr`` / ``eta``), ``step_size``, ``multiplier``, ``config``."""
    base = as_config(config)
    plan = []
    for seed in fc.seeds:
        for method in fc.methods:
            sels = list(dict.fromkeys(s if maskable(method) else "full" for s in fc.selectors))
            for sel in sels:
                cfg = config_for(base, overrides, method, sel)
                masked = is_masked(method, sel)
                fld = step_field(method)
                b = cfg.eta_for(masked) if fld == "eta" else cfg.lr_for(masked)
                for size, mult in _grid_for(fc, method, sel, b):
                    plan.append({"method": method, "selector": sel, "seed": seed,
                                 "step_field": fld, "step_size": size, "multiplier": mult,
                                 "config": cfg.replace(**{fld: size})})
    return plan


@dataclass
class FrontierResult:
    """What :func:`run_frontier` returns.

    Attributes:
        records: one record per run (:func:`~mape_viz.experiments.run_record` fields plus
            ``experiment="frontier"``, ``step_field``, ``step_size``, ``multiplier``).
        original: the original model's metrics (``method="original"``).
        retrained: the task's retrained model's metrics (``method="rt"``), or None.
        summary: :func:`summarise` rows.
        config: the :class:`FrontierConfig`.
    """

    records: list[dict[str, Any]]
    original: dict[str, Any]
    retrained: dict[str, Any] | None
    summary: list[dict[str, Any]]
    config: FrontierConfig = field(default_factory=FrontierConfig)

    def markdown(self) -> str:
        """The table (:func:`frontier_markdown`)."""
        return frontier_markdown(self.summary, self.original, self.retrained, self.config)

    def rows(self) -> list[dict[str, Any]]:
        """Records with ``on_front`` (:func:`front_rows`)."""
        return front_rows(self.records, self.config, self.original)

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "original": self.original,
                "retrained": self.retrained, "summary": self.summary,
                "config": asdict(self.config), "rule": rule_text(self.config)}


def run_frontier(task: Task, fc: FrontierConfig | None = None, *, config: Any = None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 eval_max_samples: int | None = None, eval_batch_size: int = 32,
                 device: Any = None, progress: bool = True,
                 on_record: OnRecord | None = None) -> FrontierResult:
    """Run the step-size grid × seeds of every (method, selector) and summarise it.

    Args:
        task: a :class:`~mape_viz.tasks.Task` (its retrained model gives RT's reference).
        fc: the grid and the rule (:class:`FrontierConfig`).
        config: ``UnlearnConfig`` or dict shared by every run (e.g. ``stop_when``).
        overrides: config overrides by preset target (:func:`config_for`); the grid's
            step sizes are relative to the lr / η they give.
        eval_max_samples: evaluate at most this many rows per split.
        device: run on this device.
        progress: a tqdm bar over the runs.
        on_record: called with each record as soon as it exists.
    """
    require_task(task)
    fc = fc or FrontierConfig()
    check_overrides(overrides)
    plan = frontier_plan(task, fc, config, overrides)
    orig, _ = evaluate_model(task, task.model, max_samples=eval_max_samples,
                             batch_size=eval_batch_size)
    original = {"task": task.name, "method": "original", "selector": "full",
                "name": "Original", **orig}
    retrained = None
    if task.retrained_model is not None:
        rt, _ = evaluate_model(task, task.retrained_model, max_samples=eval_max_samples,
                               batch_size=eval_batch_size)
        retrained = {"task": task.name, "method": "rt", "selector": "full", "name": "RT", **rt}
    out: list[dict[str, Any]] = []
    with bar(len(plan), "frontier", progress) as b:
        for p in plan:
            b.set_postfix_str(f"{display_name(p['method'], p['selector'])} "
                              f"{p['step_field']}={p['step_size']:.3g} seed {p['seed']}")
            rec, _ = run_record(task, p["method"], p["selector"], fc.sparsity, p["config"],
                                seed=p["seed"], device=device,
                                eval_max_samples=eval_max_samples,
                                eval_batch_size=eval_batch_size,
                                extra={"experiment": "frontier", "step_field": p["step_field"],
                                       "step_size": p["step_size"],
                                       "multiplier": p["multiplier"]})
            out.append(rec)
            if on_record is not None:
                on_record(rec)
            b.update(1)
    return FrontierResult(records=out, original=original, retrained=retrained,
                          summary=summarise(out, original, retrained, fc), config=fc)


def mean_points(records: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("forget", "test"),
                group: Callable[[Mapping[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Records averaged over seeds per (method, selector, step size): the points the figure
    draws its curves through (``n`` = seeds averaged)."""
    group = group or (lambda r: (r.get("method"), r.get("selector"), r.get("step_size")))
    buckets: dict[Any, list[Mapping[str, Any]]] = {}
    for r in records:
        buckets.setdefault(group(r), []).append(r)
    out = []
    for rs in buckets.values():
        p = {k: rs[0].get(k) for k in ("method", "selector", "name", "step_field", "step_size",
                                       "multiplier")}
        for k in keys:
            vals = [_num(r.get(k)) for r in rs]
            vals = [v for v in vals if v is not None]
            p[k] = float(np.mean(vals)) if vals else None
        p["n"] = len(rs)
        out.append(p)
    return out
