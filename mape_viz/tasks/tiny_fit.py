"""Train (or load from the cache) a tiny default model on D and its gold twin on D_r."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .base import Collate
from .cache import load_or_train
from .hub import load_pretrained
from .train import TrainConfig, train_model


def original_and_retrained(task: str, key: dict[str, Any], model_cls: type[PreTrainedModel],
                           make_model: Callable[[], PreTrainedModel],
                           tokenizer: PreTrainedTokenizerBase,
                           make_collate: Callable[[PreTrainedTokenizerBase], Collate],
                           train_rows: Sequence[dict], retain_rows: Sequence[dict],
                           forget_key: Any, cfg: TrainConfig, retrained: bool = True,
                           model_folder: str | os.PathLike | None = None,
                           shipped: bool = True) -> tuple[PreTrainedModel, PreTrainedModel | None,
                                      PreTrainedTokenizerBase, dict[str, Any]]:
    """(original, retrained or None, tokenizer, info), each model trained once and cached.

    Args:
        task: cache folder name.
        key: what determines the original model (data and model options).
        model_cls: class used to load a cached model.
        make_model: a fresh, seeded, untrained model.
        tokenizer: the tokenizer the model is trained with (saved beside it).
        make_collate: builds the collator for a tokenizer.
        train_rows: D (original model).
        retain_rows: D_r (retrained gold model).
        forget_key: what determines D_f and D_r (indices or a split name), part of the
            gold model's key.
        cfg: training configuration (both models).
        retrained: also build the gold model.
        model_folder: use this saved model (and its tokenizer) as the original instead of
            the embedded one, e.g. a model unlearned earlier. The gold model then needs the
            same vocabulary as the embedded tokenizer.
        shipped: load models shipped in the package for these keys when there are
            (``cache.load_or_train``); ``False`` trains (or loads the cache) instead.

    Returns:
        info: ``{"original": {...}, "retrained": {...}}`` with ``seconds``, ``cpu_seconds``,
        ``cached``, ``shipped``, ``path`` for each model trained here (``{"path"}`` for a
        given folder).
    """
    def fit(rows: Sequence[dict], desc: str) -> Callable[[], tuple]:
        def run() -> tuple:
            model = make_model()
            stats = train_model(model, rows, make_collate(tokenizer), cfg, desc=desc)
            return model, tokenizer, stats
        return run

    key = {**key, "train": cfg}
    if model_folder is None:
        model, tok, info_o = load_or_train(task, {**key, "role": "original"}, model_cls,
                                           fit(train_rows, f"{task}: original"), shipped)
    else:
        model, tok = load_pretrained(model_cls, model_folder)
        info_o = {"path": str(model_folder)}
    info = {"original": info_o}
    gold = None
    if retrained:
        if tok.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"the model in {model_folder} has another vocabulary than the "
                             f"{task} tokenizer, so the embedded gold model does not fit it; "
                             f"pass retrained=False")
        gold, _, info_r = load_or_train(
            task, {**key, "role": "retrained", "forget": forget_key}, model_cls,
            fit(retain_rows, f"{task}: retrained on D_r"), shipped)
        info["retrained"] = info_r
    return model, gold, tok, info
