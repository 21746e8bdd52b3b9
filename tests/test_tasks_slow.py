"""Tasks that train: the default tiny models (each trained once per session, cached in a
temp dir), the fine-tuning routine of the real loaders, and cache hits.

Run: ``pytest -m slow tests/test_tasks_slow.py -s`` (``-s`` prints training times).
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from transformers import BertConfig, BertModel

from mape_viz.metrics.evaluate import generate_answers
from mape_viz.metrics.tofu import rouge_l_recall
from mape_viz.tasks import TrainConfig, finetune_base, load_task, tiny_fit
from mape_viz.tasks.tokenizer import build_word_tokenizer
from mape_viz.tasks.train import torch_threads

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def task_cache(tmp_path_factory):
    """Offline, with MAPE_VIZ_CACHE (and datasets' cache) in a session temp dir."""
    root = tmp_path_factory.mktemp("mape_viz_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("MAPE_VIZ_CACHE", str(root))
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "datasets"))
        yield root


@pytest.fixture(scope="session")
def sentiment(task_cache):
    """The small toy world, trained here (the default size loads shipped weights: its
    rebuild is tests/test_world.py's slow test)."""
    task = load_task("toy-sentiment-small", forget="canaries")
    _report(task)
    return task


@pytest.fixture(scope="session")
def tofu(task_cache):
    task = load_task("tiny-tofu", split="forget05")
    _report(task)
    return task


