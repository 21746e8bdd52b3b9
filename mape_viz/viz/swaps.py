"""Figures of the layer-wise greedy-swap refinement (paper Eq. 9, docs/design.md §4).

They draw what :func:`mape_viz.selection.select_modules` recorded in the
:class:`~mape_viz.types.ModuleMask`: ``swaps`` (one :class:`~mape_viz.types.SwapRecord` per
swap), ``cost_before`` / ``cost_after`` ((L,) per kind) and ``warm_start`` (the global top-k
selection before refinement). Nothing is recomputed here.
"""

from __future__ import annotations

import textwrap
from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..types import MODULE_KINDS, ModuleMask, ModuleScores
from ._common import (ENTERED_COLOR, FROZEN_COLOR, LEFT_COLOR, SINGULAR, check_kind, describe,
                      index_axis, module_customdata, title, to_bool, to_numpy)

__all__ = ["swap_changes", "warm_vs_refined", "swap_candidates", "no_swap_note",
           "joint_note", "STATE_LABELS"]

#: Cell states of :func:`warm_vs_refined` (the ``z`` values of both heatmaps).
STATE_LABELS = {0: "frozen", 1: "selected", 2: "swapped by refinement"}


def _kinds_with_data(mask: ModuleMask) -> list[str]:
    have = {s.kind for s in mask.swaps} | set(mask.cost_before) | set(mask.cost_after)
    return [k for k in MODULE_KINDS if k in have] or list(MODULE_KINDS)


#: Smallest figure width (px) the layout of :func:`swap_changes` is made for: half of the
#: app's explore row at a ~1000 px window (its panels are ~450 px wide there).
MIN_WIDTH = 420
#: Fixed margins (px) of :func:`swap_changes`, so that text fits are computable; the top one
#: holds the two-line title (centred in it, clear of Gradio's label over the corner) above
#: the subplot titles.
MARGIN = {"l": 64, "r": 16, "t": 112, "b": 84}
#: Font size (px) of subplot titles and of the no-swap note.
TEXT_SIZE = 12
#: Width of one character at TEXT_SIZE, in px (an upper bound for the default sans-serif font;
#: the tests use the same bound to check that titles cannot overlap).
CHAR_PX = 0.62 * TEXT_SIZE


def swap_candidates(mask: ModuleMask, kind: str) -> int | None:
    """How many candidate swaps the greedy refinement of ``kind`` considered.

    One greedy round visits every frozen module i of a layer once and prices (or, by its
    Cauchy–Schwarz bound, rules out) its swap with every selected module j (docs/design.md §4);
    swaps keep |P| and |U| fixed, so a layer that ran ``r`` rounds considered ``r·|P|·|U|``
    pairs. Read from ``mask.meta["rounds"][kind]`` and the mask's per-layer sizes.

    Returns:
        the total over layers, or None when the mask does not record rounds for ``kind``
        (refinement off, the kind outside the granularity, or a mask made elsewhere).
    """
    rounds = (mask.meta or {}).get("rounds", {}).get(kind)
    if rounds is None:
        return None
    sel = to_bool(mask[kind])
    n_sel = sel.sum(axis=1)
    n_frozen = sel.shape[1] - n_sel
    if len(rounds) != sel.shape[0]:
        raise ValueError(f"mask.meta['rounds'][{kind!r}] has {len(rounds)} layers, the mask "
                         f"{sel.shape[0]}")
    return int(sum(int(r) * int(p) * int(u) for r, p, u in zip(rounds, n_frozen, n_sel)))


def _why_no_swap(mask: ModuleMask, kind: str) -> tuple[str, int | None]:
    """(why ``kind`` has no swap, the greedy's candidate count or None when no greedy ran)."""
    meta = mask.meta or {}
    L = int(mask[kind].shape[0])
    if "refine" not in meta:
        return "none recorded (the mask does not say how it was refined)", None
    refine = meta["refine"]
    if refine is None:
        return "refinement is off; the selection is the global top-k warm start", None
    if kind not in (meta.get("rounds") or {}):
        return f"{kind} were not refined (granularity {meta.get('granularity')})", None
    if refine == "exact" and kind == "heads":
        return (f"the exact search over every frozen set kept the warm start in all {L} "
                "layers"), None
    n = swap_candidates(mask, kind)
    better = "raised" if meta.get("maximise") else "lowered"
    return (f"greedy checked {n:,} candidate swaps in {L} layers; none {better} the layer "
            "cost"), n


