"""Second-order unlearning (paper Eq. 2, 10, 11): θ = θ* + η · (F + λ)⁻¹ ⊙ Σ_{x∈D_f} ∇ℓ(θ*; x).

F is the empirical diagonal Fisher on the retain set, ``F = (1/|D_r|) Σ_{x∈D_r} ∇ℓ(x)²``
(Eq. 11), λ the damping and η the unlearning rate. With a module mask (MAPE-SO, Eq. 10) both
the Fisher and the forget gradient are computed **only for the selected slices**: the slices
are the trainable tensors of a :class:`~mape_viz.unlearning.sparse.SparseParams`, and gradients
reach them through its zero-valued delta hooks, so no full-size weight gradient is ever
formed. Time and memory of the per-sample gradients therefore scale with the selection
(docs/design.md §5).

Per-sample gradients are vectorised, never a Python loop over samples (:func:`fisher_sum`):
``torch.func``'s ``vmap(grad(loss_of_one_sample))`` over chunks of ``fisher_batch_size``
samples (every parameter kind; full SO), or — for module slices only (MAPE-SO) — one plain
batched forward/backward with per-sample slab gradients formed from each hooked layer's input
and output gradient (exact, and about twice as fast as ``vmap`` on CPU; its layer hooks are
``mape_viz.hooks.temporary_hooks``, gone when the pass ends).

Two transformers details would break or slow ``vmap``; :func:`vmap_friendly` handles both for
the duration of the Fisher pass only:

- transformers ≥ 5 decides whether it may skip building an attention mask by looking at the
  mask's *contents* (``padding_mask.all()``), which ``vmap`` cannot batch: the shortcut is
  made to always answer "build the mask" (same attention output, a mask of zeros is added);
- PyTorch has no ``vmap`` batching rule for the CPU flash-attention kernel behind ``sdpa``
  (it falls back to a Python loop over samples, ~10× slower): the model is switched to
  ``eager`` attention (plain matmul + softmax) and switched back afterwards.

Under ``accelerate launch`` (docs/design.md §10) both passes shard like the scores: batch
``i`` of the forget set and of the (globally capped) retain set goes to rank ``i % world``,
and the sums and sample counts are all-reduced, so every rank holds the one-process sums and
applies the same update.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from tqdm.auto import tqdm

from ..distributed import all_reduce_sum, process_info, shard, slice_rows
from ..hooks import temporary_hooks
from ..losses import INPUT_KEYS, loss_from_output, tensor_batch
from .sparse import SparseParams

try:  # optional: older transformers have no masking_utils (and no mask shortcut to patch)
    import transformers.masking_utils as masking_utils
except ImportError:  # pragma: no cover
    masking_utils = None

Batch = Mapping[str, Any]


@contextmanager
def vmap_friendly(model: nn.Module) -> Iterator[None]:
    """Eager attention and always-built attention masks for the block (see module doc)."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(model, "set_attn_implementation")
    try:
        if switch:
            model.set_attn_implementation("eager")
        with vmap_safe_masks():
            yield
    finally:
        if switch:
            model.set_attn_implementation(before)


@contextmanager
def vmap_safe_masks() -> Iterator[None]:
    """Make transformers always build attention masks (no data-dependent shortcut), so the
    forward pass can run under ``torch.func.vmap``. Restored on exit."""
    mu = masking_utils
    names = [n for n in ("_ignore_bidirectional_mask_sdpa", "_ignore_causal_mask_sdpa")
             if hasattr(mu, n)]
    saved = {n: getattr(mu, n) for n in names}
    try:
        for n in names:
            setattr(mu, n, lambda *a, **k: False)
        yield
    finally:
        for n, fn in saved.items():
            setattr(mu, n, fn)


def _n(batch: Batch) -> int:
    return int(torch.as_tensor(batch["input_ids"]).shape[0])


def _chunks(batch: dict[str, torch.Tensor], size: int) -> Iterator[dict[str, torch.Tensor]]:
    n = _n(batch)
    for s in range(0, n, size):
        yield {k: v[s:s + size] for k, v in batch.items()}


def _acc_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)


