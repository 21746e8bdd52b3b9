"""Per-module importance scores: MAPE (g + ½F, docs/design.md §3) and the baseline selectors.

``score_modules(model, forget, retain, objective=..., selector=...)`` looks the selector up
by name in ``SELECTORS``, so every front end offers the same list.

| objective | g                          | F (diag)                     |
|-----------|----------------------------|------------------------------|
| ``mlr``   | Σ_{x∈D_f} ∇_m ℓ(x)        | mean_{x∈D_r} (∇_m ℓ(x))²    |
| ``mlf``   | Σ_{x∈D_r} ∇_m ℓ(x)        | mean_{x∈D_f} (∇_m ℓ(x))²    |
| ``mlf-argmax`` | as ``mlf``             | as ``mlf``                   |

Higher score = selected for update for ``mlr`` and ``mlf``: Eq. 8's text says modules with
higher scores are prioritised. Eq. 17/18 are written as an argmax of Σ(1−mᵢ)(gᵢ + ½Fᵢ), which
read literally keeps the *lowest*-scoring modules; ``mlf-argmax`` is that literal reading
(``ModuleScores.maximise``: lowest scores selected, the greedy refinement maximises the layer
cost), so the two can be compared on data (docs/design.md §3).

Selector ``mape+wanda`` scores modules as ``mape``; the engine then keeps, inside the selected
modules, only the entries with the largest Wanda score |W|·‖X‖ (Appendix B.2,
:mod:`mape_viz.wanda`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from .gradients import accumulate_mask_grads, frozen
from .losses import per_sample_loss
from .registry import Registry
from .sitemaps import ModelSites, get_sites, per_module_sq_norm
from .types import MODULE_KINDS, ModuleScores, ModuleTerms

Batches = Iterable[Mapping[str, Any]]
#: objective name -> what it is for (the one list every front end offers).
OBJECTIVES: dict[str, str] = {
    "mlf": "MLF (Eq. 17): g on the retain set, Fisher on the forget set; for GA/GD/NPO/DPO",
    "mlr": "MLR (Eq. 8): g on the forget set, Fisher on the retain set; for second-order (SO)",
    "mlf-argmax": "MLF as Eq. 17/18 are written (argmax): the mlf scores, but the LOWEST are "
                  "selected and the refinement maximises the layer cost",
}
#: Objectives whose layer cost is maximised (Eq. 17/18 read as written): see ``ModuleScores.maximise``.
ARGMAX_OBJECTIVES: frozenset[str] = frozenset({"mlf-argmax"})

#: selector name -> function(model, forget, retain, sites, **options) -> ModuleScores
SELECTORS: Registry[Callable[..., ModuleScores]] = Registry("selector")


def score_modules(model: nn.Module, forget: Batches, retain: Batches, objective: str = "mlr",
                  selector: str = "mape", *, kind: str | None = None, max_factor: int = 512,
                  seed: int = 0, progress: bool = False) -> ModuleScores:
    """Score every head and filter of ``model`` for unlearning ``forget`` while keeping ``retain``.

    Args:
        model: a model whose family has a site map (see ``sitemaps.supported_families``).
        forget, retain: iterables of batches (dicts with ``input_ids``, ``attention_mask`` and
            ``labels`` or QA positions). Re-iterable if a selector needs two passes.
        objective: ``"mlr"`` (Eq. 8, for second-order unlearning), ``"mlf"`` (Eq. 17, for
            GA/GD/NPO/DPO, higher scores selected) or ``"mlf-argmax"`` (Eq. 17/18 as
            written: lowest selected). Used by ``mape`` / ``mape+wanda``; recorded for the others.
        selector: a name in ``SELECTORS`` (``mape``, ``mape+wanda``, ``sure``, ``random``,
            ``magnitude``).
        kind: task kind (``classification``, ``causal_lm``, ``extractive_qa``); inferred from
            the batches when None.
        max_factor: how many per-sample gradient rows of the Fisher set to keep for the
            layer-wise block Fisher (greedy refinement): the rows of the *first* ``max_factor``
            Fisher-set samples in batch order (not a random subsample), rescaled by
            √(n_fisher / rows) so that ``factorᵀ factor / n_fisher`` keeps the full set's scale.
            With more samples than rows it is an estimate; its bias depends on the batch order.
        seed: for ``random``.
        progress: tqdm bars.
    Returns:
        ``ModuleScores`` with ``.heads`` (L, H) and ``.filters`` (L, F).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    fn = SELECTORS.get(selector)
    sites = get_sites(model)
    t0 = time.perf_counter()
    scores = fn(model, forget, retain, sites=sites, objective=objective, kind=kind,
                max_factor=max_factor, seed=seed, progress=progress)
    scores.meta["seconds"] = time.perf_counter() - t0
    return scores


def _terms(d: dict[str, torch.Tensor]) -> ModuleTerms:
    return ModuleTerms(heads=d["heads"].float(), filters=d["filters"].float())


def _zeros(sites: ModelSites) -> ModuleTerms:
    return ModuleTerms(heads=torch.zeros(sites.shape("heads")), filters=torch.zeros(sites.shape("filters")))


