"""Loading real data and models: by hub name, or from local files / folders.

Rules: the hub is only contacted when it can answer — offline (``HF_HUB_OFFLINE=1``) or
without network we fail at once with a message that says how to point at local files;
models load from safetensors only, with ``trust_remote_code=False``.

Local data (``data_files``):
- a dict ``{name: path or [paths]}`` (``name`` = a split, e.g. ``"train"``, or for TOFU a
  config, e.g. ``"forget05"``); or
- a folder holding ``<name>.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` (or
  ``<name>-*.<ext>`` shards), with the same columns as the hub set.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from datasets import Dataset, load_dataset
from huggingface_hub import constants
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

EXTENSIONS = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}
TRUTHY = {"1", "on", "yes", "true"}

DataFiles = str | os.PathLike | Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]]


class HubUnavailableError(RuntimeError):
    """The Hugging Face Hub cannot be used (offline mode or no network)."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)
    is set now or was set when ``huggingface_hub`` was imported."""
    env = any(os.environ.get(v, "").strip().lower() in TRUTHY
              for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` seconds
    (DNS included: it runs in a daemon thread that is abandoned on timeout)."""
    url = urlparse(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def require_hub(what: str, hint: str) -> None:
    """Raise ``HubUnavailableError`` unless the hub can be asked for ``what`` right now."""
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        reason = "the Hugging Face Hub cannot be reached (no network?)"
    else:
        return
    raise HubUnavailableError(f"cannot load {what} from the hub: {reason}. {hint}")


def _files_for(folder: Path, name: str) -> tuple[str, list[str]] | None:
    """(builder, files) of ``<name>.<ext>`` or ``<name>-*.<ext>`` in ``folder``, or None."""
    for ext, builder in EXTENSIONS.items():
        files = sorted(folder.glob(f"{name}.{ext}")) + sorted(folder.glob(f"{name}-*.{ext}"))
        if files:
            return builder, [str(f) for f in files]
    return None


def _builder(paths: Sequence[str]) -> str:
    exts = {Path(p).name.split(".")[-1].lower() for p in paths}
    builders = {EXTENSIONS.get(e) for e in exts}
    if len(builders) != 1 or None in builders:
        raise ValueError(f"data files must all be one of {sorted(EXTENSIONS)}, got {sorted(exts)}")
    return builders.pop()


def local_split(data_files: DataFiles, names: Sequence[str]) -> Dataset:
    """The first of ``names`` found in ``data_files`` (dict or folder), as a ``Dataset``.

    Raises ``KeyError`` when none is there, ``FileNotFoundError`` for a missing folder or
    file, ``ValueError`` for a single file or an unknown extension."""
    if isinstance(data_files, Mapping):
        for name in names:
            if name in data_files:
                raw = data_files[name]
                paths = [str(raw)] if isinstance(raw, (str, os.PathLike)) else [str(p) for p in raw]
                missing = [p for p in paths if not Path(p).is_file()]
                if missing:
                    raise FileNotFoundError(f"data file(s) not found: {missing}")
                return load_dataset(_builder(paths), data_files={"data": paths}, split="data")
        raise KeyError(f"data_files has none of {list(names)} (it has {sorted(data_files)})")
    folder = Path(data_files)
    if folder.is_file():
        raise ValueError(f"data_files={str(folder)!r} is one file; give a folder of "
                         f"<split>.<ext> files or a dict {{split: file}}, e.g. "
                         f"{{{names[0]!r}: {str(folder)!r}}}")
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder} (give a folder or a dict "
                                f"{{split: file}})")
    for name in names:
        found = _files_for(folder, name)
        if found is not None:
            return load_dataset(found[0], data_files={"data": found[1]}, split="data")
    raise KeyError(f"{folder} holds none of {', '.join(f'{n}.jsonl/.csv/.parquet' for n in names)}")


def open_split(hub_path: str, hub_config: str | None, hub_split: str,
               data_files: DataFiles | None, local_names: Sequence[str], hint: str,
               required: bool = True) -> Dataset | None:
    """One split, from local files when ``data_files`` is given, else from the hub.

    Args:
        hub_path, hub_config, hub_split: where the hub keeps it (``load_dataset`` args).
        data_files: local files (see module doc) or ``None`` for the hub.
        local_names: file stems / dict keys to look for, first match wins.
        hint: how to point at local files (appended to hub errors).
        required: when False, a missing local split gives ``None``.
    """
    if data_files is not None:
        try:
            return local_split(data_files, local_names)
        except KeyError:
            if required:
                raise
            return None
    require_hub(f"dataset {hub_path!r}" + (f" ({hub_config})" if hub_config else ""), hint)
    return load_dataset(hub_path, hub_config, split=hub_split)


def _check_safetensors(folder: Path) -> None:
    if not (any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))):
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise FileNotFoundError(
            f"model folder {folder} has no *.safetensors weights (found: {found}); mape_viz "
            f"loads safetensors only. Convert with `model.save_pretrained(folder)` from a "
            f"trusted environment.")


def load_pretrained(model_cls: Any, model: str | os.PathLike, **kwargs: Any
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) from a local folder or a hub id, safetensors only, no remote code.

    ``model_cls`` is an ``AutoModelFor...`` class; ``kwargs`` go to its ``from_pretrained``.
    Offline, a hub id loads only from the local HF cache (``local_files_only``). The
    tokenizer gets a pad token (eos) if it has none and pads on the right.
    """
    path = Path(model).expanduser()
    common = {"use_safetensors": True, "trust_remote_code": False}
    cache_only = False  # a hub id while the hub cannot answer: only the HF cache can
    if path.is_dir():
        _check_safetensors(path)
        src, local = str(path), True
    elif str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        raise FileNotFoundError(f"model folder not found: {path}")
    else:
        src = str(model)
        local = cache_only = hub_offline() or not hub_reachable()
    try:
        net = model_cls.from_pretrained(src, local_files_only=local, **common, **kwargs)
        tok = AutoTokenizer.from_pretrained(src, local_files_only=local, trust_remote_code=False)
    except OSError as err:
        if not cache_only:
            raise
        raise HubUnavailableError(
            f"model {src!r} is not in the local Hugging Face cache and the hub cannot be used "
            f"(offline or no network). Pass a local folder instead: model='path/to/folder' "
            f"holding config.json, *.safetensors and tokenizer files ({err})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    return net.eval(), tok
