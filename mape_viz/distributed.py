"""Several processes under ``accelerate launch`` (docs/design.md §10).

Scoring is a sum over samples, so it shards: every process is handed the *same* batches,
takes every ``world``-th one (batch ``i`` goes to rank ``i % world``), and the sums are
all-reduced. Nothing here builds process groups: :class:`accelerate.PartialState` sets one up
from the variables ``accelerate launch`` (or ``torchrun``) exports, and the collectives are
``accelerate.utils.reduce`` / ``gather_object``. In a plain ``python`` process every function
is the one-process identity, and no process group is created.

Masked unlearning (GA, GD, NPO, ...; ``unlearning/finetune.py``) shards *rows*, not batches:
each global step's forget batch and retain batch are split by :func:`row_shards` so that every
rank holds the same fraction of both, its loss is weighted by that fraction, and the trained
gradients are summed (:func:`all_reduce_grads_`) — the update is the one-process update of the
same global batches. No DDP wrapper: the trained tensors (``SparseParams.values``) live outside
the model, and every rank applies the same AdamW step to the same summed gradients.

    accelerate launch --num_processes 2 my_script.py     # my_script calls mv.score_modules(...)
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object, parse_flag_from_env, reduce

T = TypeVar("T")

#: Variables a launcher (``accelerate launch``, ``torchrun``) exports to every process.
LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands.

    Attributes:
        rank: this process's index in ``[0, world)``.
        world: number of processes (1 outside a launcher).
        device: the device the collectives run on (``accelerate``'s device for this process;
            CPU for gloo).
    """

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launched() -> bool:
    """True when this process was started by a launcher with more than one process, or a
    ``torch.distributed`` process group is already initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size() > 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _cpu_only() -> bool:
    """Processes talk over gloo on CPU: ``--cpu`` was asked for (``ACCELERATE_USE_CPU``), or
    the machine has no accelerator."""
    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    return torch.accelerator.current_accelerator() is None


def process_info() -> ProcessInfo:
    """Rank, world size and device; initialises ``accelerate``'s process group on first use
    under a launcher (a no-op single-process answer otherwise). On a machine without an
    accelerator the group is gloo on CPU (``accelerate.PartialState(cpu=True)``)."""
    if not launched():
        return ProcessInfo(rank=0, world=1, device=torch.device("cpu"))
    state = PartialState(cpu=_cpu_only())
    return ProcessInfo(rank=state.process_index, world=state.num_processes, device=state.device)


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files."""
    return process_info().is_main


def barrier(info: ProcessInfo | None = None) -> None:
    """Wait until every process gets here (a no-op in one process)."""
    info = info or process_info()
    if info.world > 1:
        PartialState().wait_for_everyone()


@contextmanager
def main_process_first(info: ProcessInfo | None = None) -> Iterator[None]:
    """Rank 0 runs the block first, the others after it (e.g. loading a task that builds a
    cache: rank 0 writes it, the others read it). Plain block in one process."""
    info = info or process_info()
    if not info.is_main:
        barrier(info)
    try:
        yield
    finally:  # also when rank 0 fails: the others then meet the same error themselves
        if info.is_main:
            barrier(info)


def shard(batches: Iterable[T], info: ProcessInfo | None = None) -> Iterator[tuple[int, T]]:
    """``(global index, batch)`` for this process's batches: ``i % world == rank``.

    Every process must be handed the same batches in the same order. A ``Sequence`` (a list
    of collated batches) is indexed, so other ranks' batches are never touched; any other
    iterable (a ``DataLoader``) is walked and the other ranks' batches are skipped (their
    collation is the only cost).
    """
    info = info or process_info()
    if info.world == 1:
        yield from enumerate(batches)
        return
    if isinstance(batches, Sequence) and not isinstance(batches, (str, bytes)):
        for i in range(info.rank, len(batches), info.world):
            yield i, batches[i]
        return
    for i, b in enumerate(batches):
        if i % info.world == info.rank:
            yield i, b


def all_reduce_sum(tensors: Mapping[str, torch.Tensor],
                   info: ProcessInfo | None = None) -> dict[str, torch.Tensor]:
    """``{name: Σ over processes}``; each result on the input's device and dtype.

    Tensors travel on the process's collective device (CUDA for NCCL, CPU for gloo); float64
    stays float64. Every process must call this with the same names and shapes.
    """
    info = info or process_info()
    if info.world == 1:
        return {k: v.clone() for k, v in tensors.items()}
    moved = {k: v.to(info.device) for k, v in tensors.items()}
    summed = reduce(moved, reduction="sum")
    return {k: summed[k].to(tensors[k].device) for k in tensors}


def all_gather_list(items: list[Any], info: ProcessInfo | None = None) -> list[Any]:
    """Concatenate every process's (picklable, small) list, rank 0's items first."""
    info = info or process_info()
    if info.world == 1:
        return list(items)
    return gather_object(list(items))


def broadcast_object(obj: T, info: ProcessInfo | None = None) -> T:
    """Rank 0's ``obj`` (picklable, small) on every process: the value all ranks decide on
    (e.g. a stop check's metrics). The identity in one process."""
    info = info or process_info()
    if info.world == 1:
        return obj
    return broadcast_object_list([obj], from_process=0)[0]


# ---------------------------------------------------------------------------------------------
# Row shards of one global step (masked unlearning under DDP, docs/design.md §10)


