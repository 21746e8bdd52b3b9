"""Real generative tasks: TOFU (causal LM QA) and WMDP / MMLU (multiple choice)
(docs/design.md §7).

The model is used as given (TOFU's fine-tuned Llama-2, Zephyr for WMDP / MMLU): no
fine-tuning, no gold model. Data by hub name or local files (``data_files=``, read by
:mod:`mape_viz.tasks.readers`). ``tofu`` is a preset of the generic ``causal-lm-qa``
(:func:`mape_viz.tasks.generic.qa_task`) with TOFU's configs and extras.
"""

from __future__ import annotations

import os
from typing import Any

from datasets import Dataset, concatenate_datasets
from transformers import AutoModelForCausalLM

from .base import TASKS, Task
from .collate import LETTERS, MultipleChoiceCollator
from .forget_spec import ForgetOption, plan_forget
from .generic import qa_task
from .hub import load_pretrained
from .readers import DataFiles, open_split
from .real import SPECS, local_files_hint, prepare_split
from .splits import split_train
from .tofu_data import idk_rows

TOFU_RETAIN = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}


@TASKS.register("tofu", help="TOFU (locuslab/TOFU) forget01/05/10, by hub name or local files")
def tofu(split: str = "forget05", model: str | None = None,
         data_files: DataFiles | None = None,
         prompt_template: str = "[INST] {question} [/INST]", max_length: int = 256) -> Task:
    """TOFU: forget ``split``, retain the matching ``retain99/95/90``.

    Args:
        split: ``"forget01"``, ``"forget05"`` or ``"forget10"``.
        model: hub id or folder of the TOFU-fine-tuned model (default
            ``locuslab/tofu_ft_llama2-7b``); not fine-tuned further.
        data_files: folder or dict keyed by TOFU config names: ``<split>``,
            ``retain<NN>`` (required), ``<split>_perturbed``, ``retain_perturbed``,
            ``real_authors_perturbed``, ``world_facts_perturbed`` (optional).

    ``extras``: ``forget_perturbed``, ``retain_perturbed``, ``real_authors``,
    ``world_facts`` (the ``*_perturbed`` configs present: rows with ``paraphrased_answer``
    and a ``perturbed_answer`` list) and ``idk``. ``test`` = world facts + real authors
    (question, answer), empty when neither file is there.
        prompt_template: how a question is shown to the model (Llama-2 chat by default).
        max_length: truncation length in tokens.
    """
    if split not in TOFU_RETAIN:
        raise ValueError(f"unknown TOFU split {split!r}; known: {', '.join(TOFU_RETAIN)}")
    spec = SPECS["tofu"]
    hint = local_files_hint(
        "tofu", f"{split}.jsonl and {TOFU_RETAIN[split]}.jsonl (question, answer), optionally "
                f"{split}_perturbed.jsonl, retain_perturbed.jsonl, "
                f"real_authors_perturbed.jsonl, world_facts_perturbed.jsonl")

    def config(name: str, required: bool) -> Dataset | None:
        ds = open_split(spec.hub[0], name, "train", data_files, [name], hint, required)
        return None if ds is None else prepare_split(ds, spec, f"TOFU {name}", None)

    forget_ds, retain_ds = config(split, True), config(TOFU_RETAIN[split], True)
    extras: dict[str, Dataset] = {"idk": Dataset.from_list(idk_rows(forget_ds.to_list()))}
    for key, name in (("forget_perturbed", f"{split}_perturbed"),
                      ("retain_perturbed", "retain_perturbed"),
                      ("real_authors", "real_authors_perturbed"),
                      ("world_facts", "world_facts_perturbed")):
        ds = config(name, False)
        if ds is not None:
            extras[key] = ds
    utility = [extras[k].select_columns(["question", "answer"])
               for k in ("world_facts", "real_authors") if k in extras]
    test = concatenate_datasets(utility) if utility else \
        Dataset.from_dict({"question": [], "answer": []})
    return qa_task(forget_ds, retain_ds, test, str(model or spec.model), name="tofu",
                   prompt_template=prompt_template, max_length=max_length, extras=extras,
                   meta={"options": {"split": split, "model": str(model or spec.model)}})


