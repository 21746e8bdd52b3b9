"""Bring your own model and data (issue #12): the generic loaders on files the tests write
(GLUE TSV folders, CSV, JSON lines, JSON, parquet), columns found or named, label sets and
their misfits, every forget spec, label flips, fine-tuning a base checkpoint (and its cache),
the causal-LM QA loader, and ``mape-viz score`` on a local folder. Offline, tiny models built
from configs with a word-level tokenizer our code builds."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import (BertConfig, BertForSequenceClassification, BertModel,
                          PreTrainedTokenizerFast)

import mape_viz as mv
from mape_viz.cli import main
from mape_viz.cli._flags import UsageError
from mape_viz.cli._task_args import add_task_arguments, task_from_arguments
from mape_viz.mask_io import load_mask
from mape_viz.tasks import finetune_base, load_task
from mape_viz.tasks.forget_spec import flip_labels, parse_forget, plan_forget
from mape_viz.tasks.hub import HubUnavailableError
from mape_viz.tasks.readers import DataError, SplitNotFoundError
from mape_viz.tasks.splits import random_forget_indices
from mape_viz.tasks.tiny_models import TinyLlamaSpec, tiny_llama
from mape_viz.tasks.tokenizer import build_word_tokenizer


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Offline, and every cache (ours, datasets') in a temp dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path / "mape_cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "ds_cache"))


GOOD, BAD = ("good", "great", "fine"), ("bad", "awful", "poor")
TOPICS = ("world", "sports", "business", "tech")


def _sentiment_rows(n: int, start: int = 0) -> list[dict]:
    words = GOOD + BAD
    return [{"sentence": f"the film was {words[i % 6]} , {i} said", "label": int(i % 6 < 3)}
            for i in range(start, start + n)]


def _topic_rows(n: int) -> list[dict]:
    return [{"text": f"news about {TOPICS[i % 4]} today {i}", "label": TOPICS[i % 4]}
            for i in range(n)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """``rows`` in the format of ``path``'s suffix (TSV as GLUE writes it: no quoting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix[1:]
    if fmt == "tsv":
        cols = list(rows[0])
        lines = ["\t".join(cols)] + ["\t".join(str(r[c]) for c in cols) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


def _tokenizer(texts) -> PreTrainedTokenizerFast:
    return build_word_tokenizer([*texts, " ".join(GOOD + BAD + TOPICS),
                                 "the film was news about today said , - 0 1 2 3 4 5 6 7 8 9"],
                                "bert", model_max_length=64)


def _bert_config(tok, **kw) -> BertConfig:
    return BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=32, max_position_embeddings=64,
                      pad_token_id=tok.pad_token_id, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, **kw)


