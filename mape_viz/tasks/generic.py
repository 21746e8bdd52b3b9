"""Your own model and data: ``text-classification`` and ``causal-lm-qa`` (docs/design.md §7.1).

    task = load_task("text-classification", data="glue_data/SST-2", model="my-bert",
                     forget="label-flip:32")
    task = load_task("causal-lm-qa", data="tofu_folder", model="my-llama",
                     forget_split="forget05", retain_split="retain95")

``data`` is a folder of split files (GLUE's ``train.tsv`` / ``dev.tsv`` / ``test.tsv``, or
``.csv`` / ``.jsonl`` / ``.json`` / ``.parquet``), one file, a dict ``{split: file}`` or a hub
dataset id (:mod:`mape_viz.tasks.readers`); ``model`` a local folder or hub id. Columns
are found when unambiguous (:mod:`mape_viz.tasks.columns`), forget sets are any of
:mod:`mape_viz.tasks.forget_spec`, and a checkpoint without a fitting classification head is
fine-tuned first (:mod:`mape_viz.tasks.finetune_base`, cached). Every misfit — a missing
column or split, an unreadable file, a label set the model's head does not have, a
vocabulary that does not read the data — is a :class:`~mape_viz.tasks.readers.DataError`
saying what to change. What was set aside or dropped is logged and kept in
``task.meta["notes"]``.

The named presets (``glue/*``, ``tofu``) are these loaders with fixed columns and labels.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from datasets import ClassLabel, Dataset, Value, concatenate_datasets
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                          PretrainedConfig, PreTrainedTokenizerBase)

from .base import TASKS, Task, coerce_dataclass
from .collate import CausalLMCollator, ClassificationCollator
from .columns import check_columns, classification_columns, qa_columns
from .finetune_base import CPU_MAX_LENGTH, CPU_RECIPE, finetune
from .forget_spec import (ID_COLUMN, ForgetOption, ForgetPlan, flip_labels, parse_forget,
                          plan_forget)
from .hub import load_config_and_tokenizer, load_pretrained
from .local import kind_of_model
from .readers import DataError, DataFiles, DataSource, find_split, open_data
from .splits import split_train
from .train import TrainConfig

__all__ = ["MISSING_LABELS", "TextClassificationData", "causal_lm_qa", "check_vocabulary",
           "classification_task", "prepare_classification", "qa_task", "text_classification"]

log = logging.getLogger(__name__)

#: Label values read as "no label" (GLUE's hub test splits use -1, MNLI's TSV ``-``; NaN is an
#: empty CSV cell).
MISSING_LABELS = (None, float("nan"), -1, "", "-", "-1")
#: Above this fraction of unknown tokens the tokenizer does not read the data.
MAX_UNK_FRACTION = 0.5
_GENERIC_NAME = re.compile(r"^LABEL_\d+$")


def _note(notes: list[str], text: str) -> None:
    notes.append(text)
    log.warning(text)


def _with_ids(ds: Dataset) -> Dataset:
    """``ds`` with an ``idx`` column (row ids): the row's position when there is none."""
    if ID_COLUMN in ds.column_names:
        return ds
    return ds.add_column(ID_COLUMN, list(range(len(ds))))


def _is_missing(value: Any) -> bool:
    """A label or text that is absent: ``None``, NaN (an empty CSV cell), -1, ``""``, ``"-"``."""
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, (int, float)):
        return value != value or value == -1
    if isinstance(value, str):
        return value.strip() in ("", "-", "-1")
    return False


def _label_kind(values: Sequence[Any]) -> str:
    """``"int"`` (ints, bools, integral floats or digit strings) or ``"str"``."""
    present = [v for v in values if not _is_missing(v)]
    if all(isinstance(v, (bool, int)) for v in present):
        return "int"
    if all(isinstance(v, float) and float(v).is_integer() for v in present):
        return "int"
    if all(isinstance(v, str) and v.strip().lstrip("-").isdigit() for v in present):
        return "int"
    return "str"


