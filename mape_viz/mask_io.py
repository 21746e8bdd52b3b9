"""Save and load a :class:`~mape_viz.types.ModuleMask`.

Format: ``path`` is a **folder** holding two files,

* ``mask.safetensors`` — tensors: ``heads`` / ``filters`` (bool), ``warm_start.heads`` /
  ``warm_start.filters`` (bool, when there is a warm start), ``cost_before.<kind>`` /
  ``cost_after.<kind>`` ((L,), float64 from :func:`~mape_viz.selection.select_modules`),
  ``entries.<parameter name>`` (bool, the entries kept inside each selected slab by
  ``mape+wanda``; absent for module-level masks);
* ``mask.json`` — ``{"format": "mape_viz.ModuleMask", "version": 1, "meta": {...},
  "swaps": [{"layer", "kind", "entered", "left", "delta", "round"}, ...]}``; ``meta`` holds the
  model family, shapes, sparsity, objective, selector, seed, exact_gap, ... as given.

A folder keeps the human-readable JSON next to the tensors and is written atomically as a
whole: both files go into a temporary sibling folder, which is then renamed onto ``path``.
Tensors keep their dtype and floats round-trip exactly (JSON writes floats with ``repr``);
``meta`` comes back as JSON types (a tuple saved comes back a list).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mape_viz.types import MODULE_KINDS, ModuleMask, ModuleTerms, SwapRecord

FORMAT = "mape_viz.ModuleMask"
VERSION = 1
TENSORS_FILE = "mask.safetensors"
JSON_FILE = "mask.json"


def _is_saved_mask(path: Path) -> bool:
    try:
        return path.is_dir() and json.loads((path / JSON_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_mask(mask: ModuleMask, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``mask`` to the folder ``path`` (see the module docstring for the layout).

    Args:
        mask: the mask to save; ``meta`` must be JSON-serialisable.
        path: the folder to create.
        overwrite: replace an existing saved mask at ``path``. Without it an existing ``path``
            raises FileExistsError; with it, ``path`` is replaced only if it is a folder this
            function wrote (anything else is refused, so no unrelated data is deleted).

    Returns:
        The folder's path.
    """
    if not isinstance(mask, ModuleMask):
        raise TypeError(f"mask must be a ModuleMask, got {type(mask).__name__}")
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if not _is_saved_mask(path) or path.is_symlink():
            raise FileExistsError(
                f"{path} exists and is not a saved ModuleMask folder (no {JSON_FILE} of format "
                f"{FORMAT!r}); refusing to replace it even with overwrite=True"
            )

    tensors: dict[str, torch.Tensor] = {}
    for kind in MODULE_KINDS:
        tensors[kind] = _bool_tensor(mask[kind], kind)
        if mask.warm_start is not None:
            tensors[f"warm_start.{kind}"] = _bool_tensor(mask.warm_start[kind], f"warm_start.{kind}")
    for name, costs in (("cost_before", mask.cost_before), ("cost_after", mask.cost_after)):
        for kind, t in costs.items():
            tensors[f"{name}.{kind}"] = t.detach().cpu().contiguous()  # dtype kept: exact round trip
    for name, t in (mask.entries or {}).items():
        tensors[f"entries.{name}"] = _bool_tensor(t, f"entries.{name}")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "has_warm_start": mask.warm_start is not None,
        "has_entries": mask.entries is not None,
        "meta": mask.meta,
        "swaps": [
            {
                "layer": int(s.layer),
                "kind": s.kind,
                "entered": int(s.entered),
                "left": int(s.left),
                "delta": float(s.delta),
                "round": int(s.round),
            }
            for s in mask.swaps
        ],
    }
    try:
        text = json.dumps(doc, indent=1, allow_nan=True)
    except TypeError as e:
        raise TypeError(f"mask.meta must be JSON-serialisable to be saved: {e}") from e

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old: Path | None = None
    try:
        save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": FORMAT, "version": str(VERSION)})
        (tmp / JSON_FILE).write_text(text)
        if path.exists():
            # Move the old folder aside first: a rename onto a non-empty folder fails, and this
            # way the old mask is only deleted once the new one is in place.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "mask")
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old / "mask", path)  # put the old mask back
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _bool_tensor(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.bool:
        raise TypeError(f"mask {name} must be a bool tensor, got {getattr(t, 'dtype', type(t))}")
    return t.detach().cpu().contiguous()


def load_mask(path: str | os.PathLike) -> ModuleMask:
    """Read a mask written by :func:`save_mask`; the result equals the saved one exactly."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no saved mask folder at {path}")
    try:
        doc: dict[str, Any] = json.loads((path / JSON_FILE).read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path} has no {JSON_FILE}: not a saved ModuleMask") from e
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path / JSON_FILE} is not a {FORMAT} file (format={doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path} has format version {doc.get('version')!r}; this code reads version {VERSION}")
    tensors = load_file(str(path / TENSORS_FILE))
    warm = None
    if doc.get("has_warm_start"):
        warm = ModuleTerms(**{k: tensors[f"warm_start.{k}"] for k in MODULE_KINDS})
    costs: dict[str, dict[str, torch.Tensor]] = {"cost_before": {}, "cost_after": {}}
    entries: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        name, _, rest = key.partition(".")
        if name in costs:
            costs[name][rest] = t
        elif name == "entries":
            entries[rest] = t
    return ModuleMask(
        heads=tensors["heads"],
        filters=tensors["filters"],
        warm_start=warm,
        swaps=[SwapRecord(**s) for s in doc["swaps"]],
        cost_before=costs["cost_before"],
        cost_after=costs["cost_after"],
        entries=entries if doc.get("has_entries") else None,
        meta=doc["meta"],
    )
