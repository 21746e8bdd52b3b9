"""Module selection: global top-k warm start (Eq. 8) + layer-wise greedy swap refinement (Eq. 9).

docs/design.md §3–§4. At sparsity S, each kind (heads, filters — ranked separately, their scales
differ) keeps its top ``⌈(1−S)·n⌉`` modules over all layers (``n = L·H`` or ``L·F``). Each
layer's frozen set P then keeps its size and is refined by the greedy swap of
:mod:`mape_viz.refine`, against the layer cost

    cost(P) = Σ_{i∈P} g_i + ½ · 1_Pᵀ F_l 1_P,     F_l = factor[:, l]ᵀ factor[:, l] / n_fisher

(``g`` = ``scores.grad``; without a factor, F_l is the diagonal ``scores.fisher``, and the greedy
then finds nothing to improve when the scores are ``g + ½F``).

Scores with ``maximise=True`` (objective ``mlf-argmax``: Eq. 17/18 read as written, an argmax of
Σ(1−mᵢ)(gᵢ + ½Fᵢ)) mirror all of this: the warm start keeps the *lowest* scores and the
refinement maximises the same layer cost (docs/design.md §4).

Public API: :func:`select_modules`, :func:`warm_start`, :func:`n_to_select`, and, re-exported
from :mod:`mape_viz.refine` for tests and figures, :func:`layer_cost` and :func:`swap_delta`.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any

import numpy as np
import torch

from mape_viz.refine import (
    EXACT_MAX_SUBSETS,
    exact_frozen,
    greedy_swap,
    layer_cost,
    one_thread,
    swap_delta,
    swaps_between,
)
from mape_viz.types import MODULE_KINDS, ModuleMask, ModuleScores, ModuleTerms, SwapRecord

__all__ = [
    "GRANULARITIES",
    "REFINE_MODES",
    "layer_cost",
    "n_to_select",
    "select_modules",
    "swap_delta",
    "warm_start",
]

#: ``granularity`` -> the kinds that get selected; the other kind is frozen entirely.
GRANULARITIES: dict[str, tuple[str, ...]] = {
    "heads": ("heads",),
    "filters": ("filters",),
    "both": MODULE_KINDS,
}

#: ``refine`` options -> what they do (the one list every front end offers). ``None`` is
#: accepted as an alias of ``"none"``.
REFINE_MODES: dict[str, str] = {
    "greedy": "one round of greedy swaps per layer (the paper's Eq. 9)",
    "converge": "greedy rounds until no swap improves the layer cost",
    "exact": "head layers by enumeration (filters converge); reports the greedy's gap",
    "none": "the global warm start only (Eq. 8 top-k)",
}

# ⌈(1−S)·n⌉ with float error: (1 − 0.9)·10 = 0.9999999999999998 must give 1, and
# (1 − 0.7)·10 = 3.0000000000000004 must give 3, so subtract a hair before the ceiling.
_CEIL_EPS = 1e-9


def _check_sparsity(sparsity: Any) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        # ValueError, not TypeError: one error type for every bad sparsity a user can pass.
        raise ValueError(  # noqa: TRY004
            f"sparsity must be a number in [0, 1) (the fraction of modules frozen), got {sparsity!r}"
        )
    s = float(sparsity)
    if not 0.0 <= s < 1.0:  # also rejects NaN
        raise ValueError(
            f"sparsity must be in [0, 1) (the fraction of modules frozen; 0.9 keeps 10%), got {sparsity!r}"
        )
    return s


def n_to_select(n: int, sparsity: float) -> int:
    """``⌈(1−S)·n⌉``: how many of ``n`` modules a kind keeps at sparsity ``S`` ∈ [0, 1)."""
    s = _check_sparsity(sparsity)
    if n <= 0:
        return 0
    # (1−S)·n > 0 for S < 1, so its ceiling is at least 1 even when the epsilon pushes below.
    return min(n, max(1, math.ceil((1.0 - s) * n - _CEIL_EPS)))


def _all_finite(t: torch.Tensor) -> bool:
    # aminmax propagates NaN and ±inf in one pass without a bool temporary: ~10× faster than
    # isfinite().all() on a (512, 12, 3072) factor.
    if t.numel() == 0 or not t.is_floating_point():
        return True
    lo, hi = torch.aminmax(t.detach())
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def _check_scores(scores: ModuleScores) -> dict[str, tuple[int, int]]:
    """Validate shapes and values at the boundary; returns {kind: (L, n)}."""
    if not isinstance(scores, ModuleScores):
        raise TypeError(f"scores must be a mape_viz.types.ModuleScores, got {type(scores).__name__}")
    shapes: dict[str, tuple[int, int]] = {}
    for kind in MODULE_KINDS:
        s = scores[kind]
        if not isinstance(s, torch.Tensor) or s.ndim != 2:
            raise ValueError(f"scores.{kind} must be a 2-D tensor (L, n), got {getattr(s, 'shape', type(s))}")
        if not _all_finite(s):
            raise ValueError(f"scores.{kind} contains NaN or infinite values")
        shapes[kind] = (int(s.shape[0]), int(s.shape[1]))
        for name, terms in (("grad", scores.grad), ("fisher", scores.fisher)):
            t = terms[kind]
            if tuple(t.shape) != shapes[kind]:
                raise ValueError(f"scores.{name}.{kind} has shape {tuple(t.shape)}, expected {shapes[kind]}")
            if not _all_finite(t):
                raise ValueError(f"scores.{name}.{kind} contains NaN or infinite values")
        if scores.factor is not None:
            f = scores.factor[kind]
            if f is None:
                continue
            if f.ndim != 3 or tuple(f.shape[1:]) != shapes[kind]:
                raise ValueError(
                    f"scores.factor.{kind} must be (N, {shapes[kind][0]}, {shapes[kind][1]}), got {tuple(f.shape)}"
                )
            if not _all_finite(f):
                raise ValueError(f"scores.factor.{kind} contains NaN or infinite values")
    if shapes["heads"][0] != shapes["filters"][0]:
        raise ValueError(
            f"heads and filters disagree on the number of layers: {shapes['heads']} vs {shapes['filters']}"
        )
    n_f = scores.n_fisher
    if scores.factor is not None and (isinstance(n_f, bool) or not (isinstance(n_f, (int, np.integer)) and n_f > 0)):
        raise ValueError(f"scores.n_fisher must be a positive int when a factor is given, got {scores.n_fisher!r}")
    return shapes


def _check_granularity(granularity: Any) -> tuple[str, ...]:
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {list(GRANULARITIES)}, got {granularity!r}")
    return GRANULARITIES[granularity]


def warm_start(scores: ModuleScores, sparsity: float = 0.9, granularity: str = "both") -> ModuleTerms:
    """The global top-k selection (Eq. 8): per kind, the ``⌈(1−S)·L·n⌉`` highest scores
    (lowest when ``scores.maximise``: Eq. 17 as written).

    Ties are broken by flat index (layer-major): the lower index is selected first.

    Returns:
        ModuleTerms of bool masks ``heads`` (L, H) and ``filters`` (L, F), True = selected;
        a kind excluded by ``granularity`` is all False.
    """
    s = _check_sparsity(sparsity)
    kinds = _check_granularity(granularity)
    _check_scores(scores)
    return _warm_start(scores, s, kinds)


def _warm_start(scores: ModuleScores, sparsity: float, kinds: tuple[str, ...]) -> ModuleTerms:
    out = {}
    for kind in MODULE_KINDS:
        sc = scores[kind]
        mask = np.zeros(sc.numel(), dtype=bool)
        if kind in kinds:
            flat = sc.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy()
            key = flat if scores.maximise else -flat
            top = np.argsort(key, kind="stable")[: n_to_select(flat.size, sparsity)]
            mask[top] = True
        out[kind] = torch.from_numpy(mask.reshape(tuple(sc.shape)))
    return ModuleTerms(**out)


def select_modules(
    scores: ModuleScores,
    sparsity: float = 0.9,
    granularity: str = "both",
    refine: str | None = "greedy",
    seed: int | None = None,
) -> ModuleMask:
    """Select the modules to update: global warm start, then per-layer greedy swap refinement.

    Args:
        scores: per-module scores (``heads`` (L, H), ``filters`` (L, F)); ``grad`` is the
            cost's ``g``; ``factor`` (N, L, ·) with ``n_fisher`` gives the block Fisher
            (without it, the diagonal ``fisher``).
        sparsity: fraction S ∈ [0, 1) of modules frozen, per kind.
        granularity: ``"heads"`` (all filters frozen), ``"filters"`` (all heads frozen), ``"both"``.
        refine: ``"none"`` or ``None`` (warm start only), ``"greedy"`` (one round, the paper's),
            ``"converge"`` (rounds until no improving swap), ``"exact"`` (head layers by
            enumeration of all C(H, |P_l|) frozen sets, filters by ``"converge"``; the greedy's
            per-layer optimality gap goes to ``meta["exact_gap"]["heads"]``).
        seed: recorded in ``meta`` only — the selection itself is deterministic.

    Returns:
        :class:`ModuleMask`: bool ``heads``/``filters`` (True = selected, exactly
        ``⌈(1−S)·n⌉`` per included kind), ``warm_start``, every swap in order, per-kind (L,)
        float64 ``cost_before``/``cost_after`` (0 for an excluded kind; minimised, or maximised
        when ``scores.maximise`` — ``meta["maximise"]`` says which), and ``meta``.
        Replaying ``swaps`` in order on ``warm_start`` reproduces the final masks, each step
        changing its layer's cost by the recorded ``delta`` (also for ``"exact"``, whose
        difference from the warm start is recorded as pairwise swaps).
    """
    with one_thread():  # see mape_viz.refine.one_thread for why single-threaded
        return _select(scores, sparsity, granularity, refine, seed)


def _select(scores: ModuleScores, sparsity: Any, granularity: Any, refine: Any, seed: Any) -> ModuleMask:
    s = _check_sparsity(sparsity)
    kinds = _check_granularity(granularity)
    if refine is not None and (not isinstance(refine, str) or refine not in REFINE_MODES):
        raise ValueError(f"refine must be one of {list(REFINE_MODES)} (or None), got {refine!r}")
    refine = None if refine == "none" else refine
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    shapes = _check_scores(scores)
    t0 = time.perf_counter()
    warm = _warm_start(scores, s, kinds)
    if refine == "exact" and "heads" in kinds:
        _check_exact_feasible(warm.heads)

    masks: dict[str, torch.Tensor] = {}
    cost_before: dict[str, torch.Tensor] = {}
    cost_after: dict[str, torch.Tensor] = {}
    swaps: list[SwapRecord] = []
    rounds: dict[str, list[int]] = {}
    exact_gap: dict[str, list[float]] = {}
    for kind in MODULE_KINDS:
        L = shapes[kind][0]
        final = warm[kind].clone()
        before = torch.zeros(L, dtype=torch.float64)
        after = torch.zeros(L, dtype=torch.float64)
        if kind in kinds:
            rounds[kind] = []
            if refine == "exact" and kind == "heads":
                exact_gap[kind] = []
            for l in range(L):
                out = _refine_layer(scores, kind, l, final[l].numpy(), refine)
                final[l] = torch.from_numpy(~out["frozen"])
                before[l], after[l] = out["cost_before"], out["cost_after"]
                rounds[kind].append(out["rounds"])
                swaps.extend(
                    SwapRecord(layer=l, kind=kind, entered=i, left=j, delta=dlt, round=rnd)
                    for i, j, dlt, rnd in out["swaps"]
                )
                if "gap" in out:
                    exact_gap[kind].append(out["gap"])
        masks[kind] = final
        cost_before[kind] = before
        cost_after[kind] = after

    meta: dict[str, Any] = {
        "family": scores.family,
        "shapes": {k: list(shapes[k]) for k in MODULE_KINDS},
        "sparsity": s,
        "objective": scores.objective,
        "maximise": bool(scores.maximise),
        "selector": scores.selector,
        "granularity": granularity,
        "refine": refine,
        "seed": None if seed is None else int(seed),
        "n_selected": {k: int(masks[k].sum()) for k in MODULE_KINDS},
        "fisher": {k: "diagonal" if scores.factor is None or scores.factor[k] is None else "block" for k in MODULE_KINDS},
        "rounds": rounds,
        "n_swaps": len(swaps),
        "time_s": time.perf_counter() - t0,
    }
    if exact_gap:
        meta["exact_gap"] = exact_gap
    return ModuleMask(
        heads=masks["heads"],
        filters=masks["filters"],
        warm_start=warm,
        swaps=swaps,
        cost_before=cost_before,
        cost_after=cost_after,
        meta=meta,
    )


def _layer_problem(scores: ModuleScores, kind: str, l: int) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """(g (n,), fisher, n_fisher) of one layer: the (N, n) factor slice, or the (n,) diagonal."""
    g = scores.grad[kind][l]
    factor = None if scores.factor is None else scores.factor[kind]
    if factor is not None:
        return g, factor[:, l], int(scores.n_fisher)
    return g, scores.fisher[kind][l], None


def _refine_layer(scores: ModuleScores, kind: str, l: int, selected: np.ndarray, refine: str | None) -> dict:
    """Refine one layer of one kind. Costs are priced by the same formula in every mode (see
    :func:`layer_cost`), so costs of different ``refine`` modes compare exactly."""
    g, fisher, n_fisher = _layer_problem(scores, kind, l)
    frozen = ~selected
    if refine is None:
        c = layer_cost(g, fisher, frozen, n_fisher)
        return {"frozen": frozen, "cost_before": c, "cost_after": c, "rounds": 0, "swaps": []}
    one_round = refine == "greedy" or (refine == "exact" and kind == "heads")
    res = greedy_swap(g, fisher, frozen, scores[kind][l], n_fisher=n_fisher,
                      rounds=1 if one_round else None, maximize=scores.maximise)
    out = {
        "frozen": res.frozen,
        "cost_before": res.cost_before,
        "cost_after": res.cost_after,
        "rounds": res.rounds,
        "swaps": res.swaps,
    }
    if refine == "exact" and kind == "heads":
        best, _ = exact_frozen(g, fisher, int(frozen.sum()), n_fisher, maximize=scores.maximise)
        exact_cost = layer_cost(g, fisher, best, n_fisher)
        # The enumeration optimises this same cost, so a negative gap is rounding only.
        gap = exact_cost - res.cost_after if scores.maximise else res.cost_after - exact_cost
        out["gap"] = max(0.0, gap)
        out["frozen"] = best
        out["cost_after"] = exact_cost
        out["swaps"] = swaps_between(g, fisher, frozen, best, n_fisher)
    return out


def _check_exact_feasible(selected_heads: torch.Tensor) -> None:
    H = selected_heads.shape[1]
    for l, row in enumerate(selected_heads):
        p = H - int(row.sum())
        total = math.comb(H, p)
        if total > EXACT_MAX_SUBSETS:
            raise ValueError(
                f"refine='exact' would enumerate C({H}, {p}) = {total} frozen sets in head layer {l}, "
                f"more than {EXACT_MAX_SUBSETS}; use refine='converge' for models this wide"
            )
