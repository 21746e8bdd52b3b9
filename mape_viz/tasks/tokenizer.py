"""Word-level tokenizers for the tiny models, built with the ``tokenizers`` library.

Text is lower-cased and split on whitespace and punctuation (``\\w+|[^\\w\\s]+``); every
word of the corpus gets one id. Two styles:

- ``"bert"``: specials ``[PAD] [UNK] [CLS] [SEP] [MASK]``; ``[CLS] a [SEP]`` and
  ``[CLS] a [SEP] b [SEP]`` with token type ids, as BERT expects.
- ``"llama"``: specials ``[PAD] [UNK] <bos> <eos>``; ``<bos> a``. The causal-LM collator
  appends ``<eos>`` after each answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Literal

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from transformers import PreTrainedTokenizerFast

Style = Literal["bert", "llama"]

SPECIALS: dict[str, list[str]] = {
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "llama": ["[PAD]", "[UNK]", "<bos>", "<eos>"],
}


def _backbone(vocab: dict[str, int] | None = None) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab or {"[UNK]": 0}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    return tok


def words(texts: Iterable[str]) -> Counter:
    """Word counts of ``texts`` after the tokenizer's normalisation and pre-tokenisation."""
    tok = _backbone()
    counts: Counter = Counter()
    for text in texts:
        norm = tok.normalizer.normalize_str(text)
        counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(norm))
    return counts


def build_word_tokenizer(texts: Iterable[str], style: Style = "bert",
                         model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A word-level ``PreTrainedTokenizerFast`` whose vocabulary is every word of ``texts``.

    Ids: the specials of ``style`` first, then the words sorted (deterministic for the same
    texts). Right padding.
    """
    if style not in SPECIALS:
        raise ValueError(f"style must be one of {sorted(SPECIALS)}, got {style!r}")
    specials = SPECIALS[style]
    vocab = {t: i for i, t in enumerate(specials)}
    for w in sorted(words(texts)):
        vocab.setdefault(w, len(vocab))
    tok = _backbone(vocab)
    if style == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        names = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                 "sep_token": "[SEP]", "mask_token": "[MASK]",
                 "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
        names = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "<bos>",
                 "eos_token": "<eos>", "model_input_names": ["input_ids", "attention_mask"]}
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length,
                                   padding_side="right", **names)
