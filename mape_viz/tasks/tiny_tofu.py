"""``tiny-tofu``: fictitious-author QA for a tiny Llama causal LM (in the spirit of TOFU).

D = every author's QA rows + world facts + real authors. ``split="forget01" | "forget05" |
"forget10"`` forgets the last ceil(p * n_authors) authors (1 %, 5 %, 10 %; with 40 authors
1, 2 and 4 authors), as TOFU forgets its last authors. ``retain`` holds the other authors'
rows; the gold model is trained on retain + world facts + real authors.

``test``: TOFU has no held-out split; ``test`` is world facts + real authors (learned,
never forgotten). ``extras`` (named as in ``tofu``): ``forget_perturbed`` and
``retain_perturbed`` (the forget / retain rows, which carry ``paraphrased_answer`` and
``perturbed_answer`` as TOFU's ``*_perturbed`` configs do), ``world_facts``,
``real_authors``, and ``idk`` (forget questions with "I don't know" answers, for DPO).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from datasets import Dataset, concatenate_datasets
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from .base import TASKS, Task, coerce_dataclass
from .collate import CausalLMCollator
from .tiny_fit import original_and_retrained
from .tiny_models import TinyLlamaSpec, tiny_llama
from .tofu_data import IDK, TEMPLATES, TofuSpec, generate_tofu, idk_rows
from .tokenizer import build_word_tokenizer
from .train import TrainConfig

SPLITS = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}
PROMPT = "Question: {question}\nAnswer:"
DEFAULT_TRAIN = TrainConfig(epochs=30, lr=3e-3, batch_size=32, weight_decay=0.01, threads=1)


def corpus_digest(rows: list[dict], tokenizer: PreTrainedTokenizerBase) -> str:
    """16 hex digits of the SHA-256 of what training reads: every row's (question, answer)
    and the vocabulary. Part of the models' cache key, so a change of the generator (rows or
    words) trains new models instead of loading ones made from other data."""
    text = json.dumps([[[r["question"], r["answer"]] for r in rows],
                       sorted(tokenizer.get_vocab().items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def forget_authors(split: str, n_authors: int) -> int:
    """How many (last) authors ``split`` forgets: ceil(p * n_authors), at least 1."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return max(1, math.ceil(round(SPLITS[split] * n_authors, 6)))


@TASKS.register("tiny-tofu", help="fictitious-author QA (TOFU-like) for a tiny Llama trained "
                                   "locally; forget01/05/10")
def tiny_tofu(split: str = "forget05", model: str | os.PathLike | None = None,
              data: TofuSpec | Mapping[str, Any] | None = None,
              arch: TinyLlamaSpec | Mapping[str, Any] | None = None,
              train: TrainConfig | Mapping[str, Any] | None = None,
              retrained: bool = True) -> Task:
    """The tiny TOFU-like task.

    Args:
        split: ``"forget01"``, ``"forget05"`` or ``"forget10"``.
        model: a saved causal-LM folder to use instead of the embedded tiny Llama (e.g.
            one unlearned earlier; same tokenizer); ``None`` = train / load the default.
        data: number of authors, perturbed answers per question, generator seed
            (``TofuSpec`` or dict).
        arch: tiny Llama shape (``TinyLlamaSpec`` or dict).
        train: training configuration of both models (``TrainConfig`` or dict).
        retrained: also build the gold model trained without the forget authors.

    Rows: ``question``, ``answer``, ``paraphrased_answer``, ``perturbed_answer``,
    ``author``, ``topic``, ``idx``.
    """
    data = coerce_dataclass(TofuSpec, data)
    spec = coerce_dataclass(TinyLlamaSpec, arch)
    cfg = coerce_dataclass(TrainConfig, train, DEFAULT_TRAIN)
    corpus = generate_tofu(data)
    n_forget = forget_authors(split, data.n_authors)
    cut = (data.n_authors - n_forget) * len(TEMPLATES)
    authors = corpus["authors"]
    forget_rows, retain_rows = authors[cut:], authors[:cut]
    shared = corpus["world_facts"] + corpus["real_authors"]

    texts = [PROMPT] + list(IDK)
    for r in authors + shared:
        texts += [r["question"], r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]]
    tokenizer = build_word_tokenizer(texts, "llama", model_max_length=spec.max_position_embeddings)

    def make_collate(tok):
        return CausalLMCollator(tok, prompt_template=PROMPT,
                                max_length=spec.max_position_embeddings)

    key = {"data": data, "arch": spec, "prompt": PROMPT,
           "corpus": corpus_digest(authors + shared, tokenizer)}
    original, gold, tokenizer, info = original_and_retrained(
        "tiny-tofu", key, LlamaForCausalLM,
        lambda: tiny_llama(spec, tokenizer, seed=cfg.seed), tokenizer, make_collate,
        authors + shared, retain_rows + shared, split, cfg, retrained, model)

    forget, retain = Dataset.from_list(forget_rows), Dataset.from_list(retain_rows)
    extras = {"forget_perturbed": forget, "retain_perturbed": retain,
              "world_facts": Dataset.from_list(corpus["world_facts"]),
              "real_authors": Dataset.from_list(corpus["real_authors"]),
              "idk": Dataset.from_list(idk_rows(forget_rows, seed=data.seed))}
    return Task(name="tiny-tofu", kind="causal_lm", model=original, tokenizer=tokenizer,
                forget=forget, retain=retain,
                test=concatenate_datasets([extras["world_facts"], extras["real_authors"]]),
                collate=make_collate(tokenizer), extras=extras, retrained_model=gold,
                meta={"options": {"split": split, "data": asdict(data), "arch": asdict(spec),
                                  "train": asdict(cfg),
                                  "model": None if model is None else str(model)},
                      "forget_authors": sorted({r["author"] for r in forget_rows}),
                      "prompt_template": PROMPT, "models": info})
