"""The result of an unlearning run, and its run folder on disk (docs/design.md §5).

A run folder holds::

    config.json        method, selector, sparsity, seed, the full UnlearnConfig, the resolved
                       lr/eta, task, model family, base-model fingerprint, stopped_at and
                       stop_reason
    mask/              the ModuleMask folder (``mape_viz.mask_io``), when the run had one
    metrics.json       history (per step), seconds, peak memory (and how it was measured),
                       changed/trained parameter counts, final metrics, ok/error,
                       stopped_at / stop_reason and the stop checks
    weights.safetensors  only what changed: per parameter ``<name>::values`` (the selected
                       slab) and ``<name>::index`` (its indices along ``dim``; the dims are in
                       the file's metadata); whole parameters as ``<name>::values`` alone

``load_run(folder, base_model)`` copies the base model and writes the slabs back with
``index_copy_``: the rebuilt model equals the unlearned one exactly.

Writing is atomic: everything goes into a temporary folder next to the target, which is
renamed into place at the end; on any error or Ctrl-C the temporary folder is removed, so a
run folder is either complete or absent. An existing folder is replaced only with
``overwrite=True``.

Under ``accelerate launch`` only rank 0 writes (every rank holds the same result); the other
ranks wait for it and return the same path, or raise when rank 0 failed (docs/design.md §10).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..distributed import broadcast_object, process_info
from ..mask_io import load_mask, save_mask
from ..types import ModuleMask, ModuleScores
from .config import UnlearnConfig

RUN_FORMAT = "mape-viz-run/1"
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
MASK = "mask"  # a folder written by mape_viz.mask_io.save_mask


@dataclass
class UnlearnResult:
    """What :func:`mape_viz.unlearning.unlearn` returns.

    Attributes:
        model: the unlearned model (a copy; the input model is never modified).
        mask: the module mask used, or ``None`` for a full (unmasked) run.
        history: one dict per step: ``step`` (0-based; loss terms are computed *before* that
            step's update), ``epoch``, loss terms, ``grad_norm``, ``lr``, ``seconds`` and what
            the callbacks returned (measured *after* the update).
        seconds: wall time of the whole run (scoring + unlearning).
        peak_memory_bytes: see ``peak_memory_kind``.
        peak_memory_kind: ``"cuda_max_allocated"`` (``torch.cuda.max_memory_allocated``
            during the run, after a reset at its start) or ``"cpu_rss_peak_delta"`` (the peak
            resident set during the run above its starting RSS, sampled by a thread:
            ``unlearning/memory.py``; ``tracemalloc`` is not used because it does not see
            torch's allocations).
        n_changed_params: number of parameter entries that differ from the input model.
        n_trainable_params: number of entries the run was allowed to change.
        config: the ``UnlearnConfig``.
        method, selector, sparsity, seed: as called (``selector="given"`` for a passed mask).
        ok: False when the run was stopped by a NaN/inf loss (``error`` says where); the
            model then holds the last good state.
        error: the stop reason, or None.
        scores: the module scores behind the mask (None for full/given masks).
        changes: what changed, per parameter ``{"dim": d | None, "index", "values"}`` (CPU).
        metrics: final evaluation metrics (filled by the caller, e.g. the CLI).
        meta: resolved lr/eta, family, task, timings, base-model fingerprint; with a stop
            rule or guard ``meta["stop"]``: the rule, target, every check's metrics.
        stopped_at: updates in the returned model (SO with a stop rule: the η-ladder rung;
            plain SO: 1); the model is exactly the one after that many updates. None when
            not applicable (RT returning the task's retrained model).
        stop_reason: why the run ended: ``criterion`` (the stop rule held), ``max_steps``,
            ``epochs done``, ``guard`` (the fidelity guard tripped: the model is the last
            checked one within it), ``error`` (NaN/inf), ``one-shot`` (SO), ``eta ladder
            done`` (SO: the rule never held up to η), ``retrained model`` (RT).
    """

    model: nn.Module
    mask: ModuleMask | None
    history: list[dict]
    seconds: float
    peak_memory_bytes: int
    peak_memory_kind: str
    n_changed_params: int
    n_trainable_params: int
    config: UnlearnConfig
    method: str
    selector: str
    sparsity: float
    seed: int = 0
    ok: bool = True
    error: str | None = None
    scores: ModuleScores | None = None
    changes: dict[str, dict] = field(default_factory=dict, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    stopped_at: int | None = None
    stop_reason: str | None = None

    @property
    def steps(self) -> int:
        """Updates in the returned model (``stopped_at``; else the history's length)."""
        return self.stopped_at if self.stopped_at is not None else len(self.history)

    def save(self, folder: str | os.PathLike, overwrite: bool = False,
             extra: dict[str, Any] | None = None) -> Path:
        """Write the run folder (see module doc); returns its path."""
        return save_run(self, folder, overwrite=overwrite, extra=extra)

    def summary(self) -> dict[str, Any]:
        """Scalars for tables: method, selector, sparsity, seconds, memory, counts, ok."""
        return {"method": self.method, "selector": self.selector, "sparsity": self.sparsity,
                "seconds": self.seconds, "peak_memory_bytes": self.peak_memory_bytes,
                "peak_memory_kind": self.peak_memory_kind,
                "n_changed_params": self.n_changed_params,
                "n_trainable_params": self.n_trainable_params, "ok": self.ok,
                "error": self.error, "steps": self.steps, "stopped_at": self.stopped_at,
                "stop_reason": self.stop_reason, **self.metrics}


# ---------------------------------------------------------------------------------------------
# Fingerprints and changes


def fingerprint(model: nn.Module, per_param: int = 256) -> str:
    """A cheap identity check of a model's weights: sha256 over names, shapes, dtypes and up
    to ``per_param`` evenly strided entries of every parameter."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // per_param)
        sample = flat[::step][:per_param].to("cpu", torch.float64).contiguous()
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:32]


def count_changed(before: nn.Module, after: nn.Module) -> int:
    """Number of parameter entries that differ (by name; NaN counts as changed)."""
    b = dict(before.named_parameters())
    n = 0
    for name, p in after.named_parameters():
        q = b.get(name)
        if q is None or q.shape != p.shape:
            n += p.numel()
            continue
        n += int((p.detach().cpu() != q.detach().cpu()).sum())
    return n


def whole_changes(model: nn.Module) -> dict[str, dict]:
    """Every parameter as a whole-parameter change (full runs)."""
    return {n: {"dim": None, "index": None, "values": p.detach().cpu()}
            for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------
# Atomic folder writing


@contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success it replaces ``target``.

    Raises:
        FileExistsError: ``target`` exists and ``overwrite`` is False (checked before and
            after the body runs).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"run folder {target} already exists; choose another --out or "
                              "pass --overwrite (overwrite=True)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            if not overwrite:
                raise FileExistsError(f"run folder {target} appeared while writing; not replaced")
            trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, trash)
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:  # also KeyboardInterrupt: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist()) if x.numel() != 1 else _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # JSON has no NaN/inf
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "item"):
        return _jsonable(x.item())
    return str(x)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def save_weights(changes: dict[str, dict], path: Path) -> None:
    """``changes`` → one safetensors file (``<name>::values``/``::index``, dims in metadata)."""
    tensors: dict[str, torch.Tensor] = {}
    dims: dict[str, int | None] = {}
    for name, ch in changes.items():
        tensors[f"{name}::values"] = ch["values"].detach().to("cpu").contiguous()
        dims[name] = ch["dim"]
        if ch["dim"] is not None:
            # clone: weight and bias slabs may share one index tensor (safetensors refuses)
            tensors[f"{name}::index"] = ch["index"].detach().to("cpu", torch.long).clone()
    save_file(tensors, str(path), metadata={"format": "mape-viz-delta/1", "dims": json.dumps(dims)})


def read_weights(path: str | os.PathLike) -> dict[str, dict]:
    """Inverse of :func:`save_weights`."""
    out: dict[str, dict] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "mape-viz-delta/1":
            raise ValueError(f"{path} is not a mape-viz weights file (format {meta.get('format')!r})")
        for name, dim in json.loads(meta["dims"]).items():
            out[name] = {"dim": dim, "values": f.get_tensor(f"{name}::values"),
                         "index": f.get_tensor(f"{name}::index") if dim is not None else None}
    return out


@torch.no_grad()
def apply_changes(model: nn.Module, changes: dict[str, dict]) -> nn.Module:
    """Write ``changes`` into ``model`` in place (exact copies of the saved values)."""
    params = dict(model.named_parameters())
    missing = [n for n in changes if n not in params]
    if missing:
        raise ValueError(f"the base model has no parameters {missing[:5]}: wrong base model?")
    for name, ch in changes.items():
        p = params[name]
        v = ch["values"].to(p.device, p.dtype)
        if ch["dim"] is None:
            if v.shape != p.shape:
                raise ValueError(f"{name}: saved shape {tuple(v.shape)} != model {tuple(p.shape)}")
            p.copy_(v)
        else:
            p.index_copy_(int(ch["dim"]), ch["index"].to(p.device), v)
    return model


def save_run(result: UnlearnResult, folder: str | os.PathLike, overwrite: bool = False,
             extra: dict[str, Any] | None = None) -> Path:
    """Write ``result`` as a run folder, atomically. ``extra`` is merged into config.json.

    Under a launcher rank 0 writes and the others wait: all return ``folder`` once it is
    complete; when rank 0 fails, it raises its error and the others a ``RuntimeError`` that
    quotes it."""
    folder = Path(folder)
    info = process_info()
    if not info.distributed:
        return _write_run(result, folder, overwrite, extra)
    error = None
    if info.is_main:
        try:
            _write_run(result, folder, overwrite, extra)
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            broadcast_object(error, info)
            raise
    error = broadcast_object(error, info)
    if error is not None:
        raise RuntimeError(f"rank 0 could not write the run folder {folder}: {error}")
    return folder


def _write_run(result: UnlearnResult, folder: Path, overwrite: bool,
               extra: dict[str, Any] | None) -> Path:
    with atomic_dir(folder, overwrite) as tmp:
        cfg = {"format": RUN_FORMAT, "method": result.method, "selector": result.selector,
               "sparsity": result.sparsity, "seed": result.seed,
               "config": result.config.to_dict(), "weights": WEIGHTS,
               "mask": MASK if result.mask is not None else None,
               "stopped_at": result.stopped_at, "stop_reason": result.stop_reason,
               **{k: v for k, v in result.meta.items() if k not in ("timings", "stop")},
               **(extra or {})}
        _write_json(tmp / CONFIG, cfg)
        if result.mask is not None:
            save_mask(result.mask, tmp / MASK)
        metrics = {"ok": result.ok, "error": result.error, "seconds": result.seconds,
                   "peak_memory_bytes": result.peak_memory_bytes,
                   "peak_memory_kind": result.peak_memory_kind,
                   "n_changed_params": result.n_changed_params,
                   "n_trainable_params": result.n_trainable_params,
                   "metrics": result.metrics, "timings": result.meta.get("timings", {}),
                   "stopped_at": result.stopped_at, "stop_reason": result.stop_reason,
                   "stop": result.meta.get("stop"), "history": result.history}
        _write_json(tmp / METRICS, metrics)
        save_weights(result.changes, tmp / WEIGHTS)
    return folder


def read_run(folder: str | os.PathLike) -> dict[str, Any]:
    """``{"config": ..., "metrics": ..., "mask": ModuleMask | None}`` of a run folder."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder} is not a run folder (no {CONFIG})")
    cfg = json.loads((folder / CONFIG).read_text())
    metrics = json.loads((folder / METRICS).read_text()) if (folder / METRICS).is_file() else {}
    mask = None
    if cfg.get("mask"):
        mask = load_mask(folder / cfg["mask"])
    return {"config": cfg, "metrics": metrics, "mask": mask}


def load_run(folder: str | os.PathLike, base_model: nn.Module, check: bool = True) -> nn.Module:
    """Rebuild the unlearned model of a run folder from the model it started from.

    Args:
        folder: a run folder written by :func:`save_run` / ``mape-viz unlearn``.
        base_model: the model the run started from (not modified; a copy is returned).
        check: compare ``base_model``'s fingerprint with the one recorded in the run and raise
            ``ValueError`` on a mismatch.
    """
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder} is not a run folder (no {CONFIG})")
    cfg = json.loads((folder / CONFIG).read_text())
    if check and cfg.get("base_fingerprint") and fingerprint(base_model) != cfg["base_fingerprint"]:
        raise ValueError(f"base_model is not the model the run in {folder} started from "
                         "(fingerprints differ); pass the same base model or check=False")
    model = copy.deepcopy(base_model)
    return apply_changes(model, read_weights(folder / cfg.get("weights", WEIGHTS)))
