"""A tiny classification Task for the stop-rule, guard and frontier tests (seconds, offline).

A tiny BERT (d=16, 2 layers x 4 heads, 24 filters) with random weights of a large init range,
so that its predictions vary from row to row. The forget and test rows are labelled with the
model's own predictions (forget and test accuracy start at 1.0, and unlearning lowers them
row by row); the retain rows carry a rule ("good" in the sentence), so SA — which trains on
retain rows — moves the forget rows too. The "retrained" model is another random init.
"""

from __future__ import annotations

import random

import torch
import transformers as T
from datasets import Dataset

from mape_viz.tasks import ClassificationCollator, Task
from mape_viz.tasks.tokenizer import build_word_tokenizer

WORDS = ["good", "bad", "movie", "plot", "was", "not", "very", "the", "fine", "dull"]


def tiny_task(n_forget: int = 8, n_retain: int = 48, n_test: int = 48, seed: int = 0,
              name: str = "tiny-stop") -> Task:
    """The task described in the module doc."""
    rng = random.Random(seed)

    def rows(n: int, offset: int) -> list[dict]:
        out = []
        for i in range(n):
            words = [rng.choice(WORDS) for _ in range(6)]
            out.append({"text": " ".join(words), "label": int("good" in words), "idx": offset + i})
        return out

    tok = build_word_tokenizer(WORDS, "bert", model_max_length=32)
    cfg = T.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=24, max_position_embeddings=32,
                       num_labels=2, pad_token_id=tok.pad_token_id, initializer_range=0.5)
    torch.manual_seed(seed)
    model = T.BertForSequenceClassification(cfg).eval()
    collate = ClassificationCollator(tok, max_length=32)

    def own_labels(rs: list[dict]) -> list[dict]:
        b = collate(rs)
        with torch.no_grad():
            pred = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        return [{**r, "label": int(p)} for r, p in zip(rs, pred.argmax(-1))]

    forget = own_labels(rows(n_forget, 0))
    retain = rows(n_retain, 1000)
    test = own_labels(rows(n_test, 2000))
    torch.manual_seed(seed + 1)
    gold = T.BertForSequenceClassification(cfg).eval()
    return Task(name=name, kind="classification", model=model, tokenizer=tok,
                forget=Dataset.from_list(forget), retain=Dataset.from_list(retain),
                test=Dataset.from_list(test), collate=collate, retrained_model=gold,
                label_names=["negative", "positive"])


@torch.no_grad()
def accuracy_of(model: torch.nn.Module, task: Task, rows) -> float:
    """Plain argmax accuracy of ``model`` on ``rows`` (one batch, eval mode, mode restored):
    the tests' independent check of what the monitor measures."""
    was = model.training
    model.eval()
    b = task.collate(list(rows))
    pred = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1)
    model.train(was)
    return float((pred == b["labels"]).double().mean())
