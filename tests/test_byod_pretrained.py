"""Library defaults on a pretrained classifier (issue #12): a small BERT pre-trained by our own
masked-LM code (:mod:`mape_viz.tasks.pretrain_mlm`) on generated reviews, fine-tuned by the
``text-classification`` loader on a GLUE-layout TSV folder with ``label-flip:16``, then
unlearned by MAPE-GD / NPO / SO with no config at all (the ``library`` presets of
``text-classification``). Each must lower the accuracy on the flipped rows (their flipped
labels) while held-out accuracy drops by at most 3 points.

The reviews: ``<name> said <subject> <verb> [<intensifier>] <adjective> .`` with the words of
:mod:`mape_viz.tasks.sentiment_data`, label = the adjective's polarity, and a made-up reviewer
name per row (the rare words a real review has, through which a flipped row can be
memorised). The pretraining corpus is the toy-sentiment generator's sentences (negations,
"but" clauses, reported speech) plus the reviews' text without labels.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

import mape_viz as mv
from mape_viz.tasks import SentimentSpec, generate_sentiment, load_task
from mape_viz.tasks import sentiment_data as sd
from mape_viz.tasks.names import unique_names
from mape_viz.tasks.pretrain_mlm import MLMCollator, MLMSpec, pretrain_mlm
from mape_viz.tasks.tokenizer import build_word_tokenizer
from mape_viz.tasks.train import torch_threads

#: The fine-tuning recipe (the user's ``--train-config``): a 2-layer, 64-wide model needs more
#: steps and a larger lr than BERT-base's 2e-5 to learn the adjectives and memorise some flips.
FINETUNE = {"epochs": 12, "lr": 6e-4, "batch_size": 16, "threads": 1, "progress": False}
N_TRAIN, N_DEV, N_FLIP = 600, 400, 16


def reviews(n: int, seed: int) -> list[dict]:
    """``n`` labelled one-clause reviews, each by its own made-up reviewer."""
    rng = random.Random(seed)
    names = unique_names(rng, n)
    rows = []
    for name in names:
        positive = rng.random() < 0.5
        words = [name, "said", rng.choice(sd.SUBJECTS), rng.choice(sd.VERBS)]
        if rng.random() < 0.4:
            words.append(rng.choice(sd.INTENSIFIERS))
        words.append(rng.choice(sd.POSITIVE if positive else sd.NEGATIVE))
        rows.append({"sentence": " ".join(words) + " .", "label": int(positive)})
    return rows


def write_tsv(path: Path, rows: list[dict]) -> None:
    path.write_text("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n"
                                                  for r in rows))


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """(task, original metrics, pretraining info): pretrain, write the TSV folder, fine-tune
    through the loader (cached in a temp dir). About 80 s on 2 shared cores."""
    root = tmp_path_factory.mktemp("pretrained")
    train, dev = reviews(N_TRAIN, seed=2), reviews(N_DEV, seed=3)
    corpus, _ = generate_sentiment(SentimentSpec(n_train=3000, n_test=0, n_canaries=0, seed=1))
    texts = [r["text"] for r in corpus] + [r["sentence"] for r in train + dev]
    info = pretrain_mlm(texts, root / "base", MLMSpec(epochs=4, progress=False))
    data = root / "SST-like"
    data.mkdir()
    write_tsv(data / "train.tsv", train)
    write_tsv(data / "dev.tsv", dev)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("MAPE_VIZ_CACHE", str(root / "cache"))
        task = load_task("text-classification", model=str(root / "base"), data=str(data),
                         forget=f"label-flip:{N_FLIP}", train=FINETUNE)
        with torch_threads(1):
            orig = mv.evaluate(task)
    return task, orig, info


def test_mlm_collator_masks_words_only():
    tok = build_word_tokenizer(["the film was good", "a bad plot"], "bert")
    collate = MLMCollator(tok, max_length=16, mask_prob=0.5, seed=0)
    batch = collate([{"text": "the film was good"}, {"text": "a bad plot"}] * 50)
    special = torch.isin(tok(["the film was good", "a bad plot"] * 50, padding=True,
                             return_tensors="pt")["input_ids"],
                         torch.tensor(tok.all_special_ids))
    assert (batch["labels"][special] == -100).all()  # never [CLS], [SEP] or padding
    chosen = batch["labels"] != -100
    assert 0.4 < chosen.float().sum() / (~special).sum() < 0.6
    masked = batch["input_ids"][chosen] == tok.mask_token_id
    assert 0.7 < masked.float().mean() < 0.9  # 80 % [MASK], the rest random or kept
    again = MLMCollator(tok, max_length=16, mask_prob=0.5, seed=0)(
        [{"text": "the film was good"}, {"text": "a bad plot"}] * 50)
    assert torch.equal(again["labels"], batch["labels"])  # seeded


def test_pretrain_mlm_refuses_a_used_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        pretrain_mlm(["a b c"], tmp_path / "x", MLMSpec(epochs=1, progress=False))
    (tmp_path / "f").write_text("mine")
    with pytest.raises(FileExistsError, match="is a file"):
        pretrain_mlm(["a b c"], tmp_path / "f", MLMSpec(epochs=1, progress=False))
    with pytest.raises(ValueError, match="multiple of heads"):
        MLMSpec(hidden=30, heads=4)
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep"


@pytest.mark.slow
def test_pretrained_then_finetuned_model_is_a_fair_testbed(pretrained):
    task, orig, info = pretrained
    # pretraining learned something: masked-word loss far below guessing among the words
    assert info["final_loss"] < 0.6 * math.log(info["vocab_size"])
    assert task.meta["options"]["finetune"] is True and len(task.forget) == N_FLIP
    assert orig["test_acc"] >= 0.9  # it learned the adjectives
    assert orig["forget_acc"] >= 0.25  # and memorised some flipped labels: something to forget


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gd", "npo", "so"])
def test_library_defaults_forget_flips_and_keep_heldout(pretrained, method):
    task, orig, _ = pretrained
    with torch_threads(1):  # 2 threads on 2 shared cores: several times slower
        result = mv.unlearn(task, method, "mape", 0.9)  # no config: the library presets
        after = mv.evaluate(task, result.model)
    assert result.ok
    assert result.config.stop_when == "flipped" and result.config.guard_drop == 0.03
    print(f"{method}: forget {orig['forget_acc']:.3f} -> {after['forget_acc']:.3f}, held-out "
          f"{orig['test_acc']:.3f} -> {after['test_acc']:.3f} ({result.stop_reason} at "
          f"{result.stopped_at})")
    assert after["forget_acc"] < orig["forget_acc"]
    assert orig["test_acc"] - after["test_acc"] <= 0.03
