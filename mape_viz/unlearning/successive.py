"""Successive unlearning: removal requests that arrive one after another (paper §4.2,
App. A.2; docs/design.md §5).

Two scenarios:

(a) :func:`successive` — each request is unlearned from the *current* model with any method
    and selector (the mask is recomputed per request). Errors of each approximate update
    accumulate; the paper's Fig. 3 / Table 1 track metrics after each request.

(b) :func:`successive_so` — Eq. 12: every update starts again from θ*. Running sums are kept
    instead of the data: ``G = Σ_{x ∈ D_f^t} ∇ℓ(θ*; x)`` over everything removed so far and
    ``S = Σ_{x ∈ D_r^t} ∇ℓ(θ*; x)²`` over what is still retained (start: all of D, then minus
    each request), with ``n = |D_r^t|``; the model after request t is

        θ^t = θ* + η · m^t ∘ [ G / (S / n + λ) ].

    The mask is precomputed once by Eq. 13 (score = diagonal Fisher of the masks on D, no
    gradient term) and, per request, refined by the Eq. 9 greedy swap with
    ``g = Σ_{x ∈ D_f^t} ∇_m ℓ(x)`` (the removed data, which Eq. 13 ignores) and D's block
    Fisher. Requests are assumed to be samples of D (as in Eq. 12: x^t ∈ D_r^{t−1}).

    D's Fisher can be estimated on a seeded random sample of ``m`` rows of D
    (``UnlearnConfig.fisher_max_samples``, as SO's retain Fisher in :func:`unlearn`; 0 = all of
    D, the paper's Eq. 12): the start is ``S = (|D| / m) · Σ_{x ∈ sample} ∇ℓ(θ*; x)²`` with
    ``n = |D|``, each request's exact Σ∇ℓ² is subtracted as before, and entries are clamped at
    0 (an estimate minus exact sums can dip below zero; a Fisher cannot). Eq. 13's mask Fisher
    and the block Fisher of Eq. 9 are means over the same sample. Before any removal
    ``S / n`` is exactly the mean Fisher of the sampled rows.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..gradients import accumulate_mask_grads
from ..losses import infer_kind
from ..selection import select_modules
from ..sitemaps import get_sites
from ..types import ModuleMask, ModuleScores, ModuleTerms
from .config import UnlearnConfig, as_config
from .engine import FULL, device_of, unlearn
from .methods import METHODS
from .result import UnlearnResult
from .run_data import is_dataset, is_task, materialise
from .second_order import fisher_sum, grad_sum, so_update
from .sparse import SparseParams, slice_specs

Batch = Mapping[str, Any]
#: ``metrics(model, t) -> dict``; t = 0 is the model before any request.
Metrics = Callable[[nn.Module, int], Mapping[str, Any]]


@dataclass
class SuccessiveResult:
    """Outcome of a sequence of requests.

    Attributes:
        model: the model after the last request.
        steps: one dict per request: ``request`` (1-based), sample counts, seconds, selected
            module counts and the ``metrics`` measured after it. ``steps[0]`` is request 1.
        initial_metrics: metrics of the model before any request (empty without ``metrics``).
        masks: the mask used for each request (None for full runs).
        results: scenario (a): each request's :class:`UnlearnResult` (models dropped except
            the last, unless ``keep_models``); scenario (b): empty.
        fisher_rows: scenario (b): positions in D (in ``data`` order) of the rows D's Fisher
            was estimated on, or None when it used all of D.
    """

    model: nn.Module
    steps: list[dict] = field(default_factory=list)
    initial_metrics: dict = field(default_factory=dict)
    masks: list[ModuleMask | None] = field(default_factory=list)
    results: list[UnlearnResult] = field(default_factory=list)
    fisher_rows: list[int] | None = None

    def metric(self, name: str) -> list[Any]:
        """One metric across requests, starting with the initial model's value."""
        return [self.initial_metrics.get(name)] + [s.get(name) for s in self.steps]


