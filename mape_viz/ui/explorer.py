"""The module explorer's state, without a user interface (docs/design.md §9).

The app (``app.py`` through :mod:`mape_viz.ui.app_logic`) and the notebook widget
(:class:`mape_viz.ui.widgets.ModuleExplorer`) explore the same thing: scores of one forget
set under a few (objective, selector) pairs, and the selection at a sparsity / granularity /
refinement. :class:`ExplorerState` holds what they cache — scores per (objective, selector),
computed at most once each; selections per setting, so that moving a slider back is free —
and :func:`view_figure` / :func:`mask_summary` turn the current entry into what they show.
Scoring and selection are injected callables (the library's by default), so the state holds
no algorithm of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable

import plotly.graph_objects as go

from .. import viz
from ..selection import select_modules
from ..types import MODULE_KINDS, ModuleMask, ModuleScores

#: ``scorer(objective, selector) -> ModuleScores`` for the explorer's forget set.
Scorer = Callable[[str, str], ModuleScores]
#: ``select_fn(scores, sparsity=, granularity=, refine=) -> ModuleMask``
#: (:func:`mape_viz.selection.select_modules`).
SelectFn = Callable[..., ModuleMask]

#: Views an explorer draws, each one figure function of :mod:`mape_viz.viz`.
VIEWS = ("heads", "filters", "per layer", "g vs F", "swaps", "warm vs refined")


@dataclass
class ExplorerState:
    """Cached scores and selections of one forget set.

    Attributes:
        forget_key: what the scores are for (the app: the tuple of sample ids); see
            :meth:`for_forget`.
        scores: ``{(objective, selector): ModuleScores}``.
        masks: ``{(objective, selector, granularity, sparsity, refine): ModuleMask}``, the
            most recently used last; at most ``mask_cache_size`` entries.
        key: the (objective, selector) shown now; ``mask`` the selection shown now.
        n_scorer_calls: how many times a scorer has run for this forget set.
    """

    forget_key: Hashable = None
    scores: dict[tuple[str, str], ModuleScores] = field(default_factory=dict)
    masks: OrderedDict[tuple, ModuleMask] = field(default_factory=OrderedDict)
    key: tuple[str, str] | None = None
    mask: ModuleMask | None = None
    n_scorer_calls: int = 0
    mask_cache_size: int = 32

    def for_forget(self, forget_key: Hashable) -> "ExplorerState":
        """This state if its scores are for ``forget_key``, else a fresh one (same cache size)."""
        if forget_key == self.forget_key:
            return self
        return ExplorerState(forget_key=forget_key, mask_cache_size=self.mask_cache_size)

    def score(self, objective: str, selector: str, scorer: Scorer | None = None) -> ModuleScores:
        """Make (objective, selector) current and return its scores: cached, or ``scorer``'s.

        Raises:
            KeyError: not cached and no ``scorer`` given.
        """
        key = (objective, selector)
        if key not in self.scores:
            if scorer is None:
                raise KeyError(f"no scores for objective/selector {key}")
            self.n_scorer_calls += 1
            self.scores[key] = scorer(objective, selector)
        self.key = key
        return self.scores[key]

    @property
    def current_scores(self) -> ModuleScores:
        """Scores of the current (objective, selector)."""
        if self.key is None:
            raise ValueError("compute scores first (no objective / selector scored yet)")
        return self.scores[self.key]

    def select(self, sparsity: float, granularity: str, refine: str | None,
               select_fn: SelectFn = select_modules) -> ModuleMask:
        """The selection of the current scores at this setting (cached per setting); it
        becomes ``mask``. ``refine`` ``"none"`` and ``None`` are the same setting.

        Raises:
            ValueError: nothing scored yet, or what ``select_fn`` raises (e.g. an infeasible
                ``refine="exact"``).
        """
        scores = self.current_scores
        refine = None if refine == "none" else refine
        setting = (*self.key, granularity, round(float(sparsity), 6), refine)
        if setting in self.masks:
            self.masks.move_to_end(setting)
        else:
            self.masks[setting] = select_fn(scores, sparsity=setting[3], granularity=granularity,
                                            refine=refine)
            while len(self.masks) > self.mask_cache_size:
                self.masks.popitem(last=False)
        self.mask = self.masks[setting]
        return self.mask


def view_figure(view: str, scores: ModuleScores, mask: ModuleMask, *, term: str = "score",
                kind: str = "heads", filter_mode: str = "sorted") -> go.Figure:
    """One of :data:`VIEWS` for scores and a selection.

    Args:
        view: a name in :data:`VIEWS`.
        term: what colours the heatmaps: ``score`` (g + ½F), ``grad`` (g) or ``fisher`` (F).
        kind: module kind of the ``g vs F`` and ``warm vs refined`` views.
        filter_mode: ``sorted`` or ``binned`` (the ``filters`` view).
    """
    if view == "heads":
        return viz.head_heatmap(scores, mask, term=term)
    if view == "filters":
        return viz.filter_view(scores, mask, mode=filter_mode, term=term)
    if view == "per layer":
        return viz.selected_per_layer(mask)
    if view == "g vs F":
        return viz.g_vs_fisher(scores, mask, kind=kind)
    if view == "swaps":
        return viz.swap_changes(mask)
    if view == "warm vs refined":
        if mask.warm_start is None:
            return viz.message_figure("no warm start: refinement is off")
        return viz.warm_vs_refined(scores, mask, kind=kind)
    raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")


@dataclass(frozen=True)
class MaskSummary:
    """What a selection amounts to, for a status line.

    Attributes:
        objective, selector: of the scores.
        selected, sizes: per module kind, how many are selected / how many there are.
        n_swaps: greedy swaps made by the refinement.
        cost_gain: per kind, the summed layer cost the refinement removed (0 without one).
    """

    objective: str
    selector: str
    selected: dict[str, int]
    sizes: dict[str, int]
    n_swaps: int
    cost_gain: dict[str, float]


def mask_summary(scores: ModuleScores, mask: ModuleMask) -> MaskSummary:
    """Counts of a selection (``mask``) made from ``scores``."""
    return MaskSummary(
        objective=str(scores.objective), selector=str(scores.selector),
        selected=dict(mask.n_selected()), sizes={k: int(mask[k].numel()) for k in MODULE_KINDS},
        n_swaps=len(mask.swaps),
        cost_gain={k: float((mask.cost_before[k] - mask.cost_after[k]).sum())
                   if k in mask.cost_before else 0.0 for k in MODULE_KINDS})

