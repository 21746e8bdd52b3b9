"""Per-sample mask gradients in one backward pass (docs/design.md §2).

The mask gets a batch axis — (B, L, H) and (B, L, F) — every parameter is frozen, and the
*sum* of per-sample losses is backpropagated: ``mask.grad[b]`` is then exactly ∇_m ℓ(x_b),
for about the cost of one forward and one activation backward per batch.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .losses import per_sample_loss
from .masking import apply_masks
from .sitemaps import ModelSites, get_sites
from .types import MODULE_KINDS


@contextmanager
def frozen(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Freeze every parameter (and switch to eval); restore flags and mode afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        if eval_mode:
            model.eval()
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def per_sample_mask_grads(model: nn.Module, batch: Mapping[str, Any], kind: str | None = None,
                          sites: ModelSites | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∇_m ℓ(x_b) for every sample of one batch, at the all-ones mask.

    The caller is responsible for freezing parameters (see ``frozen``); this function only
    builds the batched masks, runs one forward and one backward.

    Returns:
        heads (B, L, H), filters (B, L, F) — float32 (float64 for a float64 model) on the
        model's device — and the
        detached per-sample losses (B,).
    """
    sites = sites or get_sites(model)
    device = next(model.parameters()).device
    bsz = _batch_size(batch)
    dtype = next(model.parameters()).dtype
    if not dtype.is_floating_point:
        dtype = torch.float32
    heads = torch.ones(bsz, *sites.shape("heads"), device=device, dtype=dtype, requires_grad=True)
    filters = torch.ones(bsz, *sites.shape("filters"), device=device, dtype=dtype, requires_grad=True)
    with apply_masks(model, heads, filters, sites=sites), torch.enable_grad():
        losses = per_sample_loss(model, batch, kind)
        gh, gf = torch.autograd.grad(losses.sum(), (heads, filters), allow_unused=True)
    gh = torch.zeros_like(heads) if gh is None else gh
    gf = torch.zeros_like(filters) if gf is None else gf
    at_least_fp32 = torch.promote_types(gh.dtype, torch.float32)
    return gh.to(at_least_fp32), gf.to(at_least_fp32), losses.detach()


def _batch_size(batch: Mapping[str, Any]) -> int:
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise TypeError("a batch must be a dict with at least 'input_ids' (B, T), "
                        f"got {type(batch).__name__} with keys {sorted(batch) if isinstance(batch, Mapping) else '-'}")
    return int(torch.as_tensor(batch["input_ids"]).shape[0])


@dataclass
class MaskGradStats:
    """Running sums of per-sample mask gradients over a data set.

    Sums (not means) so that shards on several processes can be all-reduced before use.

    Attributes:
        grad_sum: {"heads": (L, H), "filters": (L, F)} Σ_x ∇_m ℓ(x), float64 CPU.
        sq_sum: the same for Σ_x (∇_m ℓ(x))².
        count: number of samples seen.
        loss_sum: Σ_x ℓ(x).
        factor: {"heads": (N, L, H), "filters": (N, L, F)} per-sample gradients of the first
            ``max_factor`` samples (float32 CPU) — the low-rank factor of the block Fisher.
    """

    grad_sum: dict[str, torch.Tensor]
    sq_sum: dict[str, torch.Tensor]
    count: int = 0
    loss_sum: float = 0.0
    factor: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {"heads": [], "filters": []})

    @classmethod
    def empty(cls, sites: ModelSites) -> "MaskGradStats":
        zeros = {k: torch.zeros(sites.shape(k), dtype=torch.float64) for k in MODULE_KINDS}
        return cls(grad_sum=zeros, sq_sum={k: v.clone() for k, v in zeros.items()})

    def add(self, heads: torch.Tensor, filters: torch.Tensor, losses: torch.Tensor,
            max_factor: int) -> None:
        """Add one batch of per-sample gradients, (B, L, H) and (B, L, F)."""
        kept = sum(t.shape[0] for t in self.factor["heads"])
        for kind, g in (("heads", heads), ("filters", filters)):
            g64 = g.detach().to("cpu", torch.float64)
            self.grad_sum[kind] += g64.sum(0)
            self.sq_sum[kind] += (g64 * g64).sum(0)
            room = max_factor - kept
            if room > 0:
                self.factor[kind].append(g.detach()[:room].to("cpu", torch.float32))
        self.count += int(heads.shape[0])
        self.loss_sum += float(losses.double().sum())

    def factor_tensor(self, kind: str) -> torch.Tensor:
        """(N, L, n) stacked factor rows."""
        parts = self.factor[kind]
        if not parts:
            return torch.zeros(0, *self.grad_sum[kind].shape)
        return torch.cat(parts, 0)

    def all_reduce_(self) -> "MaskGradStats":
        """Sum ``grad_sum``, ``sq_sum``, ``count`` and ``loss_sum`` over processes (no-op when
        ``torch.distributed`` is not initialised). The factor stays process-local."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self
        for d in (self.grad_sum, self.sq_sum):
            for kind in d:
                torch.distributed.all_reduce(d[kind])
        scalars = torch.tensor([float(self.count), self.loss_sum], dtype=torch.float64)
        torch.distributed.all_reduce(scalars)
        self.count, self.loss_sum = int(scalars[0]), float(scalars[1])
        return self


def accumulate_mask_grads(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                          kind: str | None = None, max_factor: int = 512,
                          progress: bool = False, desc: str = "mask gradients",
                          sites: ModelSites | None = None) -> MaskGradStats:
    """Per-sample mask gradients over ``batches``, accumulated as sums.

    Parameters are frozen and the model is put in eval mode for the pass; ``requires_grad``
    flags and train/eval mode are restored afterwards, also on error.

    Args:
        model: a model with a site map, on CPU or CUDA.
        batches: dicts with ``input_ids``, ``attention_mask`` and targets (see ``losses``).
        kind: task kind; inferred from each batch when None.
        max_factor: keep per-sample rows of the first ``max_factor`` samples for the block
            Fisher factor (0 keeps none).
        progress: show a tqdm bar.
    Raises:
        ValueError: ``batches`` is empty or a batch has no targets.
    """
    sites = sites or get_sites(model)
    stats = MaskGradStats.empty(sites)
    with frozen(model):
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            gh, gf, losses = per_sample_mask_grads(model, batch, kind, sites)
            stats.add(gh, gf, losses, max_factor)
    if stats.count == 0:
        raise ValueError(f"no samples in the data given for {desc}: the set is empty")
    return stats