def _corpus(source: str | os.PathLike | tuple[str, str], hint: str) -> Dataset:
    """A text corpus (column ``text``): a local file, or a (hub path, config) pair."""
    if isinstance(source, tuple):
        ds = open_split(source[0], source[1], "train", None, [], hint)
    else:
        ds = open_split("", None, "", {"corpus": str(source)}, ["corpus"], hint)
    if "text" not in ds.column_names:
        raise ValueError(f"corpus {source!r} needs a 'text' column (has {ds.column_names})")
    return ds


def _multiple_choice(name: str, config: str, model: str | None, data_files: DataFiles | None,
                     forget: ForgetOption, seed: int, n_forget: int,
                     forget_corpus: Any, retain_corpus: Any, max_test: int | None,
                     max_length: int) -> Task:
    spec = SPECS[name]
    hint = local_files_hint(name, f"{config}.jsonl or test.jsonl (question, choices, answer)")
    test_ds = prepare_split(open_split(spec.hub[0], config, spec.eval_split, data_files,
                                  [config, "test"], hint), spec, f"{name} ({config})", max_test)
    if forget_corpus is not None:
        forget_ds, retain_ds = _corpus(forget_corpus, hint), test_ds
    else:
        forget_ds, retain_ds = split_train(test_ds,
                                           plan_forget(test_ds, forget, seed, n_forget).positions)
    if retain_corpus is not None:
        retain_ds = _corpus(retain_corpus, hint)
    net, tok = load_pretrained(AutoModelForCausalLM, str(model or spec.model))
    collate = MultipleChoiceCollator(tok, max_length=max_length)
    n_choices = max(len(c) for c in test_ds["choices"])
    return Task(name=name, kind="multiple_choice", model=net, tokenizer=tok, forget=forget_ds,
                retain=retain_ds, test=test_ds, collate=collate,
                label_names=list(LETTERS[:n_choices]),
                meta={"options": {"config": config, "model": str(model or spec.model),
                                  "seed": seed, "n_forget": n_forget},
                      "choice_token_ids": collate.choice_token_ids(n_choices)})


@TASKS.register("wmdp", help="WMDP multiple choice (bio/cyber/chem), hub or local files")
def wmdp(subset: str = "wmdp-bio", model: str | None = None,
         data_files: DataFiles | None = None, forget: ForgetOption = "random",
         seed: int = 42, n_forget: int = 128,
         forget_corpus: str | os.PathLike | tuple[str, str] | None = None,
         retain_corpus: str | os.PathLike | tuple[str, str] | None = None,
         max_test: int | None = None, max_length: int = 512) -> Task:
    """WMDP: ``test`` = the ``subset`` questions (accuracy = unlearning efficacy).

    ``forget`` = ``forget_corpus`` (text rows: the paper unlearns the bio / cyber attack
    corpora) when given, else ``n_forget`` random questions by ``seed``; ``retain`` =
    ``retain_corpus`` when given, else the other questions (or all of them).
    Corpora: a local json/jsonl/csv/parquet file with a ``text`` column, or a (hub path,
    config) pair such as ``("cais/wmdp-corpora", "cyber-forget-corpus")``.
    """
    return _multiple_choice("wmdp", subset, model, data_files, forget, seed, n_forget,
                            forget_corpus, retain_corpus, max_test, max_length)


@TASKS.register("mmlu", help="MMLU multiple choice (model fidelity), hub or local files")
def mmlu(subject: str = "all", model: str | None = None, data_files: DataFiles | None = None,
         forget: ForgetOption = "random", seed: int = 42, n_forget: int = 128,
         max_test: int | None = None, max_length: int = 512) -> Task:
    """MMLU: ``test`` = the ``subject`` test questions (zero-shot accuracy = fidelity);
    forget / retain split them (``n_forget`` random questions by ``seed``)."""
    return _multiple_choice("mmlu", subject, model, data_files, forget, seed, n_forget,
                            None, None, max_test, max_length)
