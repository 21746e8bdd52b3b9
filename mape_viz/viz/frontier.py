"""The efficacy–fidelity frontier figure (docs/design.md §6): one curve per method × selector.

Draws the records of :func:`mape_viz.experiments.frontier.run_frontier` (or a
``FrontierResult``): each run as a faint dot (seed × step size), and through them, per
(method, selector), the Pareto front of the seed-mean points — runs averaged over seeds per
step size — anchored at the original model. The original model and RT are reference points;
dotted guides mark the summary rule's targets (RT's forget accuracy + the efficacy margin,
the original's test accuracy − the fidelity margin). The front is computed by the library
(:func:`~mape_viz.experiments.frontier.pareto_front`); nothing here summarises.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

import plotly.graph_objects as go
from plotly.colors import qualitative

from ..experiments.frontier import FrontierConfig, mean_points, pareto_front
from ._common import as_records, is_missing, message_figure, title, unique_in_order
from .curves import display_name

__all__ = ["frontier", "AXIS_LABELS"]

#: What each axis shows, exactly (override with ``labels=``).
AXIS_LABELS: dict[str, str] = {
    "forget": "forget accuracy: share of forget rows still predicted as their training label "
              "(↓ forgets more)",
    "test": "test accuracy: share of held-out rows predicted right (↑ keeps more)",
    "retain": "retain accuracy (↑)",
    "mia": "MIA: share of forget rows the attack calls members (↓)",
}
SELECTOR_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross")
SELECTOR_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def _fmt(v: Any, pct: bool = True) -> str:
    if is_missing(v):
        return "–"
    return f"{float(v) * 100:.1f} %" if pct else f"{float(v):.3g}"


def frontier(result_or_records: Any, *, x: str | None = None, y: str | None = None,
             original: Mapping[str, Any] | None = None,
             retrained: Mapping[str, Any] | None = None,
             config: FrontierConfig | None = None, show_runs: bool = True,
             labels: Mapping[str, str] | None = None, height: int = 560) -> go.Figure:
    """Efficacy–fidelity frontiers, one curve per method × selector.

    Args:
        result_or_records: a ``FrontierResult`` (records, original, retrained, config), or
            frontier records (dicts with ``method``, ``selector``, ``seed``, ``step_size``
            and the ``x`` / ``y`` columns; rows with ``method`` ``original`` / ``rt`` are
            taken as the reference points).
        x, y: efficacy and fidelity columns (default: the config's, ``forget`` / ``test``).
        original, retrained: reference metrics (default: from the result or the records).
        config: margins of the guides and whether the front is anchored at the original.
        show_runs: draw every run as a faint dot too.
        labels: axis titles by column (default :data:`AXIS_LABELS`).
        height: figure height in pixels.

    Returns:
        a figure whose traces are, in order: per (method, selector) its runs (legend group
        = the curve's name) and its front (named ``MAPE-GA`` ...), then ``Original`` and
        ``RT``.
    """
    if hasattr(result_or_records, "records"):
        res = result_or_records
        records = as_records(res.records)
        original = original if original is not None else getattr(res, "original", None)
        retrained = retrained if retrained is not None else getattr(res, "retrained", None)
        config = config or getattr(res, "config", None)
    else:
        records = as_records(result_or_records)
    config = config or FrontierConfig()
    x = x or config.efficacy
    y = y or config.fidelity
    refs = {r.get("method"): r for r in records if r.get("method") in ("original", "rt")}
    original = original if original is not None else refs.get("original")
    retrained = retrained if retrained is not None else refs.get("rt")
    runs = [r for r in records if r.get("method") not in ("original", "rt")
            and not is_missing(r.get(x)) and not is_missing(r.get(y))]
    if not runs:
        return message_figure("no frontier runs to draw (records need "
                              f"{x!r} and {y!r} values)")
    labels = {**AXIS_LABELS, **(labels or {})}
    methods = unique_in_order(r["method"] for r in runs)
    selectors = unique_in_order(r["selector"] for r in runs)
    palette = qualitative.Plotly
    anchor = None
    if original is not None and config.anchor_original and not is_missing(original.get(x)):
        anchor = {x: original[x], y: original[y], "method": "original", "step_size": 0.0,
                  "n": 0}
    fig = go.Figure()
    for mi, method in enumerate(methods):
        color = palette[mi % len(palette)]
        for si, sel in enumerate(selectors):
            mine = [r for r in runs if r["method"] == method and r["selector"] == sel]
            if not mine:
                continue
            name = display_name(method, sel)
            symbol = SELECTOR_SYMBOLS[si % len(SELECTOR_SYMBOLS)]
            if show_runs:
                fig.add_trace(go.Scatter(
                    x=[r[x] for r in mine], y=[r[y] for r in mine], mode="markers",
                    name=f"{name} runs", legendgroup=name, showlegend=False, opacity=0.35,
                    marker={"color": color, "symbol": symbol, "size": 7},
                    text=[_run_hover(r, name, x, y) for r in mine],
                    hovertemplate="%{text}<extra></extra>"))
            means = mean_points(mine, keys=(x, y))
            front = pareto_front(means + ([anchor] if anchor else []), x, y)
            fig.add_trace(go.Scatter(
                x=[p[x] for p in front], y=[p[y] for p in front], mode="lines+markers",
                name=name, legendgroup=name, line={"color": color,
                                                   "dash": SELECTOR_DASHES[si % len(SELECTOR_DASHES)]},
                marker={"color": color, "symbol": symbol, "size": 9},
                text=[_front_hover(p, name, x, y) for p in front],
                hovertemplate="%{text}<extra></extra>"))
    for ref, label, sym in ((original, "Original", "diamond"), (retrained, "RT", "star")):
        if ref is None or is_missing(ref.get(x)) or is_missing(ref.get(y)):
            continue
        fig.add_trace(go.Scatter(
            x=[ref[x]], y=[ref[y]], mode="markers+text", name=label, text=[label],
            textposition="top center", marker={"color": "black", "symbol": sym, "size": 14},
            hovertemplate=f"{label}<br>{x} {_fmt(ref[x])}<br>{y} {_fmt(ref[y])}<extra></extra>"))
    if retrained is not None and not is_missing(retrained.get(x)):
        tau = float(retrained[x]) + config.efficacy_margin
        fig.add_vline(x=tau, line={"dash": "dot", "color": "gray"},
                      annotation_text=f"equal efficacy: RT + {config.efficacy_margin * 100:g} pts",
                      annotation_position="bottom right")
    if original is not None and not is_missing(original.get(y)):
        sigma = float(original[y]) - config.fidelity_margin
        fig.add_hline(y=sigma, line={"dash": "dot", "color": "gray"},
                      annotation_text=f"equal fidelity: original − "
                                      f"{config.fidelity_margin * 100:g} pt",
                      annotation_position="bottom left")
    sub = ("lines: Pareto front of the seed-mean run per step size"
           f"{', anchored at the original' if anchor else ''}; dots: single runs")
    fig.update_layout(
        title=title("Efficacy–fidelity frontier", sub), height=height,
        xaxis={"title": {"text": labels.get(x, x)}, "tickformat": ".0%"},
        yaxis={"title": {"text": labels.get(y, y)}, "tickformat": ".0%"},
        legend={"title": {"text": "method × selector"}}, plot_bgcolor="white",
        margin={"t": 80})
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return fig


def _step(r: Mapping[str, Any]) -> str:
    fld = r.get("step_field") or "step"
    v = r.get("step_size")
    return f"{fld} {v:.3g}" if isinstance(v, (int, float)) else f"{fld} –"


def _run_hover(r: Mapping[str, Any], name: str, x: str, y: str) -> str:
    parts = [f"<b>{html.escape(name)}</b> seed {r.get('seed', '–')}", _step(r),
             f"{x} {_fmt(r.get(x))}, {y} {_fmt(r.get(y))}"]
    if r.get("steps") is not None:
        parts.append(f"steps {r['steps']} ({html.escape(str(r.get('stop_reason') or '–'))})")
    if r.get("n_changed_params") is not None:
        parts.append(f"params changed {int(r['n_changed_params']):,}")
    return "<br>".join(parts)


def _front_hover(p: Mapping[str, Any], name: str, x: str, y: str) -> str:
    if p.get("method") == "original":
        return f"<b>{html.escape(name)}</b> anchor: the original model<br>{x} {_fmt(p[x])}, " \
               f"{y} {_fmt(p[y])}"
    return (f"<b>{html.escape(name)}</b> mean of {p.get('n', 1)} seed(s)<br>{_step(p)}<br>"
            f"{x} {_fmt(p[x])}, {y} {_fmt(p[y])}")
