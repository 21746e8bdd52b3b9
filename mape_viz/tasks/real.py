"""Real tasks: GLUE SST-2 / MNLI / QQP, SQuAD v1.1 / v2 here; TOFU, WMDP, MMLU in
``real_lm``.

Each loads by hub name or from local files of the same format (``data_files=``: a folder
or a dict, see ``hub``), and a model by hub id or local folder (``model=``, safetensors
only). Classification and extractive QA fine-tune the loaded model on D (paper: 5 epochs,
AdamW, lr 2e-5; cached like the tiny models) unless ``finetune=False`` (the folder is
already fine-tuned); ``retrain=True`` also fine-tunes a fresh copy on D_r (the gold
model). Forget sets: 128 random training rows by ``seed`` (16 or 42 in the paper).

The table ``SPECS`` holds what differs between datasets; ``_supervised`` builds the
classification and extractive-QA tasks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, Value
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from .base import TASKS, Task, coerce_dataclass
from .cache import load_or_train
from .collate import ClassificationCollator, ExtractiveQACollator
from .hub import DataFiles, load_pretrained, open_split
from .splits import resolve_forget, split_train
from .train import TrainConfig, train_model

FINETUNE = TrainConfig(epochs=5, lr=2e-5, batch_size=32)  # the paper's BERT-base recipe


@dataclass(frozen=True)
class RealSpec:
    """What one real dataset looks like.

    Attributes:
        kind: task kind (see ``Task``).
        hub: (path, config) of the hub dataset.
        train_split, eval_split: hub split names of D and of the test set.
        columns: columns every row must have.
        text_key, pair_key: classification input columns.
        label_names: class names (classification).
        model: default model id (used only when the hub can be reached).
    """

    kind: str
    hub: tuple[str, str | None]
    train_split: str
    eval_split: str
    columns: tuple[str, ...]
    text_key: str = ""
    pair_key: str | None = None
    label_names: tuple[str, ...] = ()
    model: str = "google-bert/bert-base-uncased"


SPECS: dict[str, RealSpec] = {
    "glue/sst2": RealSpec("classification", ("nyu-mll/glue", "sst2"), "train", "validation",
                          ("sentence", "label"), "sentence", None, ("negative", "positive")),
    "glue/mnli": RealSpec("classification", ("nyu-mll/glue", "mnli"), "train",
                          "validation_matched", ("premise", "hypothesis", "label"), "premise",
                          "hypothesis", ("entailment", "neutral", "contradiction")),
    "glue/qqp": RealSpec("classification", ("nyu-mll/glue", "qqp"), "train", "validation",
                         ("question1", "question2", "label"), "question1", "question2",
                         ("not_duplicate", "duplicate")),
    "squad": RealSpec("extractive_qa", ("rajpurkar/squad", None), "train", "validation",
                      ("question", "context", "answers")),
    "squad_v2": RealSpec("extractive_qa", ("rajpurkar/squad_v2", None), "train", "validation",
                         ("question", "context", "answers")),
    "tofu": RealSpec("causal_lm", ("locuslab/TOFU", None), "train", "train",
                     ("question", "answer"), model="locuslab/tofu_ft_llama2-7b"),
    "wmdp": RealSpec("multiple_choice", ("cais/wmdp", "wmdp-bio"), "test", "test",
                     ("question", "choices", "answer"), model="HuggingFaceH4/zephyr-7b-beta"),
    "mmlu": RealSpec("multiple_choice", ("cais/mmlu", "all"), "test", "test",
                     ("question", "choices", "answer"), model="HuggingFaceH4/zephyr-7b-beta"),
}


def local_files_hint(name: str, files: str) -> str:
    return (f"Point at local files instead: load_task({name!r}, data_files='path/to/folder', "
            f"model='path/to/model_folder'), the folder holding {files} "
            f"(json/jsonl/csv/parquet, same columns as the hub set).")


def prepare_split(ds: Dataset, spec: RealSpec, what: str, limit: int | None) -> Dataset:
    """Check columns, drop unlabelled rows, parse JSON answer strings (CSV), add ``idx``,
    keep the first ``limit`` rows."""
    missing = [c for c in spec.columns if c not in ds.column_names]
    if missing:
        raise ValueError(f"{what} lacks columns {missing} (has {ds.column_names})")
    if spec.kind == "classification":
        ds = ds.filter(lambda r: int(r["label"]) >= 0)  # GLUE test splits are unlabelled
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    for col in ("answers", "choices"):  # nested columns arrive as JSON strings from CSV
        feature = ds.features.get(col)
        if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
            ds = ds.map(lambda r, c=col: {c: json.loads(r[c])})
    if "idx" not in ds.column_names:
        ds = ds.add_column("idx", list(range(len(ds))))
    return ds


def _source_id(model: str | os.PathLike) -> dict[str, Any]:
    """What identifies a model in a cache key: its path with weight sizes/mtimes, or its id."""
    path = Path(model).expanduser()
    if path.is_dir():
        stats = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime))
                       for p in path.glob("*.safetensors"))
        return {"folder": str(path.resolve()), "weights": stats}
    return {"hub_id": str(model)}


def _finetuned(name: str, model_cls: Any, model: str, load_kwargs: dict, collate_for: Any,
               rows: Dataset, key: dict, cfg: TrainConfig, desc: str):
    """Fine-tune a fresh copy of ``model`` on ``rows`` (cached under ``key``). A new task
    head is initialised under ``cfg.seed``, so the result is deterministic."""
    def fit():
        torch.manual_seed(cfg.seed)
        net, tok = load_pretrained(model_cls, model, **load_kwargs)
        stats = train_model(net, rows, collate_for(tok), cfg, desc=desc)
        return net, tok, stats

    net, tok, info = load_or_train(name, {**key, "train": cfg}, model_cls, fit)
    tok.padding_side = "right"
    return net, tok, info


def _supervised(name: str, model: str | None, data_files: DataFiles | None,
                forget: str | int | Sequence[int], seed: int, n_forget: int,
                retain: Sequence[int] | None, finetune: bool,
                retrain: bool, train: TrainConfig | Mapping[str, Any] | None,
                max_train: int | None,
                max_test: int | None, max_length: int | None) -> Task:
    spec = SPECS[name]
    model = str(model or spec.model)
    hint = local_files_hint(name, f"train.jsonl and {spec.eval_split}.jsonl (columns "
                       f"{', '.join(spec.columns)})")
    evals = [spec.eval_split, "validation", "test"]
    train_ds = prepare_split(open_split(*spec.hub, spec.train_split, data_files, ["train"], hint),
                        spec, "the training set", max_train)
    test_ds = prepare_split(open_split(*spec.hub, spec.eval_split, data_files, evals, hint),
                       spec, "the test set", max_test)
    forget_idx = resolve_forget(train_ds, forget, seed, n_forget)
    forget_ds, retain_ds = split_train(train_ds, forget_idx, retain)

    if spec.kind == "classification":
        names = list(spec.label_names)
        model_cls = AutoModelForSequenceClassification
        load_kwargs = {"num_labels": len(names), "id2label": dict(enumerate(names)),
                           "label2id": {n: i for i, n in enumerate(names)}}
        length = max_length or 128

        def collate_for(tok):
            return ClassificationCollator(tok, spec.text_key, spec.pair_key, max_length=length)
    else:
        names, model_cls, load_kwargs, length = None, AutoModelForQuestionAnswering, {}, \
            max_length or 384

        def collate_for(tok):
            return ExtractiveQACollator(tok, max_length=length)

    cfg = coerce_dataclass(TrainConfig, train, FINETUNE)
    key = {"model": _source_id(model), "data": train_ds._fingerprint, "max_length": length}
    info: dict[str, Any] = {}
    gold = None
    if finetune:
        net, tok, info["original"] = _finetuned(name, model_cls, model, load_kwargs, collate_for,
                                                train_ds, {**key, "role": "original"}, cfg,
                                                f"{name}: fine-tune on D")
    else:
        net, tok = load_pretrained(model_cls, model, **load_kwargs)
    if retrain:
        gold, _, info["retrained"] = _finetuned(
            name, model_cls, model, load_kwargs, collate_for, retain_ds,
            {**key, "role": "retrained", "forget": forget_idx,
             "retain": None if retain is None else sorted(retain)},
            cfg, f"{name}: fine-tune on D_r")
    return Task(name=name, kind=spec.kind, model=net, tokenizer=tok, forget=forget_ds,
                retain=retain_ds, test=test_ds, collate=collate_for(tok), retrained_model=gold,
                label_names=names,
                meta={"options": {"model": model, "seed": seed, "n_forget": n_forget,
                                  "finetune": finetune, "train": asdict(cfg)},
                      "forget_indices": forget_idx, "models": info})


def _register_supervised(name: str) -> None:
    spec = SPECS[name]

    def loader(model: str | None = None, data_files: DataFiles | None = None,
               forget: str | int | Sequence[int] = "random", seed: int = 42,
               n_forget: int = 128, retain: Sequence[int] | None = None,
               finetune: bool = True, retrain: bool = False,
               train: TrainConfig | Mapping[str, Any] | None = None,
               max_train: int | None = None, max_test: int | None = None,
               max_length: int | None = None) -> Task:
        return _supervised(name, model, data_files, forget, seed, n_forget, retain, finetune,
                           retrain, train, max_train, max_test, max_length)

    loader.__doc__ = f"""{name} ({spec.kind}) from the hub ({spec.hub[0]}) or local files.

    Args:
        model: hub id or local folder (default {spec.model!r}).
        data_files: local folder or dict with ``train`` and ``{spec.eval_split}`` files
            (columns {', '.join(spec.columns)}); ``None`` = the hub.
        forget: ``"random"`` (``n_forget`` rows by ``seed``), an int, or row indices.
        seed: forget-split seed (16 or 42 in the paper).
        n_forget: size of a random forget set (128 in the paper).
        retain: explicit D_r row indices (default: every other training row).
        finetune: fine-tune the model on D first (5 epochs, AdamW, lr 2e-5), cached.
        retrain: also fine-tune a fresh copy on D_r (the gold model).
        train: fine-tuning configuration.
        max_train, max_test: keep only the first rows (quick runs).
        max_length: truncation length in tokens.
    """
    loader.__name__ = name.replace("/", "_")
    TASKS.register(name, help=f"{spec.kind}: {name} by hub name or local files")(loader)


for _name in ("glue/sst2", "glue/mnli", "glue/qqp", "squad", "squad_v2"):
    _register_supervised(_name)