def successive(task_or_model: Any, requests: Sequence[Any], method: str,
               selector: str = "mape", sparsity: float = 0.9,
               config: UnlearnConfig | Mapping[str, Any] | None = None, *,
               retain: Any = None, kind: str | None = None, metrics: Metrics | None = None,
               keep_models: bool = False, progress: bool = False,
               device: str | torch.device | None = None, seed: int = 0) -> SuccessiveResult:
    """Scenario (a): unlearn ``requests`` one after another, each from the current model.

    Args:
        task_or_model: a Task (requests are ``Dataset`` s of its rows, or batches) or a model
            (requests are lists of batches; pass ``retain`` batches).
        requests: the forget set of each request, in order.
        method, selector, sparsity, config: as for :func:`unlearn` (the mask is re-scored
            on the current model for each request).
        retain: the retain set (default: the task's).
        metrics: ``metrics(model, t)``, called before the first request (t = 0) and after each.
        keep_models: keep every intermediate model in ``results`` (memory!).
    """
    if not requests:
        raise ValueError("no requests given")
    task = task_or_model if is_task(task_or_model) else None
    # The method's presets, as unlearn() would lay them for one request (docs/design.md §5).
    cfg = as_config(config, task, method=method, selector=selector,
                    masked=selector != FULL and METHODS.get(method).maskable)
    current = task.model if task is not None else task_or_model
    out = SuccessiveResult(model=current)
    if metrics is not None:
        out.initial_metrics = dict(metrics(current, 0))
    for t, req in enumerate(requests, start=1):
        target = task.replace(model=current) if task is not None else current
        res = unlearn(target, method, selector, sparsity, cfg, forget=req, retain=retain,
                      kind=kind, progress=progress, device=device, seed=seed + t - 1)
        current = res.model
        step = {"request": t, "seconds": res.seconds, "ok": res.ok,
                "n_changed_params": res.n_changed_params,
                "n_selected": res.mask.n_selected() if res.mask is not None else None}
        if metrics is not None:
            step.update(metrics(current, t))
        out.steps.append(step)
        out.masks.append(res.mask)
        out.results.append(res)
        if not keep_models and len(out.results) > 1:
            out.results[-2].model = None  # type: ignore[assignment]
        if not res.ok:
            break
    out.model = current
    return out


# ---------------------------------------------------------------------------------------------
# Scenario (b): Eq. 12 / 13


def eq13_scores(stats_fisher: Mapping[str, torch.Tensor], count: int,
                factor: Mapping[str, torch.Tensor], g_forget: Mapping[str, torch.Tensor],
                family: str = "") -> ModuleScores:
    """Scores whose warm start is Eq. 13 (½ · diagonal mask Fisher on D, no gradient term) and
    whose greedy refinement (Eq. 9) prices swaps with the removed data's gradient ``g_forget``
    and D's block Fisher ``factor``."""
    fisher = ModuleTerms(heads=(stats_fisher["heads"] / count).float(),
                         filters=(stats_fisher["filters"] / count).float())
    grad = ModuleTerms(heads=g_forget["heads"].float(), filters=g_forget["filters"].float())
    return ModuleScores(heads=0.5 * fisher.heads, filters=0.5 * fisher.filters, grad=grad,
                        fisher=fisher, factor=ModuleTerms(heads=factor["heads"],
                                                          filters=factor["filters"]),
                        n_fisher=count, objective="mlr", selector="mape-eq13", family=family)


def _batches_of(task: Any, x: Any, batch_size: int) -> list[Batch]:
    if task is not None and is_dataset(x):
        return list(task.batches(x, batch_size, shuffle=False))
    return materialise(x, "request")


def fisher_sample_rows(n_rows: int, max_samples: int, seed: int = 0) -> list[int] | None:
    """Sorted positions of the rows D's Fisher is estimated on: ``max_samples`` of ``n_rows``
    drawn with ``random.Random(seed)`` (as ``unlearn``'s retain subset), or None (all rows)
    when ``max_samples`` is 0 or not smaller than ``n_rows``."""
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    if not max_samples or n_rows <= max_samples:
        return None
    return sorted(random.Random(seed).sample(range(n_rows), max_samples))


def _batch_size(b: Batch) -> int:
    return int(torch.as_tensor(b["input_ids"]).shape[0])