def _model_label_names(config: PretrainedConfig | None) -> list[str] | None:
    """The head's label names, or ``None`` when it has no head or only ``LABEL_i`` names."""
    if config is None or kind_of_model(config) != "classification":
        return None
    names = [str(config.id2label.get(i, config.id2label.get(str(i), i)))
             for i in range(config.num_labels)]
    return None if all(_GENERIC_NAME.match(n) for n in names) else names


@dataclass
class TextClassificationData:
    """A classification set after reading: rows with integer labels, ready for a model.

    Attributes:
        train: D, with ``idx`` and integer labels in ``columns.label``.
        test: the held-out rows (labels as in ``train``) or ``None``.
        columns: text / pair / label column names.
        label_names: class names, index = class id.
        sources: where each split came from.
        notes: what was set aside or dropped (also logged).
        unlabelled: a split without labels that was set aside (GLUE's ``test``), or ``None``.
    """

    train: Dataset
    test: Dataset | None
    columns: Any
    label_names: list[str]
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unlabelled: Dataset | None = None


def _labelled(ds: Dataset, label: str) -> bool:
    return label in ds.column_names and any(not _is_missing(v) for v in ds[label])


def _drop_missing(ds: Dataset, cols: Sequence[str], what: str, notes: list[str]) -> Dataset:
    keep = [i for i, row in enumerate(zip(*(ds[c] for c in cols)))
            if not any(_is_missing(v) for v in row)]
    if len(keep) < len(ds):
        _note(notes, f"{what}: dropped {len(ds) - len(keep)} of {len(ds)} rows without a "
                     f"label or text (empty, '-', -1)")
        if not keep:
            raise DataError(f"{what} has no row with both a text and a label "
                            f"(columns {list(cols)})")
        ds = ds.select(keep)
    return ds


def _encode(ds: Dataset, label: str, to_id: Mapping[str, int] | None, where: str) -> Dataset:
    values = ds[label]
    if to_id is None:
        ids = [int(float(v)) if isinstance(v, str) else int(v) for v in values]
    else:
        unknown = sorted({str(v) for v in values if str(v) not in to_id})
        if unknown:
            raise DataError(f"{where}: labels {unknown[:5]} are not among the label names "
                            f"{list(to_id)}")
        ids = [to_id[str(v)] for v in values]
    return ds.remove_columns([label]).add_column(label, ids).cast_column(label, Value("int64")) \
        .select_columns(ds.column_names)