def no_swap_note(mask: ModuleMask, kind: str) -> str:
    """Why the refinement of ``kind`` made no swap, in one sentence (starts "no swaps"),
    e.g. "no swaps: greedy checked 87,665 candidate swaps in 4 layers; none lowered the
    layer cost" (:func:`swap_candidates`)."""
    return "no swaps: " + _why_no_swap(mask, kind)[0]


def joint_note(mask: ModuleMask, kinds: Sequence[str]) -> str:
    """:func:`no_swap_note` for several kinds at once (none of which has a swap): one count
    when the greedy refined them all, else one clause per kind."""
    why = {k: _why_no_swap(mask, k) for k in kinds}
    L = {int(mask[k].shape[0]) for k in kinds}
    if len(kinds) > 1 and all(n is not None for _, n in why.values()) and len(L) == 1:
        better = "raised" if (mask.meta or {}).get("maximise") else "lowered"
        parts = ", ".join(f"{k} {n:,}" for k, (_, n) in why.items())
        total = sum(n for _, n in why.values())
        return (f"no swaps: greedy checked {total:,} candidate swaps ({parts}) in {L.pop()} "
                f"layers; none {better} the layer cost (Eq. 9)")
    texts = {t for t, _ in why.values()}
    if len(texts) == 1:
        return "no swaps: " + texts.pop()
    return "no swaps. " + " ".join(f"{k.capitalize()}: {t}." for k, (t, _) in why.items())