def take_rows(batches: Sequence[Batch], rows: Sequence[int]) -> list[Batch]:
    """The rows at positions ``rows`` (sorted, counted across ``batches`` in order), keeping
    each batch's collation (padding) so each row's loss is unchanged."""
    out, start, it = [], 0, 0
    rows = list(rows)
    for b in batches:
        size = _batch_size(b)
        local = []
        while it < len(rows) and rows[it] < start + size:
            local.append(rows[it] - start)
            it += 1
        if local:
            idx = torch.tensor(local)
            out.append({k: (v.index_select(0, idx.to(v.device)) if isinstance(v, torch.Tensor)
                            and v.dim() > 0 and v.shape[0] == size else v) for k, v in b.items()})
        start += size
    if it != len(rows):
        raise ValueError(f"row {rows[it]} is beyond D's {start} rows")
    return out


def successive_so(task_or_model: Any, requests: Sequence[Any],
                  config: UnlearnConfig | Mapping[str, Any] | None = None, *,
                  data: Any = None, selector: str = "mape", sparsity: float = 0.9,
                  kind: str | None = None, metrics: Metrics | None = None,
                  max_factor: int = 512, progress: bool = False,
                  device: str | torch.device | None = None, seed: int = 0) -> SuccessiveResult:
    """Scenario (b), Eq. 12: each request updates θ* with the kept sums; Eq. 13 masks refined
    by Eq. 9 per request.

    Args:
        task_or_model: a Task (D = its forget ∪ retain rows) or a model (pass ``data``).
        requests: the samples removed by each request (``Dataset`` s of task rows, or batches);
            they must be samples of D.
        data: all of D as batches (or a Dataset, with a task); default: the task's forget and
            retain sets together.
        selector: ``mape`` (Eq. 13 + Eq. 9 masks) or ``full`` (no mask: Eq. 12 over every
            parameter).
        sparsity: fraction of modules frozen.
        metrics: ``metrics(model, t)`` at t = 0 (θ*) and after each request.
        max_factor: per-sample mask-gradient rows of D kept for the block Fisher.
        config: ``fisher_max_samples`` > 0 estimates D's Fisher (Eq. 12's running sum, Eq. 13's
            mask Fisher, Eq. 9's block Fisher) on that many rows of D drawn with ``seed``
            (:func:`fisher_sample_rows`; module docstring); 0 = all of D.
    Returns:
        :class:`SuccessiveResult`; ``steps[t-1]`` has ``n_removed``, ``n_retain``, the mask
        size, the number of swaps and seconds; ``fisher_rows`` the sampled positions of D.
    """
    if not requests:
        raise ValueError("no requests given")
    if selector not in ("mape", "full"):
        raise ValueError(f"successive_so supports selector 'mape' (Eq. 13 + Eq. 9) or 'full', "
                         f"got {selector!r}")
    task = task_or_model if is_task(task_or_model) else None
    cfg = as_config(config, task, method="so", selector=selector, masked=selector != FULL)
    theta_star = task.model if task is not None else task_or_model
    if not isinstance(theta_star, nn.Module):
        raise TypeError("successive_so takes a Task or a model")
    bs = cfg.score_batch_size
    if data is None:
        if task is None:
            raise ValueError("with a model, pass data= (all of D, as batches)")
        d_batches = _batches_of(task, task.forget, bs) + _batches_of(task, task.retain, bs)
    else:
        d_batches = _batches_of(task, data, bs)
    req_batches = [_batches_of(task, r, bs) for r in requests]
    kind = kind or (task.kind if task is not None else infer_kind(d_batches[0]))
    dev = torch.device(device) if device is not None else device_of(theta_star)
    base = copy.deepcopy(theta_star).to(dev).eval()
    masked = selector == "mape"

    sites = get_sites(base)
    candidates = ModuleMask(heads=torch.ones(sites.shape("heads"), dtype=torch.bool),
                            filters=torch.ones(sites.shape("filters"), dtype=torch.bool)) \
        if masked else None
    sparse = SparseParams(base, candidates, include_head=cfg.include_head)
    eta = cfg.eta_for(masked)

    t0 = time.perf_counter()
    n_d = sum(_batch_size(b) for b in d_batches)
    sampled = fisher_sample_rows(n_d, cfg.fisher_max_samples, seed)
    f_batches = d_batches if sampled is None else take_rows(d_batches, sampled)
    S, n_sample = fisher_sum(base, sparse, f_batches, kind, cfg.fisher_batch_size,
                             progress=progress, desc="Fisher on D", engine=cfg.fisher_engine)
    n_retain = n_d
    if sampled is not None:  # (|D| / m) · Σ_sample: an estimate of Σ_D with n = |D|
        S = [s * (n_d / n_sample) for s in S]
    G = [torch.zeros_like(s) for s in S]
    if masked:
        d_stats = accumulate_mask_grads(base, f_batches, kind, max_factor=max_factor,
                                        progress=progress, desc="mask Fisher on D", sites=sites)
        factor = {}
        for k in ("heads", "filters"):
            rows = d_stats.factor_tensor(k)
            factor[k] = rows * math.sqrt(d_stats.count / max(rows.shape[0], 1))
        g_mask = {k: torch.zeros(sites.shape(k), dtype=torch.float64) for k in ("heads", "filters")}
    pre_seconds = time.perf_counter() - t0

    out = SuccessiveResult(model=theta_star, fisher_rows=sampled)
    if metrics is not None:
        out.initial_metrics = dict(metrics(theta_star, 0))
    n_removed = 0
    for t, req in enumerate(req_batches, start=1):
        t1 = time.perf_counter()
        g_t, n_t = grad_sum(base, sparse, req, kind, progress)
        s_t, _ = fisher_sum(base, sparse, req, kind, cfg.fisher_batch_size, progress=progress,
                            desc=f"Fisher of request {t}", engine=cfg.fisher_engine)
        for a, b in zip(G, g_t):
            a += b
        for a, b in zip(S, s_t):
            a -= b
            if sampled is not None:
                a.clamp_(min=0)
        n_retain -= n_t
        n_removed += n_t
        if n_retain <= 0:
            raise ValueError(f"request {t} removes the last retained samples of D")
        mask_t = None
        if masked:
            st = accumulate_mask_grads(base, req, kind, max_factor=0, sites=sites)
            for k in g_mask:
                g_mask[k] += st.grad_sum[k]
            scores = eq13_scores(d_stats.sq_sum, d_stats.count, factor, g_mask, sites.family)
            refine = cfg.refine if cfg.refine not in (None, "none") else None
            mask_t = select_modules(scores, sparsity=sparsity, granularity=cfg.granularity,
                                    refine=refine, seed=seed)
        upd = so_update(G, S, n_retain, eta, cfg.damping)
        model_t = _apply_from_star(theta_star, sparse, upd, mask_t, dev)
        step = {"request": t, "n_removed": n_removed, "n_retain": n_retain,
                "seconds": time.perf_counter() - t1,
                "n_selected": mask_t.n_selected() if mask_t is not None else None,
                "n_swaps": len(mask_t.swaps) if mask_t is not None else 0,
                "finite": all(bool(torch.isfinite(u).all()) for u in upd)}
        if t == 1:
            step["precompute_seconds"] = pre_seconds
        if metrics is not None:
            step.update(metrics(model_t, t))
        out.steps.append(step)
        out.masks.append(mask_t)
        out.model = model_t
    sparse.detach_()
    return out


@torch.no_grad()
def _apply_from_star(theta_star: nn.Module, sparse: SparseParams, updates: list[torch.Tensor],
                     mask: ModuleMask | None, dev: torch.device) -> nn.Module:
    """A copy of θ* with ``updates`` (over all candidate slices) added on ``mask``'s slices only.

    Only the selected slices are written (``index_copy_``), so everything else stays
    bit-identical to θ*.
    """
    model = copy.deepcopy(theta_star).to(dev).eval()
    params = dict(model.named_parameters())
    n_specs = len(sparse.specs)
    if mask is not None:
        chosen = {s.name: s for s in slice_specs(model, mask)}
        for spec, u in zip(sparse.specs, updates[:n_specs]):
            sel = chosen.get(spec.name)
            if sel is None:
                continue
            p = params[spec.name]
            # candidate slices are all units, in order: position == index along dim
            pos = torch.searchsorted(spec.index, sel.index.to(spec.index.device))
            slab = p.index_select(spec.dim, sel.index) + u.index_select(spec.dim, pos).to(p.dtype)
            p.index_copy_(spec.dim, sel.index, slab)
    for name, u in zip(sparse.whole, updates[n_specs:]):
        params[name].add_(u.to(params[name].dtype))
    return model
