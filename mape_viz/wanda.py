"""Wanda inside the selected modules: the paper's "MAPE-SO(90%)" (Appendix B.2, docs/design.md §4).

A module mask selects heads and filters; each owns slices of a few projection matrices
(:meth:`mape_viz.sitemaps.ModelSites.module_slices`). Inside every selected slice this module
keeps only the entries with the largest Wanda score (Sun et al. 2024, "A Simple and Effective
Pruning Approach for LLMs"),

    S_ij = |W_ij| · ‖X_j‖₂

where ``X_j`` is the input feature that ``W_ij`` multiplies, over every non-padding token of
the forget set (collected with forward pre-hooks, :func:`input_norms`). A bias entry multiplies
the constant input 1, whose norm is the same for every entry of a slice, so its score is |b|.

Comparison group: one selected unit's slice of one parameter (a head's rows of ``q_proj``, a
filter's column of ``down_proj``, a K/V group's rows shared by GQA heads, each of GPT-2's Q, K
and V blocks of ``c_attn``). Each group keeps its ``⌈(1 − s)·n⌉`` highest-scoring entries at
the second sparsity ``s`` (:data:`WANDA_SPARSITY` = 0.9, the paper's); ties go to the lower
flat index. The result is ``ModuleMask.entries`` (slab-shaped bool tensors), which
:class:`~mape_viz.unlearning.sparse.SparseParams` trains — the other entries of the slice stay
bit-identical.

Wanda itself compares the entries of one output row; our groups are the module slices the
issue and the paper name ("within the selected heads and filters"). For an output-side slice
(rows of a ``Linear``) each group holds whole rows, so the two differ only in that we rank
across a head's rows instead of within each row.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .hooks import temporary_hooks
from .losses import model_inputs
from .selection import n_to_select
from .sitemaps import ModelSites, get_sites
from .types import MODULE_KINDS, ModuleMask
from .unlearning.sparse import SliceSpec, slice_specs

#: The paper's second sparsity: 90 % of each selected slice's entries stay frozen.
WANDA_SPARSITY = 0.9


def input_norms(model: nn.Module, batches: Iterable[Mapping[str, Any]], modules: Iterable[nn.Module],
                progress: bool = False) -> dict[nn.Module, torch.Tensor]:
    """‖X_j‖₂ of every input feature j of each module, over every non-padding token of ``batches``.

    Args:
        model: the model to run (eval mode is not changed; gradients are off).
        batches: dicts with ``input_ids`` (B, T) and ``attention_mask`` (B, T) (other keys are
            ignored); padding tokens (mask 0) are left out.
        modules: ``nn.Linear`` / GPT-2 ``Conv1D`` layers whose input (…, in) is measured.
        progress: tqdm bar over the batches.

    Returns:
        ``{module: (in,) float64 norms}`` on CPU.
    """
    modules = list(dict.fromkeys(modules))
    sums: dict[nn.Module, torch.Tensor] = {}
    state: dict[str, torch.Tensor | None] = {"keep": None}

    def make(module: nn.Module):
        def pre_hook(mod: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            keep = state["keep"]
            x = x.reshape(-1, x.shape[-1])
            if keep is not None and keep.numel() == x.shape[0]:
                x = x[keep.reshape(-1).to(x.device)]
            sq = x.to(torch.float64).pow(2).sum(0).cpu()
            sums[module] = sums[module] + sq if module in sums else sq
        return pre_hook

    device = next(model.parameters()).device
    n = 0
    with torch.no_grad(), temporary_hooks() as hooks:
        for m in modules:
            hooks.forward_pre(m, make(m))
        for batch in tqdm(batches, desc="Wanda input norms", disable=not progress, leave=False):
            inputs = model_inputs(batch, device)
            mask = inputs.get("attention_mask")
            state["keep"] = mask.bool() if mask is not None else None
            model(**inputs)
            n += 1
    if n == 0:
        raise ValueError("no batches to collect Wanda input norms from: the forget set is empty")
    missing = [m for m in modules if m not in sums]
    if missing:
        raise ValueError(f"{len(missing)} module(s) were never called by the forward pass, e.g. "
                         f"{type(missing[0]).__name__}; cannot measure their inputs")
    return {m: s.sqrt() for m, s in sums.items()}


def slab_scores(spec: SliceSpec, norms: torch.Tensor | None) -> torch.Tensor:
    """Wanda scores |W|·‖X‖ of one parameter's selected slab (shape of
    ``param.index_select(spec.dim, spec.index)``), float64 on CPU.

    ``norms``: (in,) input norms of ``spec.module``; unused (may be None) for a bias, whose
    score is |b|.
    """
    slab = spec.param.detach().index_select(spec.dim, spec.index).to("cpu", torch.float64).abs()
    if spec.attr == "bias":
        return slab
    if norms is None:
        raise ValueError(f"{spec.name}: Wanda needs the input norms of its module")
    x = norms.to(torch.float64)
    if spec.role == "in":  # the slab's input features are the selected ones
        x = x[spec.index.cpu()]
    # Linear (out, in): inputs along dim 1; Conv1D (in, out): along dim 0
    return slab * (x[:, None] if spec.transposed else x[None, :])


def unit_ranges(mask: ModuleMask, sites: ModelSites) -> dict[str, list[range]]:
    """``{parameter name: [index range of each selected unit's slice]}`` (each range once, in
    first-seen order: a K/V group shared by several selected GQA heads is one range)."""
    out: dict[str, list[range]] = {}
    # module_slices gives Python slices; ranges compare by value and have a length
    for kind in MODULE_KINDS:
        m = mask[kind].bool()
        for layer in range(sites.n_layers):
            for unit in torch.nonzero(m[layer]).flatten().tolist():
                for name, _, sl in sites.module_slices(kind, layer, unit):
                    rng = range(sl.start, sl.stop)
                    ranges = out.setdefault(name, [])
                    if rng not in ranges:
                        ranges.append(rng)
    return out


def _top_entries(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool like ``scores``: its ``⌈(1−s)·n⌉`` largest entries (ties: lower flat index)."""
    flat = scores.reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices[: n_to_select(flat.numel(), sparsity)]
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[order] = True
    return keep.view(scores.shape)


def wanda_entries(model: nn.Module, mask: ModuleMask, forget: Iterable[Mapping[str, Any]],
                  sparsity: float = WANDA_SPARSITY, progress: bool = False
                  ) -> dict[str, torch.Tensor]:
    """The entries to train inside ``mask``'s modules: per unit slice, the top ``1 − sparsity``
    by Wanda score, with input norms over ``forget``.

    Returns:
        ``{parameter name: bool slab}`` for every parameter with a selected slice (the format
        of ``ModuleMask.entries``), on the parameter's device.
    """
    n_to_select(1, sparsity)  # validates sparsity (a number in [0, 1)) before any work
    sites = get_sites(model)
    specs = slice_specs(model, mask, sites)
    norms = input_norms(model, forget, [s.module for s in specs if s.attr == "weight"], progress)
    ranges = unit_ranges(mask, sites)
    out = {}
    for spec in specs:
        scores = slab_scores(spec, norms.get(spec.module))
        keep = torch.zeros(scores.shape, dtype=torch.bool)
        index = spec.index.cpu()
        for rng in ranges[spec.name]:
            start = int(torch.searchsorted(index, rng.start))
            block = scores.narrow(spec.dim, start, len(rng))
            keep.narrow(spec.dim, start, len(rng)).copy_(_top_entries(block, sparsity))
        out[spec.name] = keep.to(spec.index.device)
    return out


def restrict_to_wanda(model: nn.Module, mask: ModuleMask, forget: Iterable[Mapping[str, Any]],
                      sparsity: float = WANDA_SPARSITY, progress: bool = False) -> ModuleMask:
    """A copy of ``mask`` whose ``entries`` keep, inside each selected slice, only the top
    ``1 − sparsity`` entries by Wanda score on ``forget`` (see the module docstring);
    ``meta["wanda_sparsity"]`` and ``meta["n_entries"]`` (trained entries) record it."""
    entries = wanda_entries(model, mask, forget, sparsity, progress)
    meta = {**mask.meta, "wanda_sparsity": float(sparsity),
            "n_entries": int(sum(int(e.sum()) for e in entries.values()))}
    return dataclasses.replace(mask, entries=entries, meta=meta)