def base_bert(folder: Path, texts=()) -> str:
    """A base checkpoint (``BertModel``: no task head) and its tokenizer in ``folder``."""
    tok = _tokenizer(texts)
    torch.manual_seed(0)
    BertModel(_bert_config(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def classifier(folder: Path, names: list[str] | int, texts=()) -> str:
    """A classifier with a ``len(names)``-label head (``int``: generic ``LABEL_i`` names)."""
    tok = _tokenizer(texts)
    extra = {"num_labels": names} if isinstance(names, int) else \
        {"num_labels": len(names), "id2label": dict(enumerate(names)),
         "label2id": {n: i for i, n in enumerate(names)}}
    torch.manual_seed(0)
    BertForSequenceClassification(_bert_config(tok, **extra)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _forward(task) -> dict:
    batch = next(task.batches("forget", 4))
    with torch.no_grad():
        assert torch.isfinite(task.model(**batch).loss)
    return batch


# ---------------------------------------------------------------- formats and layouts


def test_glue_tsv_folder_with_unlabelled_test(tmp_path, caplog):
    train = _sentiment_rows(12)
    train[3]["sentence"] = 'he said " it was good'  # GLUE TSVs do not quote: " is a character
    train[4]["sentence"] = "NA"  # and NA / null stay text
    train[5]["sentence"] = "null"
    data = tmp_path / "SST-2"
    write_rows(data / "train.tsv", train)
    write_rows(data / "dev.tsv", _sentiment_rows(6, start=100))
    write_rows(data / "test.tsv", [{"index": i, "sentence": r["sentence"]}
                                   for i, r in enumerate(_sentiment_rows(3, 200))])
    model = classifier(tmp_path / "clf", ["negative", "positive"])
    with caplog.at_level(logging.WARNING, logger="mape_viz.tasks.generic"):
        task = load_task("text-classification", data=str(data), model=model, forget="ids:3,4")
    assert task.label_names == ["negative", "positive"]  # the model's names
    assert task.meta["options"]["finetune"] is False  # the head fits: used as it is
    assert list(task.forget["sentence"]) == ['he said " it was good', "NA"]
    assert sorted(list(task.forget["sentence"]) + list(task.retain["sentence"])) == \
        sorted(r["sentence"] for r in train)
    assert list(task.forget["label"]) == [train[3]["label"], train[4]["label"]]
    assert len(task.test) == 6 and list(task.test["sentence"])[0] == _sentiment_rows(1, 100)[0]["sentence"]
    assert len(task.meta["unlabelled_test"]) == 3
    assert any("test.tsv (3 rows) has no labels" in n for n in task.meta["notes"])
    assert "test.tsv (3 rows) has no labels" in caplog.text
    assert task.meta["sources"] == {"train": "train.tsv", "test": "dev.tsv"}
    batch = _forward(task)
    assert batch["labels"].tolist() == list(task.forget["label"])


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl", "json", "parquet"])
def test_every_format_reads_the_same_rows(tmp_path, fmt):
    rows, dev = _sentiment_rows(10), _sentiment_rows(4, start=50)
    write_rows(tmp_path / "d" / f"train.{fmt}", rows)
    write_rows(tmp_path / "d" / f"validation.{fmt}", dev)
    model = classifier(tmp_path / "clf", 2)
    task = load_task("text-classification", data=str(tmp_path / "d"), model=model,
                     forget=[1, 4])
    assert task.label_names == ["0", "1"]  # generic LABEL_i names: the ids as names
    assert list(task.forget["sentence"]) == [rows[1]["sentence"], rows[4]["sentence"]]
    assert list(task.forget["label"]) == [rows[1]["label"], rows[4]["label"]]
    assert list(task.forget["idx"]) == [1, 4] and len(task.retain) == 8
    assert list(task.test["sentence"]) == [r["sentence"] for r in dev]
    assert task.meta["sources"]["train"] == f"train.{fmt}"
    _forward(task)


def test_one_file_and_a_dict_of_files(tmp_path):
    rows = _sentiment_rows(10)
    one = write_rows(tmp_path / "all.csv", rows)
    model = classifier(tmp_path / "clf", 2)
    task = load_task("text-classification", data=str(one), model=model, forget=2)
    assert task.test is None and any("no labelled held-out split" in n
                                     for n in task.meta["notes"])
    dev = write_rows(tmp_path / "held.jsonl", rows[:3])
    task = load_task("text-classification", data={"train": str(one), "dev": str(dev)},
                     model=model, forget=2)
    assert len(task.test) == 3 and len(task.forget) == 2


# ---------------------------------------------------------------- columns and labels


def test_sentence_pairs_found_with_string_labels(tmp_path):
    labels = ("entailment", "neutral", "contradiction")
    rows = [{"genre": "fiction", "sentence1": f"the film was good {i}",
             "sentence2": f"it was {GOOD[i % 3]}", "gold_label": labels[i % 3]} for i in range(9)]
    rows[8]["gold_label"] = "-"  # MNLI's "no consensus": dropped with a note
    write_rows(tmp_path / "MNLI" / "train.tsv", rows)
    write_rows(tmp_path / "MNLI" / "dev_matched.tsv", rows[:3])
    task = load_task("text-classification", data=str(tmp_path / "MNLI"),
                     model=classifier(tmp_path / "clf", 3), forget=2)
    assert task.meta["columns"] == {"text": "sentence1", "pair": "sentence2",
                                    "label": "gold_label"}
    assert task.label_names == sorted(labels)
    assert len(task.forget) + len(task.retain) == 8 and len(task.test) == 3
    assert any("dropped 1 of 9" in n for n in task.meta["notes"])
    by_name = dict(zip(list(task.retain["sentence1"]), list(task.retain["gold_label"])))
    for r in rows[:8]:
        if r["sentence1"] in by_name:
            assert task.label_names[by_name[r["sentence1"]]] == r["gold_label"]
    assert _forward(task)["token_type_ids"].max() == 1  # two segments


def test_named_columns_ambiguity_and_missing_columns(tmp_path):
    model = classifier(tmp_path / "clf", 4)
    reviews = [{"title": f"title {i}", "body": f"the film was {GOOD[i % 3]} {i}",
                "stars": i % 4} for i in range(12)]
    write_rows(tmp_path / "r" / "train.csv", reviews)
    with pytest.raises(DataError, match=r"cannot tell the text column: \['title', 'body'\] "
                                        r"could each be it.*text_column="):
        load_task("text-classification", data=str(tmp_path / "r"), model=model,
                  label_column="stars", forget=2)
    with pytest.raises(DataError, match=r"no label column.*label_column="):
        load_task("text-classification", data=str(tmp_path / "r"), model=model,
                  text_column="body", forget=2)
    task = load_task("text-classification", data=str(tmp_path / "r"), model=model,
                     text_column="body", label_column="stars", forget=2)
    assert task.label_names == ["0", "1", "2", "3"] and task.collate.text_key == "body"
    with pytest.raises(DataError, match=r"lacks columns \['nope'\]"):
        load_task("text-classification", data=str(tmp_path / "r"), model=model,
                  text_column="nope", label_column="stars")
    both = [{"text": "a good film", "sentence": "a good film", "label": 1}] * 4
    write_rows(tmp_path / "b" / "train.jsonl", both)
    with pytest.raises(DataError, match=r"text column is ambiguous: \['sentence', 'text'\]"):
        load_task("text-classification", data=str(tmp_path / "b"), model=model, forget=1)


def test_four_labels_follow_the_model_and_misfits_are_refused(tmp_path):
    rows = _topic_rows(16)
    write_rows(tmp_path / "topics" / "train.jsonl", rows)
    write_rows(tmp_path / "topics" / "test.jsonl", rows[:4])
    order = ["sports", "world", "tech", "business"]  # not sorted: the model's order wins
    task = load_task("text-classification", data=str(tmp_path / "topics"),
                     model=classifier(tmp_path / "clf4", order), forget=4)
    assert task.label_names == order and task.model.config.num_labels == 4
    assert [order[i] for i in list(task.test["label"])] == [r["label"] for r in rows[:4]]
    two = classifier(tmp_path / "clf2", ["negative", "positive"])
    with pytest.raises(DataError, match=r"has a 2-label head \['negative', 'positive'\] but the "
                                        r"data has 4 labels .*pass finetune=True"):
        load_task("text-classification", data=str(tmp_path / "topics"), model=two, forget=4)
    with pytest.raises(DataError, match=r"2-label head.*finetune=False uses it as it is"):
        load_task("text-classification", data=str(tmp_path / "topics"), model=two, forget=4,
                  finetune=False)
    with pytest.raises(DataError, match="has no classification head"):
        load_task("text-classification", data=str(tmp_path / "topics"),
                  model=base_bert(tmp_path / "base"), forget=4, finetune=False)


def test_vocabulary_that_does_not_fit(tmp_path):
    write_rows(tmp_path / "d" / "train.tsv",
               [{"sentence": f"zorblat quexing vrumm {i}", "label": i % 2} for i in range(8)])
    model = classifier(tmp_path / "clf", 2)
    with pytest.raises(DataError, match=r"reads \d+% of the data's tokens as unknown"):
        load_task("text-classification", data=str(tmp_path / "d"), model=model, forget=2)
    small = tmp_path / "small"
    tok = _tokenizer(["zorblat quexing vrumm"])
    BertForSequenceClassification(BertConfig(
        vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, num_labels=2)).save_pretrained(small)
    tok.save_pretrained(small)
    with pytest.raises(DataError, match=r"embeddings have 10 rows: they do not belong together"):
        load_task("text-classification", data=str(tmp_path / "d"), model=str(small), forget=2)


def test_unreadable_files_and_missing_splits(tmp_path):
    model = classifier(tmp_path / "clf", 2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.tsv").write_text("sentence\tlabel\na good film\t1\ttoo many\n")
    with pytest.raises(DataError, match=r"cannot read .*train.tsv as tsv \(GLUE layout"):
        load_task("text-classification", data=str(bad), model=model)
    (bad / "train.tsv").unlink()
    (bad / "train.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match=r"cannot read .*train.parquet as parquet"):
        load_task("text-classification", data=str(bad), model=model)
    only_dev = tmp_path / "only_dev"
    write_rows(only_dev / "dev.tsv", _sentiment_rows(4))
    with pytest.raises(SplitNotFoundError, match=r"has no train split: it has dev.*train_split="):
        load_task("text-classification", data=str(only_dev), model=model)
    with pytest.raises(SplitNotFoundError, match=r"has no split 'heldout'"):
        load_task("text-classification", data=str(only_dev), model=model, train_split="dev",
                  test_split="heldout")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"holds no data files \(found: \['notes.txt'\]\)"):
        load_task("text-classification", data=str(empty), model=model)
    with pytest.raises(FileNotFoundError, match="data not found"):
        load_task("text-classification", data=str(tmp_path / "nowhere"), model=model)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        load_task("text-classification", data="someone/some-dataset", model=model)
    with pytest.raises(ValueError, match="needs data="):
        load_task("text-classification", model=model)


# ---------------------------------------------------------------- forget specs


def _train_ds(n=20, ids=None):
    rows = [{"sentence": f"s {i}", "label": i % 4, "drop": i in (3, 7)} for i in range(n)]
    ds = datasets.Dataset.from_list(rows)
    return ds.add_column("idx", list(ids) if ids is not None else list(range(n)))


def test_forget_specs_pick_the_rows_they_name(tmp_path):
    ds = _train_ds()
    pos = lambda spec, **kw: plan_forget(ds, spec, 42, **kw).positions  # noqa: E731
    assert pos([5, 2]) == pos("ids:2,5") == pos("2,5") == [2, 5]
    (tmp_path / "ids.txt").write_text("2\n# a comment\n5\n")
    (tmp_path / "ids.json").write_text("[5, 2]")
    assert pos(f"file:{tmp_path / 'ids.txt'}") == pos(f"file:{tmp_path / 'ids.json'}") == [2, 5]
    assert pos(tmp_path / "ids.txt") == [2, 5]  # a path object is a file of ids
    assert pos("column:drop") == [3, 7]
    assert pos(4) == pos("random:4") == pos("4") == random_forget_indices(20, 4, 42)
    assert pos("random:4@16") == random_forget_indices(20, 4, 16) != pos(4)
    assert pos(0.25) == pos("random:0.25") == random_forget_indices(20, 5, 42)
    assert pos("random", n_forget=3) == random_forget_indices(20, 3, 42)
    shifted = _train_ds(ids=range(100, 120))  # ids are the idx column's values
    assert plan_forget(shifted, "ids:101,119", 0).positions == [1, 19]
    for bad, why in [("ids:99", r"row ids \[99\] are not in the training set.*0\.\.19"),
                     ("column:nope", "forget column 'nope' is not in the training set"),
                     ("column:sentence", "must be boolean"), ("wat", "unknown form"),
                     (0, "a count must be >= 1"), ("label-flip:0.5", "takes a count"),
                     ("random:many", "is not a number"), ([1, 1], "lists some row ids twice"),
                     (f"file:{tmp_path / 'none.txt'}", "not found")]:
        with pytest.raises((DataError, FileNotFoundError), match=why):
            plan_forget(ds, bad, 42)
    with pytest.raises(ValueError, match="does not fit a training set of 20"):
        plan_forget(ds, 21, 42)
    assert parse_forget("label-flip:3@7").seed == 7


def test_label_flip_flips_exactly_n_rows_and_records_them():
    ds = _train_ds(40)
    plan = plan_forget(ds, "label-flip:6", 3, label_column="label", n_labels=4)
    assert len(plan.flips) == 6 and plan.positions == random_forget_indices(40, 6, 3)
    flipped = flip_labels(ds, plan, "label")
    old, new = np.array(list(ds["label"])), np.array(list(flipped["label"]))
    changed = np.flatnonzero(old != new).tolist()
    assert changed == plan.positions  # exactly those rows, each to another label
    assert list(flipped["is_flipped"]) == [i in plan.positions for i in range(40)]
    assert list(flipped["original_label"]) == list(ds["label"])
    for f in plan.flips:
        assert f["original"] == old[f["position"]] != f["flipped"] == new[f["position"]]
        assert f["idx"] == f["position"] and 0 <= f["flipped"] < 4
    again = plan_forget(ds, "label-flip:6", 3, label_column="label", n_labels=4)
    assert again.flips == plan.flips  # seeded
    with pytest.raises(DataError, match="at least 2 labels"):
        plan_forget(ds, "label-flip:2", 0, label_column="label", n_labels=1)


def test_label_flip_needs_fine_tuning(tmp_path):
    write_rows(tmp_path / "d" / "train.tsv", _sentiment_rows(10))
    with pytest.raises(DataError, match="label-flip forget sets need fine-tuning"):
        load_task("text-classification", data=str(tmp_path / "d"),
                  model=classifier(tmp_path / "clf", 2), forget="label-flip:2", finetune=False)


# ---------------------------------------------------------------- fine-tuning a base checkpoint


def _accuracy(task, model, rows) -> float:
    hits = 0
    for batch in task.batches(rows, 64):
        with torch.no_grad():
            pred = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1)
        hits += int((pred == batch["labels"]).sum())
    return hits / len(rows)


def test_finetune_base_checkpoint_end_to_end_and_cache(tmp_path, monkeypatch):
    data = tmp_path / "d"
    write_rows(data / "train.tsv", _sentiment_rows(48))
    write_rows(data / "dev.tsv", _sentiment_rows(12, start=500))
    base = base_bert(tmp_path / "base")
    opts = {"data": str(data), "model": base, "forget": "label-flip:2", "retrained": True,
            "train": {"epochs": 6, "lr": 1e-2, "batch_size": 8, "progress": False,
                      "threads": 1}}
    task = load_task("text-classification", **opts)
    info = task.meta["models"]
    assert not info["original"]["cached"] and not info["retrained"]["cached"]
    assert info["original"]["steps"] == 6 * 6 and info["retrained"]["steps"] == 6 * 6
    assert isinstance(task.model, BertForSequenceClassification)
    assert task.model.config.num_labels == 2 and task.meta["options"]["finetune"] is True
    assert task.meta["options"]["max_length"] == finetune_base.CPU_MAX_LENGTH
    assert _accuracy(task, task.model, task.test) == 1.0  # it learned the words
    assert all(list(task.forget["is_flipped"])) and not any(list(task.retain["is_flipped"]))
    assert [f["flipped"] for f in task.meta["label_flip"]] == list(task.forget["label"])
    assert any("retrained reference" in n for n in task.meta["notes"])
    # loader -> fine-tune -> score -> unlearn -> evaluate
    result = mv.unlearn(task, "gd", "mape", 0.5, {"epochs": 2, "lr": 1e-3, "batch_size": 2})
    assert result.ok and set(result.mask.n_selected()) == {"heads", "filters"}
    report = mv.evaluate(task, result.model)
    assert {"forget_acc", "retain_acc", "test_acc"} <= set(report)

    def refuse(*a, **k):
        raise AssertionError("trained although the model is cached")

    monkeypatch.setattr(finetune_base, "train_model", refuse)
    again = load_task("text-classification", **opts)
    assert all(i["cached"] for i in again.meta["models"].values())
    for a, b in zip(task.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="trained although"):  # other flips: other data
        load_task("text-classification", **{**opts, "forget": "label-flip:2@7"})


def test_retrained_needs_the_base_checkpoint(tmp_path):
    write_rows(tmp_path / "d" / "train.tsv", _sentiment_rows(10))
    with pytest.raises(DataError, match="pass base_model="):
        load_task("text-classification", data=str(tmp_path / "d"),
                  model=classifier(tmp_path / "clf", 2), forget=2, retrained=True)


# ---------------------------------------------------------------- presets over the generic loader


def test_glue_mnli_preset_reads_glue_own_tsv_layout(tmp_path):
    labels = ("entailment", "neutral", "contradiction")
    rows = [{"index": i, "sentence1": f"the film was good {i}", "sentence2": "it was fine",
             "gold_label": labels[i % 3]} for i in range(9)]
    write_rows(tmp_path / "MNLI" / "train.tsv", rows)
    write_rows(tmp_path / "MNLI" / "dev_matched.tsv", rows[:6])
    write_rows(tmp_path / "MNLI" / "test_matched.tsv",
               [{k: v for k, v in r.items() if k != "gold_label"} for r in rows[:2]])
    task = load_task("glue/mnli", data_files=tmp_path / "MNLI", model=base_bert(tmp_path / "b"),
                     finetune=False, n_forget=3)
    assert task.label_names == list(labels)  # the hub's order, not sorted
    assert [labels[i] for i in list(task.test["gold_label"])] == [r["gold_label"] for r in rows[:6]]
    assert len(task.meta["unlabelled_test"]) == 2
    assert any("random 3-label head" in n for n in task.meta["notes"])


# ---------------------------------------------------------------- causal LM question answering


def _llama(folder: Path, texts) -> str:
    tok = build_word_tokenizer([*texts, "Question: Answer:"], "llama")
    tiny_llama(TinyLlamaSpec(hidden_size=32, intermediate_size=32, num_hidden_layers=2),
               tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_causal_lm_qa_tofu_layout_and_train_layout(tmp_path):
    qa = [{"question": f"who wrote book {i} ?", "answer": f"author {i} wrote it"}
          for i in range(20)]
    model = _llama(tmp_path / "llama", [r["question"] + " " + r["answer"] for r in qa])
    tofu = tmp_path / "tofu"
    write_rows(tofu / "forget05.jsonl", qa[:2])
    write_rows(tofu / "retain95.jsonl", qa[2:])
    task = load_task("causal-lm-qa", data=str(tofu), model=model, forget_split="forget05")
    assert task.kind == "causal_lm" and (len(task.forget), len(task.retain)) == (2, 18)
    assert task.test is None and task.meta["options"]["forget"] == "split:forget05"
    batch = _forward(task)
    assert (batch["labels"] != -100).any()
    write_rows(tofu / "retain90.jsonl", qa[4:])
    with pytest.raises(DataError, match=r"several fit.*retain_split="):
        load_task("causal-lm-qa", data=str(tofu), model=model, forget_split="forget05")
    flat = tmp_path / "flat"
    write_rows(flat / "train.csv", [{"prompt": r["question"], "response": r["answer"]}
                                    for r in qa])
    task = load_task("causal-lm-qa", data=str(flat), model=model, forget="ids:0,3")
    assert task.meta["columns"] == {"question": "prompt", "answer": "response"}
    assert list(task.forget["prompt"]) == [qa[0]["question"], qa[3]["question"]]
    with pytest.raises(DataError, match="label-flip is for classification"):
        load_task("causal-lm-qa", data=str(flat), model=model, forget="label-flip:2")


# ---------------------------------------------------------------- command line


def _glue_folder(tmp_path: Path) -> tuple[str, str]:
    data = tmp_path / "SST-2"
    write_rows(data / "train.tsv", _sentiment_rows(16))
    write_rows(data / "dev.tsv", _sentiment_rows(6, start=100))
    write_rows(data / "test.tsv", [{"index": 0, "sentence": "a good film"}])
    return str(data), classifier(tmp_path / "clf", ["negative", "positive"])


def test_cli_score_writes_scores_mask_and_figures(tmp_path, capsys):
    data, model = _glue_folder(tmp_path)
    out = tmp_path / "scores"
    argv = ["score", "--model", model, "--data", data, "--forget", "ids:0,1,2",
            "--sparsity", "0.5", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {"scores.safetensors", "scores.json", "mask",
                                               "figures", "summary.json"}
    tensors = load_file(out / "scores.safetensors")
    assert tensors["heads"].shape == (2, 4) and tensors["filters"].shape == (2, 32)
    assert set(tensors) >= {"grad.heads", "fisher.filters"}
    doc = json.loads((out / "scores.json").read_text())
    assert doc["objective"] == "mlf" and len(doc["top_heads"]) == 8
    best = doc["top_heads"][0]
    assert best["score"] == pytest.approx(float(tensors["heads"].max()))
    mask = load_mask(out / "mask")
    assert mask.n_selected() == {"heads": 4, "filters": 32}  # half of each kind
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "text-classification" and summary["sizes"]["forget"] == 3
    assert summary["forget"] == "ids:3"
    pages = {p.name for p in (out / "figures").iterdir()}
    assert {"head_heatmap.html", "filter_view.html", "index.html", "plotly.min.js"} <= pages
    assert "cdn.plot.ly" not in (out / "figures" / "head_heatmap.html").read_text()
    capsys.readouterr()
    assert main(argv) == 2
    assert "already exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    assert main(argv[:-2] + [str(mine), "--overwrite"]) == 2
    assert "not written by mape-viz score" in capsys.readouterr().err
    assert main(["score", "--model", model, "--data", data, "--label-column", "nope",
                 "--out", str(tmp_path / "x")]) == 2
    assert "lacks columns ['nope']" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_score_named_task_with_local_files(tmp_path, capsys):
    data, _ = _glue_folder(tmp_path)
    model = base_bert(tmp_path / "base")
    out = tmp_path / "s"
    assert main(["score", "--task", "glue/sst2", "--model", model, "--data", data,
                 "--finetune", "no", "--forget", "4", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "glue/sst2" and summary["task_options"]["forget"] == 4
    assert summary["task_options"]["data_files"] == data


def test_task_arguments_are_checked():
    parser = argparse.ArgumentParser()
    add_task_arguments(parser)
    with pytest.raises(UsageError, match="give --task NAME, or --model"):
        task_from_arguments(parser.parse_args([]))
    with pytest.raises(UsageError, match=r"task 'toy-sentiment' takes no --text-column"):
        task_from_arguments(parser.parse_args(["--task", "toy-sentiment", "--text-column", "x"]))
    with pytest.raises(UsageError, match="--train-config takes a JSON object"):
        task_from_arguments(parser.parse_args(["--task", "glue/sst2", "--train-config", "{"]))


def test_cli_unlearn_on_your_model_and_data(tmp_path):
    data, model = _glue_folder(tmp_path)
    out = tmp_path / "run"
    assert main(["unlearn", "--model", model, "--data", data, "--forget", "ids:0,1,2",
                 "--method", "ga", "--selector", "mape", "--sparsity", "0.5", "--max-steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    assert {"config.json", "mask", "metrics.json", "weights.safetensors"} <= {
        p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "text-classification"
    assert config["task_options"]["forget"] == "ids:0,1,2"
    assert load_mask(out / "mask").n_selected() == {"heads": 4, "filters": 32}


def test_app_serves_your_model_and_data(tmp_path):
    """``python app.py --model DIR --data DIR --forget ...``: the app's context holds that
    task, its forget rows play the canaries' role, and bad flags are one line."""
    import app
    from mape_viz.ui.app_logic import sample_headers

    data, model = _glue_folder(tmp_path)
    ctx = app.context_from_args(app.parse_args(["--model", model, "--data", data,
                                                "--forget", "ids:0,1,2"]))
    assert ctx.task.name == "text-classification" and len(ctx.train) == 16
    assert ctx.canary_ids() == [0, 1, 2] and ctx.task.label_names == ["negative", "positive"]
    assert "canary" not in sample_headers(ctx)
    assert ctx.reference_note([0]).startswith("No retrained reference")
    with pytest.raises(SystemExit, match="app.py: error: text-classification needs data="):
        app.context_from_args(app.parse_args(["--task", "text-classification"]))
