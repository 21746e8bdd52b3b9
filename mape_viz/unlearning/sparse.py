"""Sparse parametrisation: train only the slices of selected modules (docs/design.md §5).

A module mask selects heads and filters; each owns whole rows or columns of a few projection
matrices (``sitemaps.ModelSites.module_slices``). :class:`SparseParams` keeps those slices as
small trainable tensors ``values[i]`` — shape = the parameter's shape with the unit dimension
cut down to the selected indices — and lets gradients reach them through *delta hooks*:

    y = module(x) + linear_part(x; v − v₀)            (v₀ = v's current value, so the term is 0)

The added term is exactly zero in value (the forward pass stays bit-identical to the plain
model), but its gradient with respect to ``v`` is the gradient of the selected rows/columns.
Because the extra matmul only involves the selected rows/columns, backward time and memory of
the weight gradients scale with the selection, and the optimizer (AdamW moments) only ever
sees ``values`` — so its state scales with the selection too. After every optimizer step
:meth:`SparseParams.sync_` writes ``values`` into the model with ``index_copy_``: entries
outside the selection are never written, so they stay **bit-identical** whatever the
optimizer does (weight decay, momentum), which masking gradients alone would not guarantee.

Parameters that are trained whole (the classifier head with ``include_head=True``; every
parameter for an unmasked run) are the model's own ``nn.Parameter`` with ``requires_grad``.

Entry masks (selector ``mape+wanda``, :mod:`mape_viz.wanda`): when ``mask.entries`` names a
parameter, only the True entries of its slab are trained. Their gradient is masked by a hook on
``values[i]`` (so gradient clipping and the AdamW moments see only them), and :meth:`sync_`
writes ``where(entry, value, current)`` — the other entries of the slab are rewritten with
their own bits and reset in ``values`` too, so AdamW's decoupled weight decay cannot move them
either.

Layouts handled (x: (..., in), y: (..., out)):

=============================  =====================  ==========================================
parameter                      unit dim               delta term
=============================  =====================  ==========================================
``nn.Linear.weight`` (out,in)  0 (out rows r)         ``y[..., r] += x @ Δᵀ``,  Δ: (k, in)
``nn.Linear.weight`` (out,in)  1 (in cols c)          ``y += x[..., c] @ Δᵀ``,  Δ: (out, k)
``Conv1D.weight`` (in,out)     1 (out cols c)         ``y[..., c] += x @ Δ``,    Δ: (in, k)
``Conv1D.weight`` (in,out)     0 (in rows r)          ``y += x[..., r] @ Δ``,    Δ: (k, out)
bias (out,)                    0                      ``y[..., r] += Δ``
=============================  =====================  ==========================================
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import temporary_hooks
from ..sitemaps import ModelSites, get_sites
from ..types import ModuleMask

try:  # GPT-2's transposed linear layer
    from transformers.pytorch_utils import Conv1D
except Exception:  # pragma: no cover - transformers always has it
    Conv1D = ()  # type: ignore[assignment]


@dataclass
class SliceSpec:
    """The selected units of one parameter.

    Attributes:
        name: full parameter name (as in ``model.named_parameters()``).
        module: the ``nn.Linear`` / ``Conv1D`` that owns it.
        attr: ``"weight"`` or ``"bias"``.
        dim: tensor dimension indexing units (rows = 0, columns = 1).
        index: (k,) long, sorted selected indices along ``dim`` (on the parameter's device).
        role: ``"out"`` (the index selects output features) or ``"in"`` (input features).
        transposed: the module stores its weight as (in, out) (GPT-2 ``Conv1D``).
    """

    name: str
    module: nn.Module
    attr: str
    dim: int
    index: torch.Tensor
    role: str
    transposed: bool

    @property
    def param(self) -> torch.Tensor:
        return getattr(self.module, self.attr)


def head_param_names(model: nn.Module) -> list[str]:
    """The task head: parameters outside the base model (``classifier.*``, ``lm_head.*``,
    ``qa_outputs.*``) plus the base model's ``pooler`` (BERT's pooler only feeds the
    classifier; RoBERTa keeps the same layer as ``classifier.dense``).

    A head tied to the input embeddings (GPT-2, tied Llama) is left out: training it would
    train the embeddings.
    """
    base = getattr(model, "base_model", model)
    if base is model:
        return []
    base_ids = {id(p) for p in base.parameters()}
    pooler = getattr(base, "pooler", None)
    pooler_ids = {id(p) for p in pooler.parameters()} if isinstance(pooler, nn.Module) else set()
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    emb_ids = {id(p) for p in emb.parameters()} if isinstance(emb, nn.Module) else set()
    return [n for n, p in model.named_parameters()
            if (id(p) not in base_ids or id(p) in pooler_ids) and id(p) not in emb_ids]


def _role(module: nn.Module, attr: str, dim: int, name: str) -> tuple[str, bool]:
    if isinstance(module, nn.Linear):
        transposed = False
    elif Conv1D and isinstance(module, Conv1D):
        transposed = True
    else:
        raise NotImplementedError(
            f"{name}: module slices are supported on nn.Linear and Conv1D layers, "
            f"got {type(module).__name__}")
    if attr == "bias":
        return "out", transposed
    out_dim = 1 if transposed else 0
    return ("out" if dim == out_dim else "in"), transposed


def slice_specs(model: nn.Module, mask: ModuleMask, sites: ModelSites | None = None) -> list[SliceSpec]:
    """One :class:`SliceSpec` per parameter that owns slices of a selected module.

    Units are merged per parameter (GQA: several query heads share K/V rows; GPT-2: Q, K and V
    blocks of ``c_attn`` are three ranges of the same columns).
    """
    sites = sites or get_sites(model)
    for kind in ("heads", "filters"):
        if tuple(mask[kind].shape) != sites.shape(kind):
            raise ValueError(f"mask.{kind} has shape {tuple(mask[kind].shape)} but the model "
                             f"has {sites.shape(kind)} ({sites.family})")
    per_param: dict[str, tuple[int, set[int]]] = {}
    for kind in ("heads", "filters"):
        m = mask[kind].bool()
        for layer in range(sites.n_layers):
            for unit in torch.nonzero(m[layer]).flatten().tolist():
                for name, dim, rng in sites.module_slices(kind, layer, unit):
                    d, idx = per_param.setdefault(name, (dim, set()))
                    if d != dim:  # never happens for the shipped site maps
                        raise NotImplementedError(f"{name} has units along two dimensions")
                    idx.update(range(rng.start, rng.stop))
    specs = []
    shared: dict[tuple, torch.Tensor] = {}
    for name, (dim, idx) in per_param.items():
        mod_path, _, attr = name.rpartition(".")
        module = model.get_submodule(mod_path)
        role, transposed = _role(module, attr, dim, name)
        p = getattr(module, attr)
        # one index tensor per (module, side, units): weight and bias of the same output
        # units share it, so the delta hook can scatter them together
        key = (id(module), role, tuple(sorted(idx)))
        if key not in shared:
            shared[key] = torch.tensor(sorted(idx), dtype=torch.long, device=p.device)
        index = shared[key]
        specs.append(SliceSpec(name, module, attr, dim, index, role, transposed))
    return specs


def _entry_mask(mask: ModuleMask | None, spec: SliceSpec, value: torch.Tensor) -> torch.Tensor | None:
    """``mask.entries[spec.name]`` checked against the slab ``value`` (bool, same shape), on its
    device; None when the mask has no entry mask for this parameter."""
    entries = getattr(mask, "entries", None) if mask is not None else None
    if not entries or spec.name not in entries:
        return None
    e = entries[spec.name]
    if not isinstance(e, torch.Tensor) or e.dtype != torch.bool or tuple(e.shape) != tuple(value.shape):
        raise ValueError(f"mask.entries[{spec.name!r}] must be a bool tensor shaped like the "
                         f"selected slab {tuple(value.shape)}, got "
                         f"{getattr(e, 'dtype', type(e).__name__)} {tuple(getattr(e, 'shape', ()))}")
    return e.to(value.device)


def _out_part(spec: SliceSpec, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """(..., k) contribution of an output-side slab Δ to the selected output features."""
    if spec.attr == "bias":
        return delta
    # Linear: Δ (k, in) -> x Δᵀ; Conv1D: Δ (in, k) -> x Δ
    return F.linear(x, delta) if not spec.transposed else x @ delta


def _in_part(spec: SliceSpec, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """(..., out) contribution of an input-side slab Δ (selected input features)."""
    xs = x.index_select(-1, spec.index)
    # Linear: Δ (out, k); Conv1D: Δ (k, out)
    return F.linear(xs, delta) if not spec.transposed else xs @ delta


def _add_delta_terms(specs: list[SliceSpec], deltas: list[torch.Tensor], x: torch.Tensor,
                     y: torch.Tensor) -> torch.Tensor:
    """``y`` plus the (zero-valued) contributions of one module's slabs, added in place.

    ``x`` is detached: a term's gradient with respect to ``x`` is ``dy · Δ = 0`` (Δ is zero in
    value), so skipping it is exact and saves one matmul per term in backward. Weight and bias
    slabs of the same output units are summed first and scattered with one ``index_add_``;
    adding in place avoids copying the layer's output for every term.
    """
    x = x.detach()
    outs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for spec, d in zip(specs, deltas):
        if spec.role == "out":
            key = id(spec.index)
            part = _out_part(spec, x, d)
            if key in outs:
                outs[key] = (spec.index, outs[key][1] + part)
            else:
                outs[key] = (spec.index, part)
        else:
            y = y.add_(_in_part(spec, x, d))
    for index, part in outs.values():
        y = y.index_add_(-1, index, part.expand(*y.shape[:-1], part.shape[-1]))
    return y


class SparseParams:
    """Trainable copies of the selected slices of ``model``'s parameters (see module doc).

    Args:
        model: the model to train (its parameters are set to ``requires_grad=False``, except
            the whole-trained ones).
        mask: the module mask; ``None`` = unmasked: every parameter is trained whole.
        include_head: with a mask, also train the task head whole (not tied embeddings).
        whole: extra parameter names to train whole (advanced).

    Attributes:
        specs: the :class:`SliceSpec` of every sliced parameter.
        values: one trainable tensor per spec, the selected slab of the parameter.
        entries: one bool tensor like ``values[i]`` per spec (True = trained; from
            ``mask.entries``), or None where the whole slab is trained.
        whole: ``{name: parameter}`` trained whole.
        by_module: ``{layer: [spec indices]}`` — the layers that own selected slices (one
            delta hook each).
    """

    def __init__(self, model: nn.Module, mask: ModuleMask | None, include_head: bool = False,
                 whole: Sequence[str] = ()) -> None:
        self.model = model
        self.mask = mask
        params = dict(model.named_parameters())
        if mask is None:
            self.specs: list[SliceSpec] = []
            whole_names = list(params)
        else:
            self.specs = slice_specs(model, mask)
            whole_names = list(whole) + (head_param_names(model) if include_head else [])
        sliced = {s.name for s in self.specs}
        self.whole: dict[str, nn.Parameter] = {n: params[n] for n in dict.fromkeys(whole_names)
                                               if n not in sliced}
        for n, p in model.named_parameters():
            p.requires_grad_(n in self.whole)
        self.values: list[torch.Tensor] = [
            s.param.detach().index_select(s.dim, s.index).clone().requires_grad_(True)
            for s in self.specs]
        self.entries: list[torch.Tensor | None] = [
            _entry_mask(mask, s, v) for s, v in zip(self.specs, self.values)]
        extra = sorted(set(getattr(mask, "entries", None) or {}) - {s.name for s in self.specs})
        if extra:
            raise ValueError(f"mask.entries names parameters without a selected slice: {extra}")
        for v, e in zip(self.values, self.entries):
            if e is not None:
                v.register_hook(lambda g, e=e: g * e.to(g.dtype))
        self._deltas: list[torch.Tensor] | None = None
        self.by_module: dict[nn.Module, list[int]] = {}
        for i, s in enumerate(self.specs):
            self.by_module.setdefault(s.module, []).append(i)

    # -- what is trained -----------------------------------------------------------------

    def trainable(self) -> list[torch.Tensor]:
        """Tensors to hand to the optimizer: the slice values, then the whole parameters."""
        return list(self.values) + list(self.whole.values())

    def n_trainable(self) -> int:
        """Entries the run may change (an entry mask counts its True entries only)."""
        return (sum(int(e.sum()) if e is not None else v.numel()
                    for v, e in zip(self.values, self.entries))
                + sum(p.numel() for p in self.whole.values()))

    def param_masks(self) -> dict[str, torch.Tensor]:
        """``{name: bool tensor like the parameter}``, True where the entry may change."""
        out = {}
        for s, e in zip(self.specs, self.entries):
            m = torch.zeros_like(s.param, dtype=torch.bool)
            if e is None:
                m.index_fill_(s.dim, s.index, True)
            else:
                m.index_copy_(s.dim, s.index, e)
            out[s.name] = m
        for n, p in self.whole.items():
            out[n] = torch.ones_like(p, dtype=torch.bool)
        return out

    # -- forward -------------------------------------------------------------------------

    @contextmanager
    def attached(self, deltas: Sequence[torch.Tensor] | None = None) -> Iterator["SparseParams"]:
        """Install the delta hooks for the duration of the block
        (``mape_viz.hooks.temporary_hooks``: removed on exit, also on error).

        Args:
            deltas: one tensor per spec, shaped like ``values[i]``, equal to zero in value;
                default ``v − v.detach()`` (training). The Fisher pass passes ``v − v₀`` with
                ``v`` a ``torch.func`` input instead.
        """
        self._deltas = None

        def make(indices: list[int]):
            def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
                if self._deltas is not None:
                    deltas = [self._deltas[i] for i in indices]
                else:  # zero in value, gradient of the slice
                    deltas = [self.values[i] - self.values[i].detach() for i in indices]
                return _add_delta_terms([self.specs[i] for i in indices], deltas, args[0], out)
            return hook

        try:
            with temporary_hooks() as hooks:
                if deltas is not None:
                    self.set_deltas(deltas)
                for module, idx in self.by_module.items():
                    hooks.forward(module, make(idx))
                yield self
        finally:
            self._deltas = None

    def set_deltas(self, deltas: Sequence[torch.Tensor] | None) -> None:
        """Replace the deltas the hooks use (``None`` = ``v − v.detach()``)."""
        if deltas is not None and len(deltas) != len(self.specs):
            raise ValueError(f"expected {len(self.specs)} deltas, got {len(deltas)}")
        self._deltas = list(deltas) if deltas is not None else None

    # -- write back ----------------------------------------------------------------------

    @torch.no_grad()
    def sync_(self) -> None:
        """Write ``values`` into the model's parameters (only the selected slices; with an
        entry mask only its True entries, the others are reset in ``values``)."""
        for s, v, e in zip(self.specs, self.values, self.entries):
            if e is not None:
                current = s.param.detach().index_select(s.dim, s.index)
                v.copy_(torch.where(e, v, current.to(v.dtype)))
            s.param.data.index_copy_(s.dim, s.index, v.detach().to(s.param.dtype))

    @torch.no_grad()
    def add_(self, updates: Sequence[torch.Tensor]) -> None:
        """Add ``updates`` (one per :meth:`trainable` tensor) to the selected entries."""
        tensors = self.trainable()
        if len(updates) != len(tensors):
            raise ValueError(f"expected {len(tensors)} updates, got {len(updates)}")
        for t, u in zip(tensors, updates):
            t.add_(u.to(t.dtype))
        self.sync_()

    def detach_(self) -> None:
        """Stop training: every parameter back to ``requires_grad=False``."""
        for p in self.model.parameters():
            p.requires_grad_(False)

    def state(self) -> dict[str, dict]:
        """Changed slices for saving: ``{name: {"dim": d | None, "index": (k,), "values": slab}}``
        (``dim=None``: the whole parameter)."""
        out = {}
        for s in self.specs:
            out[s.name] = {"dim": s.dim, "index": s.index.detach().cpu(),
                           "values": s.param.detach().index_select(s.dim, s.index).cpu()}
        for n, p in self.whole.items():
            out[n] = {"dim": None, "index": None, "values": p.detach().cpu()}
        return out
