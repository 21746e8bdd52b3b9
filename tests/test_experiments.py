"""Experiments (sweep, successive, relearn, compare), record writers and ``mape-viz bench``
on tiny fake tasks built in the test (seconds, offline)."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest
import torch
import transformers as T
from datasets import Dataset, concatenate_datasets

from mape_viz import experiments as ex
from mape_viz.cli import SUBCOMMANDS, main
from mape_viz.cli.bench import comparison_markdown_for
from mape_viz.experiments import records as rec_mod
from mape_viz.presets import preset_targets
from mape_viz.tasks import TASKS, CausalLMCollator, ClassificationCollator, Task
from mape_viz.tasks.tokenizer import build_word_tokenizer
from mape_viz.unlearning import UnlearnConfig
from mape_viz.viz import (comparison_table, relearn_curves, sparsity_curves,
                          successive_curves)

WORDS = ["good", "bad", "movie", "plot", "was", "not", "very", "the", "fine", "dull"]


def _tiny_classification_task(n_forget: int = 10, n_retain: int = 40, n_test: int = 20,
                               seed: int = 0):
    """A ``Task`` with a tiny BERT (d=16, 2 layers, 4 heads, 24 filters) on random word
    sentences labelled by "good" in the sentence; the forget rows have flipped labels."""
    rng = random.Random(seed)

    def row(i: int, flip: bool = False) -> dict:
        words = [rng.choice(WORDS) for _ in range(5)]
        label = int("good" in words)
        return {"text": " ".join(words), "label": 1 - label if flip else label, "idx": i}

    forget = [row(i, flip=True) for i in range(n_forget)]
    retain = [row(n_forget + i) for i in range(n_retain)]
    test = [row(i) for i in range(n_test)]
    tok = build_word_tokenizer(WORDS, "bert", model_max_length=32)
    cfg = T.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=24, max_position_embeddings=32,
                       num_labels=2, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = T.BertForSequenceClassification(cfg).eval()
    torch.manual_seed(seed + 1)
    gold = T.BertForSequenceClassification(cfg).eval()
    return Task(name="tiny-fake-cls", kind="classification", model=model, tokenizer=tok,
                forget=Dataset.from_list(forget), retain=Dataset.from_list(retain),
                test=Dataset.from_list(test), collate=ClassificationCollator(tok, max_length=32),
                retrained_model=gold, label_names=["negative", "positive"],
                meta={"models": {"retrained": {"seconds": 12.5}}})


def _tiny_causal_task():
    """A TOFU-like ``Task`` with a tiny Llama: forget / retain QA rows with paraphrased and
    perturbed answers, world facts, real authors and "I don't know" answers."""
    prompt = "Question: {question}\nAnswer:"

    def qa(i: int, who: str) -> dict:
        return {"question": f"who wrote book {i}", "answer": f"{who} {i % 3} wrote it",
                "paraphrased_answer": f"it was {who} {i % 3}",
                "perturbed_answer": [f"{who} {(i + 1) % 3} wrote it", "nobody wrote it"],
                "idx": i}

    forget = [qa(i, "anna") for i in range(4)]
    retain = [qa(i, "ben") for i in range(4, 12)]
    facts = [{"question": f"what is fact {i}", "answer": f"fact {i} is true",
              "perturbed_answer": [f"fact {i} is false"], "idx": i} for i in range(3)]
    idk = [{"question": r["question"], "answer": "i do not know", "idx": r["idx"]} for r in forget]
    texts = [prompt, "i do not know", "nobody", "it was is true false"]
    for r in forget + retain + facts:
        texts += [r["question"], r["answer"], r.get("paraphrased_answer", ""),
                  *r["perturbed_answer"]]
    tok = build_word_tokenizer(texts, "llama", model_max_length=48)
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, intermediate_size=24,
                        max_position_embeddings=48, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = T.LlamaForCausalLM(cfg).eval()
    torch.manual_seed(1)
    gold = T.LlamaForCausalLM(cfg).eval()
    sets = {"forget": Dataset.from_list(forget), "retain": Dataset.from_list(retain),
            "world_facts": Dataset.from_list(facts), "real_authors": Dataset.from_list(facts)}
    # named as tiny-tofu names them (TOFU's *_perturbed configs: rows with the variants)
    extras = {"forget_perturbed": sets["forget"], "retain_perturbed": sets["retain"],
              "world_facts": sets["world_facts"], "real_authors": sets["real_authors"],
              "idk": Dataset.from_list(idk)}
    return Task(name="tiny-fake-lm", kind="causal_lm", model=model, tokenizer=tok,
                forget=sets["forget"], retain=sets["retain"],
                test=concatenate_datasets([sets["world_facts"], sets["real_authors"]]),
                collate=CausalLMCollator(tok, prompt_template=prompt, max_length=48),
                extras=extras, retrained_model=gold)


@pytest.fixture(scope="module")
def cls_task():
    torch.set_num_threads(1)
    return _tiny_classification_task()


@pytest.fixture(scope="module")
def lm_task():
    return _tiny_causal_task()


FAST = {"epochs": 1, "batch_size": 4, "score_max_retain": 16, "fisher_max_samples": 16,
        "lr": 1e-2}


# ---------------------------------------------------------------------------------------------
# experiments -> records -> figures


def test_sweep_records_feed_sparsity_curves(cls_task):
    recs = ex.sweep_sparsity(cls_task, ["ga", "so"], ["full", "mape"], [0.5, 0.75],
                             granularities=("both", "heads", "filters"), config=FAST,
                             seeds=(0, 1), eval_max_samples=8, progress=False)
    plan = ex.sweep_plan(["ga", "so"], ["full", "mape"], [0.5, 0.75],
                         ("both", "heads", "filters"), (0, 1))
    assert len(recs) == len(plan) == 2 * 2 * (1 + 3 * 2)
    assert len(ex.sweep_plan(["ga", "rt"], ["full", "mape", "sure"], [0.5], ("both",))) == 1 + 2 + 1
    for key in ("method", "selector", "granularity", "sparsity", "seed", "forget_acc",
                "retain_acc", "test_acc", "mia", "mia_auc", "seconds", "n_changed_params",
                "forget", "retain", "test"):
        assert all(key in r for r in recs), key
    full = [r for r in recs if r["selector"] == "full"]
    assert {r["sparsity"] for r in full} == {0.0} and {r["granularity"] for r in full} == {"all"}
    # heads-only runs freeze every filter (and vice versa)
    heads = [r for r in recs if r["granularity"] == "heads"]
    assert all(r["n_selected_filters"] == 0 and r["n_selected_heads"] > 0 for r in heads)
    masked = [r for r in recs if r["selector"] != "full"]
    assert all(r["n_changed_params"] <= r["n_trainable_params"] for r in masked)
    assert all(r["ok"] for r in recs)

    fig = sparsity_curves(recs, y=["test_acc", "forget_acc"])
    metas = [t.meta for t in fig.data]
    assert {m["facet"] for m in metas} == {"ga", "so"}
    assert {m["color"] for m in metas} == {"full", "mape"}
    assert {m["y"] for m in metas} == {"test_acc", "forget_acc"}
    # one trace per (y, method, selector, granularity); seeds averaged: n = 2 per point
    mape_both = [t for t in fig.data if t.meta["color"] == "mape" and t.meta["dash"] == "both"
                 and t.meta["facet"] == "ga" and t.meta["y"] == "test_acc"]
    assert len(mape_both) == 1 and list(mape_both[0].x) == [0.5, 0.75]
    assert all(int(c[1]) == 2 for c in mape_both[0].customdata)
    fig7 = sparsity_curves([r for r in recs if r["selector"] == "mape"], color="granularity",
                           dash=None)
    assert {t.meta["color"] for t in fig7.data} == {"both", "heads", "filters"}


def test_successive_records_feed_successive_curves(cls_task):
    recs = ex.successive(cls_task, n_requests=3, request_size=3, selectors=("full", "mape"),
                         method="so", sparsity=0.5, config=FAST,
                         scenarios=("successive", "batch", "eq12"), progress=False)
    # 3 scenarios x 2 selectors x (request 0 + 3 requests)
    assert len(recs) == 3 * 2 * 4
    for r in recs:
        for key in ("scenario", "method", "selector", "request", "n_removed", "test_acc",
                    "retain_acc", "forget_acc", "seconds", "total_seconds"):
            assert key in r, key
    first = [r for r in recs if r["request"] == 0]
    assert all(r["n_removed"] == 0 and r.get("removed_acc") is None for r in first)
    later = [r for r in recs if r["request"] > 0]
    assert all(0.0 <= r["removed_acc"] <= 1.0 for r in later)
    assert [r["n_removed"] for r in recs if r["scenario"] == "successive"
            and r["selector"] == "mape"] == [0, 3, 6, 9]
    # every point of a scenario is measured on the same planned forget pool (9 rows)
    assert {r["mia_n_forget"] for r in recs} == {9.0}
    masked = [r for r in later if r["selector"] == "mape"]
    assert all(r["n_changed_params"] > 0 for r in masked)
    fig = successive_curves(recs, y=["test_acc", "removed_acc"])
    assert {t.meta["dash"] for t in fig.data} == {"successive", "batch", "eq12"}
    assert {t.meta["color"] for t in fig.data} == {"full", "mape"}
    tr = next(t for t in fig.data if t.meta["y"] == "test_acc")
    assert list(tr.x) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="rows"):
        ex.successive(cls_task, n_requests=4, request_size=5, progress=False)
    with pytest.raises(ValueError, match="eq12"):
        ex.successive(cls_task, 2, 2, method="ga", scenarios=("eq12",), progress=False)


def test_relearn_records_feed_relearn_curves(cls_task):
    recs = ex.relearn(cls_task, ["ga", "npo"], ("full", "mape"), epochs=2, lr=1e-3,
                      sparsity=0.5, config=FAST, include_rt=True, progress=False)
    assert len(recs) == (2 * 2 + 1) * 3
    for r in recs:
        for key in ("method", "selector", "epoch", "forget_acc", "forget", "heldout_acc",
                    "relearnset_acc", "relearn_lr", "n_relearn", "n_heldout"):
            assert key in r, key
    # 20 % of 10 forget rows relearned, 8 held out; forget-only evaluation by default
    assert {(r["n_relearn"], r["n_heldout"]) for r in recs} == {(2, 8)}
    assert all("test_acc" not in r for r in recs)
    assert sorted({r["epoch"] for r in recs}) == [0, 1, 2]
    fig = relearn_curves(recs, y=["forget_acc", "heldout_acc"])
    dashes = {t.meta["color"]: t.line.dash for t in fig.data}
    assert dashes["full"] == "dash" and dashes["mape"] == "solid"
    assert {t.meta["facet"] for t in fig.data} == {"ga", "npo", "rt"}


def test_relearn_model_fits_the_relearn_rows_and_leaves_the_input(cls_task):
    before = {n: p.clone() for n, p in cls_task.model.named_parameters()}
    rows, held = ex.relearn_split(cls_task.forget, 0.3, seed=1)
    assert len(rows) == 3 and len(held) == 7
    assert set(rows["idx"]).isdisjoint(held["idx"])
    seen = []
    out = ex.relearn_model(cls_task, cls_task.model, rows, epochs=30, lr=1e-2, batch_size=3,
                           after_epoch=lambda e, m: seen.append(e))
    assert seen == list(range(1, 31))
    assert all(torch.equal(p, before[n]) for n, p in cls_task.model.named_parameters())
    m0, _ = ex.evaluate_model(cls_task, cls_task.model, splits=("forget",), forget=rows)
    m1, _ = ex.evaluate_model(cls_task, out, splits=("forget",), forget=rows)
    assert m1["forget_acc"] == 1.0 and m1["forget_acc"] >= m0["forget_acc"]
    with pytest.raises(ValueError):
        ex.relearn_split(cls_task.forget, 0.0)


def test_compare_records_feed_comparison_table_and_markdown(cls_task):
    recs = ex.compare_methods(cls_task, ["so", "ga"], ("mape", "full", "sure"), 0.5,
                              config=FAST, overrides={"sa": {"max_steps": 3}},
                              progress=False)
    names = [r["name"] for r in recs]
    assert names == ["Original", "RT", "SA", "SO", "MAPE-SO", "SURE-SO", "GA", "MAPE-GA",
                     "SURE-GA"]
    orig = recs[0]
    assert orig["n_changed_params"] == 0 and orig["seconds"] == 0.0
    rt = recs[1]
    assert rt["seconds"] == 12.5 and rt["seconds_source"] == "task training record"
    gold, _ = ex.evaluate_model(cls_task, cls_task.retrained_model)
    assert rt["forget_acc"] == gold["forget_acc"]
    assert recs[2]["steps"] == 3  # per-method override reached SA
    assert all(r["sparsity"] == 0.5 for r in recs if r["selector"] in ("mape", "sure"))

    fig = comparison_table(recs, reference=("rt", "original"))
    cells = fig.data[0].cells.values
    # viz names rows by the upper-cased method ("ORIGINAL"); the markdown says "Original"
    assert [c.replace("<i>", "").replace("</i>", "") for c in cells[0]] == \
        ["ORIGINAL"] + names[1:]
    assert fig.data[0].header.values[1].startswith("Efficacy")

    md = comparison_markdown_for(recs, "classification")
    lines = md.strip().splitlines()
    assert lines[0].startswith("| Method | Efficacy: forget acc. ↓ | Efficacy: MIA ↓ | "
                               "Fidelity: retain acc. ↑ | Fidelity: test acc. ↑ | seconds |")
    assert len(lines) == 2 + len(recs)
    assert lines[2].startswith("| *Original* |") and lines[3].startswith("| *RT* |")
    assert "**" not in lines[2] + lines[3]  # reference rows are never bold
    # each method group (3 rows) has at least one bold number per column it can win
    so_rows = lines[5:8]
    assert any("**" in ln for ln in so_rows)


def test_compare_on_a_causal_lm_task_has_tofu_columns(lm_task):
    cfg = {**FAST, "score_max_retain": 8}
    recs = ex.compare_methods(lm_task, ["ga", "dpo"], ("full", "mape"), 0.5, config=cfg,
                              overrides={"sa": {"max_steps": 2}}, progress=False)
    assert [r["name"] for r in recs] == ["Original", "RT", "SA", "GA", "MAPE-GA", "DPO",
                                         "MAPE-DPO"]
    for key in ("forget_rouge", "forget_prob", "forget_quality", "model_utility",
                "retain_rouge", "forget", "retain"):
        assert all(key in r for r in recs), key
    md = comparison_markdown_for(recs, "causal_lm")
    assert "forget quality ↑" in md and "model utility ↑" in md and "MIA" not in md
    assert ex.default_methods("causal_lm") == ("ga", "gd", "dpo", "npo")


def test_task_view_and_eval_view(cls_task, lm_task):
    view = cls_task.replace(forget=cls_task.forget.select(range(2)))
    assert len(view.forget) == 2 and view.retain is cls_task.retain
    assert view.kind == "classification"
    m, _ = ex.evaluate_model(cls_task, cls_task.model, splits=("forget", "test"))
    assert "test_acc" in m and "retain_acc" not in m and "mia" not in m
    lm, _ = ex.evaluate_model(lm_task, lm_task.model, splits=("forget",))
    assert "forget_rouge" in lm and "forget_quality" in lm
    assert not any(k.startswith(("retain", "world_facts", "real_authors")) for k in lm)
    m2, _ = ex.evaluate_model(cls_task, cls_task.model, splits=("retain",),
                              retain=cls_task.retain.select(range(3)))
    assert m2["retain_acc"] in (0.0, 1 / 3, 2 / 3, 1.0) and "forget_acc" not in m2
    lm2 = ex.eval_view(lm_task, None, forget=lm_task.forget.select(range(2)))
    assert len(lm2.forget) == 2 and "forget_perturbed" not in lm2.extras
    assert {"retain_perturbed", "world_facts", "real_authors", "idk"} <= set(lm2.extras)
    hidden = ex.eval_view(lm_task, ("forget",))
    assert hidden.retain is None and hidden.test is None and set(hidden.extras) == \
        {"forget_perturbed", "idk"}
    assert lm_task.retain is not None and "retain_perturbed" in lm_task.extras  # untouched
    with pytest.raises(TypeError, match="Task"):
        ex.evaluate_model(object(), cls_task.model)


def test_config_for_reads_the_presets_targets_in_order():
    base = UnlearnConfig()
    over = {"*": {"epochs": 7, "lr": 1.0}, "full": {"lr": 2.0}, "masked": {"lr": 3.0},
            "so": {"eta": 1e-3}, "so/mape": {"eta": 2e-3}}
    ex.check_overrides(over)
    assert ex.config_for(base, over, "ga", "full").lr == 2.0
    assert ex.config_for(base, over, "ga", "mape").lr == 3.0
    assert ex.config_for(base, over, "ga", "mape").epochs == 7
    assert ex.config_for(base, over, "so", "mape").eta == 2e-3
    assert ex.config_for(base, over, "so", "sure").eta == 1e-3
    # RT takes no mask (the methods registry says so): a "masked" target never reaches it
    assert ex.config_for(base, over, "rt", "mape").lr == 2.0
    assert not ex.is_masked("rt", "mape") and ex.is_masked("ga", "mape")
    assert ex.config_for(base, None, "ga", "mape") is base
    bench = preset_targets("toy-sentiment", "bench")
    assert ex.config_for(base, bench, "so", "full").eta == 1e-6
    assert ex.config_for(base, bench, "so", "mape").eta == 1e-4
    assert ex.config_for(base, bench, "ga", "mape").lr == 2e-3
    with pytest.raises(ValueError, match="not 'full', 'masked', '\\*'"):
        ex.check_overrides({"**": {"lr": 1.0}})
    with pytest.raises(TypeError):
        ex.check_overrides({"*": {"nope": 1.0}})


def test_tofu_split_option_selects_its_forget_rows():
    """tiny-tofu names its forget option ``split``: the forget01 bench rows apply to a task
    loaded with split="forget01" and to no other split."""
    from types import SimpleNamespace

    def task(options):
        return SimpleNamespace(name="tiny-tofu", meta={"options": options})

    f01 = preset_targets(task({"split": "forget01"}), "bench")
    assert f01["npo/mape"]["lr"] == 5e-4 and f01["dpo/full"]["epochs"] == 10
    for other in ({"split": "forget05"}, {}):
        assert "npo/mape" not in preset_targets(task(other), "bench")
    assert preset_targets(task({"split": "forget01"}), "bench")["masked"] == \
        preset_targets(task({}), "bench")["masked"]  # the task's own rows stay under them


def test_run_record_on_a_replaced_task_with_few_eval_samples(cls_task):
    four = cls_task.replace(forget=cls_task.forget.select(range(4)))
    rec, res = ex.run_record(four, "ga", "mape", 0.5, FAST, eval_max_samples=3,
                             extra={"experiment": "app"})
    assert res.ok and rec["ok"] and rec["experiment"] == "app" and rec["sparsity"] == 0.5
    assert rec["mia_n_forget"] == 3.0  # three rows per split evaluated
    for key in ("task", "kind", "method", "selector", "name", "granularity", "seed", "error",
                "seconds", "mask_seconds", "unlearn_seconds", "eval_seconds",
                "n_changed_params", "n_trainable_params", "n_selected_heads",
                "n_selected_filters", "lr", "eta", "steps", "forget_acc", "forget"):
        assert key in rec, key
    assert rec["name"] == "MAPE-GA" and rec["steps"] == 1  # 4 rows, batch 4, 1 epoch
    # the same rows given as forget= are unlearned and evaluated alike (and RT retrains)
    rec2, _ = ex.run_record(cls_task, "ga", "mape", 0.5, FAST, eval_max_samples=3,
                            forget=cls_task.forget.select(range(4)))
    assert rec2["forget_acc"] == rec["forget_acc"] and rec2["steps"] == 1
    rt, res_rt = ex.run_record(cls_task, "rt", "mape", 0.5, {**FAST, "max_steps": 1},
                               forget=cls_task.forget.select(range(4)), eval_max_samples=3)
    assert rt["selector"] == "full" and rt["sparsity"] == 0.0
    assert res_rt.meta.get("retrained_from") != "task.retrained_model"


# ---------------------------------------------------------------------------------------------
# writers

KNOWN = [
    {"method": "so", "selector": "full", "forget_acc": 0.5, "mia": 0.25, "seconds": 1.25,
     "ok": True, "note": "a|b"},
    {"method": "so", "selector": "mape", "forget_acc": float("nan"), "mia": 0.125,
     "seconds": 10, "ok": False, "note": None, "extra": [1, 2]},
]


def test_markdown_table_on_known_records():
    md = ex.markdown_table(KNOWN, ["method", "selector", "forget_acc", "mia", "seconds", "ok",
                                   "note"],
                           headers={"forget_acc": "forget"}, formats={"forget_acc": ".1%",
                                                                      "seconds": ".1f"},
                           bold=[["mia"], []])
    assert md == (
        "| method | selector | forget | mia | seconds | ok | note |\n"
        "| :--- | :--- | ---: | ---: | ---: | :--- | :--- |\n"
        "| so | full | 50.0% | **0.25** | 1.2 | yes | a\\|b |\n"
        "| so | mape | – | 0.125 | 10.0 | no | – |\n")
    assert ex.markdown_table(KNOWN).splitlines()[0] == \
        "| method | selector | forget_acc | mia | seconds | ok | note | extra |"
    with pytest.raises(ValueError):
        ex.markdown_table([])


def test_comparison_markdown_on_known_rows():
    rows = [{"name": "RT", "method": "rt", "selector": None, "n": 1,
             "values": {"forget": 0.0, "test": 0.99, "seconds": 120.0}, "best": set()},
            {"name": "GA", "method": "ga", "selector": None, "n": 2,
             "values": {"forget": 0.5, "test": 0.9, "seconds": 1.0}, "best": {"test"}},
            {"name": "MAPE-GA", "method": "ga", "selector": "mape", "n": 2,
             "values": {"forget": 0.25, "test": 0.8, "seconds": 2.0},
             "best": {"forget", "seconds"}}]
    md = ex.comparison_markdown(rows, ["forget"], ["test"], extra=["seconds"],
                                labels={"forget": "forget acc."}, formats={"forget": ".0%"})
    assert md == (
        "| Method | Efficacy: forget acc. ↓ | Fidelity: test ↑ | seconds |\n"
        "| :--- | ---: | ---: | ---: |\n"
        "| *RT* | 0% | 0.9900 | 120.0 |\n"
        "| GA (n=2) | 50% | **0.9000** | 1.0 |\n"
        "| MAPE-GA (n=2) | **25%** | 0.8000 | 2.0 |\n")


def test_csv_and_json_writers_roundtrip_and_refuse_overwrite(tmp_path):
    path = ex.write_csv(KNOWN, tmp_path / "r.csv")
    text = path.read_text()
    assert text.splitlines()[0] == "method,selector,forget_acc,mia,seconds,ok,note,extra"
    assert text.splitlines()[2] == "so,mape,,0.125,10,False,,\"[1, 2]\""
    back = ex.read_csv(path)
    assert back[0] == {"method": "so", "selector": "full", "forget_acc": 0.5, "mia": 0.25,
                       "seconds": 1.25, "ok": True, "note": "a|b", "extra": None}
    assert back[1]["forget_acc"] is None and back[1]["seconds"] == 10
    with pytest.raises(FileExistsError):
        ex.write_csv(KNOWN, path)
    ex.write_csv(KNOWN[:1], path, overwrite=True)
    assert len(list(csv.reader(path.open()))) == 2

    jp = ex.write_json({"records": KNOWN, "t": torch.tensor(1.5), "inf": math.inf},
                       tmp_path / "r.json")
    doc = ex.read_json(jp)
    assert doc["records"][1]["forget_acc"] is None and doc["t"] == 1.5 and doc["inf"] is None
    json.loads(jp.read_text())  # strict JSON
    with pytest.raises(FileExistsError):
        ex.write_json([], jp)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_score_aliases_and_table_columns():
    assert rec_mod.score_aliases({"forget_acc": 1, "retain_acc": 2, "test_acc": 3}) == \
        {"forget": 1, "retain": 2, "test": 3}
    assert rec_mod.score_aliases({"forget_f1": 1}) == {"forget": 1}
    assert rec_mod.score_aliases({"forget_rouge": 0.5, "retain_rouge": 0.7}) == \
        {"forget": 0.5, "retain": 0.7}
    eff, fid, dirs = ex.table_columns("classification")
    assert eff == ("forget", "mia") and fid == ("retain", "test") and dirs == {}
    assert ex.table_columns("causal_lm")[2] == {"forget_quality": "max"}
    with pytest.raises(ValueError):
        ex.table_columns("nope")


# ---------------------------------------------------------------------------------------------
# CLI


@pytest.fixture()
def fake_registered(cls_task):
    name = "tiny-fake-bench"
    if name not in TASKS:
        TASKS.register(name, help="tiny fake classification task (tests)")(
            lambda: _tiny_classification_task())
    return name


def test_bench_cli_end_to_end_on_a_fake_task(tmp_path, capsys, fake_registered):
    assert "bench" in SUBCOMMANDS
    out = tmp_path / "bench"
    argv = ["bench", "--task", fake_registered, "--quick", "--methods", "ga,so",
            "--selectors", "full,mape", "--sparsity", "0.5", "--epochs", "1",
            "--score-max-retain", "16", "--fisher-max-samples", "16",
            "--override", "ga:lr=0.01", "--override", "masked:lr=0.02",
            "--override", "so/full:eta=1e-6", "--experiments", "compare,relearn,sweep,successive",
            "--sparsities", "0.5", "--n-requests", "2", "--relearn-epochs", "1",
            "--out", str(out), "--figures", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| Method | Efficacy: forget acc. ↓ | Efficacy: MIA ↓ |")
    assert "| *Original* |" in printed and "MAPE-GA" in printed and "MAPE-SO" in printed
    files = {p.name for p in out.iterdir()}
    assert files == {"records.json", "compare.csv", "relearn.csv", "sweep.csv",
                     "successive.csv", "table.md", "figures"}
    doc = json.loads((out / "records.json").read_text())
    assert doc["format"] == "mape-viz-bench/1" and doc["quick"] is True
    assert doc["overrides"]["ga"] == {"lr": 0.01}
    lrs = {r["name"]: (r.get("lr"), r.get("eta")) for r in doc["experiments"]["compare"]}
    # least specific first: masked < method < method/selector
    assert lrs["GA"] == (0.01, None) and lrs["MAPE-GA"] == (0.01, None)
    assert lrs["MAPE-SO"][1] is not None and lrs["SO"][1] == 1e-6
    assert doc["overrides"]["sa"] == {"max_steps": 60}  # --quick caps SA
    assert doc["command"].startswith(f"mape-viz bench --task {fake_registered}")
    assert doc["table"] in (out / "table.md").read_text()
    rows = ex.read_csv(out / "compare.csv")
    assert [r["name"] for r in rows] == ["Original", "RT", "SA", "GA", "MAPE-GA", "SO",
                                         "MAPE-SO"]
    figs = {p.name for p in (out / "figures").iterdir()}
    assert {"comparison_table.html", "sparsity_curves.html", "successive_curves.html",
            "relearn_curves.html", "index.html"} <= figs
    html = (out / "figures" / "comparison_table.html").read_text()
    # offline: plotly.js is embedded, no script is loaded from the network
    assert 'src="http' not in html and len(html) > 1_000_000

    # refuses to overwrite (before any work), then --overwrite replaces
    stamp = (out / "records.json").stat().st_mtime_ns
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "records.json").stat().st_mtime_ns == stamp
    small = ["bench", "--task", fake_registered, "--quick", "--methods", "ga", "--no-rt",
             "--no-sa", "--epochs", "1", "--score-max-retain", "16", "--out", str(out),
             "--overwrite", "--quiet"]
    assert main(small) == 0
    assert {p.name for p in out.iterdir()} == {"records.json", "compare.csv", "table.md"}


def test_bench_cli_rejects_bad_input_before_work(tmp_path, capsys, fake_registered):
    base = ["bench", "--task", fake_registered, "--out", str(tmp_path / "x"), "--quiet"]
    assert main(base + ["--selectors", "mape,nope"]) == 2
    assert "unknown selector" in capsys.readouterr().err
    assert main(base + ["--methods", "dpo"]) == 2
    assert "do not fit" in capsys.readouterr().err
    assert main(base + ["--experiments", "compare,plots"]) == 2
    assert main(base + ["--override", "ga:nope=1"]) == 2
    assert main(base + ["--override", "ga-lr"]) == 2
    assert main(base + ["--override", "gx/mape:lr=1"]) == 2
    assert "not 'full', 'masked'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
