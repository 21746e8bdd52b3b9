"""Real tasks: GLUE SST-2 / MNLI / QQP, SQuAD v1.1 / v2 here; TOFU, WMDP, MMLU in
``real_lm`` (docs/design.md §7).

Each loads by hub name or from local files of the same format (``data_files=``: a folder,
one file or a dict, read by :mod:`mape_viz.tasks.readers`: GLUE's own ``train.tsv`` /
``dev.tsv`` too), and a model by hub id or local folder (``model=``, safetensors only). The
GLUE sets are presets of the generic ``text-classification`` loader
(:mod:`mape_viz.tasks.generic`) with their columns and label names. Classification and
extractive QA fine-tune the loaded model on D (paper: 5 epochs, AdamW, lr 2e-5; cached by
model checksum, data checksum and recipe, :mod:`mape_viz.tasks.finetune_base`) unless
``finetune=False``; ``retrain=True`` also fine-tunes a fresh copy on D_r (the gold model).
Forget sets: 128 random training rows by ``seed`` (16 or 42 in the paper), or any forget set
of :mod:`mape_viz.tasks.forget_spec`.

The table ``SPECS`` holds what differs between datasets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from datasets import Dataset, Value
from transformers import AutoModelForQuestionAnswering

from .base import TASKS, Task, coerce_dataclass
from .collate import ExtractiveQACollator
from .columns import check_columns
from .finetune_base import PAPER_RECIPE, finetune
from .forget_spec import ForgetOption, plan_forget
from .generic import classification_task, prepare_classification
from .hub import load_config_and_tokenizer, load_pretrained
from .readers import DataFiles, find_split, open_data, open_split
from .splits import split_train
from .train import TrainConfig

FINETUNE = PAPER_RECIPE  # the paper's BERT-base recipe (kept under its older name)


@dataclass(frozen=True)
class RealSpec:
    """What one real dataset looks like.

    Attributes:
        kind: task kind (see ``Task``).
        hub: (path, config) of the hub dataset.
        train_split, eval_split: hub split names of D and of the test set.
        columns: columns every row must have; for classification (text, [pair,] label).
        label_names: class names (classification), in the hub's id order.
        tsv_columns: the same columns as GLUE's own TSV download names them (MNLI:
            ``sentence1``, ``sentence2``, ``gold_label``), when they differ.
        model: default model id (used only when the hub can be reached).
    """

    kind: str
    hub: tuple[str, str | None]
    train_split: str
    eval_split: str
    columns: tuple[str, ...]
    label_names: tuple[str, ...] = ()
    tsv_columns: tuple[str, ...] = ()
    model: str = "google-bert/bert-base-uncased"


SPECS: dict[str, RealSpec] = {
    "glue/sst2": RealSpec("classification", ("nyu-mll/glue", "sst2"), "train", "validation",
                          ("sentence", "label"), ("negative", "positive")),
    "glue/mnli": RealSpec("classification", ("nyu-mll/glue", "mnli"), "train",
                          "validation_matched", ("premise", "hypothesis", "label"),
                          ("entailment", "neutral", "contradiction"),
                          ("sentence1", "sentence2", "gold_label")),
    "glue/qqp": RealSpec("classification", ("nyu-mll/glue", "qqp"), "train", "validation",
                         ("question1", "question2", "label"), ("not_duplicate", "duplicate"),
                         ("question1", "question2", "is_duplicate")),
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
            f"(tsv/csv/jsonl/json/parquet, same columns as the hub set).")


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


def _classification(name: str, spec: RealSpec, model: str, data_files: DataFiles | None,
                    hint: str, options: dict[str, Any]) -> Task:
    """A GLUE preset: :func:`~mape_viz.tasks.generic.text_classification` with the set's
    columns (the hub's, or GLUE's own TSV names) and label names."""
    source = open_data(data_files, hint=hint) if data_files is not None else \
        open_data(spec.hub[0], spec.hub[1], hint=hint)
    train_name = find_split(source, "train", spec.train_split if data_files is None else None)
    columns = spec.columns
    if spec.tsv_columns and not set(columns) <= set(source.split(train_name).column_names):
        if set(spec.tsv_columns) <= set(source.split(train_name).column_names):
            columns = spec.tsv_columns  # GLUE's own download: sentence1 / gold_label ...
    check_columns(source.split(train_name), columns, "the training set")
    test_split = spec.eval_split if spec.eval_split in source.files else None
    if test_split is None and find_split(source, "test", required=False) is None:
        find_split(source, "validation")  # raises: a preset needs its held-out split
    data = prepare_classification(
        source, text_column=columns[0], text_pair_column=columns[1] if len(columns) == 3 else None,
        label_column=columns[-1], label_names=spec.label_names, train_split=train_name,
        test_split=test_split, max_train=options["max_train"], max_test=options["max_test"])
    config, tokenizer = load_config_and_tokenizer(model)
    return classification_task(
        data, model, name=name, forget=options["forget"], seed=options["seed"],
        n_forget=options["n_forget"], retain=options["retain"],
        finetune_opt=options["finetune"], retrained=options["retrain"], train=options["train"],
        default_train=PAPER_RECIPE, max_length=options["max_length"] or 128, config=config,
        tokenizer=tokenizer, options={"finetune": options["finetune"]}, random_head_ok=True)


def _extractive_qa(name: str, spec: RealSpec, model: str, data_files: DataFiles | None,
                   hint: str, options: dict[str, Any]) -> Task:
    evals = [spec.eval_split, "validation", "dev", "test"]
    train_ds = prepare_split(open_split(*spec.hub, spec.train_split, data_files, ["train"], hint),
                             spec, "the training set", options["max_train"])
    test_ds = prepare_split(open_split(*spec.hub, spec.eval_split, data_files, evals, hint),
                            spec, "the test set", options["max_test"])
    plan = plan_forget(train_ds, options["forget"], options["seed"], options["n_forget"])
    retain = options["retain"]
    forget_ds, retain_ds = split_train(train_ds, plan.positions, retain)
    length = options["max_length"] or 384

    def collate_for(tok):
        return ExtractiveQACollator(tok, max_length=length)

    cfg = coerce_dataclass(TrainConfig, options["train"], PAPER_RECIPE)
    used = list(spec.columns)
    key = {"max_length": length}
    info: dict[str, Any] = {}
    gold = None
    if options["finetune"]:
        net, tok, info["original"] = finetune(name, AutoModelForQuestionAnswering, model,
                                              train_ds, used, collate_for, cfg,
                                              {**key, "role": "original"},
                                              f"{name}: fine-tune on D")
    else:
        net, tok = load_pretrained(AutoModelForQuestionAnswering, model)
    if options["retrain"]:
        gold, _, info["retrained"] = finetune(
            name, AutoModelForQuestionAnswering, model, retain_ds, used, collate_for, cfg,
            {**key, "role": "retrained", "forget": plan.positions,
             "retain": None if retain is None else sorted(retain)}, f"{name}: fine-tune on D_r")
    return Task(name=name, kind=spec.kind, model=net, tokenizer=tok, forget=forget_ds,
                retain=retain_ds, test=test_ds, collate=collate_for(tok), retrained_model=gold,
                meta={"options": {"model": model, "seed": options["seed"],
                                  "n_forget": options["n_forget"], "forget": plan.description,
                                  "finetune": options["finetune"], "train": asdict(cfg)},
                      "forget_indices": plan.positions, "models": info})


def _supervised(name: str, model: str | None, data_files: DataFiles | None,
                **options: Any) -> Task:
    spec = SPECS[name]
    model = str(model or spec.model)
    columns = ", ".join(spec.columns)
    hint = local_files_hint(name, f"train and {spec.eval_split} (or dev) files (columns "
                                  f"{columns})")
    build = _classification if spec.kind == "classification" else _extractive_qa
    return build(name, spec, model, data_files, hint, options)


def _register_supervised(name: str) -> None:
    spec = SPECS[name]

    def loader(model: str | None = None, data_files: DataFiles | None = None,
               forget: ForgetOption = "random", seed: int = 42,
               n_forget: int = 128, retain: Sequence[int] | None = None,
               finetune: bool = True, retrain: bool = False,
               train: TrainConfig | Mapping[str, Any] | None = None,
               max_train: int | None = None, max_test: int | None = None,
               max_length: int | None = None) -> Task:
        return _supervised(name, model, data_files, forget=forget, seed=seed,
                           n_forget=n_forget, retain=retain, finetune=finetune, retrain=retrain,
                           train=train, max_train=max_train, max_test=max_test,
                           max_length=max_length)

    loader.__doc__ = f"""{name} ({spec.kind}) from the hub ({spec.hub[0]}) or local files.

    Args:
        model: hub id or local folder (default {spec.model!r}).
        data_files: local folder (GLUE's ``train.tsv`` / ``dev.tsv`` too), one file or a
            dict with ``train`` and ``{spec.eval_split}`` files (columns
            {', '.join(spec.columns)}); ``None`` = the hub.
        forget: ``"random"`` (``n_forget`` rows by ``seed``), an int, row ids, or any
            forget set of :mod:`mape_viz.tasks.forget_spec` (``"label-flip:N"`` ...).
        seed: forget-split seed (16 or 42 in the paper).
        n_forget: size of a random forget set (128 in the paper).
        retain: explicit D_r row ids (default: every other training row).
        finetune: fine-tune the model on D first (5 epochs, AdamW, lr 2e-5), cached;
            ``False`` uses the model as given (a random head when it has none).
        retrain: also fine-tune a fresh copy on D_r (the gold model).
        train: fine-tuning configuration.
        max_train, max_test: keep only the first rows (quick runs).
        max_length: truncation length in tokens.
    """
    loader.__name__ = name.replace("/", "_")
    TASKS.register(name, help=f"{spec.kind}: {name} by hub name or local files")(loader)


for _name in ("glue/sst2", "glue/mnli", "glue/qqp", "squad", "squad_v2"):
    _register_supervised(_name)
