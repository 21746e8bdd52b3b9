"""``toy-sentiment``: templated sentiment classification with memorised canaries.

A tiny BERT classifier (word-level tokenizer) is trained on D (all training rows) and, as
the gold standard, on D_r alone; both are cached. See ``sentiment_data`` for the corpus.

Two sizes, each a registered task name (docs/design.md §7); :data:`SIZES` is the one list:

- ``toy-sentiment``: 4 layers x 8 heads, 512 filters per layer (32 heads, 2,048 filters).
  Its original model and the model retrained without the canaries are shipped in the
  package (``mape_viz/tasks/weights``, built by ``scripts/build_world.py``), so loading it
  with ``forget="canaries"`` trains nothing.
- ``toy-sentiment-small``: 2 layers x 4 heads, 128 filters per layer (8 heads, 256
  filters), trained on first use (about 1.5 min per model on one idle core) and cached.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
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
#: Cache and shipped-weights folder of every size (the key's arch tells the sizes apart).
CACHE_NAME = "toy-sentiment"


@dataclass(frozen=True)
class ToySize:
    """One size of the toy-sentiment world.

    Attributes:
        arch: the tiny BERT's shape.
        train: how its original and retrained models are trained.
        help: one line for the task list.
    """

    arch: TinyBertSpec
    train: TrainConfig
    help: str


#: Registered task name -> size: the one list of toy-sentiment sizes (``TASKS`` registers
#: each name; ``choices.list_tasks()`` lists them).
SIZES: dict[str, ToySize] = {
    "toy-sentiment": ToySize(
        TinyBertSpec(hidden_size=128, num_hidden_layers=4, num_attention_heads=8,
                     intermediate_size=512),
        TrainConfig(epochs=40, lr=5e-4, batch_size=32, weight_decay=0.0, threads=1),
        "templated sentiment (2 labels) with 32 memorised canaries; tiny BERT, 4 layers x 8 "
        "heads, 512 filters per layer (weights shipped for forget='canaries')"),
    "toy-sentiment-small": ToySize(
        TinyBertSpec(),
        TrainConfig(epochs=30, lr=1e-3, batch_size=32, weight_decay=0.01, threads=1),
        "toy-sentiment with a smaller tiny BERT: 2 layers x 4 heads, 128 filters per layer "
        "(trained locally on first use)"),
}
#: The small size's training configuration (kept for callers of the former name).
DEFAULT_TRAIN = SIZES["toy-sentiment-small"].train


def toy_sentiment(forget: str | int | Sequence[int] = "random", seed: int = 42,
                  n_forget: int = 128, retain: Sequence[int] | None = None,
                  model: str | os.PathLike | None = None,
                  data: SentimentSpec | Mapping[str, Any] | None = None,
                  arch: TinyBertSpec | Mapping[str, Any] | None = None,
                  train: TrainConfig | Mapping[str, Any] | None = None,
                  retrained: bool = True, shipped: bool = True,
                  size: str = "toy-sentiment") -> Task:
    """The toy sentiment task of one size (``load_task("toy-sentiment")`` and
    ``load_task("toy-sentiment-small")`` call this).

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
        arch: tiny BERT shape (``TinyBertSpec``, or a dict of fields replacing the size's).
        train: training configuration of both models (``TrainConfig``, or a dict of fields
            replacing the size's).
        retrained: also build the gold model trained on D_r only.
        shipped: load the models shipped in the package when they were built for exactly
            these options (verified by checksum); ``False``: train into the cache (or load
            from it), as ``scripts/build_world.py`` does.
        size: a key of :data:`SIZES` (the registered task names).

    Rows: ``text``, ``label``, ``rule_label``, ``is_canary``, ``idx``.
    """
    if size not in SIZES:
        raise ValueError(f"unknown toy-sentiment size {size!r}; known: {', '.join(SIZES)}")
    data = coerce_dataclass(SentimentSpec, data)
    spec = coerce_dataclass(TinyBertSpec, arch, SIZES[size].arch)
    cfg = coerce_dataclass(TrainConfig, train, SIZES[size].train)
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
        CACHE_NAME, {"data": data, "arch": spec}, BertForSequenceClassification,
        lambda: tiny_bert(spec, tokenizer, 2, LABEL_NAMES, seed=cfg.seed), tokenizer,
        make_collate, train_rows, retain_ds.to_list(),
        {"forget": forget_idx, "retain": None if retain is None else sorted(retain)}, cfg,
        retrained, model, shipped=shipped)
    return Task(name=size, kind="classification", model=original,
                tokenizer=tokenizer, forget=forget_ds, retain=retain_ds, test=test_ds,
                collate=make_collate(tokenizer), retrained_model=gold,
                label_names=list(LABEL_NAMES),
                meta={"options": {"forget": forget if isinstance(forget, (str, int)) else "indices",
                                  "seed": seed, "n_forget": n_forget, "data": asdict(data),
                                  "arch": asdict(spec), "train": asdict(cfg),
                                  "model": None if model is None else str(model)},
                      "forget_indices": forget_idx, "models": info})


def _register(name: str) -> None:
    """Register ``toy_sentiment`` with ``size=name`` as the task ``name`` (options: all but
    ``size``, so ``load_task`` lists and checks them)."""
    def loader(**options: Any) -> Task:
        return toy_sentiment(**options, size=name)

    sig = inspect.signature(toy_sentiment)
    loader.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name != "size"])
    loader.__doc__ = toy_sentiment.__doc__
    TASKS.register(name, help=SIZES[name].help)(loader)


for _name in SIZES:
    _register(_name)
