"""On-disk cache of trained models: ``${MAPE_VIZ_CACHE:-~/.cache/mape_viz}/<task>/<hash>/``.

Each entry is a folder with the model (``model.safetensors`` + ``config.json``), its
tokenizer files, and ``mape_viz.json`` (the key the hash was made from, plus training
stats). An entry is written in a temporary sibling folder and renamed into place, so an
interrupted run (Ctrl-C) leaves no half-written entry; ``mape_viz.json`` marks a complete
one.
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
                                            dict[str, Any]]]
                  ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """The cached (model, tokenizer, info) for ``key``, or ``train()``'s, saved first.

    ``train`` returns (model, tokenizer, info) where ``info`` is JSON-able (e.g. training
    seconds). The model comes back in eval mode; ``info["cached"]`` says whether it was
    loaded from disk, ``info["path"]`` where the entry lives.
    """
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
    return model, tokenizer, {**info, "cached": cached, "path": str(folder)}