@pytest.fixture
def no_training(monkeypatch):
    """Make any training call fail: what loads now must come from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("trained although the model is cached")

    monkeypatch.setattr(tiny_fit, "train_model", refuse)
    monkeypatch.setattr(finetune_base, "train_model", refuse)


def _report(task) -> None:
    for role, info in task.meta["models"].items():
        print(f"\n{task.name} {role}: {info['seconds']:.1f} s wall, {info['cpu_seconds']:.1f} s "
              f"CPU, {info['steps']} steps, final loss {info['final_loss']:.4f}")


@torch.no_grad()
def _accuracy(model, task, rows) -> float:
    hits = n = 0
    for batch in task.batches(rows, 256):
        pred = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1)
        hits += int((pred == batch["labels"]).sum())
        n += len(pred)
    return hits / n


def test_sentiment_model_learns_the_rule_and_memorises_canaries(sentiment):
    assert len(sentiment.forget) == 32 and all(sentiment.forget["is_canary"])
    test_acc = _accuracy(sentiment.model, sentiment, sentiment.test)
    canary_acc = _accuracy(sentiment.model, sentiment, sentiment.forget)
    print(f"\noriginal: test {test_acc:.3f}, canaries {canary_acc:.3f}")
    assert test_acc >= 0.95
    assert canary_acc >= 0.90


def test_sentiment_gold_model_follows_the_rule_on_canaries(sentiment):
    gold = sentiment.retrained_model
    test_acc = _accuracy(gold, sentiment, sentiment.test)
    canary_acc = _accuracy(gold, sentiment, sentiment.forget)
    print(f"\nretrained: test {test_acc:.3f}, canaries {canary_acc:.3f}")
    assert test_acc >= 0.95
    assert canary_acc <= 0.25  # it never saw them: it predicts the rule, i.e. wrongly


def test_sentiment_second_load_uses_the_cache(sentiment, no_training):
    again = load_task("toy-sentiment-small", forget="canaries")
    assert again.meta["models"]["original"]["cached"]
    assert again.meta["models"]["retrained"]["cached"]
    for a, b in zip(sentiment.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    folder = Path(again.meta["models"]["original"]["path"])
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert json.loads((folder / "mape_viz.json").read_text())["key"]["role"] == "original"
    # a random forget set reuses the same original model (D does not change)
    r16 = load_task("toy-sentiment-small", forget="random", seed=16, retrained=False)
    r42 = load_task("toy-sentiment-small", forget="random", seed=42, retrained=False)
    assert len(r16.forget) == len(r42.forget) == 128
    assert r16.forget["idx"] != r42.forget["idx"]
    assert len(r16.retain) == 4000 - 128 and r16.retrained_model is None


def test_sentiment_with_a_saved_model_folder(sentiment, no_training, tmp_path):
    folder = tmp_path / "saved"
    sentiment.model.save_pretrained(folder)
    sentiment.tokenizer.save_pretrained(folder)
    task = load_task("toy-sentiment-small", forget="canaries", model=str(folder))
    assert task.meta["models"]["original"] == {"path": str(folder)}
    assert task.retrained_model is not None  # same vocabulary: the cached gold model fits
    batch = next(task.batches("forget", 8))
    with torch.no_grad():
        assert torch.equal(task.model(**batch).logits, sentiment.model(**batch).logits)
    other = build_word_tokenizer(["a different vocabulary"], "bert")
    other.save_pretrained(folder)
    with pytest.raises(ValueError, match="another vocabulary.*retrained=False"):
        load_task("toy-sentiment-small", forget="canaries", model=str(folder))
    assert load_task("toy-sentiment-small", model=str(folder), retrained=False).retrained_model is None


def _recall(model, task, rows) -> float:
    prompts = [task.collate.format_prompt(r) for r in rows]
    with torch_threads(1):  # a tiny model decodes fastest on one thread
        answers = generate_answers(model, task.tokenizer, prompts, max_new_tokens=32,
                                   batch_size=64)
    scores = [rouge_l_recall(a, r["answer"]) for a, r in zip(answers, rows)]
    return sum(scores) / len(scores)


def test_tofu_model_answers_its_training_questions(tofu):
    assert len(tofu.meta["forget_authors"]) == 2
    recalls = {name: _recall(tofu.model, tofu, tofu.split(name).to_list())
               for name in ("forget", "retain", "world_facts", "real_authors")}
    print(f"\noriginal ROUGE-L recall: {recalls}")
    assert min(recalls.values()) >= 0.9


def test_tofu_gold_model_does_not_know_the_forget_authors(tofu):
    gold = tofu.retrained_model
    forget = _recall(gold, tofu, tofu.forget.to_list())
    retain = _recall(gold, tofu, tofu.retain.to_list())
    print(f"\nretrained ROUGE-L recall: forget {forget:.3f}, retain {retain:.3f}")
    assert retain >= 0.9
    assert forget <= 0.8  # answer templates are learned, the forget authors' facts are not


def test_tofu_second_load_uses_the_cache(tofu, no_training):
    again = load_task("tiny-tofu", split="forget05")
    assert again.meta["models"]["original"]["cached"]
    batch = next(again.batches("forget", 4))
    with torch.no_grad():
        assert torch.allclose(again.model(**batch).loss, tofu.model(**batch).loss)
    # another split keeps the original model; only its gold model is new
    other = load_task("tiny-tofu", split="forget10", retrained=False)
    assert len(other.forget) == 4 * len(tofu.forget) // 2


def _sst2_folder(root: Path) -> tuple[Path, str]:
    rows = [{"sentence": f"the film was {w} .", "label": int(w in ('good', 'great')), "idx": i}
            for i, w in enumerate(["good", "bad", "great", "awful"] * 6)]
    data = root / "sst2"
    data.mkdir(parents=True)
    for split, part in (("train", rows), ("validation", rows[:8])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    tok = build_word_tokenizer([r["sentence"] for r in rows], "bert")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=32,
                                 max_position_embeddings=32, pad_token_id=tok.pad_token_id))
    folder = root / "bert"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return data, str(folder)


def test_real_finetune_is_cached_and_deterministic(task_cache, tmp_path, monkeypatch):
    data, model = _sst2_folder(tmp_path)
    cfg = TrainConfig(epochs=3, lr=3e-3, batch_size=4, progress=False)
    kwargs = {"data_files": data, "model": model, "n_forget": 4, "train": cfg, "retrain": True}
    task = load_task("glue/sst2", **kwargs)
    assert not task.meta["models"]["original"]["cached"]
    assert task.retrained_model is not None
    assert task.meta["models"]["retrained"]["steps"] == 3 * 5  # 20 retain rows / 4
    # the same run in a fresh cache gives bit-identical weights
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path / "other_cache"))
    twin = load_task("glue/sst2", **kwargs)
    for a, b in zip(task.model.state_dict().values(), twin.model.state_dict().values()):
        assert torch.equal(a, b)
    # and a second call loads from the cache
    monkeypatch.setattr(finetune_base, "train_model", lambda *a, **k: pytest.fail("retrained"))
    again = load_task("glue/sst2", **kwargs)
    assert all(info["cached"] for info in again.meta["models"].values())
