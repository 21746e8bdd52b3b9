"""Figures of the layer-wise greedy-swap refinement (paper Eq. 9, docs/design.md §4).

They draw what :func:`mape_viz.selection.select_modules` recorded in the
:class:`~mape_viz.types.ModuleMask`: ``swaps`` (one :class:`~mape_viz.types.SwapRecord` per
swap), ``cost_before`` / ``cost_after`` ((L,) per kind) and ``warm_start`` (the global top-k
selection before refinement). Nothing is recomputed here.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..types import MODULE_KINDS, ModuleMask, ModuleScores
from ._common import (ENTERED_COLOR, FROZEN_COLOR, LEFT_COLOR, SINGULAR, check_kind, describe,
                      index_axis, module_customdata, title, to_bool, to_numpy)

__all__ = ["swap_changes", "warm_vs_refined", "STATE_LABELS"]

#: Cell states of :func:`warm_vs_refined` (the ``z`` values of both heatmaps).
STATE_LABELS = {0: "frozen", 1: "selected", 2: "swapped by refinement"}


def _kinds_with_data(mask: ModuleMask) -> list[str]:
    have = {s.kind for s in mask.swaps} | set(mask.cost_before) | set(mask.cost_after)
    return [k for k in MODULE_KINDS if k in have] or list(MODULE_KINDS)


def swap_changes(mask: ModuleMask, kinds: Sequence[str] | None = None, *,
                 height: int = 680) -> go.Figure:
    """What the refinement swapped in each layer, and each layer's cost before / after.

    Top row, per kind: one marker per swap at x = layer — ▲ (green, left of the layer
    line) the module that *entered* the selection, ▼ (red, right of it) the one that *left*,
    joined by a thin line; hover gives layer, round, both module indices and the cost
    change Δ (negative = better). Bottom row: grouped bars of the layer cost of Eq. 9
    (minimised) for the warm start (``cost_before``) and after refinement (``cost_after``).

    Args:
        mask: a mask made with refinement; ``mask.swaps``, ``mask.cost_before[kind]`` (L,),
            ``mask.cost_after[kind]`` (L,).
        kinds: which kinds to draw (default: those with swaps or costs recorded).
    Returns:
        ``make_subplots(rows=2, cols=len(kinds))``. Per kind, traces named
        ``"{kind}: entered"`` and ``"{kind}: left"`` (x = layer ∓ 0.15, y = module index,
        customdata = (layer, entered, left, Δ, round)), ``"{kind}: swap"`` (connectors), and
        ``"{kind}: cost before"`` / ``"{kind}: cost after"`` bars (x = layer).
    """
    kinds = list(kinds) if kinds is not None else _kinds_with_data(mask)
    for k in kinds:
        check_kind(k)
    n_sw = {k: sum(s.kind == k for s in mask.swaps) for k in kinds}
    fig = make_subplots(
        rows=2, cols=len(kinds), vertical_spacing=0.22, horizontal_spacing=0.1,
        subplot_titles=[f"{k}: {n_sw[k]} swaps (▲ entered, ▼ left)" for k in kinds]
        + [f"{k}: layer cost (Eq. 9, lower is better)" for k in kinds])
    for c, kind in enumerate(kinds, start=1):
        L = int(mask[kind].shape[0])
        n = int(mask[kind].shape[1])
        unit = SINGULAR[kind]
        sw = [s for s in mask.swaps if s.kind == kind]
        if sw:
            cd = np.array([[s.layer, s.entered, s.left, s.delta, s.round] for s in sw], float)
            lay = cd[:, 0]
            hover = (f"layer %{{customdata[0]:d}} · round %{{customdata[4]:d}}<br>"
                     f"{unit} %{{customdata[1]:d}} entered, {unit} %{{customdata[2]:d}} left<br>"
                     "Δ cost = %{customdata[3]:.4g}<extra></extra>")
            Trace = go.Scattergl if len(sw) > 2000 else go.Scatter
            xs = np.stack([lay - 0.15, lay + 0.15, np.full_like(lay, np.nan)], 1).ravel()
            ys = np.stack([cd[:, 1], cd[:, 2], np.full_like(lay, np.nan)], 1).ravel()
            fig.add_trace(Trace(x=xs, y=ys, mode="lines", name=f"{kind}: swap",
                                line={"color": "#bbbbbb", "width": 1}, hoverinfo="skip",
                                showlegend=False), row=1, col=c)
            fig.add_trace(Trace(x=lay - 0.15, y=cd[:, 1], mode="markers", name=f"{kind}: entered",
                                customdata=cd, hovertemplate=hover,
                                marker={"symbol": "triangle-up", "size": 9,
                                        "color": ENTERED_COLOR}),
                          row=1, col=c)
            fig.add_trace(Trace(x=lay + 0.15, y=cd[:, 2], mode="markers", name=f"{kind}: left",
                                customdata=cd, hovertemplate=hover,
                                marker={"symbol": "triangle-down", "size": 9,
                                        "color": LEFT_COLOR}),
                          row=1, col=c)
        else:
            fig.add_annotation(text="no swaps recorded (refine off, or no improving swap)",
                               showarrow=False, xref=f"x{'' if c == 1 else c} domain",
                               yref=f"y{'' if c == 1 else c} domain", x=0.5, y=0.5)
        fig.update_xaxes(**index_axis(L, "layer"), range=[-0.5, L - 0.5], row=1, col=c)
        fig.update_yaxes(title_text=f"{unit} index", range=[-0.5, n - 0.5], row=1, col=c)
        before = mask.cost_before.get(kind)
        after = mask.cost_after.get(kind)
        if before is not None or after is not None:
            b = to_numpy(before) if before is not None else np.full(L, np.nan)
            a = to_numpy(after) if after is not None else np.full(L, np.nan)
            cd = np.stack([np.arange(L), b, a, a - b], axis=-1)
            hover = ("layer %{customdata[0]:d}<br>before = %{customdata[1]:.5g}<br>"
                     "after = %{customdata[2]:.5g}<br>change = %{customdata[3]:.4g}"
                     "<extra>%{fullData.name}</extra>")
            fig.add_trace(go.Bar(x=np.arange(L), y=b, name=f"{kind}: cost before",
                                 marker_color=FROZEN_COLOR, customdata=cd, hovertemplate=hover,
                                 legendgroup="before"), row=2, col=c)
            fig.add_trace(go.Bar(x=np.arange(L), y=a, name=f"{kind}: cost after",
                                 marker_color="#1f77b4", customdata=cd, hovertemplate=hover,
                                 legendgroup="after"), row=2, col=c)
        fig.update_xaxes(**index_axis(L, "layer"), row=2, col=c)
        fig.update_yaxes(title_text="cost(P)", row=2, col=c)
    total = ", ".join(f"{k} {n_sw[k]}" for k in kinds)
    fig.update_layout(title=title(f"Greedy-swap refinement — {len(mask.swaps)} swaps ({total})",
                                  describe(None, mask)),
                      barmode="group", height=height, plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.12})
    return fig


def warm_vs_refined(scores: ModuleScores | None, mask: ModuleMask,
                    kind: Literal["heads", "filters"] = "heads", *, max_columns: int = 256,
                    height: int | None = None) -> go.Figure:
    """Side-by-side layer × module heatmaps: the warm start and the refined selection.

    Cell values (both panels, see :data:`STATE_LABELS`): 0 frozen, 1 selected, 2 swapped —
    in the warm-start panel "swapped" marks modules that the refinement took *out*, in the
    refined panel the ones it put *in*. Hover names layer, module, its state in both
    selections and (with ``scores``) score, g, F and rank.

    Args:
        scores: optional, for the hover (``scores[kind]`` (L, n)).
        mask: ``mask[kind]`` (L, n) and ``mask.warm_start[kind]`` (L, n), bool.
        kind: ``"heads"`` or ``"filters"``.
        max_columns: with more modules per layer than this (filters), only the module
            indices that changed in some layer are drawn (at most ``max_columns`` of them; the
            title says so), as a categorical x axis.
    Returns:
        Two ``Heatmap`` traces (``warm start``, ``refined``), ``z`` of shape (L, n) (or
        (L, shown columns)), values in {0, 1, 2}.
    """
    check_kind(kind)
    if mask.warm_start is None:
        raise ValueError("this mask has no warm start: it was made without refinement "
                         "(refine=None), so there is nothing to compare")
    warm = to_bool(mask.warm_start[kind])
    ref = to_bool(mask[kind])
    if warm.shape != ref.shape:
        raise ValueError(f"warm start {warm.shape} and mask {ref.shape} differ in shape")
    L, n = ref.shape
    cols = np.arange(n)
    note = ""
    if n > max_columns:
        changed = np.nonzero((warm != ref).any(axis=0))[0]
        cols = changed[:max_columns]
        note = f" — the {len(cols)} of {n} {kind} that changed in some layer"
        if len(changed) > max_columns:
            note += f" (first {max_columns} of {len(changed)})"
    w, r = warm[:, cols], ref[:, cols]
    z_warm = np.where(w & ~r, 2, w.astype(int))
    z_ref = np.where(r & ~w, 2, r.astype(int))
    unit = SINGULAR[kind]
    # hover: the state pair as text (4 distinct strings), score fields as numeric customdata
    states = np.array(["frozen", "selected"])
    text = np.char.add(np.char.add(states[w.astype(int)], " → "), states[r.astype(int)])
    hover = f"layer %{{y}} · {unit} %{{x}}<br>warm start → refined: %{{text}}"
    cd = None
    if scores is not None:
        data = module_customdata(scores, kind)
        if data.shape[:2] != (L, n):
            raise ValueError(f"scores.{kind} {data.shape[:2]} and mask {(L, n)} differ in shape")
        cd = data[:, cols, :4].astype(np.float32)  # display precision; halves the JSON
        hover += ("<br>score = %{customdata[0]:.4g}, g = %{customdata[1]:.4g}, "
                  f"F = %{{customdata[2]:.4g}}<br>rank %{{customdata[3]:d}}/{L * n}")
    hover += "<extra>%{fullData.name}</extra>"
    x = [str(c) for c in cols] if len(cols) != n else cols
    colorscale = [[0.0, "#f0f0f0"], [0.333, "#f0f0f0"], [0.333, "#1f77b4"], [0.667, "#1f77b4"],
                  [0.667, "#ff7f0e"], [1.0, "#ff7f0e"]]
    cb = {"title": {"text": "state"}, "tickvals": [0, 1, 2],
          "ticktext": ["frozen", "selected", "swapped"]}
    n_out, n_in = int((z_warm == 2).sum()), int((z_ref == 2).sum())
    xaxis = (index_axis(n, unit) if len(cols) == n else
             {"title": {"text": f"{unit} (changed ones only)"}, "type": "category"})
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[f"warm start (global top-k) — {n_out} leave",
                                        f"refined — {n_in} enter"])
    for c, (name, z) in enumerate([("warm start", z_warm), ("refined", z_ref)], start=1):
        fig.add_trace(go.Heatmap(z=z, x=x, y=np.arange(L), name=name, zmin=0, zmax=2,
                                 colorscale=colorscale, customdata=cd, text=text,
                                 hovertemplate=hover,
                                 showscale=c == 2, colorbar=cb, xgap=1, ygap=1), row=1, col=c)
        fig.update_xaxes(**xaxis, row=1, col=c)
    fig.update_yaxes(**index_axis(L, "layer"), autorange="reversed", row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    fig.update_layout(title=title(f"{kind.capitalize()}: warm start vs refined selection{note}",
                                  describe(scores, mask)),
                      height=height or int(min(900, max(340, 140 + 26 * L))),
                      plot_bgcolor="white")
    return fig