def prepare_classification(source: DataSource, *, text_column: str | None = None,
                           text_pair_column: str | None = None,
                           label_column: str | None = None,
                           label_names: Sequence[str] | None = None,
                           model_config: PretrainedConfig | None = None,
                           train_split: str | None = None, test_split: str | None = None,
                           max_train: int | None = None, max_test: int | None = None
                           ) -> TextClassificationData:
    """Read and check a classification set: splits, columns, labels (docs/design.md §7.1).

    The training split is ``train_split`` or the first of ``train``/``training``; the
    held-out split is ``test_split``, else ``validation``/``dev``/..., else a labelled
    ``test``. A split without labels (GLUE's ``test.tsv``) is set aside with a note. Labels:
    integers, booleans or names; names from ``label_names``, the data's ``ClassLabel``, the
    model's ``id2label`` (when its names cover the data), else the sorted names found.
    Rows without a label (empty, ``-``, -1) or text are dropped with a note.
    """
    notes: list[str] = []
    train_name = find_split(source, "train", train_split)
    train = _with_ids(source.split(train_name))
    where = f"training split {source.describe(train_name)}"
    cols = classification_columns(train, where, text_column, text_pair_column, label_column)
    text_cols = [c for c in (cols.text, cols.pair) if c]
    sources = {"train": source.describe(train_name)}

    test, unlabelled, test_name = None, None, None
    candidates = [test_split] if test_split else \
        [n for n in (find_split(source, "validation", required=False),
                     find_split(source, "test", required=False)) if n]
    for name in candidates:
        ds = _with_ids(source.split(name))
        check_columns(ds, text_cols, f"split {source.describe(name)}")
        if _labelled(ds, cols.label):
            if test is None:
                test, test_name = ds, name
            else:
                _note(notes, f"split {source.describe(name)} ({len(ds)} rows) is not used: the "
                             f"held-out set is {source.describe(test_name)}")
        else:
            unlabelled = ds
            _note(notes, f"split {source.describe(name)} ({len(ds)} rows) has no labels "
                         f"(column {cols.label!r} absent or empty): set aside, not evaluated")
    if test is None:
        _note(notes, f"no labelled held-out split in {source.origin} (looked for validation / "
                     f"dev / test): task.test is None, held-out accuracy is not measured and "
                     f"a fidelity guard (guard_drop) has nothing to check; add a dev file or "
                     f"name one with test_split=")
    else:
        sources["test"] = source.describe(test_name)

    train = _drop_missing(train, text_cols + [cols.label], where, notes)
    if test is not None:
        test = _drop_missing(test, text_cols + [cols.label], f"split {sources['test']}", notes)
    if max_train is not None:
        train = train.select(range(min(max_train, len(train))))
    if test is not None and max_test is not None:
        test = test.select(range(min(max_test, len(test))))

    feature = train.features[cols.label]
    values = list(train[cols.label]) + (list(test[cols.label]) if test is not None else [])
    model_names = _model_label_names(model_config)
    if label_names is not None:
        names = [str(n) for n in label_names]
    elif isinstance(feature, ClassLabel):
        names = list(feature.names)
    else:
        names = None
    if _label_kind(values) == "str":
        found = sorted({str(v) for v in values})
        if names is None:
            names = model_names if model_names and set(found) <= set(model_names) else found
        to_id: dict[str, int] | None = {n: i for i, n in enumerate(names)}
    else:
        to_id = None
        top = max(int(float(v)) if isinstance(v, str) else int(v) for v in values)
        if min(int(float(v)) if isinstance(v, str) else int(v) for v in values) < 0:
            raise DataError(f"{where}: negative labels other than -1 (no label) in column "
                            f"{cols.label!r}")
        if names is None:
            has_head = model_config is not None and kind_of_model(model_config) == \
                "classification"
            if has_head and model_config.num_labels > top:
                names = model_names or [str(i) for i in range(model_config.num_labels)]
            else:
                names = [str(i) for i in range(top + 1)]
        if top >= len(names):
            raise DataError(f"{where}: label {top} in column {cols.label!r} but only "
                            f"{len(names)} label names {names}")
    train = _encode(train, cols.label, to_id, where)
    if test is not None:
        test = _encode(test, cols.label, to_id, f"split {sources['test']}")
    return TextClassificationData(train, test, cols, names, sources, notes, unlabelled)


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig,
                     texts: Sequence[str], model: str) -> float:
    """Raise :class:`DataError` when ``tokenizer`` does not belong to the model (more
    tokens than embedding rows) or does not read ``texts`` (more than half the tokens
    unknown). Returns the unknown-token fraction."""
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise DataError(f"the tokenizer of {model} has {len(tokenizer)} tokens but the model's "
                        f"embeddings have {vocab} rows: they do not belong together (was the "
                        f"tokenizer saved with another model?)")
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return 0.0
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    total = sum(len(s) for s in ids)
    frac = sum(t == unk for s in ids for t in s) / max(1, total)
    if frac > MAX_UNK_FRACTION:
        raise DataError(f"the tokenizer of {model} reads {frac:.0%} of the data's tokens as "
                        f"unknown ({tokenizer.unk_token}): the model's vocabulary does not fit "
                        f"this data (another language, or a model trained on other words)")
    return frac


def _finetune_choice(finetune_opt: bool | str) -> bool | None:
    if finetune_opt in (True, False):
        return bool(finetune_opt)
    if finetune_opt == "auto":
        return None
    raise ValueError(f"finetune must be True, False or 'auto', got {finetune_opt!r}")


