"""Several processes under ``accelerate launch`` (docs/design.md §10).

Scoring is a sum over samples, so it shards: every process is handed the *same* batches,
takes every ``world``-th one (batch ``i`` goes to rank ``i % world``), and the sums are
all-reduced. Nothing here builds process groups: :class:`accelerate.PartialState` sets one up
from the variables ``accelerate launch`` (or ``torchrun``) exports, and the collectives are
``accelerate.utils.reduce`` / ``gather_object``. In a plain ``python`` process every function
is the one-process identity, and no process group is created.

    accelerate launch --num_processes 2 my_script.py     # my_script calls mv.score_modules(...)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env, reduce

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
