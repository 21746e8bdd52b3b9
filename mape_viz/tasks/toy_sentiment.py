"""``toy-sentiment``: templated sentiment classification with memorised canaries.

A tiny BERT classifier (word-level tokenizer) is trained on D (all training rows) and, as
the gold standard, on D_r alone; both are cached. See ``sentiment_data`` for the corpus.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from datasets import Dataset
from transformers import BertForSequenceClassification

from .base import TASKS, Task, coerce_dataclass
from .collate import ClassificationCollator
from .sentiment_data import SentimentSpec, generate_sentiment
from .splits import resolve_forget, split_train
from .tiny_fit import original_and_retrained
from .tiny_models import TinyBertSpec, tiny_bert
from .tokenizer import build_word_tokenizer
from .train import TrainConfig

LABEL_NAMES = ["negative", "positive"]
DEFAULT_TRAIN = TrainConfig(epochs=30, lr=1e-3, batch_size=32, weight_decay=0.01, threads=1)


@TASKS.register("toy-sentiment", help="templated sentiment (2 labels) with memorised canaries; "
                                      "tiny BERT trained locally")
def toy_sentiment(forget: str | int | Sequence[int] = "random", seed: int = 42,
                  n_forget: int = 128, retain: Sequence[int] | None = None,
                  model: str | os.PathLike | None = None,
                  data: SentimentSpec | Mapping[str, Any] | None = None,
                  arch: TinyBertSpec | Mapping[str, Any] | None = None,
                  train: TrainConfig | Mapping[str, Any] | None = None,
                  retrained: bool = True) -> Task:
    """The toy sentiment task.

    Args:
        forget: ``"random"`` (``n_forget`` random training rows by ``seed``, as in the
            paper), ``"canaries"`` (the rule-breaking memorised rows), an int (that many
            random rows) or explicit row indices.
        seed: forget-split seed (the paper uses 16 and 42).
        n_forget: size of a random forget set.
        retain: explicit D_r row indices (default: every row not forgotten); must not
            overlap the forget set.
        model: a saved classifier folder to use instead of the embedded tiny BERT (e.g.
            one unlearned earlier; same tokenizer); ``None`` = train / load the default.
        data: corpus sizes and generator seed (a ``SentimentSpec`` or a dict).
        arch: tiny BERT shape (``TinyBertSpec`` or dict).
        train: training configuration of both models (``TrainConfig`` or dict).
        retrained: also build the gold model trained on D_r only.

    Rows: ``text``, ``label``, ``rule_label``, ``is_canary``, ``idx``.
    """
    data = coerce_dataclass(SentimentSpec, data)
    spec = coerce_dataclass(TinyBertSpec, arch)
    cfg = coerce_dataclass(TrainConfig, train, DEFAULT_TRAIN)
    train_rows, test_rows = generate_sentiment(data)
    train_ds, test_ds = Dataset.from_list(train_rows), Dataset.from_list(test_rows)
    canaries = [r["idx"] for r in train_rows if r["is_canary"]]
    forget_idx = resolve_forget(train_ds, forget, seed, n_forget, named={"canaries": canaries})
    forget_ds, retain_ds = split_train(train_ds, forget_idx, retain)

    max_len = spec.max_position_embeddings
    tokenizer = build_word_tokenizer([r["text"] for r in train_rows + test_rows], "bert",
                                     model_max_length=max_len)

    def make_collate(tok):
        return ClassificationCollator(tok, max_length=max_len)

    original, gold, tokenizer, info = original_and_retrained(
        "toy-sentiment", {"data": data, "arch": spec}, BertForSequenceClassification,
        lambda: tiny_bert(spec, tokenizer, 2, LABEL_NAMES, seed=cfg.seed), tokenizer,
        make_collate, train_rows, retain_ds.to_list(),
        {"forget": forget_idx, "retain": None if retain is None else sorted(retain)}, cfg,
        retrained, model)
    return Task(name="toy-sentiment", kind="classification", model=original,
                tokenizer=tokenizer, forget=forget_ds, retain=retain_ds, test=test_ds,
                collate=make_collate(tokenizer), retrained_model=gold,
                label_names=list(LABEL_NAMES),
                meta={"options": {"forget": forget if isinstance(forget, (str, int)) else "indices",
                                  "seed": seed, "n_forget": n_forget, "data": asdict(data),
                                  "arch": asdict(spec), "train": asdict(cfg),
                                  "model": None if model is None else str(model)},
                      "forget_indices": forget_idx, "models": info})
