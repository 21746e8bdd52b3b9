"""Per-sample mask gradients in one backward pass (docs/design.md §2).

The mask gets a batch axis — (B, L, H) and (B, L, F) — every parameter is frozen, and the
*sum* of per-sample losses is backpropagated: ``mask.grad[b]`` is then exactly ∇_m ℓ(x_b),
for about the cost of one forward and one activation backward per batch. The masks enter as
:func:`~mape_viz.masking.gradient_taps` (identity forward; the per-unit reduction runs in
float32), no weight gradient is ever formed, and trailing all-padding columns are cut from
each batch first (:func:`trim_padding`). Under several processes (``accelerate launch``) each
takes its shard of the batches and the sums are all-reduced (docs/design.md §10).
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .distributed import ProcessInfo, all_gather_list, all_reduce_sum, process_info, shard
from .losses import per_sample_loss
from .masking import gradient_taps
from .sitemaps import ModelSites, get_sites
from .types import MODULE_KINDS

#: Autocast settings of the scoring pass: name -> compute dtype (``off``: the model's dtype).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16,
                                                  "fp16": torch.float16}
#: Static loss scale of the fp16 backward (per-sample gradients of small losses underflow in
#: fp16 otherwise); a non-finite result is recomputed unscaled.
FP16_LOSS_SCALE = 2.0 ** 12
#: Batch keys with a token axis that :func:`trim_padding` cuts (plus (B, T) ``labels``).
SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")

_SCORING_AUTOCAST: ContextVar[torch.dtype | None] = ContextVar("scoring_autocast", default=None)


def autocast_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"`` / ``"fp16"`` / ``torch.bfloat16`` / ``torch.float16`` -> that dtype;
    ``None`` / ``"off"`` -> None (no autocast)."""
    if value is None or (isinstance(value, torch.dtype) and value in (torch.bfloat16, torch.float16)):
        return value
    if isinstance(value, str) and value in AUTOCAST_DTYPES:
        return AUTOCAST_DTYPES[value]
    raise ValueError(f"autocast must be one of {list(AUTOCAST_DTYPES)}, torch.bfloat16, "
                     f"torch.float16 or None, got {value!r}")


@contextmanager
def scoring_autocast(value: str | torch.dtype | None) -> Iterator[torch.dtype | None]:
    """Run every scoring pass inside the block under autocast (``"bf16"``, ``"fp16"``,
    ``"off"``), for callers that do not pass ``autocast=`` themselves (``score_modules``)::

        with scoring_autocast("bf16"):
            scores = mv.score_modules(model, forget, retain)
    """
    token = _SCORING_AUTOCAST.set(autocast_dtype(value))
    try:
        yield _SCORING_AUTOCAST.get()
    finally:
        _SCORING_AUTOCAST.reset(token)


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