@SELECTORS.register("mape", help="MAPE: mask gradient + ½ diagonal Fisher of the masks (ours)")
def _mape(model: nn.Module, forget: Batches, retain: Batches, *, sites: ModelSites, objective: str,
          kind: str | None, max_factor: int, progress: bool, **_: Any) -> ModuleScores:
    grad_set, fisher_set = (forget, retain) if objective == "mlr" else (retain, forget)
    names = ("forget", "retain") if objective == "mlr" else ("retain", "forget")
    g_stats = accumulate_mask_grads(model, grad_set, kind, max_factor=0, progress=progress,
                                    desc=f"g on {names[0]}", sites=sites).all_reduce_()
    f_stats = accumulate_mask_grads(model, fisher_set, kind, max_factor=max_factor,
                                    progress=progress, desc=f"Fisher on {names[1]}",
                                    sites=sites).all_reduce_()
    grad = _terms(g_stats.grad_sum)
    fisher = _terms({k: v / f_stats.count for k, v in f_stats.sq_sum.items()})
    factor = {}
    for k in MODULE_KINDS:
        rows = f_stats.factor_tensor(k)
        factor[k] = rows * math.sqrt(f_stats.count / max(rows.shape[0], 1))
    return ModuleScores(
        heads=grad.heads + 0.5 * fisher.heads,
        filters=grad.filters + 0.5 * fisher.filters,
        grad=grad, fisher=fisher, factor=ModuleTerms(**factor), n_fisher=f_stats.count,
        objective=objective, maximise=objective in ARGMAX_OBJECTIVES, selector="mape",
        family=sites.family,
        meta={"n_forget": g_stats.count if objective == "mlr" else f_stats.count,
              "n_retain": f_stats.count if objective == "mlr" else g_stats.count,
              "n_factor": int(factor["heads"].shape[0]),
              "loss_forget": (g_stats if objective == "mlr" else f_stats).loss_sum,
              "loss_retain": (f_stats if objective == "mlr" else g_stats).loss_sum},
    )


#: The selector that adds Wanda's entry selection inside the MAPE modules (mape_viz.wanda).
WANDA_SELECTOR = "mape+wanda"


@SELECTORS.register(WANDA_SELECTOR, help="MAPE modules, then inside them only the entries with "
                    "the largest Wanda score |W|·‖X‖ on the forget set (Appendix B.2)")
def _mape_wanda(model: nn.Module, forget: Batches, retain: Batches, **kw: Any) -> ModuleScores:
    # The module scores are MAPE's; the entry-level selection needs the module mask, so the
    # engine makes it after select_modules (mape_viz.wanda.restrict_to_wanda).
    scores = _mape(model, forget, retain, **kw)
    scores.selector = WANDA_SELECTOR
    return scores


@SELECTORS.register("sure", help="SURE: norm of the forget-set parameter gradient per module")
def _sure(model: nn.Module, forget: Batches, retain: Batches, *, sites: ModelSites, objective: str,
          kind: str | None, progress: bool, **_: Any) -> ModuleScores:
    names = {n for n, _, _ in _all_slices(sites)}
    params = {n: p for n, p in model.named_parameters() if n in names}
    grads = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    count = 0
    with frozen(model):
        for p in params.values():
            p.requires_grad_(True)
        for batch in forget:
            with torch.enable_grad():
                losses = per_sample_loss(model, batch, kind)
                gs = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
            for n, g in zip(params, gs):
                if g is not None:
                    grads[n] += g.float()
            count += losses.shape[0]
    if count == 0:
        raise ValueError("no samples in the forget set: it is empty")
    sq = per_module_sq_norm(sites, grads)
    return _plain_scores(sites, {k: v.sqrt() for k, v in sq.items()}, "sure", objective,
                         {"n_forget": count})


@SELECTORS.register("magnitude", help="weight norm of each module's parameter slices")
def _magnitude(model: nn.Module, forget: Batches, retain: Batches, *, sites: ModelSites,
               objective: str, **_: Any) -> ModuleScores:
    sq = per_module_sq_norm(sites, dict(model.named_parameters()))
    return _plain_scores(sites, {k: v.sqrt() for k, v in sq.items()}, "magnitude", objective, {})


@SELECTORS.register("random", help="uniform random scores (seeded)")
def _random(model: nn.Module, forget: Batches, retain: Batches, *, sites: ModelSites,
            objective: str, seed: int, **_: Any) -> ModuleScores:
    gen = torch.Generator().manual_seed(seed)
    vals = {k: torch.rand(sites.shape(k), generator=gen, dtype=torch.float64) for k in MODULE_KINDS}
    return _plain_scores(sites, vals, "random", objective, {"seed": seed})


def _plain_scores(sites: ModelSites, vals: dict[str, torch.Tensor], selector: str,
                  objective: str, meta: dict[str, Any]) -> ModuleScores:
    return ModuleScores(heads=vals["heads"].float(), filters=vals["filters"].float(),
                        grad=_zeros(sites), fisher=_zeros(sites), factor=None, n_fisher=0,
                        objective=objective, selector=selector, family=sites.family, meta=meta)


def _all_slices(sites: ModelSites):
    for kind in MODULE_KINDS:
        for layer in range(sites.n_layers):
            yield from sites.module_slices(kind, layer, 0)