def _wrap(text: str, width_px: float) -> str:
    """``text`` broken into ``<br>``-joined lines that fit ``width_px`` at TEXT_SIZE."""
    return "<br>".join(textwrap.wrap(text, max(12, int(width_px // CHAR_PX))))


def swap_changes(mask: ModuleMask, kinds: Sequence[str] | None = None, *,
                 height: int = 680) -> go.Figure:
    """What the refinement swapped in each layer, and each layer's cost before / after.

    Top row, per kind: one marker per swap at x = layer — ▲ (green, left of the layer
    line) the module that *entered* the selection, ▼ (red, right of it) the one that *left*,
    joined by a thin line; hover gives layer, round, both module indices and the cost
    change Δ (negative = better). A kind without swaps shows, in place of its empty axes,
    why (:func:`no_swap_note`: e.g. how many candidate swaps the greedy checked); when no
    kind has any, one note spans the (shortened) top row. Bottom row: grouped bars of the
    layer cost of Eq. 9 (minimised; docs/design.md §4) for the warm start (``cost_before``)
    and after refinement (``cost_after``). Every layer axis shows exactly the layers 0..L−1.
    Titles and notes are sized to fit a figure :data:`MIN_WIDTH` px wide.

    Args:
        mask: a mask made with refinement; ``mask.swaps``, ``mask.cost_before[kind]`` (L,),
            ``mask.cost_after[kind]`` (L,), ``mask.meta`` (``refine``, ``rounds``).
        kinds: which kinds to draw (default: those with swaps or costs recorded).
    Returns:
        ``make_subplots(rows=2, cols=len(kinds))``. Per kind, traces named
        ``"{kind}: entered"`` and ``"{kind}: left"`` (x = layer ∓ 0.15, y = module index,
        customdata = (layer, entered, left, Δ, round)), ``"{kind}: swap"`` (connectors), and
        ``"{kind}: cost before"`` / ``"{kind}: cost after"`` bars (x = layer); the legend
        entries are separate, data-free traces (``meta="legend"``) shared by all kinds. Notes
        are paper-referenced annotations named ``no-swap note``.
    """
    kinds = list(kinds) if kinds is not None else _kinds_with_data(mask)
    for k in kinds:
        check_kind(k)
    n_sw = {k: sum(s.kind == k for s in mask.swaps) for k in kinds}
    any_swaps = any(n_sw.values())
    fig = make_subplots(
        rows=2, cols=len(kinds), vertical_spacing=0.16, horizontal_spacing=0.2,
        row_heights=[0.5, 0.5] if any_swaps else [0.3, 0.7],
        subplot_titles=[f"{k}: {n_sw[k]} swap{'' if n_sw[k] == 1 else 's'}" for k in kinds]
        + [f"{k}: layer cost" for k in kinds])
    for a in fig.layout.annotations:  # clear of the top tick label of the axes below them
        a.update(font={"size": TEXT_SIZE + 1}, yshift=8)
    plot_px = MIN_WIDTH - MARGIN["l"] - MARGIN["r"]
    notes = []
    for c, kind in enumerate(kinds, start=1):
        L = int(mask[kind].shape[0])
        n = int(mask[kind].shape[1])
        unit = SINGULAR[kind]
        layer_axis = {**index_axis(L, "layer"), "range": [-0.5, L - 0.5]}
        if L <= 48:
            layer_axis.update(tickmode="array", tickvals=list(range(L)))
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
                                customdata=cd, hovertemplate=hover, showlegend=False,
                                legendgroup="entered",
                                marker={"symbol": "triangle-up", "size": 9,
                                        "color": ENTERED_COLOR}),
                          row=1, col=c)
            fig.add_trace(Trace(x=lay + 0.15, y=cd[:, 2], mode="markers", name=f"{kind}: left",
                                customdata=cd, hovertemplate=hover, showlegend=False,
                                legendgroup="left",
                                marker={"symbol": "triangle-down", "size": 9,
                                        "color": LEFT_COLOR}),
                          row=1, col=c)
            fig.update_xaxes(**layer_axis, row=1, col=c)
            fig.update_yaxes(title_text=f"{unit} index", range=[-0.5, n - 0.5], row=1, col=c)
        else:
            # no data on these axes: hide them (plotly.js mis-draws trace-less subplots) and
            # say why in their place
            fig.update_xaxes(visible=False, row=1, col=c)
            fig.update_yaxes(visible=False, row=1, col=c)
            notes.append(kind)
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
                                 legendgroup="before", showlegend=False), row=2, col=c)
            fig.add_trace(go.Bar(x=np.arange(L), y=a, name=f"{kind}: cost after",
                                 marker_color="#1f77b4", customdata=cd, hovertemplate=hover,
                                 legendgroup="after", showlegend=False), row=2, col=c)
        fig.update_xaxes(**layer_axis, row=2, col=c)
        fig.update_yaxes(title_text="cost (lower is better)" if c == 1 else None,
                         tickformat="~s", row=2, col=c)
    # one legend for all kinds: data-free entries that toggle their group in every subplot
    legend = [("before", "cost: warm start", FROZEN_COLOR, "square"),
              ("after", "cost: refined", "#1f77b4", "square")]
    if any_swaps:
        legend += [("entered", "entered", ENTERED_COLOR, "triangle-up"),
                   ("left", "left", LEFT_COLOR, "triangle-down")]
    for group, label, color, symbol in legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label, meta="legend",
                                 legendgroup=group, showlegend=True, hoverinfo="skip",
                                 marker={"symbol": symbol, "size": 10, "color": color}),
                      row=2, col=1)
    # the notes, centred in the (hidden) top-row axes they replace
    top = fig.layout.yaxis.domain
    y_mid = (top[0] + top[1]) / 2
    if notes and not any_swaps:
        text = joint_note(mask, kinds)
        x0 = fig.layout.xaxis.domain[0]
        x1 = fig.layout[f"xaxis{len(kinds) if len(kinds) > 1 else ''}"].domain[1]
        _add_note(fig, text, (x0 + x1) / 2, y_mid, (x1 - x0) * plot_px)
    else:
        for kind in notes:
            c = kinds.index(kind) + 1
            dom = fig.layout[f"xaxis{'' if c == 1 else c}"].domain
            _add_note(fig, no_swap_note(mask, kind), (dom[0] + dom[1]) / 2, y_mid,
                      (dom[1] - dom[0]) * plot_px)
    total = len([s for s in mask.swaps if s.kind in kinds])
    head = title(f"Greedy-swap refinement: {total} swap{'' if total == 1 else 's'}",
                 describe(None, mask))
    fig.update_layout(title=head,
                      barmode="group", height=height, plot_bgcolor="white", margin=MARGIN,
                      legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.1,
                              "yanchor": "top"})
    return fig


def _add_note(fig: go.Figure, text: str, x: float, y: float, width_px: float) -> None:
    fig.add_annotation(text=_wrap(text, width_px), name="no-swap note", showarrow=False,
                       xref="paper", yref="paper", x=x, y=y, xanchor="center",
                       yanchor="middle", align="center",
                       font={"size": TEXT_SIZE, "color": "#444444"})


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