def _head_problem(config: PretrainedConfig, names: list[str]) -> str | None:
    """Why the model's classification head does not fit ``names`` (``None``: it fits)."""
    if kind_of_model(config) != "classification":
        return (f"has no classification head (architectures "
                f"{getattr(config, 'architectures', None)})")
    if config.num_labels != len(names):
        model_names = _model_label_names(config) or [str(i) for i in range(config.num_labels)]
        return (f"has a {config.num_labels}-label head {model_names} but the data has "
                f"{len(names)} labels {names}")
    model_names = _model_label_names(config)
    if model_names is not None and model_names != names and \
            sorted(model_names) == sorted(names):
        return f"orders its labels {model_names}, the data {names}"
    return None


def classification_task(data: TextClassificationData, model: str | os.PathLike, *,
                        name: str = "text-classification", forget: ForgetOption = "random",
                        seed: int = 42, n_forget: int = 128, retain: Sequence[int] | None = None,
                        finetune_opt: bool | str = "auto", retrained: bool = False,
                        base_model: str | os.PathLike | None = None,
                        train: TrainConfig | Mapping[str, Any] | None = None,
                        default_train: TrainConfig = CPU_RECIPE,
                        max_length: int | None = None,
                        config: PretrainedConfig | None = None,
                        tokenizer: PreTrainedTokenizerBase | None = None,
                        options: Mapping[str, Any] | None = None,
                        random_head_ok: bool = False) -> Task:
    """A classification :class:`Task` from prepared data and a model (docs/design.md §7.1).

    The model is used as it is when its head fits the labels (``finetune="auto"``), else
    fine-tuned on D first (``finetune=True`` forces it, ``False`` refuses to). ``label-flip``
    forget sets always fine-tune (the model must learn the flipped labels).
    ``retrained=True`` fine-tunes ``base_model`` (default: ``model`` when it is fine-tuned
    here) on D_r with the same recipe — a second fine-tuning run, about |D_r|/|D| of the
    first one's time — cached like the first. ``random_head_ok`` (the named presets with
    ``finetune=False``, for quick checks) gives a model without a fitting head a random one
    instead of refusing it.
    """
    model = str(model)
    if config is None or tokenizer is None:
        config, tokenizer = load_config_and_tokenizer(model)
    notes = list(data.notes)
    names, cols = data.label_names, data.columns
    train_ds = data.train
    plan: ForgetPlan = plan_forget(train_ds, forget, seed, n_forget, label_column=cols.label,
                                   n_labels=len(names))
    choice = _finetune_choice(finetune_opt)
    problem = _head_problem(config, names)
    if plan.label_flip and choice is False:
        raise DataError("label-flip forget sets need fine-tuning (the model must learn the "
                        "flipped labels): pass finetune=True or 'auto'")
    if choice is None:
        if problem is not None and kind_of_model(config) == "classification":
            raise DataError(f"the model {model} {problem}: pass finetune=True to fine-tune a "
                            f"new {len(names)}-label head on this data, or label_names= / "
                            f"label_column= if the labels were read wrongly")
        do_finetune = problem is not None or plan.label_flip
    else:
        do_finetune = choice
        if not do_finetune and problem is not None and random_head_ok:
            _note(notes, f"the model {model} {problem}: a random {len(names)}-label head is "
                         f"used (finetune=False)")
        elif not do_finetune and problem is not None:
            raise DataError(f"the model {model} {problem}; finetune=False uses it as it is: "
                            f"pass finetune=True (or 'auto') to fine-tune it on this data")
    text_cols = [c for c in (cols.text, cols.pair) if c]
    check_vocabulary(tokenizer, config, train_ds.select(range(min(256, len(train_ds))))
                     [cols.text], model)

    if plan.label_flip:
        train_ds = flip_labels(train_ds, plan, cols.label)
        notes.append(f"label-flip: {len(plan.flips)} training labels changed before "
                     f"fine-tuning (meta['label_flip'])")
    retain_pos = None
    if retain is not None:
        ids = {int(v): i for i, v in enumerate(train_ds[ID_COLUMN])}
        unknown = [r for r in retain if int(r) not in ids]
        if unknown:
            raise DataError(f"retain row ids {unknown[:5]} are not in the training set")
        retain_pos = [ids[int(r)] for r in retain]
    forget_ds, retain_ds = split_train(train_ds, plan.positions, retain_pos)

    cfg = coerce_dataclass(TrainConfig, train, default_train)
    limit = min(getattr(config, "max_position_embeddings", 512) or 512,
                getattr(tokenizer, "model_max_length", 512) or 512)
    length = min(max_length or (CPU_MAX_LENGTH if do_finetune and default_train is CPU_RECIPE
                                else 128), limit)

    def collate_for(tok: PreTrainedTokenizerBase) -> ClassificationCollator:
        return ClassificationCollator(tok, cols.text, cols.pair, cols.label, max_length=length)

    load_kwargs = {"num_labels": len(names), "id2label": dict(enumerate(names)),
                   "label2id": {n: i for i, n in enumerate(names)}}
    key = {"max_length": length, "labels": names, "columns": asdict(cols)}
    used = text_cols + [cols.label]
    info: dict[str, Any] = {}
    if do_finetune:
        log.info("fine-tuning %s on %d rows (%s)", model, len(train_ds), cfg)
        net, tok, info["original"] = finetune(
            name, AutoModelForSequenceClassification, model, train_ds, used, collate_for, cfg,
            {**key, "role": "original"}, f"{name}: fine-tune on D", load_kwargs)
    elif problem is not None:  # random_head_ok: a fresh head, seeded
        torch.manual_seed(cfg.seed)
        net, tok = load_pretrained(AutoModelForSequenceClassification, model,
                                   ignore_mismatched_sizes=True, **load_kwargs)
    else:
        net, tok = load_pretrained(AutoModelForSequenceClassification, model)
    gold = None
    if retrained:
        base = base_model if base_model is not None else (model if do_finetune else None)
        if base is None:
            raise DataError("retrained=True fine-tunes the starting checkpoint on D_r, but this "
                            "model was not fine-tuned here: pass base_model= (the checkpoint "
                            "it was fine-tuned from)")
        took = info.get("original", {}).get("seconds")
        _note(notes, f"building the retrained reference: the same recipe on D_r "
                     f"({len(retain_ds)} rows)" + (f", about {took * len(retain_ds) / len(train_ds):.0f} s "
                                                    f"(the original took {took:.0f} s)"
                                                    if took and not info['original'].get('cached')
                                                    else ""))
        gold, _, info["retrained"] = finetune(
            name, AutoModelForSequenceClassification, str(base), retain_ds, used, collate_for,
            cfg, {**key, "role": "retrained", "forget": plan.positions,
                  "retain": retain_pos}, f"{name}: fine-tune on D_r", load_kwargs)
    meta = {"options": {**(options or {}), "model": model, "seed": seed,
                        "forget": plan.description, "n_forget": n_forget,
                        "finetune": do_finetune, "train": asdict(cfg) if do_finetune else None,
                        "max_length": length},
            "columns": asdict(cols), "sources": data.sources, "notes": notes,
            "forget_indices": plan.positions,
            "forget_ids": [int(i) for i in forget_ds[ID_COLUMN]], "models": info}
    if plan.label_flip:
        meta["label_flip"] = plan.flips
    if data.unlabelled is not None:
        meta["unlabelled_test"] = data.unlabelled
    return Task(name=name, kind="classification", model=net, tokenizer=tok, forget=forget_ds,
                retain=retain_ds, test=data.test, collate=collate_for(tok),
                retrained_model=gold, label_names=list(names), meta=meta)