def grad_sum(model: nn.Module, sparse: SparseParams, batches: Iterable[Batch], kind: str,
             progress: bool = False, desc: str = "forget gradient") -> tuple[list[torch.Tensor], int]:
    """Σ_x ∇ℓ(θ; x) over ``batches`` for every trainable tensor of ``sparse``.

    One ordinary backward per batch (a sum needs no per-sample gradients). Under a launcher
    each rank sums its batches (``i % world == rank``) and the sums are all-reduced.

    Returns:
        (one tensor per ``sparse.trainable()``, same shapes; number of samples)
    """
    device = next(model.parameters()).device
    info = process_info()
    tensors = sparse.trainable()
    sums = [torch.zeros_like(t, dtype=_acc_dtype(t)) for t in tensors]
    count = 0
    was_training = model.training
    model.eval()
    try:
        with sparse.attached():
            for _, batch in tqdm(shard(batches, info), desc=desc,
                                 disable=not progress or not info.is_main, leave=False):
                b = tensor_batch(batch, device)
                with torch.enable_grad():
                    out = model(**{k: v for k, v in b.items() if k in INPUT_KEYS})
                    losses = loss_from_output(out, b, kind)
                    gs = torch.autograd.grad(losses.sum(), tensors, allow_unused=True)
                for s, g in zip(sums, gs):
                    if g is not None:
                        s += g.to(s.dtype)
                count += losses.shape[0]
    finally:
        model.train(was_training)
    return _reduced(sums, count, info)


def _reduced(sums: list[torch.Tensor], count: int, info: Any) -> tuple[list[torch.Tensor], int]:
    """Every rank's sums and sample count added up (the identity in one process)."""
    if info.world == 1:
        return sums, count
    named = {str(i): t for i, t in enumerate(sums)}
    named["count"] = torch.tensor([float(count)], dtype=torch.float64)
    total = all_reduce_sum(named, info)
    return [total[str(i)] for i in range(len(sums))], int(total["count"].item())


FISHER_ENGINES = ("auto", "vmap", "hooks")


def fisher_sum(model: nn.Module, sparse: SparseParams, batches: Iterable[Batch], kind: str,
               chunk: int = 16, max_samples: int = 0, progress: bool = False,
               desc: str = "retain Fisher", engine: str = "auto") -> tuple[list[torch.Tensor], int]:
    """Σ_x (∇ℓ(θ; x))² over ``batches`` for every trainable tensor of ``sparse`` (Eq. 11 × |D|).

    Two exact engines, neither a Python loop over samples; both take ``chunk`` samples per
    pass:

    - ``"vmap"``: ``torch.func`` — ``vmap(grad(loss of one sample))`` over chunks of ``chunk``
      samples; selected slices are differentiated through the zero-valued delta hooks,
      whole-trained parameters through ``functional_call``. Handles every parameter kind
      (embeddings, norms): it is the engine of full SO.
    - ``"hooks"``: one ordinary batched forward and activation-only backward per batch; each
      selected slice's per-sample gradient is formed from the layer input ``x`` (B, T, in) and
      output gradient ``dy`` (B, T, out) as ``Σ_t dy[b, t, sel] ⊗ x[b, t]`` — a batched
      matmul over the selected rows/columns only. Samples of a batch do not interact (eval
      mode), so ``dy[b]`` is exactly ∇ℓ(x_b) w.r.t. the layer output. Only for slices (no
      whole parameters); about 2× faster than ``vmap`` on CPU, whose batching of a whole
      transformer forward/backward costs more than the plain batched pass.
    - ``"auto"``: ``hooks`` when ``sparse`` has slices only (MAPE-SO), else ``vmap``.

    Args:
        chunk: samples per ``vmap`` call (memory: chunk × trained entries).
        max_samples: stop after this many samples (0 = all).
        engine: ``auto``, ``vmap`` or ``hooks``.

    Under a launcher the capped stream of batches is sharded (batch ``i`` to rank
    ``i % world``) and the sums and count are all-reduced: every rank returns the one-process
    answer.

    Returns:
        (sums of squares, one per ``sparse.trainable()``; number of samples)
    """
    if engine not in FISHER_ENGINES:
        raise ValueError(f"engine must be one of {FISHER_ENGINES}, got {engine!r}")
    if engine == "hooks" and sparse.whole:
        raise ValueError("the 'hooks' Fisher engine handles module slices only; whole "
                         f"parameters ({', '.join(list(sparse.whole)[:3])}, ...) need 'vmap'")
    info = process_info()
    run = _fisher_sum_hooks if engine == "hooks" or (engine == "auto" and not sparse.whole) \
        else _fisher_sum_vmap
    sums, count = run(model, sparse, batches, kind, chunk, max_samples, progress, desc)
    return _reduced(sums, count, info)


