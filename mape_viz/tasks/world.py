"""The default world's shipped models: quality bars, and the build that produces them
(docs/design.md §7).

``scripts/build_world.py`` calls :func:`build_world`: it trains the ``toy-sentiment``
original model (on D) and the model retrained without the 32 canaries (on D_r) from scratch
in a fresh cache, checks them against :data:`QUALITY_BARS`, and copies both entries, with
the SHA-256 of each file, into ``mape_viz/tasks/weights``. ``load_task("toy-sentiment",
forget="canaries")`` then loads them (checksums verified) instead of training.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..metrics.classification import accuracy
from ..metrics.evaluate import classify
from .base import Task, coerce_dataclass
from .cache import MARKER, SHIPPED_ROOT, file_sha256, write_shipped
from .tiny_models import TinyBertSpec
from .toy_sentiment import CACHE_NAME, SIZES, toy_sentiment

#: (model role, split) -> (comparison, bound) every shipped world must meet. The canaries
#: are rows whose label contradicts the rule: the original must have memorised them, the
#: model retrained without them must follow the rule (and so get them wrong).
QUALITY_BARS: dict[tuple[str, str], tuple[str, float]] = {
    ("original", "test"): (">=", 0.98),
    ("original", "forget"): (">=", 0.97),
    ("retrained", "test"): (">=", 0.98),
    ("retrained", "forget"): ("<=", 0.10),
}


def split_accuracy(model: torch.nn.Module, task: Task, split: str,
                   batch_size: int = 256) -> float:
    """Accuracy of a classifier on one split of ``task`` (labels as stored in the rows)."""
    lp, y = classify(model, task.batches(split, batch_size))
    return accuracy(lp.argmax(-1), y)


def world_quality(task: Task, splits: Sequence[str] = ("test", "forget", "retain")
                  ) -> dict[str, dict[str, float]]:
    """``{"original" | "retrained": {split: accuracy}}`` of a toy task's two models (the
    retrained one only when the task has it), on ``splits``."""
    models = {"original": task.model, "retrained": task.retrained_model}
    return {role: {split: split_accuracy(m, task, split) for split in splits}
            for role, m in models.items() if m is not None}


def quality_failures(quality: dict[str, dict[str, float]]) -> list[str]:
    """The :data:`QUALITY_BARS` that ``quality`` (from :func:`world_quality`) misses, as
    readable lines (empty when all hold)."""
    out = []
    for (role, split), (op, bound) in QUALITY_BARS.items():
        value = quality.get(role, {}).get(split)
        ok = value is not None and (value >= bound if op == ">=" else value <= bound)
        if not ok:
            out.append(f"{role} {split} accuracy {value} is not {op} {bound}")
    return out


@contextmanager
def _cache_at(folder: Path) -> Iterator[None]:
    """Run the block with ``$MAPE_VIZ_CACHE`` set to ``folder`` (restored after)."""
    old = os.environ.get("MAPE_VIZ_CACHE")
    os.environ["MAPE_VIZ_CACHE"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAPE_VIZ_CACHE", None)
        else:
            os.environ["MAPE_VIZ_CACHE"] = old


def build_world(cache: str | os.PathLike, dest: str | os.PathLike | None = None,
                size: str = "toy-sentiment", force: bool = False,
                write_failing: bool = False) -> dict[str, Any]:
    """Train the shipped models of ``size`` from scratch and (if they pass) ship them.

    Args:
        cache: an empty folder to train into (used as ``$MAPE_VIZ_CACHE`` during the build,
            so no earlier cache entry is reused).
        dest: the shipped-weights root to write to (default: the package's,
            ``mape_viz/tasks/weights``). Nothing is written when a bar fails (unless
            ``write_failing``).
        size: a key of ``toy_sentiment.SIZES``.
        force: replace the entries of this size that exist under ``dest`` (checked before
            training; without it, existing entries stop the build at once).
        write_failing: write even when a quality bar fails.

    Returns:
        ``{"size", "quality", "failures", "models": {role: {"seconds", "cpu_seconds",
        "steps", "final_loss", "params", "files": {name: bytes}, "sha256" (of the weights),
        "identical_to_previous" (None when nothing was shipped before), "path" (when
        written)}}, "written", "removed" (superseded entries), "build_seconds"}``.
    """
    if size not in SIZES:
        raise ValueError(f"unknown toy-sentiment size {size!r}; known: {', '.join(SIZES)}")
    cache = Path(cache)
    if cache.exists() and any(cache.iterdir()):
        raise FileExistsError(f"build cache {cache} is not empty: give an empty or new folder, "
                              "so that every model is trained from scratch")
    root = Path(dest) if dest is not None else SHIPPED_ROOT
    arch = asdict(coerce_dataclass(TinyBertSpec, None, SIZES[size].arch))
    old = _entries_of(root, arch)
    if old and not force:
        raise FileExistsError(f"shipped {size} weights exist ({', '.join(str(p) for p in old)}); "
                              "pass force=True (--force) to replace them")
    with _cache_at(cache):
        t0 = time.perf_counter()
        task = toy_sentiment(forget="canaries", size=size, shipped=False)
        build_s = time.perf_counter() - t0
    quality = world_quality(task)
    failures = quality_failures(quality)
    write = not failures or write_failing
    models: dict[str, Any] = {}
    previous = {json.loads((p / MARKER).read_text())["key"]["role"]: p for p in old}
    for role, info in task.meta["models"].items():
        entry = Path(info["path"])
        model = task.model if role == "original" else task.retrained_model
        prev = previous.get(role)
        new_sum = file_sha256(entry / "model.safetensors")
        models[role] = {k: info[k] for k in ("seconds", "cpu_seconds", "steps", "final_loss")}
        models[role].update(
            params=sum(p.numel() for p in model.parameters()),
            files={p.name: p.stat().st_size for p in sorted(entry.iterdir()) if p.is_file()},
            sha256=new_sum,
            identical_to_previous=None if prev is None
            else file_sha256(prev / "model.safetensors") == new_sum)
        if write:
            shipped = write_shipped(entry, root, force=force,
                                    extra_info={"quality": quality[role]})
            models[role]["path"] = str(shipped)
    removed = []
    if write:  # entries of this size built from other keys are now superseded
        kept = {m["path"] for m in models.values()}
        for p in _entries_of(root, arch):
            if str(p) not in kept:
                shutil.rmtree(p)
                removed.append(str(p))
    return {"size": size, "quality": quality, "failures": failures, "models": models,
            "written": write, "removed": removed, "build_seconds": build_s}


def _entries_of(root: Path, arch: dict[str, Any]) -> list[Path]:
    """Shipped toy-sentiment entries under ``root`` whose model has the shape ``arch``."""
    folder = root / CACHE_NAME
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if (p / MARKER).is_file()
            and json.loads((p / MARKER).read_text())["key"].get("arch") == arch]