@TASKS.register("text-classification",
                help="any text classifier on your data (TSV/CSV/JSON/parquet folder or hub id)")
def text_classification(data: DataFiles | None = None, model: str | os.PathLike | None = None,
                        data_config: str | None = None, text_column: str | None = None,
                        text_pair_column: str | None = None, label_column: str | None = None,
                        label_names: Sequence[str] | None = None,
                        forget: ForgetOption = "random", seed: int = 42, n_forget: int = 128,
                        retain: Sequence[int] | None = None, finetune: bool | str = "auto",
                        retrained: bool = False, base_model: str | os.PathLike | None = None,
                        train: TrainConfig | Mapping[str, Any] | None = None,
                        max_length: int | None = None, train_split: str | None = None,
                        test_split: str | None = None, max_train: int | None = None,
                        max_test: int | None = None) -> Task:
    """A text classifier and its data as a :class:`Task` (docs/design.md §7.1).

    Args:
        data: a folder of split files (``train.tsv`` + ``dev.tsv`` [+ ``test.tsv``], or
            .csv / .jsonl / .json / .parquet), one file (the training set; no held-out
            split), a dict ``{split: file}``, or a hub dataset id.
        model: a local model folder (safetensors) or hub id: a classifier, or a base
            checkpoint (no head) that is fine-tuned here.
        data_config: the hub configuration (e.g. ``"sst2"`` of ``nyu-mll/glue``).
        text_column, text_pair_column, label_column: column names; found when unambiguous
            (``sentence``, ``text``, ``sentence1``/``sentence2``, ``label`` ...).
        label_names: class names in id order (default: the data's, else the model's, else
            the sorted names / ids found).
        forget: the forget set: ``"random"`` (``n_forget`` rows), a count or fraction, row
            ids, ``"file:PATH"``, ``"column:NAME"``, ``"label-flip:N"``
            (:mod:`mape_viz.tasks.forget_spec`).
        seed: seed of random forget sets and label flips.
        n_forget: size of ``"random"`` (128, as in the paper).
        retain: D_r row ids (default: every other training row).
        finetune: ``"auto"`` (fine-tune when the model has no head for these labels, or for
            label-flip), ``True``, ``False``.
        retrained: also fine-tune the retrained reference on D_r (off by default: it is a
            second fine-tuning run, about |D_r|/|D| of the first one's time; logged).
        base_model: the checkpoint the retrained reference starts from, when ``model`` was
            fine-tuned elsewhere.
        train: fine-tuning recipe (default :data:`~mape_viz.tasks.finetune_base.CPU_RECIPE`,
            2 epochs at lr 5e-5, batch 32, measured to keep 2,000 short sentences under 10
            minutes on 2 CPU cores for a 6-layer, 384-wide BERT).
        max_length: truncation in tokens (default 64 when fine-tuned here with the CPU
            recipe, else 128; at most the model's).
        train_split, test_split: split names when they are not the usual ones.
        max_train, max_test: keep only the first rows (quick runs).
    """
    if data is None or model is None:
        raise ValueError("text-classification needs data= (a folder, file or hub id) and "
                         "model= (a model folder or hub id)")
    config, tokenizer = load_config_and_tokenizer(model)
    prepared = prepare_classification(
        open_data(data, data_config), text_column=text_column, text_pair_column=text_pair_column,
        label_column=label_column, label_names=label_names, model_config=config,
        train_split=train_split, test_split=test_split, max_train=max_train, max_test=max_test)
    options = {"data": str(data) if not isinstance(data, Mapping) else dict(data),
               "data_config": data_config, "retrained": retrained}
    return classification_task(prepared, model, forget=forget, seed=seed, n_forget=n_forget,
                               retain=retain, finetune_opt=finetune, retrained=retrained,
                               base_model=base_model, train=train, max_length=max_length,
                               config=config, tokenizer=tokenizer, options=options)


