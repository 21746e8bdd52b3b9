"""Plain result containers shared by scoring, selection, unlearning and the figures.

Shapes: L layers, H heads per layer, F filters (FFN intermediate neurons) per layer,
N samples kept for the block Fisher factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

MODULE_KINDS = ("heads", "filters")


@dataclass
class ModuleTerms:
    """One value per module: ``heads`` (L, H) and ``filters`` (L, F), on CPU (float32 terms,
    or bool selections as in ``ModuleMask.warm_start``)."""

    heads: torch.Tensor
    filters: torch.Tensor

    def __getitem__(self, kind: str) -> torch.Tensor:
        if kind not in MODULE_KINDS:
            raise ValueError(f"kind must be one of {MODULE_KINDS}, got {kind!r}")
        return getattr(self, kind)


@dataclass
class ModuleScores:
    """Per-module importance scores (higher = selected for update; lower when ``maximise``).

    Attributes:
        heads: (L, H) score of each attention head.
        filters: (L, F) score of each FFN filter.
        grad: the gradient term ``g`` (MAPE only; zeros for other selectors).
        fisher: the diagonal Fisher term ``F`` (MAPE only; zeros for other selectors).
        factor: per-sample mask gradients of the Fisher set, ``heads`` (N, L, H) and
            ``filters`` (N, L, F): the low-rank factor of each layer's block Fisher,
            ``F_l = factor[:, l].T @ factor[:, l] / n_fisher``. ``None`` for selectors
            that have no Fisher (refinement then falls back to the diagonal).
        n_fisher: the number of samples the Fisher mean is over (the factor may keep
            fewer rows than that when it was capped).
        objective: the objective passed to scoring (``"mlr"``, ``"mlf"``, ``"mlf-argmax"``);
            only MAPE's scores depend on it, the other selectors record it.
        maximise: the layer objective is *maximised* (objective ``mlf-argmax``: Eq. 17/18
            read as written, an argmax of Σ(1−mᵢ)(gᵢ + ½Fᵢ)): selection keeps the lowest
            scores and the refinement raises the layer cost (docs/design.md §3–§4).
        selector: the registry name of the selector that made these scores.
        family: the site-map family of the model (e.g. ``"bert"``).
        meta: free-form extra information (sample counts, seed, timings).
    """

    heads: torch.Tensor
    filters: torch.Tensor
    grad: ModuleTerms
    fisher: ModuleTerms
    factor: ModuleTerms | None = None
    n_fisher: int = 0
    objective: str | None = None
    maximise: bool = False
    selector: str = "mape"
    family: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, kind: str) -> torch.Tensor:
        if kind not in MODULE_KINDS:
            raise ValueError(f"kind must be one of {MODULE_KINDS}, got {kind!r}")
        return getattr(self, kind)

    @property
    def shape(self) -> dict[str, tuple[int, int]]:
        return {k: tuple(self[k].shape) for k in MODULE_KINDS}


@dataclass
class SwapRecord:
    """One greedy swap in a layer: ``entered`` joins the selection, ``left`` is frozen.

    ``delta`` is the change of that layer's cost (negative = improvement); ``round`` counts
    from 0 (the paper's single round is round 0).
    """

    layer: int
    kind: str
    entered: int
    left: int
    delta: float
    round: int = 0


@dataclass
class ModuleMask:
    """Which modules are selected for update (True) — the rest stay frozen.

    Attributes:
        heads: (L, H) bool.
        filters: (L, F) bool.
        warm_start: the global top-k selection before refinement (same shapes).
        swaps: every swap the refinement made, in order.
        cost_before: per kind, (L,) layer cost of the warm start (Eq. 9; minimised, or
            maximised when the scores' ``maximise`` is set — ``meta["maximise"]``).
        cost_after: per kind, (L,) layer cost after refinement.
        entries: the parameter-level selection inside the selected modules (selector
            ``mape+wanda``, Appendix B.2), or None (every entry of a selected slice is
            trained). ``{parameter name: bool tensor}``, each shaped like that parameter's
            *slab* — ``param.index_select(dim, index)`` with the sorted unit indices of
            :func:`mape_viz.unlearning.sparse.slice_specs` — True = the entry is trained. A
            sliced parameter missing from the dict trains its whole slab.
        meta: family, shapes, sparsity, objective, selector, granularity, refine, seed,
            and for ``refine="exact"`` the per-layer optimality gap of the greedy.
    """

    heads: torch.Tensor
    filters: torch.Tensor
    warm_start: ModuleTerms | None = None
    swaps: list[SwapRecord] = field(default_factory=list)
    cost_before: dict[str, torch.Tensor] = field(default_factory=dict)
    cost_after: dict[str, torch.Tensor] = field(default_factory=dict)
    entries: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, kind: str) -> torch.Tensor:
        if kind not in MODULE_KINDS:
            raise ValueError(f"kind must be one of {MODULE_KINDS}, got {kind!r}")
        return getattr(self, kind)

    def n_selected(self) -> dict[str, int]:
        return {k: int(self[k].sum()) for k in MODULE_KINDS}
