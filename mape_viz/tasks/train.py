"""A small, deterministic fine-tuning loop (AdamW, linear warm-up and decay, tqdm).

Used to train the tiny default models (on D and on D_r alone) and to fine-tune real
classifiers (paper: 5 epochs, AdamW, lr 2e-5).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel


@dataclass
class TrainConfig:
    """How a model is trained.

    Attributes:
        epochs: passes over the training set.
        lr: peak AdamW learning rate.
        batch_size: rows per step.
        weight_decay: AdamW weight decay.
        warmup: fraction of steps with a linear warm-up (then linear decay to 0).
        max_grad_norm: gradient clipping norm (0 = off).
        seed: seeds the shuffling (and dropout, if any).
        threads: torch intra-op threads while training (0 = leave torch's setting). Tiny
            models train fastest on 1 thread, and far faster than on 2 when the CPU is
            shared (a thread waiting for a busy core stalls every step).
        progress: show a tqdm progress bar.
    """

    epochs: int = field(default=5, metadata={"help": "passes over the training set"})
    lr: float = field(default=2e-5, metadata={"help": "peak AdamW learning rate"})
    batch_size: int = field(default=32, metadata={"help": "rows per step"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup: float = field(default=0.06, metadata={"help": "warm-up fraction of steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip norm, 0 = off"})
    seed: int = field(default=0, metadata={"help": "shuffling seed"})
    threads: int = field(default=0, metadata={"help": "torch threads, 0 = torch default"},
                         compare=False)
    progress: bool = field(default=True, metadata={"help": "show a progress bar"},
                           compare=False)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``n <= 0``: unchanged)."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_model(model: PreTrainedModel, rows: Sequence[dict[str, Any]],
                collate: Callable[[list[dict]], dict[str, torch.Tensor]], cfg: TrainConfig,
                desc: str = "train") -> dict[str, float]:
    """Train ``model`` in place on ``rows`` (dataset rows, collated per batch); eval mode after.

    The loss is the model's own (``labels`` / ``start_positions`` in the batch); batches
    go to the model's device.

    Returns:
        ``{"seconds", "cpu_seconds", "steps", "final_loss"}``: wall and CPU time (CPU time
        is what the run costs on an idle machine with ``threads=1``), steps, and the mean
        loss of the last epoch.
    """
    with torch_threads(cfg.threads):
        return _train(model, rows, collate, cfg, desc)


def _train(model: PreTrainedModel, rows: Sequence[dict[str, Any]],
           collate: Callable[[list[dict]], dict[str, torch.Tensor]], cfg: TrainConfig,
           desc: str) -> dict[str, float]:
    rows = rows.to_list() if hasattr(rows, "to_list") else list(rows)  # datasets.Dataset
    if not rows:
        raise ValueError("cannot train on an empty dataset")
    start, cpu_start = time.perf_counter(), time.process_time()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup * total))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    device = next(model.parameters()).device
    model.train()
    bar = tqdm(total=total, desc=desc, disable=not cfg.progress, leave=False)
    losses: list[float] = []
    for _ in range(cfg.epochs):
        losses = []
        for chunk in torch.randperm(len(rows), generator=gen).split(cfg.batch_size):
            batch = collate([rows[int(i)] for i in chunk])
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    model.eval()
    return {"seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start, "steps": total,
            "final_loss": sum(losses) / len(losses)}
