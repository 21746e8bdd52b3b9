"""A small BERT pre-trained by masked-language modelling on your text (docs/design.md §7.3).

    folder = pretrain_mlm(texts, "my-bert", MLMSpec(layers=2, hidden=64))
    task = load_task("text-classification", model=folder, data="glue_data/SST-2",
                     forget="label-flip:16")

The result is a *base checkpoint* as a hub model would be: a ``BertForMaskedLM`` folder
(safetensors, ``config.json``) with its word-level tokenizer
(:func:`mape_viz.tasks.tokenizer.build_word_tokenizer` over ``texts``). The
``text-classification`` loader gives it a fresh classification head and fine-tunes it
(:mod:`mape_viz.tasks.finetune_base`), so the model that is unlearned has the two training
stages of a real pretrained classifier: general pretraining on unlabelled text, then
fine-tuning on labelled rows. It stands in, offline and in seconds on a CPU, for a hub BERT
where none can be downloaded (the tests of the library presets on a pretrained classifier,
tests/test_byod_pretrained.py).

Masking is BERT's: ``mask_prob`` of the word tokens (never ``[CLS]``/``[SEP]``/padding) are
predicted; of those 80 % become ``[MASK]``, 10 % a random word, 10 % stay. The masks are
drawn from a generator seeded by ``MLMSpec.seed``, so the same texts and spec give the same
weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerBase

from .tokenizer import build_word_tokenizer
from .train import TrainConfig, train_model

__all__ = ["MLMCollator", "MLMSpec", "pretrain_mlm"]


@dataclass
class MLMSpec:
    """The model and the pretraining run of :func:`pretrain_mlm`.

    Attributes:
        layers: transformer blocks.
        hidden: hidden width (a multiple of ``heads``).
        heads: attention heads per block.
        intermediate: feed-forward width (BERT: 4 x hidden).
        max_length: longest input in tokens (position embeddings, truncation).
        dropout: hidden and attention dropout while pretraining (BERT: 0.1).
        mask_prob: fraction of word tokens predicted per sentence (BERT: 0.15).
        epochs: passes over the texts.
        lr: peak AdamW learning rate (warm-up, then linear decay).
        batch_size: sentences per step.
        seed: seeds the weights, the shuffling and the masks.
        threads: torch threads while training (0 = torch's setting).
        progress: show a tqdm progress bar.
    """

    layers: int = field(default=2, metadata={"help": "transformer blocks"})
    hidden: int = field(default=64, metadata={"help": "hidden width"})
    heads: int = field(default=4, metadata={"help": "attention heads per block"})
    intermediate: int = field(default=256, metadata={"help": "feed-forward width"})
    max_length: int = field(default=64, metadata={"help": "longest input in tokens"})
    dropout: float = field(default=0.1, metadata={"help": "dropout while pretraining"})
    mask_prob: float = field(default=0.15, metadata={"help": "fraction of tokens predicted"})
    epochs: int = field(default=4, metadata={"help": "passes over the texts"})
    lr: float = field(default=1e-3, metadata={"help": "peak AdamW learning rate"})
    batch_size: int = field(default=64, metadata={"help": "sentences per step"})
    seed: int = field(default=0, metadata={"help": "weights, shuffling and masks"})
    threads: int = field(default=1, metadata={"help": "torch threads, 0 = torch default"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if self.layers < 1 or self.heads < 1 or self.hidden % self.heads:
            raise ValueError(f"need layers >= 1 and hidden a multiple of heads, got layers="
                             f"{self.layers}, hidden={self.hidden}, heads={self.heads}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0, got epochs="
                             f"{self.epochs}, batch_size={self.batch_size}, lr={self.lr}")


class MLMCollator:
    """Sentences -> a masked-LM batch (``input_ids``, ``attention_mask``, ``token_type_ids``,
    ``labels`` with -100 where nothing is predicted), BERT's 80/10/10 masking, seeded."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, mask_prob: float,
                 seed: int, text_key: str = "text") -> None:
        self.tok, self.max_length, self.mask_prob = tokenizer, max_length, mask_prob
        self.text_key = text_key
        self.gen = torch.Generator().manual_seed(seed)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.n_special = len(tokenizer.all_special_ids)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        enc = self.tok([r[self.text_key] for r in rows], truncation=True, padding=True,
                       max_length=self.max_length, return_tensors="pt")
        ids = enc["input_ids"].clone()
        word = ~torch.isin(ids, self.special)
        chosen = (torch.rand(ids.shape, generator=self.gen) < self.mask_prob) & word
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=self.gen)
        ids[chosen & (roll < 0.8)] = self.tok.mask_token_id
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        # random words only (the specials come first in the word-level vocabulary)
        ids[swap] = torch.randint(self.n_special, len(self.tok), (int(swap.sum()),),
                                  generator=self.gen)
        return {**enc, "input_ids": ids, "labels": labels}


def pretrain_mlm(texts: Sequence[str], folder: str | os.PathLike, spec: MLMSpec | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Pre-train a small BERT by masked-LM on ``texts`` and save it, with its tokenizer, in
    ``folder`` (a base checkpoint for ``load_task("text-classification", model=folder)``).

    Args:
        texts: the unlabelled sentences (their words are the vocabulary).
        folder: where to save; refused if it exists and is not empty, unless ``overwrite``.
        spec: model size and training run (default :class:`MLMSpec`).
        overwrite: replace the files of an existing non-empty ``folder``.
    Returns:
        ``{"folder", "spec", "vocab_size", "n_params", "seconds", "cpu_seconds", "steps",
        "final_loss"}`` (``final_loss``: mean masked-LM loss of the last epoch).
    """
    spec = spec or MLMSpec()
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("pretrain_mlm needs at least one text")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file, not a folder; choose another folder")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty; choose another folder or "
                              f"pass overwrite=True")
    tok = build_word_tokenizer(texts, "bert", model_max_length=spec.max_length)
    config = BertConfig(vocab_size=len(tok), hidden_size=spec.hidden,
                        num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                        intermediate_size=spec.intermediate,
                        max_position_embeddings=spec.max_length, pad_token_id=tok.pad_token_id,
                        hidden_dropout_prob=spec.dropout,
                        attention_probs_dropout_prob=spec.dropout)
    torch.manual_seed(spec.seed)
    model = BertForMaskedLM(config)
    collate = MLMCollator(tok, spec.max_length, spec.mask_prob, spec.seed)
    recipe = TrainConfig(epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size,
                         warmup=0.1, seed=spec.seed, threads=spec.threads,
                         progress=spec.progress)
    stats = train_model(model, [{"text": t} for t in texts], collate, recipe,
                        desc="pretrain (masked LM)")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return {"folder": str(folder), "spec": asdict(spec), "vocab_size": len(tok),
            "n_params": sum(p.numel() for p in model.parameters()), **stats}
