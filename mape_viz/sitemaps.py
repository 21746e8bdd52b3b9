"""Where the modules live in each model family — architecture knowledge as data.

A *site map* says, for one family, where a layer's attention output projection and FFN down
projection are (the mask hooks go there, docs/design.md §1) and which parameter slices belong to each
head and each filter (the unlearning engine updates only those, docs/design.md §5). Adding a family
means adding one entry to ``SITE_MAPS``; no code below branches on the family.

Slice convention: a ``ParamSlice`` names a parameter relative to the layer module, the tensor
dimension that indexes units, and what a unit is:

- ``"head"``: query-side head h owns ``[offset*W + h*d : offset*W + (h+1)*d]`` with
  ``W = H*d_head`` (``offset`` picks Q/K/V inside GPT-2's fused ``c_attn``);
- ``"kv_head"``: head h owns its K/V group ``g = h // (H // KV)``, i.e. rows
  ``[g*d : (g+1)*d]`` (GQA; with KV == H this is the head itself);
- ``"filter"``: filter j owns index ``j``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from .types import MODULE_KINDS


@dataclass(frozen=True)
class ParamSlice:
    """A parameter (path relative to the layer) and how its units are laid out.

    Attributes:
        path: dotted parameter name inside one layer, e.g. ``"attention.self.query.weight"``.
        dim: the tensor dimension that indexes heads/filters.
        unit: ``"head"``, ``"kv_head"`` or ``"filter"``.
        offset: block offset in units of the full width (GPT-2's fused QKV: 0, 1, 2).
    """

    path: str
    dim: int
    unit: str
    offset: int = 0


@dataclass(frozen=True)
class SiteMap:
    """Where one model family keeps its heads and filters.

    Attributes:
        family: short name (``"bert"``, ``"llama"``...).
        model_types: ``config.model_type`` values served by this map.
        layers: path of the layer list relative to ``model.base_model``.
        attn_out: attention output projection inside a layer (head-mask pre-hook site).
        ffn_out: FFN down projection inside a layer (filter-mask pre-hook site).
        n_heads_attr: config attribute holding the number of query heads.
        head_params: the slices each head owns.
        filter_params: the slices each filter owns.
        transposed: weights are stored (in, out) as in GPT-2's ``Conv1D``.
    """

    family: str
    model_types: tuple[str, ...]
    layers: str
    attn_out: str
    ffn_out: str
    n_heads_attr: str
    head_params: tuple[ParamSlice, ...]
    filter_params: tuple[ParamSlice, ...]
    transposed: bool = False


def _bert_like(family: str, model_types: tuple[str, ...]) -> SiteMap:
    q, k, v = "attention.self.query", "attention.self.key", "attention.self.value"
    return SiteMap(
        family=family,
        model_types=model_types,
        layers="encoder.layer",
        attn_out="attention.output.dense",
        ffn_out="output.dense",
        n_heads_attr="num_attention_heads",
        head_params=(
            ParamSlice(f"{q}.weight", 0, "head"), ParamSlice(f"{q}.bias", 0, "head"),
            ParamSlice(f"{k}.weight", 0, "head"), ParamSlice(f"{k}.bias", 0, "head"),
            ParamSlice(f"{v}.weight", 0, "head"), ParamSlice(f"{v}.bias", 0, "head"),
            ParamSlice("attention.output.dense.weight", 1, "head"),
        ),
        filter_params=(
            ParamSlice("intermediate.dense.weight", 0, "filter"),
            ParamSlice("intermediate.dense.bias", 0, "filter"),
            ParamSlice("output.dense.weight", 1, "filter"),
        ),
    )


def _llama_like(family: str, model_types: tuple[str, ...], qkv_bias: bool) -> SiteMap:
    heads = [ParamSlice("self_attn.q_proj.weight", 0, "head"),
             ParamSlice("self_attn.k_proj.weight", 0, "kv_head"),
             ParamSlice("self_attn.v_proj.weight", 0, "kv_head")]
    if qkv_bias:
        heads += [ParamSlice("self_attn.q_proj.bias", 0, "head"),
                  ParamSlice("self_attn.k_proj.bias", 0, "kv_head"),
                  ParamSlice("self_attn.v_proj.bias", 0, "kv_head")]
    heads.append(ParamSlice("self_attn.o_proj.weight", 1, "head"))
    return SiteMap(
        family=family,
        model_types=model_types,
        layers="layers",
        attn_out="self_attn.o_proj",
        ffn_out="mlp.down_proj",
        n_heads_attr="num_attention_heads",
        head_params=tuple(heads),
        filter_params=(
            ParamSlice("mlp.gate_proj.weight", 0, "filter"),
            ParamSlice("mlp.up_proj.weight", 0, "filter"),
            ParamSlice("mlp.down_proj.weight", 1, "filter"),
        ),
    )


# GPT-2's Conv1D stores weights as (in, out): output units index dim 1, input units dim 0.
_GPT2 = SiteMap(
    family="gpt2",
    model_types=("gpt2",),
    layers="h",
    attn_out="attn.c_proj",
    ffn_out="mlp.c_proj",
    n_heads_attr="n_head",
    head_params=(
        ParamSlice("attn.c_attn.weight", 1, "head", 0), ParamSlice("attn.c_attn.bias", 0, "head", 0),
        ParamSlice("attn.c_attn.weight", 1, "head", 1), ParamSlice("attn.c_attn.bias", 0, "head", 1),
        ParamSlice("attn.c_attn.weight", 1, "head", 2), ParamSlice("attn.c_attn.bias", 0, "head", 2),
        ParamSlice("attn.c_proj.weight", 0, "head"),
    ),
    filter_params=(
        ParamSlice("mlp.c_fc.weight", 1, "filter"),
        ParamSlice("mlp.c_fc.bias", 0, "filter"),
        ParamSlice("mlp.c_proj.weight", 0, "filter"),
    ),
    transposed=True,
)

_DISTILBERT = SiteMap(
    family="distilbert",
    model_types=("distilbert",),
    layers="transformer.layer",
    attn_out="attention.out_lin",
    ffn_out="ffn.lin2",
    n_heads_attr="n_heads",
    head_params=(
        ParamSlice("attention.q_lin.weight", 0, "head"), ParamSlice("attention.q_lin.bias", 0, "head"),
        ParamSlice("attention.k_lin.weight", 0, "head"), ParamSlice("attention.k_lin.bias", 0, "head"),
        ParamSlice("attention.v_lin.weight", 0, "head"), ParamSlice("attention.v_lin.bias", 0, "head"),
        ParamSlice("attention.out_lin.weight", 1, "head"),
    ),
    filter_params=(
        ParamSlice("ffn.lin1.weight", 0, "filter"),
        ParamSlice("ffn.lin1.bias", 0, "filter"),
        ParamSlice("ffn.lin2.weight", 1, "filter"),
    ),
)

#: One entry per supported family.
SITE_MAPS: dict[str, SiteMap] = {
    m.family: m
    for m in (
        _bert_like("bert", ("bert",)),
        _bert_like("roberta", ("roberta", "xlm-roberta")),
        _DISTILBERT,
        _GPT2,
        _llama_like("llama", ("llama",), qkv_bias=False),
        _llama_like("mistral", ("mistral",), qkv_bias=False),
        _llama_like("qwen2", ("qwen2",), qkv_bias=True),
    )
}


def supported_families() -> list[str]:
    return list(SITE_MAPS)


def _get(root: nn.Module, path: str) -> nn.Module | torch.Tensor:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class ModelSites:
    """A site map bound to one model instance, with its sizes.

    Attributes:
        sitemap: the family's ``SiteMap``.
        layers: the L layer modules.
        prefix: dotted name of the layer list inside ``model`` (for ``named_parameters``).
        n_layers: L.  n_heads: H (query heads).  n_kv_heads: KV heads (GQA; H when none).
        d_head: width of one head.  n_filters: F (FFN intermediate size).
    """

    sitemap: SiteMap
    layers: list[nn.Module]
    prefix: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    n_filters: int
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def family(self) -> str:
        return self.sitemap.family

    def shape(self, kind: str) -> tuple[int, int]:
        """(L, H) for ``"heads"``, (L, F) for ``"filters"``."""
        if kind == "heads":
            return (self.n_layers, self.n_heads)
        if kind == "filters":
            return (self.n_layers, self.n_filters)
        raise ValueError(f"kind must be 'heads' or 'filters', got {kind!r}")

    def attn_out(self, layer: int) -> nn.Module:
        return _get(self.layers[layer], self.sitemap.attn_out)

    def ffn_out(self, layer: int) -> nn.Module:
        return _get(self.layers[layer], self.sitemap.ffn_out)

    def unit_index(self, spec: ParamSlice, unit: int) -> slice:
        """The index range along ``spec.dim`` owned by head/filter ``unit``."""
        if spec.unit == "filter":
            return slice(unit, unit + 1)
        d = self.d_head
        if spec.unit == "head":
            base = spec.offset * self.n_heads * d
            return slice(base + unit * d, base + (unit + 1) * d)
        if spec.unit == "kv_head":
            group = unit // (self.n_heads // self.n_kv_heads)
            return slice(group * d, (group + 1) * d)
        raise ValueError(f"unknown unit {spec.unit!r}")

    def module_slices(self, kind: str, layer: int, unit: int) -> Iterator[tuple[str, int, slice]]:
        """Yield ``(full parameter name, dim, index range)`` for every slice one module owns.

        For GQA, a query head yields its K/V group's rows: selecting any head of a group
        selects the whole group (docs/design.md §5).
        """
        specs = self.sitemap.head_params if kind == "heads" else self.sitemap.filter_params
        for spec in specs:
            yield f"{self.prefix}.{layer}.{spec.path}", spec.dim, self.unit_index(spec, unit)

    def param_masks(self, mask_heads: torch.Tensor | None, mask_filters: torch.Tensor | None,
                    params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Boolean per-parameter masks (True = owned by a selected module).

        Args:
            mask_heads: (L, H) bool or None (no head selected).
            mask_filters: (L, F) bool or None.
            params: ``dict(model.named_parameters())``; only names listed in the site map
                are returned.
        Returns:
            ``{param name: bool tensor shaped like the parameter}`` for every parameter that a
            head or filter owns slices of (all-False where nothing in it is selected).
        """
        out: dict[str, torch.Tensor] = {}
        for kind, m in (("heads", mask_heads), ("filters", mask_filters)):
            specs = self.sitemap.head_params if kind == "heads" else self.sitemap.filter_params
            for layer in range(self.n_layers):
                for spec in specs:
                    name = f"{self.prefix}.{layer}.{spec.path}"
                    if name not in out:
                        out[name] = torch.zeros_like(params[name], dtype=torch.bool)
                if m is None:
                    continue
                for unit in torch.nonzero(m[layer]).flatten().tolist():
                    for name, dim, idx in self.module_slices(kind, layer, unit):
                        out[name].narrow(dim, idx.start, idx.stop - idx.start).fill_(True)
        return out


def _find_sitemap(model: nn.Module) -> SiteMap:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    for sm in SITE_MAPS.values():
        if model_type in sm.model_types:
            return sm
    raise ValueError(
        f"no site map for model type {model_type!r} ({type(model).__name__}); "
        f"supported families: {', '.join(supported_families())}"
    )


def get_sites(model: nn.Module) -> ModelSites:
    """Bind the family's site map to ``model`` and read L, H, KV, d_head, F off its modules.

    Raises:
        ValueError: the model's family has no site map (the message lists the supported ones).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch/transformers model, got {type(model).__name__}")
    sm = _find_sitemap(model)
    base = getattr(model, "base_model", model)
    layers = list(_get(base, sm.layers))
    base_prefix = next((n for n, m in model.named_modules() if m is base), "")
    prefix = ".".join(p for p in (base_prefix, sm.layers) if p)
    n_heads = int(getattr(model.config, sm.n_heads_attr))
    attn_out = _get(layers[0], sm.attn_out)
    ffn_out = _get(layers[0], sm.ffn_out)
    # Conv1D (GPT-2) keeps (in, out) weights; nn.Linear keeps (out, in).
    in_dim = 0 if sm.transposed else 1
    attn_in = attn_out.weight.shape[in_dim]
    n_filters = ffn_out.weight.shape[in_dim]
    d_head = attn_in // n_heads
    kv_spec = next((s for s in sm.head_params if s.unit == "kv_head"), None)
    if kv_spec is not None:
        n_kv = _get(layers[0], kv_spec.path).shape[kv_spec.dim] // d_head
    else:
        n_kv = n_heads
    return ModelSites(sm, layers, prefix, len(layers), n_heads, n_kv, d_head, n_filters)


def per_module_sq_norm(sites: ModelSites, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Σ of squares of each module's slices of ``tensors`` (named like ``model.named_parameters``).

    Used for the SURE (gradient norm) and magnitude (weight norm) selectors. A query head is
    credited with its whole K/V group's slices (shared under GQA).

    Returns:
        {"heads": (L, H), "filters": (L, F)} float64 on CPU.
    """
    out = {k: torch.zeros(sites.shape(k), dtype=torch.float64) for k in MODULE_KINDS}
    width = {"head": sites.n_heads * sites.d_head, "kv_head": sites.n_kv_heads * sites.d_head}
    for kind, specs in (("heads", sites.sitemap.head_params), ("filters", sites.sitemap.filter_params)):
        n_units = out[kind].shape[1]
        for layer in range(sites.n_layers):
            for spec in specs:
                t = tensors.get(f"{sites.prefix}.{layer}.{spec.path}")
                if t is None:
                    continue
                t = t.detach().to("cpu", torch.float64)
                if spec.unit == "filter":
                    # (sum over dim=() would reduce everything, so flatten instead)
                    out[kind][layer] += t.movedim(spec.dim, 0).reshape(t.shape[spec.dim], -1).pow(2).sum(1)
                    continue
                w = width[spec.unit]
                block = t.narrow(spec.dim, spec.offset * w, w).movedim(spec.dim, 0)
                groups = w // sites.d_head
                per_group = block.reshape(groups, -1).pow(2).sum(1)
                out[kind][layer] += per_group.repeat_interleave(n_units // groups)
    return out
