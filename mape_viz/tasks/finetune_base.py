"""Fine-tuning a checkpoint on a task's data, cached by (model checksum, data checksum,
recipe) (docs/design.md §7.3).

A base checkpoint (``BertModel``, a masked-LM, no task head) or one whose head does not fit
the data gets a fresh head, initialised under the recipe's seed, and is fine-tuned with
:func:`mape_viz.tasks.train.train_model` (AdamW, warm-up then linear decay, tqdm
progress). The result lives under ``$MAPE_VIZ_CACHE/<task>/<hash>/`` (see
:mod:`mape_viz.tasks.cache`); the same model bytes, the same rows and the same recipe load
it back instead of training again.

:data:`CPU_RECIPE` is the default for user models: chosen so that 2,000 sentences of at most
64 tokens fine-tune a 6-layer, 384-wide BERT within 10 minutes on 2 CPU cores (measured by
``benchmarks/bench_finetune.py``, see :data:`CPU_RECIPE`). The paper's recipe (5 epochs, lr
2e-5, 128 tokens) is :data:`PAPER_RECIPE`; the named GLUE/SQuAD presets keep it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .base import Collate
from .cache import load_or_train
from .hub import load_pretrained
from .train import TrainConfig, train_model

__all__ = ["CPU_MAX_LENGTH", "CPU_RECIPE", "PAPER_RECIPE", "data_checksum", "finetune",
           "model_checksum"]

#: The paper's BERT-base recipe (Appendix D: 5 epochs, AdamW, lr 2e-5), batch 32.
PAPER_RECIPE = TrainConfig(epochs=5, lr=2e-5, batch_size=32)

#: CPU-sane recipe for user models (benchmarks/bench_finetune.py; docs/design.md §7.3):
#: 2 epochs at lr 5e-5 (the top of BERT's fine-tuning range, so fewer passes suffice),
#: batch 32, one torch thread. Measured on 2,000 generated sentences (mean 36, max 64 tokens)
#: with a 6-layer, 384-wide BERT built from a BertConfig (random init): 126 steps, 314 s of
#: CPU time (≈ 5.2 min on one idle core) and 1,327 s wall on a 2-core machine shared with
#: other jobs (load average ≈ 9). One thread: on the shared machine 2 threads made a step
#: 3x slower; on an idle machine pass ``threads=0`` (torch's default) to try both cores.
CPU_RECIPE = TrainConfig(epochs=2, lr=5e-5, batch_size=32, threads=1)
#: Truncation length (tokens) of the CPU recipe: SST-2 sentences are shorter; longer texts
#: cost time quadratically in attention and linearly everywhere else.
CPU_MAX_LENGTH = 64

#: Weight files larger than this together are checksummed by samples, not read whole.
FULL_HASH_BYTES = 2 << 30
_CHUNK = 8 << 20
_memo: dict[tuple, str] = {}


def _file_digest(path: Path, sample: bool) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        if not sample:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        else:  # 64 evenly spaced 1 MiB windows (the safetensors header is in the first)
            for k in range(64):
                f.seek(k * max(0, size - (1 << 20)) // 63)
                h.update(f.read(1 << 20))
    return h.hexdigest()


def model_checksum(model: str | os.PathLike) -> dict[str, Any]:
    """What identifies a model in a cache key: for a local folder the SHA-256 of its
    ``config.json`` and weight files (``*.safetensors``; above 2 GiB in all, of 64 windows
    per file plus the sizes), for a hub id the id. Remembered per (path, size, mtime) in the
    process."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return {"hub_id": str(model)}
    files = sorted(p for p in path.iterdir()
                   if p.suffix == ".safetensors" or p.name in ("config.json",
                                                               "model.safetensors.index.json"))
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(path.resolve()), stamp)
    if key not in _memo:
        sample = sum(s for _, s, _ in stamp) > FULL_HASH_BYTES
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode())
            h.update(_file_digest(p, sample).encode())
        _memo[key] = h.hexdigest()[:32]
    return {"sha256": _memo[key], "sampled": sum(s for _, s, _ in stamp) > FULL_HASH_BYTES}


def data_checksum(rows: Dataset, columns: Sequence[str]) -> str:
    """SHA-256 (32 hex digits) of ``columns`` of ``rows``, in row order."""
    h = hashlib.sha256()
    for col in columns:
        h.update(col.encode())
        for start in range(0, len(rows), 10_000):
            chunk = rows[start:start + 10_000][col]
            h.update(json.dumps(chunk, default=str, ensure_ascii=False).encode())
    return h.hexdigest()[:32]


def finetune(task: str, model_cls: type[PreTrainedModel], model: str | os.PathLike,
             rows: Dataset, columns: Sequence[str],
             collate_for: Callable[[PreTrainedTokenizerBase], Collate], recipe: TrainConfig,
             key: Mapping[str, Any], desc: str, load_kwargs: Mapping[str, Any] | None = None
             ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """``model`` fine-tuned on ``rows`` (or loaded from the cache), eval mode.

    Args:
        task: the cache folder (``"text-classification"``, ``"glue/sst2"`` ...).
        model_cls: the ``AutoModelFor...`` class (its head is made fresh when the checkpoint
            has none or one of another shape: ``ignore_mismatched_sizes``).
        model: local folder or hub id of the starting checkpoint.
        rows: the training rows (e.g. D, or D_r for the retrained model).
        columns: the columns of ``rows`` the model sees (part of the data checksum).
        collate_for: tokenizer -> collator.
        recipe: the training configuration.
        key: everything else that decides the result (max length, labels, role ...).
        desc: the progress bar's label.
        load_kwargs: for ``from_pretrained`` (``num_labels``, ``id2label`` ...).
    Returns:
        (model, tokenizer, info): ``info`` has ``seconds``, ``cpu_seconds``, ``steps``,
        ``final_loss`` (of the training run, also when loaded), ``cached``, ``path``.
    """
    kwargs = dict(load_kwargs or {})

    def fit():
        torch.manual_seed(recipe.seed)  # the fresh head's initialisation
        net, tok = load_pretrained(model_cls, model, ignore_mismatched_sizes=True, **kwargs)
        stats = train_model(net, rows, collate_for(tok), recipe, desc=desc)
        return net, tok, {**stats, "rows": len(rows)}

    full_key = {**key, "model": model_checksum(model), "data": data_checksum(rows, columns),
                "train": recipe}
    net, tok, info = load_or_train(task, full_key, model_cls, fit)
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return net, tok, info