def trim_padding(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """Cut the trailing token columns that no sample uses.

    A column is kept up to the last one where some ``attention_mask`` is non-zero or some
    (B, T) ``labels`` entry is not -100. Only trailing columns go (right padding), so
    positions, and with them every per-sample loss, are unchanged; left-padded batches come
    back as they are, and so do batches without ``attention_mask`` and extractive-QA batches
    (HF's span softmax runs over every column, padding included, so cutting would change ℓ).
    """
    am = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if am is None or "start_positions" in batch or "end_positions" in batch:
        return batch
    am = torch.as_tensor(am)
    if am.dim() != 2:
        return batch
    width = am.shape[1]
    used = _last_used(am.ne(0))
    labels = batch.get("labels")
    if labels is not None and torch.as_tensor(labels).dim() == 2:
        used = max(used, _last_used(torch.as_tensor(labels).ne(-100)))
    used = max(used, 1)
    if used >= width:
        return batch
    out = dict(batch)
    for key in SEQUENCE_KEYS + ("labels",):
        v = out.get(key)
        if v is None:
            continue
        v = torch.as_tensor(v)
        if v.dim() == 2 and v.shape[1] == width:
            out[key] = v[:, :used]
    return out


def _last_used(used: torch.Tensor) -> int:
    """1 + index of the last column of a (B, T) bool tensor with any True (0 if none)."""
    cols = used.any(0).nonzero()
    return int(cols.max()) + 1 if cols.numel() else 0


def per_sample_mask_grads(model: nn.Module, batch: Mapping[str, Any], kind: str | None = None,
                          sites: ModelSites | None = None,
                          autocast: str | torch.dtype | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∇_m ℓ(x_b) for every sample of one batch, at the all-ones mask.

    The caller is responsible for freezing parameters (see ``frozen``); this function trims
    the batch's trailing padding, builds the batched masks, runs one forward and one
    activation-only backward.

    Args:
        autocast: ``"bf16"`` / ``"fp16"`` (or the dtype) runs the forward pass under
            ``torch.autocast`` on the model's device; the per-unit reductions and the returned
            gradients stay float32. None: the setting of :func:`scoring_autocast` (off by
            default); ``"off"``: no autocast.
    Returns:
        heads (B, L, H), filters (B, L, F) — float32 (float64 for a float64 model) on the
        model's device — and the detached per-sample losses (B,).
    """
    sites = sites or get_sites(model)
    _batch_size(batch)
    batch = trim_padding(batch)
    bsz = _batch_size(batch)
    param = next(model.parameters())
    dtype = torch.promote_types(param.dtype, torch.float32) if param.dtype.is_floating_point \
        else torch.float32
    ac = autocast_dtype(autocast) if autocast is not None else _SCORING_AUTOCAST.get()

    def ctx():
        return torch.autocast(param.device.type, dtype=ac) if ac is not None else nullcontext()
    scale = FP16_LOSS_SCALE if ac == torch.float16 else 1.0
    while True:
        heads = torch.ones(bsz, *sites.shape("heads"), device=param.device, dtype=dtype,
                           requires_grad=True)
        filters = torch.ones(bsz, *sites.shape("filters"), device=param.device, dtype=dtype,
                             requires_grad=True)
        with gradient_taps(model, heads, filters, sites=sites), torch.enable_grad():
            with ctx():
                losses = per_sample_loss(model, batch, kind)
            gh, gf = torch.autograd.grad(losses.sum() * scale, (heads, filters),
                                         allow_unused=True)
        gh = torch.zeros_like(heads) if gh is None else gh
        gf = torch.zeros_like(filters) if gf is None else gf
        if scale == 1.0:
            break
        if torch.isfinite(gh).all() and torch.isfinite(gf).all():
            gh, gf = gh / scale, gf / scale
            break
        scale = 1.0  # fp16 overflow under the loss scale: recompute unscaled
    return gh.detach(), gf.detach(), losses.detach()


def _batch_size(batch: Mapping[str, Any]) -> int:
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise TypeError("a batch must be a dict with at least 'input_ids' (B, T), "
                        f"got {type(batch).__name__} with keys {sorted(batch) if isinstance(batch, Mapping) else '-'}")
    return int(torch.as_tensor(batch["input_ids"]).shape[0])


@dataclass
class MaskGradStats:
    """Running sums of per-sample mask gradients over a data set.

    Sums (not means), so that the shards of several processes all-reduce before use.

    Attributes:
        grad_sum: {"heads": (L, H), "filters": (L, F)} Σ_x ∇_m ℓ(x), float64 CPU.
        sq_sum: the same for Σ_x (∇_m ℓ(x))².
        count: number of samples seen.
        loss_sum: Σ_x ℓ(x).
        factor: {"heads": [(n_i, L, H)], "filters": [(n_i, L, F)]} per-sample gradients of the
            first ``max_factor`` samples in batch order (float32 CPU), in parts — the low-rank
            factor of the block Fisher. Before :meth:`all_reduce_` under several processes,
            a process holds the first ``max_factor`` rows of *its* batches; after, every
            process holds the first ``max_factor`` rows of the whole set in global order.
        max_factor: the row cap of ``factor``.
        batches: ``(global batch index, batch size)`` of every batch added.
        factor_batches: the global batch index of each ``factor`` part.
        reduced: :meth:`all_reduce_` has run (a second call is a no-op).
    """

    grad_sum: dict[str, torch.Tensor]
    sq_sum: dict[str, torch.Tensor]
    count: int = 0
    loss_sum: float = 0.0
    factor: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {"heads": [], "filters": []})
    max_factor: int = 0
    batches: list[tuple[int, int]] = field(default_factory=list)
    factor_batches: list[int] = field(default_factory=list)
    reduced: bool = False

    @classmethod
    def empty(cls, sites: ModelSites, max_factor: int = 0) -> "MaskGradStats":
        zeros = {k: torch.zeros(sites.shape(k), dtype=torch.float64) for k in MODULE_KINDS}
        return cls(grad_sum=zeros, sq_sum={k: v.clone() for k, v in zeros.items()},
                   max_factor=max_factor)

    def add(self, heads: torch.Tensor, filters: torch.Tensor, losses: torch.Tensor,
            max_factor: int | None = None, batch_index: int | None = None) -> None:
        """Add one batch of per-sample gradients, (B, L, H) and (B, L, F).

        ``batch_index``: the batch's position in the whole set (default: next in order);
        ``max_factor`` overrides the cap given to :meth:`empty`.
        """
        if max_factor is not None:
            self.max_factor = max_factor
        index = len(self.batches) if batch_index is None else int(batch_index)
        self.batches.append((index, int(heads.shape[0])))
        kept = sum(t.shape[0] for t in self.factor["heads"])
        room = self.max_factor - kept
        for kind, g in (("heads", heads), ("filters", filters)):
            g64 = g.detach().to("cpu", torch.float64)
            self.grad_sum[kind] += g64.sum(0)
            self.sq_sum[kind] += (g64 * g64).sum(0)
            if room > 0:
                self.factor[kind].append(g.detach()[:room].to("cpu", torch.float32))
        if room > 0:
            self.factor_batches.append(index)
        self.count += int(heads.shape[0])
        self.loss_sum += float(losses.double().sum())

    def factor_tensor(self, kind: str) -> torch.Tensor:
        """(N, L, n) stacked factor rows."""
        parts = self.factor[kind]
        if not parts:
            return torch.zeros(0, *self.grad_sum[kind].shape)
        return torch.cat(parts, 0)

    def all_reduce_(self, info: ProcessInfo | None = None) -> "MaskGradStats":
        """Combine the shards of every process (no-op in one process, and once reduced).

        ``grad_sum``, ``sq_sum``, ``count`` and ``loss_sum`` are summed; the factor becomes
        the rows of the first ``max_factor`` samples in *global* batch order — exactly the
        rows one process would keep — placed by the gathered batch sizes and summed into
        place (each row comes from one process, the others add zeros). Every process must
        call it.
        """
        if self.reduced:
            return self
        info = info or process_info()
        self.reduced = True
        if info.world == 1:
            return self
        local = {f"grad/{k}": v for k, v in self.grad_sum.items()}
        local.update({f"sq/{k}": v for k, v in self.sq_sum.items()})
        local["scalars"] = torch.tensor([float(self.count), self.loss_sum], dtype=torch.float64)
        total = all_reduce_sum(local, info)
        self.grad_sum = {k: total[f"grad/{k}"] for k in self.grad_sum}
        self.sq_sum = {k: total[f"sq/{k}"] for k in self.sq_sum}
        self.count, self.loss_sum = int(round(float(total["scalars"][0]))), float(total["scalars"][1])
        if self.max_factor > 0:
            self._gather_factor(info)
        return self

    def _gather_factor(self, info: ProcessInfo) -> None:
        offsets, pos = {}, 0
        for index, size in sorted(all_gather_list(self.batches, info)):
            offsets[index] = pos
            pos += size
        n_rows = min(self.max_factor, pos)
        placed = {}
        for kind in MODULE_KINDS:
            full = torch.zeros(n_rows, *self.grad_sum[kind].shape, dtype=torch.float32)
            for index, part in zip(self.factor_batches, self.factor[kind]):
                start = offsets[index]
                take = min(part.shape[0], n_rows - start)
                if take > 0:
                    full[start:start + take] = part[:take]
            placed[kind] = full
        summed = all_reduce_sum(placed, info)
        self.factor = {k: [summed[k]] for k in MODULE_KINDS}
        self.factor_batches = [0]


def accumulate_mask_grads(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                          kind: str | None = None, max_factor: int = 512,
                          progress: bool = False, desc: str = "mask gradients",
                          sites: ModelSites | None = None,
                          autocast: str | torch.dtype | None = None,
                          distributed: bool = True) -> MaskGradStats:
    """Per-sample mask gradients over ``batches``, accumulated as sums.

    Parameters are frozen and the model is put in eval mode for the pass; ``requires_grad``
    flags and train/eval mode are restored afterwards, also on error.

    Under several processes (``accelerate launch``; see ``mape_viz.distributed``) every
    process must be given the same ``batches``: each computes its shard (batch i on rank
    i mod N) and the result is all-reduced, so every process returns the statistics one
    process would (the same factor rows; sums up to float64 rounding).

    Args:
        model: a model with a site map, on CPU or CUDA (the unwrapped model, not a DDP
            wrapper: scoring trains nothing).
        batches: dicts with ``input_ids``, ``attention_mask`` and targets (see ``losses``).
        kind: task kind; inferred from each batch when None.
        max_factor: keep per-sample rows of the first ``max_factor`` samples for the block
            Fisher factor (0 keeps none).
        progress: show a tqdm bar (on rank 0).
        autocast: see :func:`per_sample_mask_grads`.
        distributed: shard and all-reduce when launched with several processes; False keeps
            this call process-local (every process does all the work).
    Raises:
        ValueError: ``batches`` is empty or a batch has no targets.
    """
    sites = sites or get_sites(model)
    info = process_info() if distributed else ProcessInfo(0, 1, torch.device("cpu"))
    stats = MaskGradStats.empty(sites, max_factor)
    total = None
    if hasattr(batches, "__len__"):
        total = max(0, math.ceil((len(batches) - info.rank) / info.world))
    with frozen(model):
        for index, batch in tqdm(shard(batches, info), total=total, desc=desc, leave=False,
                                 disable=not progress or not info.is_main):
            gh, gf, losses = per_sample_mask_grads(model, batch, kind, sites, autocast=autocast)
            stats.add(gh, gf, losses, batch_index=index)
    stats.all_reduce_(info)
    if stats.count == 0:
        raise ValueError(f"no samples in the data given for {desc}: the set is empty")
    return stats