@dataclass(frozen=True)
class RowShard:
    """This rank's rows of one global step.

    Attributes:
        spans: per set (e.g. forget, retain), the ``(start, stop)`` rows of the global batch
            this rank takes (``start == stop``: none).
        weight: the fraction of *every* set's rows this rank holds (``n_rank / n_global``, the
            same for each set), by which its loss is multiplied before the gradients are summed.
    """

    spans: tuple[tuple[int, int], ...]
    weight: float

    @property
    def empty(self) -> bool:
        return self.weight == 0.0


def row_shards(sizes: Sequence[int], world: int) -> list[RowShard]:
    """Split global batches of ``sizes`` rows (one per set read in a step) over ``world``
    ranks so that each rank holds the *same fraction* of every set.

    A method loss is an affine combination of per-set batch means (−E_f[ℓ] + w·E_r[ℓ], NPO's
    E_f[log σ(·)], SA's E_r[ℓ] + γ‖θ‖₁, ...). If rank k holds the fraction ``w_k`` of every
    set, ``Σ_k w_k · loss(rows of k)`` is exactly the loss of the global batches, and so is
    the sum of the weighted gradients. With ``g = gcd(sizes)`` each set is cut into ``g``
    equal units of ``size / g`` rows; ranks get ``g // world`` units each, the first
    ``g % world`` ranks one more — a rank may get none (``g < world``: e.g. a forget batch
    of 3 beside a retain batch of 4 goes to rank 0 whole).

    Raises:
        ValueError: no sizes, a size < 1, or ``world`` < 1.
    """
    if world < 1 or not sizes or any(int(n) < 1 for n in sizes):
        raise ValueError(f"row_shards needs sizes >= 1 and world >= 1, got {list(sizes)}, {world}")
    g = 0
    for n in sizes:
        g = math.gcd(g, int(n))
    units = [g // world + (1 if r < g % world else 0) for r in range(world)]
    out, start = [], 0
    for u in units:
        spans = tuple((start * n // g, (start + u) * n // g) for n in sizes)
        out.append(RowShard(spans=spans, weight=u / g))
        start += u
    return out


def batch_rows(batch: Mapping[str, Any]) -> int:
    """Rows (samples) of a batch dict: the first dimension of ``input_ids``."""
    return int(torch.as_tensor(batch["input_ids"]).shape[0])


def slice_rows(batch: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Rows ``start:stop`` of a batch: every tensor (and list) whose first dimension is the
    batch's row count is cut; anything else (scalars, shared tensors) is kept as is."""
    n = batch_rows(batch)
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n:
            out[k] = v[start:stop]
        elif isinstance(v, (list, tuple)) and len(v) == n:
            out[k] = type(v)(v[start:stop])
        else:
            out[k] = v
    return out


def shard_step(batches: Sequence[Mapping[str, Any] | None],
               info: ProcessInfo | None = None) -> tuple[list[dict[str, Any] | None], float]:
    """This rank's rows of one global step's batches (None stays None) and its loss weight
    (:func:`row_shards`); ``(batches, 1.0)`` in one process. A rank whose weight is 0 gets
    None for every set: it computes no loss but still joins the gradient sum."""
    info = info or process_info()
    if info.world == 1:
        return [dict(b) if b is not None else None for b in batches], 1.0
    present = [i for i, b in enumerate(batches) if b is not None]
    if not present:
        raise ValueError("a step needs at least one batch")
    mine = row_shards([batch_rows(batches[i]) for i in present], info.world)[info.rank]
    out: list[dict[str, Any] | None] = [None] * len(batches)
    if not mine.empty:
        for i, (a, b) in zip(present, mine.spans):
            out[i] = slice_rows(batches[i], a, b)
    return out, mine.weight


def all_reduce_grads_(params: Sequence[torch.Tensor], info: ProcessInfo | None = None) -> None:
    """Sum ``p.grad`` over processes, in place, for every tensor in ``params``.

    One flat buffer per dtype travels (a rank without a gradient for a tensor sends zeros).
    A tensor no rank has a gradient for keeps ``grad = None`` — as in one process, where
    AdamW then skips it. Every rank ends with the same gradients, bit for bit.
    """
    info = info or process_info()
    if info.world == 1:
        return
    params = list(params)
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
    has = all_reduce_sum({"has": has}, info)["has"]
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in live:
        by_dtype.setdefault(p.dtype, []).append(p)
    flat = {str(dt): torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                for p in ps]) for dt, ps in by_dtype.items()}
    summed = all_reduce_sum(flat, info)
    for dt, ps in by_dtype.items():
        buf, at = summed[str(dt)], 0
        for p in ps:
            g = buf[at:at + p.numel()].view_as(p).to(p.device)
            at += p.numel()
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)


def all_reduce_floats(values: Mapping[str, float],
                      info: ProcessInfo | None = None) -> dict[str, float]:
    """``{name: Σ over processes}`` of every rank's floats; the names may differ per rank
    (a rank that computed no loss sends ``{}``); missing names count as 0. float64 sums in
    rank order, so every rank gets the same numbers."""
    info = info or process_info()
    if info.world == 1:
        return dict(values)
    per_rank = all_gather_list([dict(values)], info)
    names: list[str] = []
    for d in per_rank:
        names += [k for k in d if k not in names]
    return {k: math.fsum(float(d.get(k, 0.0)) for d in per_rank) for k in names}
