"""``ModuleExplorer``: module scores and masks behind notebook controls (docs/design.md §9).

Objective / selector / granularity / sparsity / refinement controls over the figures of
:mod:`mape_viz.viz`. Its caches are the shared :class:`~mape_viz.ui.explorer.ExplorerState`
(the app's explore tab uses the same): scores per (objective, selector), selections per
setting — moving a slider only re-runs the *selection*, never the scorer. One
:class:`~mape_viz.ui.figure_pane.FigurePane` with a view selector draws every view.
"""

from __future__ import annotations

import html
import time
from typing import Any, Mapping, Sequence

import ipywidgets as W
import plotly.graph_objects as go

from ..choices import (describe, list_granularities, list_objectives, list_refine_modes,
                       list_selectors)
from ..selection import select_modules
from ..types import MODULE_KINDS, ModuleMask, ModuleScores
from .explorer import VIEWS, ExplorerState, Scorer, SelectFn, mask_summary, view_figure
from .figure_pane import FigurePane, WidgetBase

__all__ = ["ModuleExplorer"]


class ModuleExplorer(WidgetBase):
    """Objective / selector / granularity / sparsity / refine controls over the module figures.

    Args:
        scores_by_objective: either a mapping — ``{objective: ModuleScores}`` (the selector of
            each entry is its ``.selector``) or ``{(objective, selector): ModuleScores}`` — or
            a callable ``scorer(objective, selector) -> ModuleScores`` that is called at most
            once per combination, the first time it is shown (e.g. a ``functools.partial`` of
            :func:`mape_viz.scores.score_modules` with the model and data bound).
        objectives: objective names to offer with a callable (default
            :func:`~mape_viz.choices.list_objectives`).
        selectors: selector names to offer with a callable (default
            ``list_selectors(include_full=False)``: every score selector).
        select_fn: ``select_fn(scores, sparsity=, granularity=, refine=) -> ModuleMask``
            (default :func:`mape_viz.selection.select_modules`).
        sparsity, granularity, refine, term, filter_mode: initial control values (``refine``
            ``None`` = ``"none"``, the warm start only).
        views: which views to offer, from :attr:`VIEWS`; ``view`` the first one shown.
        mask_cache_size: how many selections to keep (one per control setting).
        live: draw into a ``FigureWidget`` (default: when ``anywidget`` is installed) or a
            static ``Output``.

    Attributes:
        controls: name -> ipywidget (``view``, ``objective``, ``selector``, ``granularity``,
            ``sparsity``, ``refine``, ``term``, ``filter_mode``, ``kind``).
        state: the :class:`~mape_viz.ui.explorer.ExplorerState` (cached scores and masks).
        pane: the :class:`FigurePane`; ``figure`` the figure drawn now.
        n_scorer_calls: how many times the scorer callable has run.
        status: an ``HTML`` line (scores used, selected counts, errors); ``error`` the last
            exception of a redraw (None when it worked).
    """

    VIEWS = VIEWS

    def __init__(self, scores_by_objective: Mapping[Any, ModuleScores] | Scorer, *,
                 objectives: Sequence[str] | None = None, selectors: Sequence[str] | None = None,
                 select_fn: SelectFn | None = None, sparsity: float = 0.9,
                 granularity: str = "both", refine: str | None = "greedy", term: str = "score",
                 filter_mode: str = "sorted", views: Sequence[str] | None = None,
                 view: str | None = None, mask_cache_size: int = 32,
                 live: bool | None = None) -> None:
        self.state = ExplorerState(mask_cache_size=mask_cache_size)
        self._select_fn = select_fn or select_modules
        self.error: Exception | None = None
        if callable(scores_by_objective) and not isinstance(scores_by_objective, Mapping):
            self._scorer: Scorer | None = scores_by_objective
            objs = list(objectives or list_objectives())
            sels = list(selectors) if selectors is not None else list_selectors(include_full=False)
            self._choices = {o: sels for o in objs}
        else:
            self._scorer = None
            self._choices: dict[str, list[str]] = {}
            for key, sc in dict(scores_by_objective).items():
                obj, sel = key if isinstance(key, tuple) else (key, sc.selector)
                self.state.scores[(obj, sel)] = sc
                self._choices.setdefault(obj, [])
                if sel not in self._choices[obj]:
                    self._choices[obj].append(sel)
            if not self._choices:
                raise ValueError("scores_by_objective is empty")
        views = list(views or self.VIEWS)
        bad = [v for v in views if v not in self.VIEWS]
        if bad:
            raise ValueError(f"unknown views {bad}; known: {self.VIEWS}")
        first = next(iter(self._choices))
        style = {"description_width": "initial"}
        refine_options = [(m, None if m == "none" else m) for m in list_refine_modes()]
        self.controls: dict[str, W.Widget] = {
            "view": W.ToggleButtons(options=views, value=view or views[0], description="view",
                                    style=style),
            "objective": W.Dropdown(options=list(self._choices), value=first,
                                    description="objective", style=style),
            "selector": W.Dropdown(options=self._choices[first], value=self._choices[first][0],
                                   description="selector", style=style),
            "granularity": W.ToggleButtons(options=list_granularities(), value=granularity,
                                           description="granularity", style=style),
            "sparsity": W.FloatSlider(value=sparsity, min=0.0, max=0.99, step=0.01,
                                      continuous_update=False, readout_format=".2f",
                                      description="sparsity", style=style),
            "refine": W.ToggleButtons(options=refine_options,
                                      value=None if refine == "none" else refine,
                                      tooltips=[describe("refine", m) for m, _ in refine_options],
                                      description="refine", style=style),
            "term": W.Dropdown(options=[("score (g + ½F)", "score"), ("g", "grad"),
                                        ("F", "fisher")], value=term, description="colour by",
                               style=style),
            "filter_mode": W.ToggleButtons(options=["sorted", "binned"], value=filter_mode,
                                           description="filters", style=style),
            "kind": W.ToggleButtons(options=list(MODULE_KINDS), value="heads",
                                    description="g vs F / warm start of", style=style),
        }
        self.status = W.HTML()
        self.pane = FigurePane(live=live)
        self._busy = False
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["objective"], c["selector"], c["term"]]),
            W.HBox([c["sparsity"], c["granularity"]]),
            W.HBox([c["refine"], c["filter_mode"]]),
            c["kind"], c["view"], self.status, self.pane.widget])
        c["objective"].observe(self._on_objective, "value")
        for name in ("view", "selector", "granularity", "sparsity", "refine", "term",
                     "filter_mode", "kind"):
            c[name].observe(self._on_change, "value")
        self.refresh()

    # -- data ---------------------------------------------------------------------------

    @property
    def figure(self) -> go.Figure:
        """The figure drawn now (the ``FigureWidget`` itself when live)."""
        return self.pane.figure

    @property
    def n_scorer_calls(self) -> int:
        return self.state.n_scorer_calls

    def scores(self) -> ModuleScores:
        """Scores of the current (objective, selector): cached, or scored once now."""
        return self.state.score(self.controls["objective"].value,
                                self.controls["selector"].value, self._scorer)

    def mask(self) -> ModuleMask:
        """The selection for the current controls (cached per setting)."""
        c = self.controls
        self.scores()
        return self.state.select(c["sparsity"].value, c["granularity"].value, c["refine"].value,
                                 self._select_fn)

    # -- drawing ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the current view from cached scores (and a cached or new selection)."""
        t0 = time.perf_counter()
        c = self.controls
        try:
            scores = self.scores()
            mask = self.mask()
            self.pane.update(view_figure(c["view"].value, scores, mask, term=c["term"].value,
                                         kind=c["kind"].value,
                                         filter_mode=c["filter_mode"].value))
        except Exception as exc:  # shown to the user; the previous figure stays
            self.status.value = (f"<span style='color:#b00'>⚠ {html.escape(type(exc).__name__)}: "
                                 f"{html.escape(str(exc))}</span>")
            self.error = exc
            return
        self.error = None
        s = mask_summary(scores, mask)
        self.status.value = (
            f"<b>{html.escape(c['selector'].value)}</b> / {html.escape(c['objective'].value)} · "
            f"selected {s.selected['heads']}/{s.sizes['heads']} heads, "
            f"{s.selected['filters']}/{s.sizes['filters']} filters · {s.n_swaps} swaps · "
            f"scorer calls: {self.n_scorer_calls} · {time.perf_counter() - t0:.2f} s")

    def _on_objective(self, change: dict) -> None:
        sel = self.controls["selector"]
        options = self._choices[change["new"]]
        self._busy = True
        try:
            keep = sel.value if sel.value in options else options[0]
            sel.options = options
            sel.value = keep
        finally:
            self._busy = False
        self.refresh()

    def _on_change(self, change: dict) -> None:
        if not self._busy:
            self.refresh()
