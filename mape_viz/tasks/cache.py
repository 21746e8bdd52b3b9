"""On-disk cache of trained models: ``${MAPE_VIZ_CACHE:-~/.cache/mape_viz}/<task>/<hash>/``.

Each entry is a folder with the model (``model.safetensors`` + ``config.json``), its
tokenizer files, and ``mape_viz.json`` (the key the hash was made from, plus training
stats). An entry is written in a temporary sibling folder and renamed into place, so an
interrupted run (Ctrl-C) leaves no half-written entry; ``mape_viz.json`` marks a complete
one.

**Shipped entries** (docs/design.md §7): the package carries entries of the same form under
``mape_viz/tasks/weights/<task>/<hash>/`` (the default world's models, built by
``scripts/build_world.py``). Their ``mape_viz.json`` also lists the SHA-256 of every other file
of the entry; :func:`load_or_train` looks there first, verifies the checksums and loads, so
the default world needs no training. A mismatch raises :class:`ShippedWeightsError`, which
says how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

CACHE_VERSION = 1  # bump when generators or training change what a key produces
MARKER = "mape_viz.json"
#: The package's own entries (built by scripts/build_world.py), looked up before the cache.
SHIPPED_ROOT = Path(__file__).resolve().parent / "weights"
#: What to run when a shipped entry is damaged (quoted in ShippedWeightsError).
REBUILD_COMMAND = "python scripts/build_world.py --force"


class ShippedWeightsError(RuntimeError):
    """A shipped entry's files do not match the checksums recorded in its ``mape_viz.json``."""


def cache_root() -> Path:
    """``$MAPE_VIZ_CACHE`` or ``~/.cache/mape_viz``."""
    return Path(os.environ.get("MAPE_VIZ_CACHE") or "~/.cache/mape_viz").expanduser()


def _plain(obj: Any) -> Any:
    """JSON-able form of ``obj``; a dataclass keeps only its ``compare=True`` fields (fields
    that cannot change a trained model, like a progress bar switch, are ``compare=False``)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj) if f.compare}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def config_hash(key: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``key`` as canonical JSON (dataclasses as dicts)."""
    text = json.dumps(_plain({"version": CACHE_VERSION, **key}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_dir(task: str, key: dict[str, Any]) -> Path:
    """The folder of ``key``'s entry (it may not exist yet)."""
    return cache_root() / task.replace("/", "__") / config_hash(key)


def is_cached(task: str, key: dict[str, Any]) -> bool:
    return (entry_dir(task, key) / MARKER).is_file()


def shipped_dir(task: str, key: dict[str, Any], root: Path | None = None) -> Path | None:
    """The shipped entry for ``key`` (under ``root``, default :data:`SHIPPED_ROOT`), or None."""
    folder = (root or SHIPPED_ROOT) / task.replace("/", "__") / config_hash(key)
    return folder if (folder / MARKER).is_file() else None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_entry(folder: Path) -> dict[str, Any]:
    """Check a shipped entry's files against the ``sha256`` table of its marker; its marker.

    Raises :class:`ShippedWeightsError` naming the files that are missing or differ, with
    the command that rebuilds them.
    """
    marker = json.loads((folder / MARKER).read_text())
    sums = marker.get("sha256")
    if not sums or "model.safetensors" not in sums:
        bad = ["(no sha256 table in mape_viz.json)"]
    else:
        bad = [f"{name}: {'missing' if not (folder / name).is_file() else 'differs'}"
               for name, digest in sorted(sums.items())
               if not (folder / name).is_file() or file_sha256(folder / name) != digest]
    if bad:
        raise ShippedWeightsError(
            f"the weights shipped in {folder} fail their checksum ({'; '.join(bad)}): the "
            f"installed package is damaged or was edited. Reinstall mape-viz, or rebuild them "
            f"from a source checkout with `{REBUILD_COMMAND}`; to train into the cache instead, "
            f"load the task with shipped=False")
    return marker


def write_shipped(entry: Path, root: Path | None = None, force: bool = False,
                  extra_info: dict[str, Any] | None = None) -> Path:
    """Copy the cache entry ``entry`` into the shipped tree (``root``, default
    :data:`SHIPPED_ROOT`), adding the SHA-256 of each file (and ``extra_info`` to ``info``)
    in its marker; the new folder.

    Refuses to replace an existing shipped entry unless ``force``.
    """
    marker = json.loads((entry / MARKER).read_text())
    marker["info"] = {**marker.get("info", {}), **_plain(extra_info or {})}
    task_dir = (root or SHIPPED_ROOT) / entry.parent.name
    dest = task_dir / entry.name
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} exists; pass force=True (--force) to replace it")
    task_dir.mkdir(parents=True, exist_ok=True)
    tmp = task_dir / f".tmp-{entry.name}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(entry, tmp)
        marker["sha256"] = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())
                            if p.is_file() and p.name != MARKER}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def save_entry(folder: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               key: dict[str, Any], info: dict[str, Any]) -> None:
    """Write one entry atomically into ``folder`` (temp folder, then rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(_plain({"key": key, "info": info}), indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same entry first: keep theirs
            if not (folder / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_or_train(task: str, key: dict[str, Any], model_cls: type[PreTrainedModel],
                  train: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase,
                                            dict[str, Any]]], shipped: bool = True
                  ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """The shipped or cached (model, tokenizer, info) for ``key``, or ``train()``'s, saved first.

    ``train`` returns (model, tokenizer, info) where ``info`` is JSON-able (e.g. training
    seconds). With ``shipped``, an entry shipped in the package for ``key`` is verified
    (:func:`verify_entry`) and loaded before the cache is looked at. The model comes back in
    eval mode; ``info["cached"]`` says whether it was loaded from disk, ``info["shipped"]``
    whether from the package, ``info["path"]`` where the entry lives.
    """
    ship = shipped_dir(task, key) if shipped else None
    if ship is not None:
        info = verify_entry(ship)["info"]
        model = model_cls.from_pretrained(ship, use_safetensors=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(ship)
        return model, tokenizer, {**info, "cached": True, "shipped": True, "path": str(ship)}
    folder = entry_dir(task, key)
    if not (folder / MARKER).is_file():
        if folder.exists():  # a stale folder without its marker (should not happen)
            shutil.rmtree(folder)
        model, tokenizer, info = train()
        save_entry(folder, model, tokenizer, key, info)
        cached = False
    else:
        info = json.loads((folder / MARKER).read_text())["info"]
        cached = True
    # reload from disk even after training, so a first and a second call give the same
    # objects (weights round-tripped through safetensors)
    model = model_cls.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer, {**info, "cached": cached, "shipped": False, "path": str(folder)}
