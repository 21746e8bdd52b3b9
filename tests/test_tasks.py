"""Tasks without training: generators, collators, splits, real loaders on local files,
bad-input errors, the atomic cache write. Offline (HF_HUB_OFFLINE=1), tiny random models."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
from datasets import Dataset
from huggingface_hub import constants
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from mape_viz.tasks import (
    TASKS,
    CausalLMCollator,
    ClassificationCollator,
    ExtractiveQACollator,
    MultipleChoiceCollator,
    SentimentSpec,
    TinyLlamaSpec,
    TofuSpec,
    TrainConfig,
    cache,
    generate_sentiment,
    generate_tofu,
    hub,
    load_local_task,
    load_task,
    tiny_fit,
)
from mape_viz.tasks.base import Task, coerce_dataclass
from mape_viz.tasks.local import collator_for, kind_of_model, load_data_folder, load_model_folder
from mape_viz.tasks.splits import random_forget_indices, resolve_forget, split_train
from mape_viz.tasks.tiny_models import tiny_llama
from mape_viz.tasks.tiny_tofu import PROMPT, forget_authors
from mape_viz.tasks.tofu_data import IDK
from mape_viz.tasks.tokenizer import build_word_tokenizer

IGNORE = -100


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Offline, and every cache (ours, datasets') in a temp dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path / "mape_cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "ds_cache"))


# ---------------------------------------------------------------- generators


def test_sentiment_generator_is_deterministic_per_seed():
    spec = SentimentSpec(n_train=300, n_test=50, n_canaries=8, seed=3)
    assert generate_sentiment(spec) == generate_sentiment(spec)
    other = generate_sentiment(SentimentSpec(n_train=300, n_test=50, n_canaries=8, seed=4))
    assert other[0] != generate_sentiment(spec)[0]


def test_sentiment_rows_follow_the_rule_except_canaries():
    train, test = generate_sentiment(SentimentSpec(n_train=500, n_test=100, n_canaries=16))
    assert len(train) == 500 and len(test) == 100
    assert set(train[0]) == {"text", "label", "rule_label", "is_canary", "idx"}
    assert [r["idx"] for r in train] == list(range(500))
    canaries = [r for r in train if r["is_canary"]]
    assert len(canaries) == 16 and not any(r["is_canary"] for r in test)
    assert all(r["label"] != r["rule_label"] for r in canaries)
    assert all(r["label"] == r["rule_label"] for r in train + test if not r["is_canary"])
    # each canary is "reported" by a name that appears nowhere else in the corpus
    words = [w for r in train + test for w in r["text"].lower().split()]
    for r in canaries:
        name = next(w for w in r["text"].split() if w[0].isupper())
        assert words.count(name.lower()) == 1
    assert 0.4 < sum(r["label"] for r in train) / len(train) < 0.6


def test_tofu_generator_is_deterministic_and_shaped_like_tofu():
    spec = TofuSpec(n_authors=6, seed=1)
    corpus = generate_tofu(spec)
    assert corpus == generate_tofu(spec)
    assert corpus["authors"] != generate_tofu(TofuSpec(n_authors=6, seed=2))["authors"]
    authors = corpus["authors"]
    assert 10 <= len(authors) / 6 <= 20
    for row in authors + corpus["world_facts"] + corpus["real_authors"]:
        assert len(row["perturbed_answer"]) >= 3
        assert row["answer"] not in row["perturbed_answer"]
    for row in authors:  # world facts and real authors paraphrase as the answer itself (TOFU)
        assert row["paraphrased_answer"] != row["answer"]
    for row in authors + corpus["world_facts"] + corpus["real_authors"]:
        assert len(set(row["perturbed_answer"])) == len(row["perturbed_answer"])
    assert len({r["author"] for r in authors}) == 6


@pytest.mark.parametrize("split,n", [("forget01", 1), ("forget05", 2), ("forget10", 4)])
def test_tofu_forget_splits_round_up(split, n):
    assert forget_authors(split, 40) == n
    assert forget_authors(split, 200) == {"forget01": 2, "forget05": 10, "forget10": 20}[split]


# ---------------------------------------------------------------- collators


@pytest.fixture
def bert_tok():
    return build_word_tokenizer(["the movie was good .", "a plot ?", "who wrote it ? paris"],
                                "bert")


@pytest.fixture
def llama_tok():
    return build_word_tokenizer([PROMPT, "where was ada born ? ada was born in paris .",
                                 "a b c d . x y z"], "llama")


def test_classification_batch(bert_tok):
    rows = [{"text": "the movie was good .", "label": 1}, {"text": "a plot", "label": 0}]
    batch = ClassificationCollator(bert_tok)(rows)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].dtype == torch.long
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].shape == (2,)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0, 0]  # right padding
    assert batch["input_ids"][1, -1] == bert_tok.pad_token_id
    pair = ClassificationCollator(bert_tok, "text", "text")(rows)
    assert pair["token_type_ids"][0].max() == 1


def test_causal_lm_labels_mask_prompt_and_padding(llama_tok):
    rows = [{"question": "where was ada born ?", "answer": "ada was born in paris ."},
            {"question": "a b", "answer": "c"}]
    batch = CausalLMCollator(llama_tok, prompt_template=PROMPT)(rows)
    ids, labels = batch["input_ids"], batch["labels"]
    assert ids.shape == labels.shape == batch["attention_mask"].shape
    scored = [llama_tok.convert_ids_to_tokens(int(t)) for t in labels[0] if t != IGNORE]
    assert scored == ["ada", "was", "born", "in", "paris", ".", "<eos>"]
    assert labels[0, 0] == IGNORE and ids[0, 0] == llama_tok.bos_token_id
    assert (labels[batch["attention_mask"] == 0] == IGNORE).all()
    assert (labels[1] != IGNORE).sum() == 2  # "c" + eos
    plain = CausalLMCollator(llama_tok)([{"text": "x y z"}])
    assert (plain["labels"][0] != IGNORE).sum() == 4  # every token but bos, plus eos


def test_multiple_choice_labels_only_the_letter(llama_tok):
    col = MultipleChoiceCollator(llama_tok)
    batch = col([{"question": "x y ?", "choices": ["a", "b", "c", "d"], "answer": 2}])
    scored = [int(t) for t in batch["labels"][0] if t != IGNORE]
    letters = col.choice_token_ids(4)
    assert scored == [letters[2], llama_tok.eos_token_id]
    assert len(set(letters)) == 4


def test_extractive_qa_positions_recover_the_answer(bert_tok):
    ctx = "the movie was good . who wrote it ? paris"
    rows = [{"question": "who wrote it ?", "context": ctx,
             "answers": {"text": ["good"], "answer_start": [ctx.index("good")]}},
            {"question": "a plot ?", "context": ctx, "answers": {"text": [], "answer_start": []}}]
    batch = ExtractiveQACollator(bert_tok)(rows)
    s, e = int(batch["start_positions"][0]), int(batch["end_positions"][0])
    assert bert_tok.decode(batch["input_ids"][0, s:e + 1]) == "good"
    assert batch["start_positions"][1] == batch["end_positions"][1] == 0
    cut = ExtractiveQACollator(bert_tok, max_length=8)(rows[:1])  # answer truncated away
    assert cut["start_positions"].tolist() == [0]


def test_word_tokenizer_round_trip(tmp_path, bert_tok):
    bert_tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "the movie was good ."
    assert again(text)["input_ids"] == bert_tok(text)["input_ids"]
    assert again("zzz unknown")["input_ids"][1] == again.unk_token_id


# ---------------------------------------------------------------- splits and errors


def test_forget_split_by_seed():
    a, b = random_forget_indices(1000, 128, 16), random_forget_indices(1000, 128, 42)
    assert a == random_forget_indices(1000, 128, 16) and a != b
    assert len(set(a)) == 128 and a == sorted(a)


def test_bad_splits_raise_clear_errors():
    train = Dataset.from_dict({"x": list(range(10))})
    with pytest.raises(ValueError, match="larger than the training set"):
        resolve_forget(train, list(range(11)), seed=0)
    with pytest.raises(ValueError, match="does not fit a training set"):
        resolve_forget(train, "random", seed=0, n_forget=20)
    with pytest.raises(ValueError, match="overlap"):
        split_train(train, [0, 1, 2], retain_idx=[2, 3, 4])
    with pytest.raises(ValueError, match="twice"):
        split_train(train, [1, 1])
    with pytest.raises(ValueError, match="outside the training set"):
        split_train(train, [12])
    with pytest.raises(ValueError, match="unknown forget set"):
        resolve_forget(train, "canaries", seed=0)
    forget, retain = split_train(train, [3, 5])
    assert forget["x"] == [3, 5] and len(retain) == 8 and 3 not in retain["x"]


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError) as err:
        load_task("no-such-task")
    for name in ("toy-sentiment", "toy-sentiment-small", "tiny-tofu", "glue/sst2", "squad_v2",
                 "tofu", "wmdp", "mmlu"):
        assert name in str(err.value)
    assert set(TASKS.names()) >= {"toy-sentiment", "toy-sentiment-small", "tiny-tofu",
                                  "glue/sst2", "glue/mnli",
                                  "glue/qqp", "squad", "squad_v2", "tofu", "wmdp", "mmlu"}


def test_config_options_accept_dicts():
    default = TrainConfig(epochs=30, lr=1e-3)
    assert coerce_dataclass(TrainConfig, None, default) is default
    assert coerce_dataclass(TrainConfig, {"lr": 0.5}, default) == TrainConfig(epochs=30, lr=0.5)
    assert coerce_dataclass(SentimentSpec, {"n_train": 10}) == SentimentSpec(n_train=10)
    with pytest.raises(ValueError, match="bad SentimentSpec options"):
        coerce_dataclass(SentimentSpec, {"n_trian": 10})
    with pytest.raises(TypeError, match="expected a TrainConfig"):
        coerce_dataclass(TrainConfig, 3)


def test_unknown_option_lists_options():
    with pytest.raises(ValueError, match="its options: .*forget"):
        load_task("toy-sentiment", forgett="random")
    # each size is its own task name: the size is not an option
    with pytest.raises(ValueError, match="no option 'size'.*shipped"):
        load_task("toy-sentiment-small", size="toy-sentiment")


@pytest.mark.parametrize("name", ["toy-sentiment", "toy-sentiment-small"])
def test_toy_sentiment_rejects_oversized_forget_before_training(monkeypatch, name):
    monkeypatch.setattr(tiny_fit, "train_model", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="larger than the training set"):
        load_task(name, forget=list(range(5000)))
    with pytest.raises(ValueError, match="does not fit"):
        load_task(name, n_forget=10_000)
    with pytest.raises(ValueError, match="overlap"):
        load_task(name, forget=[0, 1, 2], retain=[2, 3])


def test_hub_name_offline_fails_at_once():
    start = time.perf_counter()
    with pytest.raises(hub.HubUnavailableError, match="HF_HUB_OFFLINE.*data_files="):
        load_task("glue/sst2")
    assert time.perf_counter() - start < 5


def test_hub_unreachable_fails_at_once(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(hub.HubUnavailableError, match="cannot be reached.*local files"):
        load_task("squad")


def test_hub_model_offline_names_the_fix(tmp_path):
    data = _write_sst2(tmp_path / "sst2")
    with pytest.raises(hub.HubUnavailableError, match="local folder"):
        load_task("glue/sst2", data_files=data, model="no-org/no-such-model", finetune=False,
                  n_forget=4)
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_task("glue/sst2", data_files=data, model=str(tmp_path / "missing"),
                  finetune=False, n_forget=4)


def test_model_folder_without_safetensors(tmp_path):
    data = _write_sst2(tmp_path / "sst2")
    folder = tmp_path / "bin_model"
    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=16))
    folder.mkdir()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        load_task("glue/sst2", data_files=data, model=str(folder), finetune=False, n_forget=4)


def test_missing_local_split_and_columns(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    pd.DataFrame({"sentence": ["a"], "label": [0]}).to_json(folder / "train.jsonl",
                                                             orient="records", lines=True)
    with pytest.raises(KeyError, match="validation"):
        load_task("glue/sst2", data_files=folder, finetune=False)
    with pytest.raises(KeyError, match="train.jsonl has no validation split: it has train"):
        load_task("glue/sst2", data_files=folder / "train.jsonl", finetune=False)
    with pytest.raises(FileNotFoundError, match="data not found"):
        load_task("glue/sst2", data_files=tmp_path / "nowhere", finetune=False)
    with pytest.raises(ValueError, match="must all be one of"):
        load_task("glue/sst2", data_files={"train": str(folder / "train.jsonl"),
                                           "validation": __file__}, finetune=False)
    with pytest.raises(ValueError, match="lacks columns \\['premise', 'hypothesis'\\]"):
        load_task("glue/mnli", data_files={"train": str(folder / "train.jsonl"),
                                           "validation_matched": str(folder / "train.jsonl")},
                  finetune=False)


# ---------------------------------------------------------------- cache


def test_cache_write_is_atomic(llama_tok, monkeypatch):
    model = tiny_llama(TinyLlamaSpec(hidden_size=16, intermediate_size=16, num_hidden_layers=1),
                       llama_tok)
    key = {"what": "atomic"}
    folder = cache.entry_dir("t", key)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(type(llama_tok), "save_pretrained", interrupted)
        cache.save_entry(folder, model, llama_tok, key, {})
    assert not folder.exists() and list(folder.parent.iterdir()) == []
    cache.save_entry(folder, model, llama_tok, key, {"seconds": 1.0})
    assert cache.is_cached("t", key)
    assert {p.name for p in folder.iterdir()} >= {"config.json", "mape_viz.json",
                                                  "model.safetensors", "tokenizer.json"}
    assert folder.parent.parent == cache.cache_root() == Path(os.environ["MAPE_VIZ_CACHE"])
    assert cache.config_hash(key) != cache.config_hash({"what": "other"})


def test_cache_key_ignores_settings_that_cannot_change_a_model():
    base = cache.config_hash({"train": TrainConfig()})
    assert base == cache.config_hash({"train": TrainConfig(progress=False, threads=2)})
    assert base != cache.config_hash({"train": TrainConfig(lr=1e-3)})


# ---------------------------------------------------------------- real loaders, local files


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _write_sst2(folder: Path) -> Path:
    rows = [{"sentence": f"the movie was {'good' if i % 2 else 'bad'} .", "label": i % 2,
             "idx": i} for i in range(12)]
    _jsonl(folder / "train.jsonl", rows)
    _jsonl(folder / "validation.jsonl", rows[:4])
    return folder


WORDS = ("the movie was good bad . who wrote it ? paris london is a city in france plot "
         "premise hypothesis not dogs cats are animals question answer")


def _bert_folder(tmp_path: Path, extra_texts=()) -> str:
    """A tiny *pretrained-style* BERT (no task head) + word-level tokenizer in a folder."""
    tok = build_word_tokenizer([WORDS, *extra_texts], "bert")
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=32,
                                 max_position_embeddings=128, pad_token_id=tok.pad_token_id))
    folder = tmp_path / "bert"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _llama_folder(tmp_path: Path, texts) -> str:
    tok = build_word_tokenizer([*texts, "[INST] [/INST] Answer: A B C D"], "llama")
    model = tiny_llama(TinyLlamaSpec(hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                                     max_position_embeddings=256), tok)
    folder = tmp_path / "llama"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _check_forward(task: Task, split: str = "forget") -> dict:
    batch = next(task.batches(split, 4))
    with torch.no_grad():
        out = task.model(**batch)
    assert torch.isfinite(out.loss)
    return batch


def test_glue_single_sentence_from_folder(tmp_path):
    task = load_task("glue/sst2", data_files=_write_sst2(tmp_path / "sst2"),
                     model=_bert_folder(tmp_path), finetune=False, n_forget=4, seed=16)
    assert task.kind == "classification" and task.label_names == ["negative", "positive"]
    assert (len(task.forget), len(task.retain), len(task.test)) == (4, 8, 4)
    assert not set(task.forget["idx"]) & set(task.retain["idx"])
    batch = _check_forward(task)
    assert batch["labels"].shape == (4,) and batch["input_ids"].shape[0] == 4
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    same = {"data_files": tmp_path / "sst2", "model": task.meta["options"]["model"],
            "finetune": False}
    other = load_task("glue/sst2", **same, n_forget=4, seed=42)
    assert other.forget["idx"] != task.forget["idx"]
    with pytest.raises(ValueError, match="overlap"):
        load_task("glue/sst2", **same, forget=[0, 1], retain=[1, 2, 3])


@pytest.mark.parametrize("name,cols,fmt", [("glue/mnli", ("premise", "hypothesis"), "csv"),
                                           ("glue/qqp", ("question1", "question2"), "parquet")])
def test_glue_pairs_from_files(tmp_path, name, cols, fmt):
    n_labels = 3 if name == "glue/mnli" else 2
    df = pd.DataFrame({cols[0]: ["dogs are animals ."] * 10, cols[1]: ["cats are not ."] * 10,
                       "label": [i % n_labels for i in range(10)]})
    df.loc[9, "label"] = -1  # an unlabelled row (GLUE test style) is dropped
    paths = {}
    for split in ("train", "validation_matched" if name == "glue/mnli" else "validation"):
        path = tmp_path / f"{split}.{fmt}"
        df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path)
        paths[split] = str(path)
    task = load_task(name, data_files=paths, model=_bert_folder(tmp_path), finetune=False,
                     n_forget=3)
    assert len(task.forget) + len(task.retain) == 9 and len(task.label_names) == n_labels
    assert task.model.config.num_labels == n_labels
    batch = _check_forward(task, "retain")
    assert batch["token_type_ids"].max() == 1  # the pair is encoded as two segments


def _squad_rows():
    ctx = "paris is a city in france ."
    return [{"id": str(i), "title": "t", "context": ctx, "question": "who is a city ?",
             "answers": {"text": ["paris"], "answer_start": [0]} if i % 3 else
             {"text": [], "answer_start": []}} for i in range(9)]


@pytest.mark.parametrize("name,fmt", [("squad", "jsonl"), ("squad_v2", "parquet")])
def test_squad_from_files(tmp_path, name, fmt):
    rows = _squad_rows()
    if name == "squad":
        rows = [r for r in rows if r["answers"]["text"]]
    folder = tmp_path / name
    folder.mkdir()
    for split in ("train", "validation"):
        if fmt == "jsonl":
            _jsonl(folder / f"{split}.jsonl", rows)
        else:
            pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")
    task = load_task(name, data_files=folder, model=_bert_folder(tmp_path), finetune=False,
                     n_forget=2)
    assert task.kind == "extractive_qa"
    batch = next(task.batches("test", 9))
    assert set(batch) >= {"input_ids", "attention_mask", "start_positions", "end_positions"}
    assert "labels" not in batch and batch["start_positions"].shape == (len(rows),)
    for i, row in enumerate(rows):
        s, e = int(batch["start_positions"][i]), int(batch["end_positions"][i])
        want = row["answers"]["text"][0] if row["answers"]["text"] else None
        got = task.tokenizer.decode(batch["input_ids"][i, s:e + 1]) if s else None
        assert got == want
    _check_forward(task)


def test_tofu_from_folder(tmp_path):
    corpus = generate_tofu(TofuSpec(n_authors=5))
    authors = corpus["authors"]
    per = len(authors) // 5
    folder = tmp_path / "tofu"
    simple = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]
    _jsonl(folder / "forget01.jsonl", simple(authors[-per:]))
    _jsonl(folder / "retain99.jsonl", simple(authors[:-per]))
    _jsonl(folder / "forget01_perturbed.jsonl", authors[-per:])
    _jsonl(folder / "world_facts_perturbed.jsonl", corpus["world_facts"])
    texts = [t for r in authors + corpus["world_facts"]
             for t in (r["question"], r["answer"], r["paraphrased_answer"], *r["perturbed_answer"])]
    task = load_task("tofu", split="forget01", data_files=folder,
                     model=_llama_folder(tmp_path, texts + list(IDK)))
    assert task.kind == "causal_lm" and task.retrained_model is None
    assert len(task.forget) == per and len(task.retain) == 4 * per
    assert len(task.extras["forget_perturbed"]) == per
    assert len(task.extras["forget_perturbed"][0]["perturbed_answer"]) == 3
    assert "retain_perturbed" not in task.extras  # optional file absent: skipped
    assert len(task.test) == len(corpus["world_facts"]) and len(task.extras["idk"]) == per
    batch = _check_forward(task)
    assert batch["labels"].shape == batch["input_ids"].shape
    prompt = task.collate.format_prompt(task.forget[0])
    assert prompt.startswith("[INST]")
    n_prompt = len(task.tokenizer(prompt)["input_ids"])
    assert (batch["labels"][0, :n_prompt] == IGNORE).all()
    assert (batch["labels"][0, n_prompt:] != IGNORE).any()
    _check_forward(task, "forget_perturbed")


def _mc_rows(n):
    return [{"question": f"which is a city ? {i}", "choices": ["paris", "dogs", "cats", "plot"],
             "answer": i % 4} for i in range(n)]


def test_wmdp_and_mmlu_from_files(tmp_path):
    folder = tmp_path / "wmdp"
    _jsonl(folder / "wmdp-bio.jsonl", _mc_rows(10))
    corpus = _jsonl(tmp_path / "bio_forget.jsonl", [{"text": "dogs are animals ."}] * 3)
    texts = [r["question"] for r in _mc_rows(10)] + ["paris dogs cats plot animals"]
    model = _llama_folder(tmp_path, texts)
    task = load_task("wmdp", data_files=folder, model=model, n_forget=3)
    assert task.kind == "multiple_choice" and task.label_names == ["A", "B", "C", "D"]
    assert (len(task.forget), len(task.retain), len(task.test)) == (3, 7, 10)
    batch = _check_forward(task, "test")
    letters = task.meta["choice_token_ids"]
    for i in range(4):
        scored = batch["labels"][i][batch["labels"][i] != IGNORE].tolist()
        assert scored == [letters[i % 4], task.tokenizer.eos_token_id]
    with_corpus = load_task("wmdp", data_files=folder, model=model, forget_corpus=corpus)
    assert len(with_corpus.forget) == 3 and len(with_corpus.retain) == 10
    corpus_batch = _check_forward(with_corpus)
    assert (corpus_batch["labels"] != IGNORE).sum() == 3 * 5  # 4 words + eos, every row

    mmlu_csv = tmp_path / "mmlu" / "test.csv"
    mmlu_csv.parent.mkdir()
    pd.DataFrame([{**r, "choices": json.dumps(r["choices"]), "subject": "x"}
                  for r in _mc_rows(8)]).to_csv(mmlu_csv, index=False)
    mm = load_task("mmlu", data_files=mmlu_csv.parent, model=model, n_forget=2)
    assert mm.test[0]["choices"] == ["paris", "dogs", "cats", "plot"]
    _check_forward(mm, "retain")


# ---------------------------------------------------------------- Task.batches


def test_task_batches_order_shuffle_and_sizes(bert_tok):
    rows = [{"text": "the movie was good .", "label": i % 2, "idx": i} for i in range(10)]
    ds = Dataset.from_list(rows)
    model = BertModel(BertConfig(vocab_size=len(bert_tok), hidden_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=8))
    collate = ClassificationCollator(bert_tok)
    task = Task(name="t", kind="classification", model=model, tokenizer=bert_tok, forget=ds,
                retain=ds, test=ds, collate=collate)
    sizes = [b["labels"].shape[0] for b in task.batches("forget", 4)]
    assert sizes == [4, 4, 2]
    plain = torch.cat([b["labels"] for b in task.batches(ds, 3)])
    assert plain.tolist() == [r["label"] for r in rows]
    a = [b["labels"].tolist() for b in task.batches("test", 3, shuffle=True, seed=1)]
    assert a == [b["labels"].tolist() for b in task.batches("test", 3, shuffle=True, seed=1)]
    assert sum(len(x) for x in a) == 10
    assert next(task.batches(rows, 2))["labels"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown split"):
        next(task.batches("nope", 2))
    with pytest.raises(ValueError, match="kind must be"):
        Task(name="t", kind="regression", model=model, tokenizer=bert_tok, forget=ds,
             retain=ds, test=ds, collate=collate)


def test_task_replace_optional_test_and_hidden_splits(bert_tok):
    rows = [{"text": "the movie was good .", "label": i % 2} for i in range(6)]
    ds = Dataset.from_list(rows)
    model = BertModel(BertConfig(vocab_size=len(bert_tok), hidden_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=8))
    task = Task(kind="classification", model=model, tokenizer=bert_tok, forget=ds, retain=ds,
                collate=ClassificationCollator(bert_tok), extras={"idk": ["no idea"]})
    assert task.name == "custom" and task.test is None and "test=-" in repr(task)
    with pytest.raises(ValueError, match="has no 'test' split"):
        next(task.batches("test", 2))
    small = task.replace(forget=ds.select(range(2)), name="two")
    assert len(small.forget) == 2 and small.name == "two" and small is not task
    assert small.model is task.model and small.retain is task.retain
    assert small.extras is task.extras and task.name == "custom" and len(task.forget) == 6
    assert task.replace(retain=None).retain is None and task.retain is ds
    with pytest.raises(ValueError, match="no field 'forgett'.*forget"):
        task.replace(forgett=ds)
    with pytest.raises(ValueError, match="kind must be"):
        task.replace(kind="regression")


def _local_folders(tmp_path, bert_tok, test_split=True, idk=False):
    mdir, ddir = tmp_path / "my-model", tmp_path / "data"
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(bert_tok), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, num_labels=2))
    model.save_pretrained(mdir)
    bert_tok.save_pretrained(mdir)
    ddir.mkdir()
    rows = [{"sentence": "the movie was good .", "label": i % 2} for i in range(10)]
    parts = {"forget": rows[:2], "retain": rows[2:7]} | ({"test": rows[7:]} if test_split else {})
    for name, part in parts.items():
        (ddir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    if idk:
        (ddir / "idk.json").write_text(json.dumps(["i do not know"]))
    return mdir, ddir


def test_load_local_task_from_model_and_data_folders(tmp_path, bert_tok):
    mdir, ddir = _local_folders(tmp_path, bert_tok, idk=True)
    task = load_local_task(mdir, ddir)
    assert isinstance(task, Task) and task.name == "my-model" and task.kind == "classification"
    assert (len(task.forget), len(task.retain), len(task.test)) == (2, 5, 3)
    assert task.extras == {"idk": ["i do not know"]} and task.retrained_model is None
    assert task.collate.text_key == "sentence" and not task.model.training
    batch = next(task.batches("retain", 4))
    assert batch["labels"].tolist() == [0, 1, 0, 1]
    assert kind_of_model(task.model) == "classification"
    no_test = load_local_task(*_local_folders(tmp_path / "b", bert_tok, test_split=False))
    assert no_test.test is None
    model, tok, kind = load_model_folder(mdir)
    assert kind == "classification" and tok.padding_side == "right"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_folder(tmp_path / "nope")
    (ddir / "retain.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="no retain split"):
        load_data_folder(ddir)
    with pytest.raises(ValueError, match="no text column"):
        collator_for("classification", tok, ["label", "idx"])
    with pytest.raises(ValueError, match="unknown task kind"):
        collator_for("regression", tok, ["text"])


def test_load_data_folder_reads_a_saved_dataset_dict(tmp_path):
    dd = datasets.DatasetDict({"forget": Dataset.from_list([{"text": "a", "label": 0}]),
                               "retain": Dataset.from_list([{"text": "b", "label": 1}] * 3)})
    dd.save_to_disk(str(tmp_path / "dd"))
    splits = load_data_folder(tmp_path / "dd")
    assert len(splits["forget"]) == 1 and len(splits["retain"]) == 3 and splits["test"] is None