# ---------------------------------------------------------------- causal LM question answering


def qa_task(forget_ds: Dataset, retain_ds: Dataset, test: Dataset | None,
            model: str | os.PathLike, *, name: str = "causal-lm-qa",
            question_column: str = "question", answer_column: str = "answer",
            prompt_template: str = "Question: {question}\nAnswer:", max_length: int = 256,
            finetune_opt: bool = False, retrained: bool = False,
            base_model: str | os.PathLike | None = None,
            train: TrainConfig | Mapping[str, Any] | None = None,
            extras: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None
            ) -> Task:
    """A causal-LM question-answering :class:`Task` from forget / retain / test rows.

    The model is used as given unless ``finetune_opt`` (then fine-tuned on forget + retain
    with the answer-only loss, cached); ``retrained=True`` fine-tunes ``base_model``
    (default ``model`` when fine-tuned here) on retain alone — a second run, about
    |D_r|/|D| of the first one's time.
    """
    model = str(model)
    notes = list((meta or {}).get("notes", []))

    def collate_for(tok: PreTrainedTokenizerBase) -> CausalLMCollator:
        return CausalLMCollator(tok, prompt_template=prompt_template,
                                question_key=question_column, answer_key=answer_column,
                                max_length=max_length)

    used = [question_column, answer_column]
    cfg = coerce_dataclass(TrainConfig, train, CPU_RECIPE)
    info: dict[str, Any] = {}
    key = {"max_length": max_length, "prompt": prompt_template}
    if finetune_opt:
        train_ds = concatenate_datasets([forget_ds.select_columns(used),
                                         retain_ds.select_columns(used)])
        net, tok, info["original"] = finetune(name, AutoModelForCausalLM, model, train_ds, used,
                                              collate_for, cfg, {**key, "role": "original"},
                                              f"{name}: fine-tune on D")
    else:
        net, tok = load_pretrained(AutoModelForCausalLM, model)
    config = net.config
    sample = [f"{q} {a}" for q, a in zip(forget_ds[question_column][:128],
                                         forget_ds[answer_column][:128])]
    check_vocabulary(tok, config, sample, model)
    gold = None
    if retrained:
        base = base_model if base_model is not None else (model if finetune_opt else None)
        if base is None:
            raise DataError("retrained=True fine-tunes the starting checkpoint on the retain "
                            "set, but this model is used as given: pass base_model= (the "
                            "checkpoint it was fine-tuned from) and finetune=True")
        _note(notes, f"building the retrained reference: the same recipe on the retain set "
                     f"({len(retain_ds)} rows)")
        gold, _, info["retrained"] = finetune(
            name, AutoModelForCausalLM, str(base), retain_ds.select_columns(used), used,
            collate_for, cfg, {**key, "role": "retrained"}, f"{name}: fine-tune on D_r")
    return Task(name=name, kind="causal_lm", model=net, tokenizer=tok, forget=forget_ds,
                retain=retain_ds, test=test, collate=collate_for(tok), retrained_model=gold,
                extras=dict(extras or {}),
                meta={**(meta or {}), "notes": notes, "models": info,
                      "prompt_template": prompt_template})