def _slice_per_sample_grad(spec: Any, x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """(B, *slab) per-sample gradient of one slab from x (B, N, in) and dy (B, N, out)."""
    idx = spec.index
    if spec.attr == "bias":
        return dy.index_select(-1, idx).sum(1)  # (B, k)
    if spec.role == "out":
        dys = dy.index_select(-1, idx)  # (B, N, k)
        # Linear slab (k, in) = dysᵀ x; Conv1D slab (in, k) = xᵀ dys
        return torch.bmm(dys.transpose(1, 2), x) if not spec.transposed \
            else torch.bmm(x.transpose(1, 2), dys)
    xs = x.index_select(-1, idx)  # (B, N, k)
    # Linear slab (out, k) = dyᵀ xs; Conv1D slab (k, out) = xsᵀ dy
    return torch.bmm(dy.transpose(1, 2), xs) if not spec.transposed \
        else torch.bmm(xs.transpose(1, 2), dy)


def _fisher_sum_hooks(model: nn.Module, sparse: SparseParams, batches: Iterable[Batch],
                      kind: str, chunk: int, max_samples: int, progress: bool,
                      desc: str) -> tuple[list[torch.Tensor], int]:
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    sums = [torch.zeros_like(v, dtype=_acc_dtype(v)) for v in sparse.values]
    # A zero scalar added to every hooked output puts it on the autograd graph (all
    # parameters are frozen), so backward computes activation gradients only.
    z = torch.zeros((), device=device, dtype=dtype if dtype.is_floating_point else torch.float32,
                    requires_grad=True)

    def make(indices: list[int]):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            x = args[0].detach()
            x = x.reshape(x.shape[0], -1, x.shape[-1])
            out = out + z

            def on_grad(dy: torch.Tensor) -> None:
                dy = dy.detach().reshape(dy.shape[0], -1, dy.shape[-1])
                for i in indices:
                    g = _slice_per_sample_grad(sparse.specs[i], x, dy).to(sums[i].dtype)
                    sums[i] += (g * g).sum(0)

            # a tensor hook on this pass's output: it lives and dies with the autograd
            # graph, so unlike the module hook it needs no removal
            out.register_hook(on_grad)
            return out
        return hook

    count = 0
    was_training = model.training
    model.eval()
    try:
        with temporary_hooks() as hooks, torch.enable_grad():
            for module, idx in sparse.by_module.items():
                hooks.forward(module, make(idx))
            for b in _capped(batches, device, max_samples, desc, progress):
                for part in _chunks(b, chunk):
                    out = model(**{k: v for k, v in part.items() if k in INPUT_KEYS})
                    losses = loss_from_output(out, part, kind)
                    # Σ of per-sample losses: dy[b] is exactly ∇ℓ(x_b) at each hooked output
                    torch.autograd.grad(losses.sum(), [z])
                    count += _n(part)
    finally:
        model.train(was_training)
    return sums, count


def _cut(batches: Iterable[Batch], max_samples: int) -> Iterator[Batch]:
    """The batches, cut so that at most ``max_samples`` samples (0 = all) pass (global: the
    cap is applied before the batches are sharded)."""
    seen = 0
    for batch in batches:
        if max_samples:
            room = max_samples - seen
            if room <= 0:
                return
            if room < _n(batch):
                batch = slice_rows(batch, 0, room)
        seen += _n(batch)
        yield batch


def _capped(batches: Iterable[Batch], device: torch.device, max_samples: int, desc: str,
            progress: bool) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's tensor batches on ``device`` (all of them in one process), cut so that at
    most ``max_samples`` samples (0 = all) pass over all ranks."""
    info = process_info()
    mine = shard(_cut(batches, max_samples), info)
    for _, batch in tqdm(mine, desc=desc, disable=not progress or not info.is_main, leave=False):
        yield tensor_batch(batch, device)


def _fisher_sum_vmap(model: nn.Module, sparse: SparseParams, batches: Iterable[Batch], kind: str,
                     chunk: int, max_samples: int, progress: bool,
                     desc: str) -> tuple[list[torch.Tensor], int]:
    device = next(model.parameters()).device
    whole_names = list(sparse.whole)
    whole_vals = [p.detach() for p in sparse.whole.values()]
    bases = [v.detach() for v in sparse.values]
    sums = [torch.zeros_like(t, dtype=_acc_dtype(t)) for t in bases + whole_vals]

    def one_sample_loss(wv: list[torch.Tensor], sv: list[torch.Tensor],
                        sample: dict[str, torch.Tensor]) -> torch.Tensor:
        b = {k: v.unsqueeze(0) for k, v in sample.items()}
        # v − v₀ is zero in value; its gradient is the slice's gradient.
        sparse.set_deltas([s - b0 for s, b0 in zip(sv, bases)])
        out = functional_call(model, dict(zip(whole_names, wv)), (),
                              {k: v for k, v in b.items() if k in INPUT_KEYS})
        return loss_from_output(out, b, kind)[0]

    per_sample = vmap(grad(one_sample_loss, argnums=(0, 1)), in_dims=(None, None, 0))
    count = 0
    was_training = model.training
    model.eval()
    try:
        with sparse.attached(), vmap_friendly(model), torch.enable_grad():
            for b in _capped(batches, device, max_samples, desc, progress):
                for part in _chunks(b, chunk):
                    gw, gs = per_sample(whole_vals, bases, part)
                    for s, g in zip(sums, list(gs) + list(gw)):
                        g = g.to(s.dtype)
                        s += (g * g).sum(0)
                    count += _n(part)
                    del gw, gs
    finally:
        sparse.set_deltas(None)
        model.train(was_training)
    # sums follow ``trainable()`` order: slice values first, then whole parameters
    return sums, count


def so_update(grad_f: list[torch.Tensor], fisher_sq_sum: list[torch.Tensor], n_retain: int,
              eta: float, damping: float) -> list[torch.Tensor]:
    """η · Σ∇ℓ_f / (F + λ) with F = fisher_sq_sum / n_retain (Eq. 2 with the diagonal Fisher)."""
    if n_retain <= 0:
        raise ValueError("the retain set is empty: the Fisher needs at least one sample")
    return [eta * g / (s / n_retain + damping) for g, s in zip(grad_f, fisher_sq_sum)]


def so_sums(model: nn.Module, sparse: SparseParams, forget: Iterable[Batch],
            retain: Iterable[Batch], kind: str, *, chunk: int, max_samples: int = 0,
            progress: bool = False, engine: str = "auto") -> dict[str, Any]:
    """The sums behind the SO update, computed once: ``grad`` (Σ_{D_f} ∇ℓ, one tensor per
    ``sparse.trainable()``), ``fisher`` (Σ_{D_r} ∇ℓ², same shapes), the sample counts
    ``n_forget`` / ``n_retain`` and the seconds of both passes."""
    t0 = time.perf_counter()
    g, n_f = grad_sum(model, sparse, forget, kind, progress)
    t1 = time.perf_counter()
    s, n_r = fisher_sum(model, sparse, retain, kind, chunk, max_samples, progress,
                        engine=engine)
    t2 = time.perf_counter()
    if n_f == 0:
        raise ValueError("the forget set is empty: nothing to unlearn")
    return {"grad": g, "fisher": s, "n_forget": n_f, "n_retain": n_r,
            "grad_seconds": t1 - t0, "fisher_seconds": t2 - t1}


def apply_so(sparse: SparseParams, sums: dict[str, Any], eta: float,
             damping: float) -> dict[str, Any]:
    """Add ``η · Σ∇ℓ_f / (F + λ)`` (from :func:`so_sums`) to the trainable entries, unless it
    has NaN/inf entries. Returns ``finite``, ``update_norm``, ``update_max``, ``n_forget``,
    ``n_retain``."""
    upd = so_update(sums["grad"], sums["fisher"], sums["n_retain"], eta, damping)
    finite = all(bool(torch.isfinite(u).all()) for u in upd)
    if finite:
        sparse.add_(upd)
    sq = sum(float((u.double() ** 2).sum()) for u in upd) if finite else float("nan")
    return {"n_forget": sums["n_forget"], "n_retain": sums["n_retain"],
            "update_norm": sq ** 0.5, "finite": finite,
            "update_max": max((float(u.abs().max()) for u in upd if u.numel()), default=0.0)
            if finite else float("nan")}


def run_so(model: nn.Module, sparse: SparseParams, forget: Iterable[Batch],
           retain: Iterable[Batch], kind: str, *, eta: float, damping: float, chunk: int,
           max_samples: int = 0, progress: bool = False, engine: str = "auto") -> dict[str, Any]:
    """Apply the (MAPE-)SO update to ``model`` in place (only the trainable entries change):
    :func:`so_sums` then :func:`apply_so`.

    Returns:
        info dict: seconds of each phase, sample counts, update norms, and ``"finite"`` —
        ``False`` when the update had NaN/inf entries, in which case nothing was applied.
    """
    sums = so_sums(model, sparse, forget, retain, kind, chunk=chunk, max_samples=max_samples,
                   progress=progress, engine=engine)
    return {"grad_seconds": sums["grad_seconds"], "fisher_seconds": sums["fisher_seconds"],
            **apply_so(sparse, sums, eta, damping)}
