"""Loading models (and asking whether the hub can answer): by hub id or from a local folder
(docs/design.md §7). Data files and folders are read by :mod:`mape_viz.tasks.readers`.

Rules: the hub is only contacted when it can answer — offline (``HF_HUB_OFFLINE=1``) or
without network we fail at once with a message that says how to point at local files;
models load from safetensors only, with ``trust_remote_code=False``.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from huggingface_hub import constants
from transformers import (AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel,
                          PreTrainedTokenizerBase)

TRUTHY = {"1", "on", "yes", "true"}


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


def _check_safetensors(folder: Path) -> None:
    if not (any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))):
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise FileNotFoundError(
            f"model folder {folder} has no *.safetensors weights (found: {found}); mape_viz "
            f"loads safetensors only. Convert with `model.save_pretrained(folder)` from a "
            f"trusted environment.")


def _source(model: str | os.PathLike) -> tuple[str, bool, bool]:
    """(what to pass to ``from_pretrained``, local_files_only, hub id that only the HF cache
    can serve now)."""
    path = Path(model).expanduser()
    if path.is_dir():
        _check_safetensors(path)
        return str(path), True, False
    if str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        raise FileNotFoundError(f"model folder not found: {path}")
    cache_only = hub_offline() or not hub_reachable()
    return str(model), cache_only, cache_only


def _not_cached(src: str, err: Exception) -> HubUnavailableError:
    return HubUnavailableError(
        f"model {src!r} is not in the local Hugging Face cache and the hub cannot be used "
        f"(offline or no network). Pass a local folder instead: model='path/to/folder' "
        f"holding config.json, *.safetensors and tokenizer files ({err})")


def _fix_tokenizer(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    return tok


def load_config_and_tokenizer(model: str | os.PathLike
                              ) -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    """(config, tokenizer) of a local folder or hub id without loading the weights (to check
    labels and vocabulary before any training). Same rules as :func:`load_pretrained`."""
    src, local, cache_only = _source(model)
    try:
        config = AutoConfig.from_pretrained(src, local_files_only=local, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(src, local_files_only=local, trust_remote_code=False)
    except OSError as err:
        if not cache_only:
            raise ValueError(f"cannot load the model's config and tokenizer from {src}: "
                             f"{err}") from None
        raise _not_cached(src, err) from None
    return config, _fix_tokenizer(tok)


def load_pretrained(model_cls: Any, model: str | os.PathLike, **kwargs: Any
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) from a local folder or a hub id, safetensors only, no remote code.

    ``model_cls`` is an ``AutoModelFor...`` class; ``kwargs`` go to its ``from_pretrained``.
    Offline, a hub id loads only from the local HF cache (``local_files_only``). The
    tokenizer gets a pad token (eos) if it has none and pads on the right.
    """
    src, local, cache_only = _source(model)
    common = {"use_safetensors": True, "trust_remote_code": False}
    try:
        net = model_cls.from_pretrained(src, local_files_only=local, **common, **kwargs)
        tok = AutoTokenizer.from_pretrained(src, local_files_only=local, trust_remote_code=False)
    except OSError as err:
        if not cache_only:
            raise
        raise _not_cached(src, err) from None
    return net.eval(), _fix_tokenizer(tok)
