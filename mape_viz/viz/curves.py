"""Experiment figures from tidy records: sparsity trade-off (Fig. 2/7), successive requests
(Fig. 3), relearning attack (Fig. 4) and the method-comparison table (Table 2).

Records are one row per run — a list of dicts or a pandas DataFrame — and every column name
is a keyword argument. Rows that share all the grouping columns and the x value (seeds) are
averaged, with ± one standard deviation as error bars (``error="std"``) when there are several.
:func:`line_figure` is the generic figure; the paper's figures are thin specialisations.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ._common import as_records, columns_of, is_missing, require_columns, title, unique_in_order

__all__ = ["line_figure", "sparsity_curves", "successive_curves", "relearn_curves",
           "comparison_rows", "comparison_table", "LABELS", "FULL_SELECTORS", "display_name"]

#: Default axis / legend names of common record columns (override with ``labels=``).
LABELS: dict[str, str] = {
    "sparsity": "sparsity", "forget_acc": "forget accuracy", "retain_acc": "retain accuracy",
    "test_acc": "test accuracy", "forget_f1": "forget F1", "retain_f1": "retain F1",
    "test_f1": "test F1", "mia": "MIA (share of D_f taken as members)",
    "forget_quality": "forget quality (KS p-value)", "model_utility": "model utility",
    "request": "removal requests", "epoch": "relearning epoch", "method": "method",
    "selector": "selector", "granularity": "granularity", "scenario": "scenario",
    "forget": "forget", "retain": "retain", "test": "test",
}

#: Short column names for the table header (override with ``labels=``).
TABLE_LABELS: dict[str, str] = {"mia": "MIA", "forget_acc": "forget acc.",
                                "retain_acc": "retain acc.", "test_acc": "test acc.",
                                "forget_f1": "forget F1", "retain_f1": "retain F1",
                                "test_f1": "test F1", "forget_quality": "forget quality",
                                "model_utility": "model utility"}

#: Selector values that mean "no mask, all parameters updated" (drawn dashed in Fig. 4,
#: named by the method alone in Table 2).
FULL_SELECTORS = ("full", "none", "all", "")

DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "pentagon")


def _label(col: str | None, labels: Mapping[str, str] | None) -> str:
    if col is None:
        return ""
    return (labels or {}).get(col) or LABELS.get(col) or col.replace("_", " ")


def _fmt_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "full" if v is None else "nan"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _sort_key(v: Any) -> tuple:
    return (0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v))


def line_figure(records: Any, *, x: str, y: str | Sequence[str], color: str | None = None,
                dash: str | None = None, facet: str | None = None,
                error: Literal["std", None] = "std", labels: Mapping[str, str] | None = None,
                dash_map: Mapping[Any, str] | None = None,
                reference: Mapping[str, float] | None = None, main_title: str = "",
                subtitle: str = "", height: int | None = None) -> go.Figure:
    """Lines of ``y`` against ``x``, one per (``color``, ``dash``) value pair, one column of
    panels per ``facet`` value and one row per ``y`` metric.

    Args:
        records: list of dicts or DataFrame, one row per run.
        x: the x column (numeric).
        y: one metric column or several (one subplot row each).
        color: column whose values get distinct colours (and the legend), or None.
        dash: column whose values get distinct line dashes / marker symbols (may equal
            ``color``), or None.
        facet: column whose values each get a column of subplots, or None.
        error: ``"std"`` — error bars of ± one standard deviation over rows that share x and
            all grouping values (seeds); None — means only.
        labels: column -> display name (defaults from :data:`LABELS`).
        dash_map: value of ``dash`` -> a plotly dash name (default: in order of appearance).
        reference: label -> y value, drawn as dotted horizontal lines on every panel
            (e.g. ``{"retrained (RT)": 0.84}``).
    Returns:
        A figure with one ``Scatter`` per (y row, facet, colour, dash) group that has data;
        each trace's ``x`` is sorted, ``y`` the group mean, ``error_y`` the std when asked,
        ``customdata`` (std, n) per point, ``meta`` = {"facet", "color", "dash", "y"}.
    """
    rows = as_records(records)
    ys = [y] if isinstance(y, str) else list(y)
    require_columns(rows, [x, *ys, color, dash, facet])
    if error not in ("std", None):
        raise ValueError(f"error must be 'std' or None, got {error!r}")

    def val(r: Mapping[str, Any], col: str | None) -> Any:
        # missing group values (None, or NaN from a DataFrame) all become None: NaN != NaN
        v = None if col is None else r.get(col)
        return None if is_missing(v) else v

    facets = unique_in_order(val(r, facet) for r in rows) if facet else [None]
    colors = unique_in_order(val(r, color) for r in rows) if color else [None]
    dashes = unique_in_order(val(r, dash) for r in rows) if dash else [None]
    palette = qualitative.Plotly + qualitative.D3
    cmap = {v: palette[i % len(palette)] for i, v in enumerate(colors)}
    dmap = {v: (dash_map or {}).get(v, DASHES[i % len(DASHES)]) for i, v in enumerate(dashes)}
    smap = {v: SYMBOLS[i % len(SYMBOLS)] for i, v in enumerate(dashes)}

    fig = make_subplots(
        rows=len(ys), cols=len(facets), shared_xaxes=True, vertical_spacing=0.1,
        horizontal_spacing=0.06 if len(facets) > 3 else 0.08,
        subplot_titles=[f"{_label(facet, labels)} = {_fmt_value(f)}" if facet else ""
                        for _ in ys for f in facets])
    shown: set[tuple] = set()
    for ri, ycol in enumerate(ys, start=1):
        for ci, fval in enumerate(facets, start=1):
            for cval in colors:
                for dval in dashes:
                    pts: dict[Any, list[float]] = defaultdict(list)
                    for r in rows:
                        if (facet and val(r, facet) != fval) or (color and val(r, color) != cval) \
                                or (dash and val(r, dash) != dval):
                            continue
                        if is_missing(r.get(x)) or is_missing(r.get(ycol)):
                            continue
                        pts[r[x]].append(float(r[ycol]))
                    if not pts:
                        continue
                    xs = sorted(pts, key=_sort_key)
                    mean = np.array([np.mean(pts[v]) for v in xs])
                    std = np.array([np.std(pts[v], ddof=1) if len(pts[v]) > 1 else 0.0
                                    for v in xs])
                    cnt = np.array([len(pts[v]) for v in xs])
                    name_parts = [_fmt_value(v) for v, col in ((cval, color), (dval, dash))
                                  if col is not None]
                    if color is not None and color == dash:
                        name_parts = name_parts[:1]
                    name = " · ".join(name_parts) or ycol
                    key = (cval, dval)
                    hover = (f"{html.escape(name)}<br>{_label(x, labels)} = %{{x}}<br>"
                             f"{_label(ycol, labels)} = %{{y:.4g}}"
                             + (" ± %{customdata[0]:.2g}" if error else "")
                             + " (n = %{customdata[1]:d})<extra></extra>")
                    fig.add_trace(go.Scatter(
                        x=xs, y=mean, mode="lines+markers", name=name, legendgroup=str(key),
                        showlegend=key not in shown,
                        line={"color": cmap[cval] if color else palette[0],
                              "dash": dmap[dval] if dash else "solid", "width": 2},
                        marker={"symbol": smap[dval] if dash else "circle", "size": 7},
                        error_y=({"type": "data", "array": std, "visible": bool(cnt.max() > 1),
                                  "thickness": 1} if error else None),
                        customdata=np.stack([std, cnt], axis=-1), hovertemplate=hover,
                        meta={"facet": fval, "color": cval, "dash": dval, "y": ycol}),
                        row=ri, col=ci)
                    shown.add(key)
            for lab, yv in (reference or {}).items():
                # label only the last panel; an annotation position without text draws a
                # placeholder "new text" label in plotly
                label = ({"annotation_text": lab, "annotation_position": "top right"}
                         if ci == len(facets) else {})
                fig.add_hline(y=yv, line={"dash": "dot", "color": "#555", "width": 1},
                              row=ri, col=ci, **label)
            if ci == 1:
                fig.update_yaxes(title_text=_label(ycol, labels), row=ri, col=ci)
    xvals = [r[x] for r in rows if not is_missing(r.get(x))]
    fraction = bool(xvals) and all(isinstance(v, (int, float, np.number)) and 0 <= v <= 1
                                   for v in xvals) and x == "sparsity"
    for ci in range(1, len(facets) + 1):
        fig.update_xaxes(title_text=_label(x, labels), row=len(ys), col=ci,
                         **({"tickformat": ".0%"} if fraction else {}))
    legend_title = " · ".join(_label(c, labels) for c in unique_in_order([color, dash]) if c)
    fig.update_layout(title=title(main_title, subtitle), legend_title_text=legend_title,
                      height=height or max(360, 300 * len(ys) + 60),
                      plot_bgcolor="white", hovermode="closest")
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return fig


def _present(rows: list[dict[str, Any]], col: str | None, default: str | None) -> str | None:
    """Drop a *default* grouping column that the records lack or that has a single value."""
    if col is None or col != default:
        return col
    have = columns_of(rows)
    if col not in have or len(unique_in_order(r.get(col) for r in rows)) < 2:
        return None
    return col


def sparsity_curves(records: Any, *, x: str = "sparsity", y: str | Sequence[str] = "test_acc",
                    color: str | None = "selector", dash: str | None = "granularity",
                    facet: str | None = "method", **kwargs: Any) -> go.Figure:
    """Paper Fig. 2 / Fig. 7: a metric against sparsity, per method (panels) and selector
    (colours); ``granularity`` (heads / filters / both, Fig. 7) as dashes when it varies.

    For Fig. 7 exactly, pass ``color="granularity", dash=None``. Defaults match the sweep
    records ``{"method", "selector", "granularity", "sparsity", "forget_acc", "retain_acc",
    "test_acc", "mia"}``; ``y`` may list several metrics (one row each). Other keyword
    arguments go to :func:`line_figure` (``error``, ``labels``, ``reference``, ...).
    """
    rows = as_records(records)
    color = _present(rows, color, "selector")
    dash = _present(rows, dash, "granularity")
    facet = _present(rows, facet, "method")
    kwargs.setdefault("main_title", "Sparsity trade-off")
    kwargs.setdefault("subtitle", "higher sparsity = fewer modules updated (Fig. 2 / Fig. 7)")
    return line_figure(rows, x=x, y=y, color=color, dash=dash, facet=facet, **kwargs)


def successive_curves(records: Any, *, x: str = "request", y: str | Sequence[str] = "test_acc",
                      color: str | None = "selector", dash: str | None = "scenario",
                      facet: str | None = "method", **kwargs: Any) -> go.Figure:
    """Paper Fig. 3: a metric after each successive removal request.

    Defaults match ``{"request", "selector", "method", "test_acc", "retain_acc", ...}``;
    a ``scenario`` column (``successive`` / ``batch``) or ``sparsity`` can split lines
    (``dash="sparsity"``). Other keyword arguments go to :func:`line_figure`.
    """
    rows = as_records(records)
    color = _present(rows, color, "selector")
    dash = _present(rows, dash, "scenario")
    facet = _present(rows, facet, "method")
    kwargs.setdefault("main_title", "Successive unlearning requests")
    kwargs.setdefault("subtitle", "utility as removal requests accumulate (Fig. 3)")
    return line_figure(rows, x=x, y=y, color=color, dash=dash, facet=facet, **kwargs)


def relearn_curves(records: Any, *, x: str = "epoch", y: str | Sequence[str] = "forget_acc",
                   color: str | None = "selector", dash: str | None = "selector",
                   facet: str | None = "method", **kwargs: Any) -> go.Figure:
    """Paper Fig. 4: the forget metric per relearning epoch, one panel per method; full
    updates (selector in :data:`FULL_SELECTORS`) dashed, module-aware masks solid.

    Defaults match ``{"epoch", "method", "selector", "forget_acc", ...}``; pass
    ``y="forget_quality"`` for the TOFU forget quality.
    """
    rows = as_records(records)
    facet = _present(rows, facet, "method")
    if dash == "selector" and "dash_map" not in kwargs:
        kwargs["dash_map"] = {v: ("dash" if _is_full(v) else "solid")
                              for v in unique_in_order(r.get("selector") for r in rows)}
    kwargs.setdefault("main_title", "Relearning attack")
    kwargs.setdefault("subtitle", "dashed: full-parameter update · solid: module-aware (Fig. 4)")
    return line_figure(rows, x=x, y=y, color=color, dash=dash, facet=facet, **kwargs)


# ----------------------------------------------------------------------------- Table 2

def _is_full(selector: Any) -> bool:
    return selector is None or (isinstance(selector, float) and math.isnan(selector)) \
        or str(selector).lower() in FULL_SELECTORS


def display_name(method: Any, selector: Any) -> str:
    """Table name of a run: ``SO`` for a full update, ``MAPE-SO`` / ``SURE-GA`` with a mask."""
    m = str(method).upper()
    return m if _is_full(selector) else f"{str(selector).upper()}-{m}"


def comparison_rows(records: Any, *, method: str = "method", selector: str = "selector",
                    efficacy: Sequence[str] = ("forget", "mia"),
                    fidelity: Sequence[str] = ("retain", "test"),
                    best_within: Literal["method", "all"] | None = "method",
                    reference: Iterable[str] = ("rt",),
                    directions: Mapping[str, Literal["min", "max"]] | None = None,
                    ) -> list[dict[str, Any]]:
    """The rows of :func:`comparison_table`, as data: one per (method, selector).

    Runs sharing (method, selector) are averaged. Rows are grouped by method in order of
    first appearance. A value is *best* when it is the minimum (efficacy columns, lower =
    more forgetting / less membership leakage) or maximum (fidelity columns) among the
    non-reference rows of its group (``best_within="method"``: rows of the same method,
    groups of ≥ 2 rows only, as the paper bolds SO vs SURE-SO vs MAPE-SO) or of the table
    (``"all"``); ``None`` marks nothing. ``directions`` overrides min/max per column.

    Returns:
        Dicts with ``name`` (e.g. ``"MAPE-SO"``), ``method``, ``selector``, ``n`` (runs
        averaged), ``values`` {column: mean}, ``best`` (set of columns that are best).
    """
    rows = as_records(records)
    cols = [*efficacy, *fidelity]
    require_columns(rows, [method, selector, *cols])
    direction = {**{c: "min" for c in efficacy}, **{c: "max" for c in fidelity},
                 **(directions or {})}
    ref = {str(r).lower() for r in reference}
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        sel = r.get(selector)
        sel = None if _is_full(sel) else sel
        groups.setdefault((r.get(method), sel), []).append(r)
    methods = unique_in_order(k[0] for k in groups)
    out: list[dict[str, Any]] = []
    for m in methods:
        for (mm, s), rs in groups.items():
            if mm != m:
                continue
            values = {}
            for c in cols:
                v = [float(r[c]) for r in rs if not is_missing(r.get(c))]
                values[c] = float(np.mean(v)) if v else float("nan")
            out.append({"name": display_name(m, s), "method": m, "selector": s, "n": len(rs),
                        "values": values, "best": set()})
    if best_within is not None:
        if best_within not in ("method", "all"):
            raise ValueError(f"best_within must be 'method', 'all' or None, got {best_within!r}")
        pools: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for row in out:
            if str(row["method"]).lower() not in ref:
                pools[row["method"] if best_within == "method" else "all"].append(row)
        for pool in pools.values():
            if best_within == "method" and len(pool) < 2:
                continue
            for c in cols:
                vals = [row["values"][c] for row in pool if not math.isnan(row["values"][c])]
                if not vals:
                    continue
                best = min(vals) if direction[c] == "min" else max(vals)
                for row in pool:
                    if row["values"][c] == best:
                        row["best"].add(c)
    return out


def comparison_table(records: Any, *, method: str = "method", selector: str = "selector",
                     efficacy: Sequence[str] = ("forget", "mia"),
                     fidelity: Sequence[str] = ("retain", "test"),
                     best_within: Literal["method", "all"] | None = "method",
                     reference: Iterable[str] = ("rt",),
                     directions: Mapping[str, Literal["min", "max"]] | None = None,
                     labels: Mapping[str, str] | None = None,
                     formats: Mapping[str, str] | None = None,
                     fmt: str = ".4f", main_title: str = "Unlearning efficacy and fidelity",
                     subtitle: str = "bold = best within each method group (Table 2)",
                     ) -> go.Figure:
    """Paper Table 2 as a ``go.Table``: Method | efficacy columns ↓ | fidelity columns ↑.

    Defaults match the comparison records ``{"method", "selector", "forget", "mia",
    "retain", "test"}``. Best values (see :func:`comparison_rows`) are wrapped in ``<b>``;
    reference rows (``rt``, the retrained gold standard) are shown in italics and never bold.
    Method groups get alternating row shades.

    Args:
        formats: column -> Python format spec (default ``fmt`` for all), e.g. ``{"test": ".2%"}``.
    Returns:
        A figure with one ``Table`` trace: ``header.values`` = ["Method", "Efficacy<br>forget ↓",
        ...], ``cells.values`` = one list per column (strings).
    """
    rows = comparison_rows(records, method=method, selector=selector, efficacy=efficacy,
                           fidelity=fidelity, best_within=best_within, reference=reference,
                           directions=directions)
    cols = [*efficacy, *fidelity]
    direction = {**{c: "min" for c in efficacy}, **{c: "max" for c in fidelity},
                 **(directions or {})}
    arrow = {"min": "↓", "max": "↑"}
    def short(c: str) -> str:
        return (labels or {}).get(c) or TABLE_LABELS.get(c) or c.replace("_", " ")

    header = ["Method"] + [
        f"{'Efficacy' if c in efficacy else 'Fidelity'}<br>{short(c)} {arrow[direction[c]]}"
        for c in cols]
    ref = {str(r).lower() for r in reference}
    name_col: list[str] = []
    cell_cols: list[list[str]] = [[] for _ in cols]
    shades: list[str] = []
    group_ix = {m: i for i, m in enumerate(unique_in_order(r["method"] for r in rows))}
    for row in rows:
        is_ref = str(row["method"]).lower() in ref
        nm = html.escape(row["name"]) + (f" (n={row['n']})" if row["n"] > 1 else "")
        name_col.append(f"<i>{nm}</i>" if is_ref else nm)
        for j, c in enumerate(cols):
            v = row["values"][c]
            s = "–" if math.isnan(v) else format(v, (formats or {}).get(c, fmt))
            cell_cols[j].append(f"<b>{s}</b>" if c in row["best"] else s)
        shades.append("#f7f7f7" if group_ix[row["method"]] % 2 else "white")
    fig = go.Figure(go.Table(
        header={"values": header, "align": ["left"] + ["center"] * len(cols),
                "fill_color": "#e8eef7", "font": {"size": 13}, "height": 40},
        cells={"values": [name_col, *cell_cols], "align": ["left"] + ["center"] * len(cols),
               "fill_color": [shades] * (1 + len(cols)), "height": 26},
        columnwidth=[1.4] + [1] * len(cols)))
    fig.update_layout(title=title(main_title, subtitle),
                      height=min(1400, 190 + 32 * len(rows)), margin={"t": 80})
    return fig

