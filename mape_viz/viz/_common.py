"""Shared helpers of the figure functions: tensor -> array, ranks, hover data, tidy records.

Nothing here computes a selection or a score: ranks are the display order of the scores the
library already made (1 = highest score = first to be selected), used only in hover text.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..types import MODULE_KINDS, ModuleMask, ModuleScores

TERMS = ("score", "grad", "fisher")
SINGULAR = {"heads": "head", "filters": "filter"}

#: Colours used by every figure so that "selected" / "entered" / "left" read the same.
SELECTED_COLOR = "#d62728"
FROZEN_COLOR = "#9e9e9e"
ENTERED_COLOR = "#2ca02c"
LEFT_COLOR = "#d62728"

#: The customdata columns of a module hover: see :func:`module_customdata`.
MODULE_FIELDS = ("score", "g", "F", "rank", "layer rank", "selected")


def message_figure(text: str, height: int = 240) -> go.Figure:
    """An empty figure that shows one line of text (e.g. "no warm start: refinement is off")
    where a view has nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=html.escape(text), showarrow=False, xref="paper", yref="paper",
                       x=0.5, y=0.5, font={"size": 14})
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=height)
    return fig


def to_numpy(x: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor / array-like (detached, on CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point or x.dtype.is_complex:
            x = x.double()
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def to_bool(x: Any) -> np.ndarray:
    """A bool NumPy copy of a mask tensor / array-like."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(bool)


def check_kind(kind: str) -> None:
    if kind not in MODULE_KINDS:
        raise ValueError(f"kind must be one of {MODULE_KINDS}, got {kind!r}")


def check_term(term: str) -> None:
    if term not in TERMS:
        raise ValueError(f"term must be one of {TERMS}, got {term!r}")


def term_values(scores: ModuleScores, kind: str, term: str = "score") -> np.ndarray:
    """(L, n) float64 values of ``term`` (``score``, ``grad`` = g, ``fisher`` = F) for ``kind``."""
    check_kind(kind)
    check_term(term)
    src = {"score": scores[kind], "grad": scores.grad[kind], "fisher": scores.fisher[kind]}[term]
    arr = to_numpy(src)
    if arr.ndim != 2:
        raise ValueError(f"{kind} {term} must be (L, n), got shape {arr.shape}")
    return arr


def term_label(scores: ModuleScores | None, term: str) -> str:
    """Axis / colour-bar label of a term, naming the selector when it is not MAPE's g + ½F."""
    if term == "grad":
        return "g (gradient term)"
    if term == "fisher":
        return "F (diagonal Fisher term)"
    sel = getattr(scores, "selector", "mape") or "mape"
    return "score = g + ½F" if sel == "mape" else f"{sel} score"


def mask_values(mask: ModuleMask | None, kind: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """(L, n) bool selection of ``kind``, checked against ``shape``; None without a mask."""
    if mask is None:
        return None
    sel = to_bool(mask[kind])
    if sel.shape != tuple(shape):
        raise ValueError(f"mask.{kind} has shape {sel.shape} but the scores have {tuple(shape)}")
    return sel


def ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of an (L, n) array, 1 = highest: (global rank over all L·n, rank within the layer).

    Modules of one kind are ranked together across layers (docs/design.md §3), so the global rank is
    the one the top-k selection uses; ties keep index order.
    """
    L, n = values.shape
    flat = np.empty(L * n, dtype=np.int64)
    flat[np.argsort(-values.ravel(), kind="stable")] = np.arange(1, L * n + 1)
    layer = np.empty((L, n), dtype=np.int64)
    order = np.argsort(-values, axis=1, kind="stable")
    np.put_along_axis(layer, order, np.arange(1, n + 1)[None, :].repeat(L, 0), axis=1)
    return flat.reshape(L, n), layer


def module_customdata(scores: ModuleScores, kind: str,
                      selected: np.ndarray | None = None) -> np.ndarray:
    """(L, n, 6) hover data per module: score, g, F, global rank, layer rank, selected (0/1)."""
    s = term_values(scores, kind, "score")
    g = term_values(scores, kind, "grad")
    f = term_values(scores, kind, "fisher")
    rank, lrank = ranks(s)
    sel = np.zeros_like(s) if selected is None else selected.astype(np.float64)
    return np.stack([s, g, f, rank, lrank, sel], axis=-1)


def module_hover(kind: str, x: str = "%{x}", y: str = "%{y}", offset: int = 0,
                 n_total: int | None = None, extra: str = "", selected: bool = True) -> str:
    """Hover template for one module whose customdata follows :data:`MODULE_FIELDS`.

    ``offset`` shifts the customdata columns (when other columns come first); ``x``/``y``
    are the template pieces that print the module index and the layer; ``selected`` adds
    the "selected = 0/1" line (only meaningful with a mask).
    """
    c = [f"%{{customdata[{offset + i}]" for i in range(6)]
    total = f"/{n_total}" if n_total else ""
    return (f"layer {y} · {SINGULAR[kind]} {x}<br>"
            f"score = {c[0]}:.4g}}<br>g = {c[1]}:.4g}}<br>F = {c[2]}:.4g}}<br>"
            f"rank {c[3]}:d}}{total} (in layer {c[4]}:d}})"
            + (f"<br>selected = {c[5]}:d}}" if selected else "")
            + f"{extra}<extra></extra>")


def signed_colors(z: np.ndarray) -> dict[str, Any]:
    """Colour-scale settings: diverging around 0 for signed data, sequential otherwise."""
    finite = z[np.isfinite(z)]
    if finite.size and finite.min() < 0 < finite.max():
        return {"colorscale": "RdBu_r", "zmid": 0.0}
    return {"colorscale": "Viridis"}


def describe(scores: ModuleScores | None = None, mask: ModuleMask | None = None) -> str:
    """A short subtitle naming selector, objective, family, sparsity and refinement."""
    parts: list[str] = []
    if scores is not None:
        parts.append(scores.selector or "")
        if scores.objective:
            parts.append(scores.objective.upper())
        if scores.family:
            parts.append(scores.family)
    if mask is not None:
        meta = mask.meta or {}
        if "sparsity" in meta:
            parts.append(f"sparsity {meta['sparsity']:g}")
        if meta.get("granularity"):
            parts.append(f"granularity {meta['granularity']}")
        if "refine" in meta:
            parts.append(f"refine {meta['refine']}")
    return " · ".join(p for p in parts if p)


def title(main: str, sub: str = "") -> dict[str, Any]:
    """Layout title dict: main title with an optional smaller subtitle line."""
    text = f"{main}<br><sup>{sub}</sup>" if sub else main
    return {"text": text, "x": 0.01, "xanchor": "left"}


def index_axis(n: int, label: str) -> dict[str, Any]:
    """Axis settings for an integer index axis (every tick when it is short)."""
    ax: dict[str, Any] = {"title": {"text": label}, "showgrid": False, "zeroline": False}
    if n <= 48:
        ax.update(tickmode="linear", tick0=0, dtick=1 if n <= 24 else 2)
    return ax


def overlay(sel: np.ndarray, name: str, *, symbol: str = "square-open", color: str = "black",
            size: int = 12, x_values: Sequence[Any] | None = None, **kwargs: Any) -> go.Scatter:
    """Markers on the True cells of an (L, n) bool array: x = module index, y = layer.

    ``x_values`` maps column positions to the x coordinates of the heatmap (when its columns
    are a subset of modules). Hover is skipped so the heatmap below answers it.
    """
    layers, cols = np.nonzero(sel)
    xs = cols if x_values is None else np.asarray(x_values)[cols]
    return go.Scatter(x=xs, y=layers, mode="markers", name=name, hoverinfo="skip",
                      marker={"symbol": symbol, "color": color, "size": size,
                              "line": {"width": 2, "color": color}}, **kwargs)


# ---------------------------------------------------------------------------------- records

def as_records(records: Any) -> list[dict[str, Any]]:
    """Tidy records (a list of dicts, one per run, or a pandas DataFrame) as a list of dicts."""
    if hasattr(records, "to_dict") and hasattr(records, "columns"):
        return [dict(r) for r in records.to_dict("records")]
    if isinstance(records, Mapping):
        raise TypeError("records must be a list of dicts (one row per run) or a DataFrame, "
                        "not a single dict")
    out = [dict(r) for r in records]
    return out


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def require_columns(rows: list[dict[str, Any]], names: Iterable[str | None]) -> None:
    have = set(columns_of(rows))
    missing = [n for n in names if n is not None and n not in have]
    if missing:
        raise ValueError(f"records have no column(s) {missing}; columns are {sorted(have)}")


def is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(np.isnan(v))
    except (TypeError, ValueError):
        return False


def unique_in_order(values: Iterable[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
