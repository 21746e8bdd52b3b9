"""Head and filter masks installed as forward pre-hooks (docs/design.md §1).

transformers 5 dropped ``head_mask`` (and silently ignores it), so masks scale the input of
the attention output projection (viewed as (B, T, H, d_head)) and of the FFN down projection
((B, T, F)). Hooks live only inside the ``with`` block (:func:`mape_viz.hooks.temporary_hooks`
removes every one of them, even when the forward pass raises).

:func:`gradient_taps` is the scoring pass's variant (docs/design.md §2): at the all-ones mask
the scaling is the identity, so its hooks leave activations untouched in the forward pass and
only add, in the backward pass, the per-sample mask gradient Σ_{t,w} ∂ℓ/∂x · x of each unit,
accumulated in float32 whatever the activation dtype (bf16/fp16 under autocast).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .hooks import temporary_hooks
from .sitemaps import ModelSites, get_sites


class MaskHooks:
    """The live masks of one ``apply_masks`` block; ``set()`` swaps them between batches.

    ``heads``: (L, H) or (B, L, H); ``filters``: (L, F) or (B, L, F); ``None`` = no mask.
    """

    def __init__(self, sites: ModelSites) -> None:
        self.sites = sites
        self.heads: torch.Tensor | None = None
        self.filters: torch.Tensor | None = None

    def set(self, heads: torch.Tensor | None = None, filters: torch.Tensor | None = None) -> None:
        self.heads = _check_mask(heads, self.sites.shape("heads"), "heads")
        self.filters = _check_mask(filters, self.sites.shape("filters"), "filters")


def _check_mask(mask: torch.Tensor | None, shape: tuple[int, int], kind: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{kind} mask must be a torch.Tensor of shape {shape} or (B, *{shape}), "
                        f"got {type(mask).__name__}")
    if tuple(mask.shape[-2:]) != shape or mask.dim() not in (2, 3):
        raise ValueError(f"{kind} mask has shape {tuple(mask.shape)}; accepted: {shape} "
                         f"or (B, {shape[0]}, {shape[1]})")
    return mask


def _scale(x: torch.Tensor, m: torch.Tensor, n_units: int) -> torch.Tensor:
    """Multiply the last axis of ``x`` (B, T, n_units*w), unit by unit, by ``m`` ((n,) or (B, n))."""
    if m.dim() == 2 and m.shape[0] != x.shape[0]:
        raise ValueError(f"batched mask has B={m.shape[0]} but the batch has B={x.shape[0]}")
    width = x.shape[-1] // n_units
    lead = (m.shape[0],) if m.dim() == 2 else (1,)
    scale = m.to(x.dtype).reshape(*lead, *([1] * (x.dim() - 2)), n_units, 1)
    return (x.unflatten(-1, (n_units, width)) * scale).flatten(-2)


@contextmanager
def apply_masks(model: nn.Module, heads: torch.Tensor | None = None,
                filters: torch.Tensor | None = None,
                sites: ModelSites | None = None) -> Iterator[MaskHooks]:
    """Install head/filter masks on ``model`` for the duration of the block.

    Args:
        model: a model whose family has a site map.
        heads: (L, H) or (B, L, H) multipliers of each head's context vector, or None.
        filters: (L, F) or (B, L, F) multipliers of each FFN intermediate activation, or None.
        sites: a precomputed ``get_sites(model)`` (optional).
    Yields:
        the ``MaskHooks``; call ``.set(heads=..., filters=...)`` to change masks in place.
    """
    sites = sites or get_sites(model)
    hooks = MaskHooks(sites)
    hooks.set(heads, filters)

    def make(layer: int, kind: str, n_units: int):
        def pre_hook(module: nn.Module, args: tuple):
            mask = hooks.heads if kind == "heads" else hooks.filters
            if mask is None:
                return None
            return (_scale(args[0], mask[..., layer, :], n_units),) + tuple(args[1:])
        return pre_hook

    with temporary_hooks() as installed:
        for layer in range(sites.n_layers):
            installed.forward_pre(sites.attn_out(layer), make(layer, "heads", sites.n_heads))
            installed.forward_pre(sites.ffn_out(layer), make(layer, "filters", sites.n_filters))
        yield hooks


class _Tap(torch.autograd.Function):
    """``y = x`` (the all-ones mask); backward: ∂ℓ/∂x passes through unchanged and the mask
    row ``m`` (B, n) gets Σ over tokens and unit width of ∂ℓ/∂x · x, computed in at least
    float32. ``m``'s value is never read: it stands for ones."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, m: torch.Tensor, n_units: int) -> torch.Tensor:
        if m.shape[0] != x.shape[0]:
            raise ValueError(f"batched mask has B={m.shape[0]} but the batch has B={x.shape[0]}")
        ctx.save_for_backward(x)
        ctx.n_units = n_units
        ctx.m_dtype = m.dtype
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        grad_m = None
        if ctx.needs_input_grad[1]:
            acc = torch.promote_types(x.dtype, torch.float32)
            n = ctx.n_units
            prod = grad.unflatten(-1, (n, -1)).to(acc) * x.unflatten(-1, (n, -1)).to(acc)
            dims = tuple(range(1, prod.dim() - 2)) + (prod.dim() - 1,)
            grad_m = prod.sum(dim=dims).to(ctx.m_dtype)  # (B, n)
        return (grad if ctx.needs_input_grad[0] else None), grad_m, None


@contextmanager
def gradient_taps(model: nn.Module, heads: torch.Tensor, filters: torch.Tensor,
                  sites: ModelSites | None = None) -> Iterator[None]:
    """Per-sample mask-gradient taps at the all-ones mask, for the scoring pass.

    Equivalent to ``apply_masks(model, heads, filters)`` with all-ones ``heads`` (B, L, H)
    and ``filters`` (B, L, F) that require grad — ``autograd.grad(loss, (heads, filters))``
    gives the same per-sample gradients — but the forward pass is left bit-identical and
    untouched (no multiplication), and each unit's gradient is reduced in float32 (float64
    for a float64 model) even when activations are bf16/fp16. The *values* of ``heads`` and
    ``filters`` are never read; only their shapes, dtypes and autograd identity matter.
    """
    sites = sites or get_sites(model)
    for kind, m in (("heads", heads), ("filters", filters)):
        if _check_mask(m, sites.shape(kind), kind) is None or m.dim() != 3:
            raise ValueError(f"gradient taps need a batched {kind} mask (B, {sites.shape(kind)[0]}, "
                             f"{sites.shape(kind)[1]}), got "
                             f"{None if m is None else tuple(m.shape)}")

    def make(m: torch.Tensor, layer: int, n_units: int):
        def pre_hook(module: nn.Module, args: tuple):
            return (_Tap.apply(args[0], m[:, layer], n_units),) + tuple(args[1:])
        return pre_hook

    with temporary_hooks() as installed:
        for layer in range(sites.n_layers):
            installed.forward_pre(sites.attn_out(layer), make(heads, layer, sites.n_heads))
            installed.forward_pre(sites.ffn_out(layer), make(filters, layer, sites.n_filters))
        yield