def _retain_for(source: DataSource, forget_split: str, retain_split: str | None) -> str:
    if retain_split is not None:
        return find_split(source, "train", retain_split)
    found = [n for n in source.names if n.startswith("retain") and "perturbed" not in n]
    if len(found) == 1:
        return found[0]
    raise DataError(f"{source.origin}: forget_split={forget_split!r} needs a retain split; "
                    f"{'several fit: ' + str(found) if found else 'none is named retain*'}: "
                    f"name it with retain_split=")


@TASKS.register("causal-lm-qa",
                help="any causal LM on question/answer data (TOFU layout or a train split)")
def causal_lm_qa(data: DataFiles | None = None, model: str | os.PathLike | None = None,
                 data_config: str | None = None, question_column: str | None = None,
                 answer_column: str | None = None, forget: ForgetOption = "random",
                 seed: int = 42, n_forget: int = 128, forget_split: str | None = None,
                 retain_split: str | None = None, test_split: str | None = None,
                 prompt_template: str = "Question: {question}\nAnswer:",
                 max_length: int = 256, finetune: bool = False, retrained: bool = False,
                 base_model: str | os.PathLike | None = None,
                 train: TrainConfig | Mapping[str, Any] | None = None) -> Task:
    """A causal LM and question-answer data as a :class:`Task` (docs/design.md §7.1).

    Args:
        data: a folder / file / dict / hub id (as ``text-classification``). Two layouts:
            forget and retain splits of their own (TOFU: ``forget05.jsonl`` +
            ``retain95.jsonl``; ``forget_split`` names the forget split, the retain split
            is the only ``retain*`` one or ``retain_split``), or a training split from which
            ``forget`` picks the rows (ids, random, a boolean column ...).
        model: a causal-LM folder or hub id, used as given unless ``finetune``.
        question_column, answer_column: found when unambiguous (``question``/``answer``,
            ``prompt``/``response``, ``instruction``/``output`` ...).
        forget, seed, n_forget: the forget set when there is no forget split.
        test_split: a held-out split (default: validation / dev / test if present; a
            TOFU folder has none: ``test`` is ``None``).
        prompt_template: how a question is shown (``{question}``).
        max_length: truncation in tokens.
        finetune: fine-tune the model on D first (answer-only loss), cached.
        retrained: also fine-tune ``base_model`` (default: ``model``, with ``finetune``) on
            the retain set — a second fine-tuning run, off by default.
        train: fine-tuning recipe (default ``CPU_RECIPE``).
    """
    if data is None or model is None:
        raise ValueError("causal-lm-qa needs data= (a folder, file or hub id) and model= "
                         "(a model folder or hub id)")
    source = open_data(data, data_config)
    notes: list[str] = []
    if forget_split is None and "forget" in source.files:
        forget_split = "forget"
    if forget_split is not None:
        if forget not in ("random", None):
            raise DataError("give either forget_split= (a split of forget rows) or forget=, "
                            "not both")
        retain_name = _retain_for(source, forget_split, retain_split)
        forget_ds = _with_ids(source.split(find_split(source, "train", forget_split)))
        retain_ds = _with_ids(source.split(retain_name))
        cols = qa_columns(forget_ds, f"forget split {source.describe(forget_split)}",
                          question_column, answer_column)
        check_columns(retain_ds, [cols.question, cols.answer],
                      f"retain split {source.describe(retain_name)}")
        desc = f"split:{forget_split}"
        sources = {"forget": source.describe(forget_split),
                   "retain": source.describe(retain_name)}
    else:
        train_name = find_split(source, "train")
        train_ds = _with_ids(source.split(train_name))
        cols = qa_columns(train_ds, f"training split {source.describe(train_name)}",
                          question_column, answer_column)
        if parse_forget(forget).kind == "label-flip":
            raise DataError("label-flip is for classification; forget question-answer rows by "
                            "ids, a file, a column or at random")
        plan = plan_forget(train_ds, forget, seed, n_forget)
        forget_ds, retain_ds = split_train(train_ds, plan.positions)
        desc = plan.description
        sources = {"train": source.describe(train_name)}
    test_name = test_split or find_split(source, "validation", required=False) or \
        find_split(source, "test", required=False)
    test = None
    if test_name is not None:
        test = source.split(test_name)
        check_columns(test, [cols.question, cols.answer], f"split {source.describe(test_name)}")
        sources["test"] = source.describe(test_name)
    else:
        _note(notes, f"no held-out split in {source.origin}: task.test is None")
    meta = {"options": {"data": str(data) if not isinstance(data, Mapping) else dict(data),
                        "model": str(model), "forget": desc, "seed": seed,
                        "finetune": finetune, "retrained": retrained},
            "columns": {"question": cols.question, "answer": cols.answer},
            "sources": sources, "notes": notes,
            "forget_ids": [int(i) for i in forget_ds[ID_COLUMN]]}
    return qa_task(forget_ds, retain_ds, test, model, question_column=cols.question,
                   answer_column=cols.answer, prompt_template=prompt_template,
                   max_length=max_length, finetune_opt=finetune, retrained=retrained,
                   base_model=base_model, train=train, meta=meta)

