"""Figures of per-module scores and selections: head heatmap, filter view, per-layer counts, g vs F.

Every function takes the library's result objects (:class:`~mape_viz.types.ModuleScores`,
:class:`~mape_viz.types.ModuleMask`) and returns a ``plotly.graph_objects.Figure``; none of
them computes a score or a selection. Shapes: L layers, H heads, F filters per layer.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ..types import MODULE_KINDS, ModuleMask, ModuleScores
from ._common import (FROZEN_COLOR, SELECTED_COLOR, SINGULAR, check_kind, describe,
                      index_axis, mask_values, module_customdata, module_hover, overlay,
                      signed_colors, term_label, term_values, title, to_bool)

__all__ = ["head_heatmap", "filter_view", "selected_per_layer", "g_vs_fisher"]

Term = Literal["score", "grad", "fisher"]


def head_heatmap(scores: ModuleScores, mask: ModuleMask | None = None, term: Term = "score", *,
                 height: int | None = None) -> go.Figure:
    """Layer × head heatmap of a score or term, with the selected heads outlined.

    Args:
        scores: ``scores.heads`` (L, H) and its ``grad`` / ``fisher`` terms.
        mask: optional selection; ``mask.heads`` (L, H) bool. Its True cells get an open
            square marker (trace named ``selected heads``) on top of the heatmap.
        term: ``"score"`` (g + ½F for MAPE), ``"grad"`` (g) or ``"fisher"`` (F).
        height: figure height in px (default grows with L).
    Returns:
        A figure whose first trace is a ``Heatmap`` with ``z`` of shape (L, H) (x = head,
        y = layer, layer 0 at the top) and hover naming layer, head, score, g, F, the global
        rank among all L·H heads (1 = highest score) and the rank within the layer; the second
        trace (when ``mask`` is given) is the overlay whose (x, y) are the True (head, layer)
        entries of ``mask.heads``.
    """
    z = term_values(scores, "heads", term)
    L, H = z.shape
    sel = mask_values(mask, "heads", (L, H))
    label = term_label(scores, term)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        z=z, x=np.arange(H), y=np.arange(L), name=label,
        customdata=module_customdata(scores, "heads", sel),
        hovertemplate=module_hover("heads", n_total=L * H, selected=sel is not None),
        colorbar={"title": {"text": label, "side": "right"}}, **signed_colors(z)))
    if sel is not None:
        fig.add_trace(overlay(sel, f"selected heads ({int(sel.sum())}/{L * H})",
                              size=max(6, min(18, 360 // max(L, H)))))
    fig.update_layout(
        title=title(f"Attention heads: {label}", describe(scores, mask)),
        xaxis={**index_axis(H, "head"), "range": [-0.5, H - 0.5]},
        yaxis={**index_axis(L, "layer"), "range": [L - 0.5, -0.5]},
        height=height or int(min(900, max(320, 120 + 26 * L))),
        legend={"orientation": "h", "y": -0.15}, plot_bgcolor="white")
    return fig


def filter_view(scores: ModuleScores, mask: ModuleMask | None = None,
                mode: Literal["sorted", "binned"] = "sorted", bins: int = 64, *,
                term: Term = "score", points: int = 256, stat: Literal["max", "mean"] = "max",
                log_x: bool = True, height: int | None = None) -> go.Figure:
    """FFN filters at 3,072–11,008 per layer, drawn with a bounded number of points.

    A per-filter heatmap (L × F cells) or scatter (L·F points, 350k for Llama-2-7B) is neither
    readable nor light, so there are two decimated views:

    * ``mode="sorted"`` (default) — one line per layer: the layer's filter scores in
      descending order (x = rank within the layer, log axis by default), sampled at at most
      ``points`` ranks (dense at the top, where the selected filters are, plus both sides of
      the layer's selection boundary). Selected filters among the sampled ranks carry a
      marker, and each line's legend entry says how many of the layer's filters are
      selected. It answers "how does the score decay in each layer, and where does the
      selection cut it" — the shape the top-k selection works on. Cost: ≤ L·points points.
    * ``mode="binned"`` — layer × index-bin heatmaps: the ``stat`` (max or mean) of the
      score over ``bins`` contiguous filter-index bins, and beside it the number of selected
      filters per bin. Hover names the filter index of the bin's maximum with its g, F, score
      and rank, so a single dominant filter can be located. It answers "which layers hold the
      high scores and the selected filters" at any size. Cost: 2·L·bins cells.

    Args:
        scores: ``scores.filters`` (L, F) and its ``grad`` / ``fisher`` terms.
        mask: optional selection, ``mask.filters`` (L, F) bool.
        mode: ``"sorted"`` or ``"binned"`` (see above).
        bins: number of index bins per layer (``binned``; capped at F).
        term: which value to draw: ``"score"``, ``"grad"`` (g) or ``"fisher"`` (F).
        points: at most this many sampled ranks per layer (``sorted``).
        stat: ``"max"`` or ``"mean"`` per bin (``binned``).
        log_x: log rank axis (``sorted``).
    Returns:
        ``sorted``: L ``Scatter`` traces (one per layer, customdata per point: filter index,
        then the :data:`MODULE_FIELDS`); the legend names each layer and its selected count
        (lines are coloured along Viridis by layer). ``binned``: a ``Heatmap`` with ``z``
        (L, bins) of the stat, and with a mask a second ``Heatmap`` (L, bins) of selected
        counts.
    """
    if mode not in ("sorted", "binned"):
        raise ValueError(f"mode must be 'sorted' or 'binned', got {mode!r}")
    vals = term_values(scores, "filters", term)
    L, F = vals.shape
    sel = mask_values(mask, "filters", (L, F))
    data = module_customdata(scores, "filters", sel)
    label = term_label(scores, term)
    sub = describe(scores, mask)
    if mode == "sorted":
        fig = _filters_sorted(vals, sel, data, label, points, log_x)
        fig.update_layout(title=title(f"FFN filters: {label}, sorted per layer", sub))
    else:
        fig = _filters_binned(vals, sel, data, label, bins, stat)
        fig.update_layout(title=title(f"FFN filters: {stat} {label} per index bin", sub))
    base = 480 if mode == "sorted" else 380
    fig.update_layout(height=height or int(min(900, max(base, 140 + 22 * L))),
                      plot_bgcolor="white")
    return fig


def _sample_ranks(F: int, points: int, must: list[int]) -> np.ndarray:
    """≤ ``points`` 0-based ranks in [0, F): geometric (dense at the top) + linear + ``must``."""
    if F <= points:
        return np.arange(F)
    half = max(2, (points - len(must)) // 2)
    geo = np.unique(np.round(np.geomspace(1, F, half)).astype(int) - 1)
    lin = np.unique(np.round(np.linspace(0, F - 1, half)).astype(int))
    extra = np.array([m for m in must if 0 <= m < F], dtype=int)
    return np.unique(np.concatenate([geo, lin, extra]))


def _filters_sorted(vals, sel, data, label, points, log_x) -> go.Figure:
    L, F = vals.shape
    colors = sample_colorscale("Viridis", [i / max(1, L - 1) for i in range(L)])
    fig = go.Figure()
    order = np.argsort(-vals, axis=1, kind="stable")
    # customdata: filter index, then score, g, F, rank, layer rank, selected (MODULE_FIELDS)
    for layer in range(L):
        s_layer = sel[layer][order[layer]] if sel is not None else None
        k = int(s_layer.sum()) if s_layer is not None else 0
        r = _sample_ranks(F, points, [k - 1, k] if s_layer is not None else [])
        idx = order[layer, r]
        cd = np.concatenate([idx[:, None].astype(float), data[layer, idx]], axis=1)
        size = np.where(s_layer[r], 4, 0) if s_layer is not None else 0
        name = f"layer {layer}" + (f" ({k}/{F} selected)" if s_layer is not None else "")
        hover = module_hover("filters", x="%{customdata[0]:d}", y=str(layer), offset=1,
                             n_total=F * L, selected=sel is not None)
        fig.add_trace(go.Scatter(
            x=r + 1, y=vals[layer, idx], mode="lines+markers", name=name,
            line={"color": colors[layer], "width": 1.5},
            marker={"size": size, "color": SELECTED_COLOR, "symbol": "circle"},
            customdata=cd, hovertemplate=hover))
    fig.update_layout(
        xaxis={"title": {"text": "rank within layer (1 = highest)"},
               "type": "log" if log_x else "linear"},
        yaxis={"title": {"text": label}},
        legend={"font": {"size": 10}, "title": {"text": "layer (colour: Viridis)"}},
        hovermode="closest")
    if sel is not None:
        fig.add_annotation(text="● selected filter (at sampled ranks)", xref="paper",
                           yref="paper", x=1, y=1.02, showarrow=False,
                           font={"color": SELECTED_COLOR, "size": 11}, xanchor="right")
    return fig


def _filters_binned(vals, sel, data, label, bins, stat) -> go.Figure:
    if stat not in ("max", "mean"):
        raise ValueError(f"stat must be 'max' or 'mean', got {stat!r}")
    L, F = vals.shape
    bins = max(1, min(int(bins), F))
    edges = np.round(np.linspace(0, F, bins + 1)).astype(int)
    starts, ends = edges[:-1], edges[1:]
    arg = np.stack([vals[:, a:b].argmax(axis=1) + a for a, b in zip(starts, ends)], axis=1)
    zmax = np.take_along_axis(vals, arg, axis=1)
    zmean = np.add.reduceat(vals, starts, axis=1) / (ends - starts)[None, :]
    count = (np.add.reduceat(sel.astype(np.int64), starts, axis=1) if sel is not None
             else np.zeros((L, bins), dtype=np.int64))
    width = (ends - starts)[None, :].repeat(L, 0)
    layer_ix = np.arange(L)[:, None]
    # customdata: start, end-1, argmax index, mean, count, width, then MODULE_FIELDS of argmax
    cd = np.concatenate([np.stack([starts[None, :].repeat(L, 0), ends[None, :].repeat(L, 0) - 1,
                                   arg, zmean, count, width], axis=-1),
                         data[layer_ix, arg]], axis=-1)
    x = (starts + ends - 1) / 2
    z = zmax if stat == "max" else zmean
    hover = ("layer %{y} · filters %{customdata[0]:d}–%{customdata[1]:d}<br>"
             "max at filter %{customdata[2]:d}: score = %{customdata[6]:.4g}, "
             "g = %{customdata[7]:.4g}, F = %{customdata[8]:.4g}<br>"
             f"rank %{{customdata[9]:d}}/{L * F} (in layer %{{customdata[10]:d}})<br>"
             f"mean {label} = %{{customdata[3]:.4g}}<br>"
             "selected in bin: %{customdata[4]:d}/%{customdata[5]:d}<extra></extra>")
    cols = 2 if sel is not None else 1
    titles = [f"{stat} {label} per bin", "selected filters per bin"][:cols]
    fig = make_subplots(rows=1, cols=cols, shared_yaxes=True, horizontal_spacing=0.17,
                        subplot_titles=titles)
    fig.add_trace(go.Heatmap(z=z, x=x, y=np.arange(L), customdata=cd, hovertemplate=hover,
                             name=f"{stat} {label}",
                             colorbar={"title": {"text": stat, "side": "right"},
                                       "x": 0.43 if cols == 2 else 1.0, "xanchor": "left",
                                       "thickness": 14},
                             **signed_colors(z)), row=1, col=1)
    if sel is not None:
        fig.add_trace(go.Heatmap(z=count, x=x, y=np.arange(L), customdata=cd, name="selected",
                                 hovertemplate=hover, colorscale="Reds", zmin=0,
                                 colorbar={"title": {"text": "selected", "side": "right"},
                                           "x": 1.0, "xanchor": "left", "thickness": 14}),
                      row=1, col=2)
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text=f"filter index ({bins} bins of ~{F / bins:.0f})",
                         showgrid=False, row=1, col=c)
    fig.update_yaxes(**index_axis(L, "layer"), autorange="reversed", row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=cols)
    return fig


def selected_per_layer(mask: ModuleMask, *, fraction: bool = False,
                       height: int = 360) -> go.Figure:
    """Bars of the number (or fraction) of selected heads and filters in each layer.

    Args:
        mask: ``mask.heads`` (L, H) and ``mask.filters`` (L, F) bool.
        fraction: draw the fraction of the layer's modules instead of the count.
    Returns:
        Two subplots (heads, filters), one ``Bar`` trace each, ``x`` = layer (L,),
        ``y`` = selected count (or fraction) per layer; hover gives count, layer size and %.
    """
    n = mask.n_selected()
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=[f"{k}: {n[k]}/{int(np.prod(mask[k].shape))} selected"
                                        for k in MODULE_KINDS])
    for c, kind in enumerate(MODULE_KINDS, start=1):
        sel = to_bool(mask[kind])
        L, m = sel.shape
        cnt = sel.sum(axis=1)
        y = cnt / max(1, m) if fraction else cnt
        fig.add_trace(go.Bar(
            x=np.arange(L), y=y, name=f"selected {kind}",
            marker_color=SELECTED_COLOR if kind == "heads" else "#1f77b4",
            customdata=np.stack([cnt, np.full(L, m), 100 * cnt / max(1, m)], axis=-1),
            hovertemplate=(f"layer %{{x}}<br>%{{customdata[0]:d}}/%{{customdata[1]:d}} {kind} "
                           "selected (%{customdata[2]:.1f}%)<extra></extra>")), row=1, col=c)
        fig.update_xaxes(**index_axis(L, "layer"), row=1, col=c)
        fig.update_yaxes(title_text=f"selected {kind}" + (" (fraction)" if fraction else ""),
                         row=1, col=c)
    fig.update_layout(title=title("Selected modules per layer", describe(None, mask)),
                      showlegend=False, height=height, plot_bgcolor="white", bargap=0.15)
    return fig


def g_vs_fisher(scores: ModuleScores, mask: ModuleMask | None = None,
                kind: Literal["heads", "filters"] = "heads", *,
                scale: Literal["linear", "log"] = "linear", max_points: int = 4000,
                seed: int = 0, height: int = 480) -> go.Figure:
    """Scatter of the gradient term g (x) against the Fisher term F (y), one point per module.

    The score g + ½F is constant along lines of slope −2, so the selected modules (top
    scores) sit towards the upper right.

    Args:
        scores: ``grad[kind]`` and ``fisher[kind]``, (L, n) each.
        mask: optional selection; selected modules are drawn as a separate, coloured trace.
        kind: ``"heads"`` or ``"filters"``.
        scale: ``"log"`` puts F on a log axis (F ≥ 0; zeros are not drawn there) and g on a
            signed-log axis ``asinh(g / s)`` with ``s`` = median |g| (hover keeps raw values).
        max_points: when L·n exceeds it, draw the ``max_points // 4`` top-scoring modules and
            a seeded uniform sample of the rest (the title says how many are shown).
        seed: seed of that sample.
    Returns:
        One trace (``modules``) without a mask, else ``frozen`` and ``selected`` traces; each
        point's customdata is (layer, index, then the :data:`MODULE_FIELDS`).
    """
    check_kind(kind)
    if scale not in ("linear", "log"):
        raise ValueError(f"scale must be 'linear' or 'log', got {scale!r}")
    g = term_values(scores, kind, "grad")
    f = term_values(scores, kind, "fisher")
    L, n = g.shape
    sel = mask_values(mask, kind, (L, n))
    data = module_customdata(scores, kind, sel)
    layer, index = np.meshgrid(np.arange(L), np.arange(n), indexing="ij")
    cd = np.concatenate([layer[..., None], index[..., None], data], axis=-1).reshape(L * n, -1)
    keep = _decimate(data[..., 0].ravel(), max_points, seed)
    cd = cd[keep]
    gx, fy = g.ravel()[keep], f.ravel()[keep]
    xlabel = "g (gradient term)"
    if scale == "log":
        s = float(np.median(np.abs(g))) or 1.0
        gx = np.arcsinh(gx / s)
        xlabel = f"asinh(g / s), s = {s:.3g}  (signed log of g)"
    hover = ("layer %{customdata[0]:d} · " + SINGULAR[kind] + " %{customdata[1]:d}<br>"
             "g = %{customdata[3]:.4g}<br>F = %{customdata[4]:.4g}<br>"
             "score = %{customdata[2]:.4g}<br>"
             f"rank %{{customdata[5]:d}}/{L * n} (in layer %{{customdata[6]:d}})"
             "<extra>%{fullData.name}</extra>")
    Trace = go.Scattergl if len(keep) > 1000 else go.Scatter
    fig = go.Figure()
    groups = [("modules", np.ones(len(keep), bool), "#1f77b4")] if sel is None else [
        ("frozen", cd[:, 7] == 0, FROZEN_COLOR), ("selected", cd[:, 7] == 1, SELECTED_COLOR)]
    for name, m, color in groups:
        fig.add_trace(Trace(x=gx[m], y=fy[m], mode="markers", name=f"{name} ({int(m.sum())})",
                            customdata=cd[m], hovertemplate=hover,
                            marker={"color": color, "size": 7 if kind == "heads" else 4,
                                    "opacity": 0.8}))
    shown = "" if len(keep) == L * n else f" — {len(keep)} of {L * n} shown"
    fig.update_layout(
        title=title(f"{kind.capitalize()}: g vs F{shown}", describe(scores, mask)),
        xaxis={"title": {"text": xlabel}, "zeroline": True},
        yaxis={"title": {"text": "F (diagonal Fisher term)"},
               "type": "log" if scale == "log" else "linear"},
        height=height, plot_bgcolor="white", legend={"orientation": "h", "y": -0.18})
    return fig


def _decimate(score: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Sorted flat indices to draw: all when few, else the top quarter + a seeded sample."""
    N = score.size
    if N <= max_points:
        return np.arange(N)
    top_n = max_points // 4
    top = np.argsort(-score, kind="stable")[:top_n]
    rest = np.setdiff1d(np.arange(N), top, assume_unique=True)
    rng = np.random.default_rng(seed)
    pick = rng.choice(rest, size=max_points - top_n, replace=False)
    return np.sort(np.concatenate([top, pick]))

