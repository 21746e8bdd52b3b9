"""Tiny Transformers built from configs, for the embedded default tasks.

- ``TinyBertSpec`` -> ``BertForSequenceClassification`` (post-LN encoder, [CLS] pooling).
- ``TinyLlamaSpec`` -> ``LlamaForCausalLM`` (RMSNorm, RoPE, SwiGLU, grouped-query attention:
  4 query heads share 2 K/V heads by default, so GQA code paths are exercised).

Dropout is off: the models must memorise a few samples, and evaluation stays deterministic.
Weights are initialised under ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)


@dataclass
class TinyBertSpec:
    """Shape of the tiny BERT classifier.

    Attributes:
        hidden_size: model width d.
        num_hidden_layers: L encoder layers.
        num_attention_heads: H heads per layer (d_head = d / H).
        intermediate_size: F filters (FFN neurons) per layer.
        max_position_embeddings: longest input in tokens.
    """

    hidden_size: int = field(default=64, metadata={"help": "model width"})
    num_hidden_layers: int = field(default=2, metadata={"help": "encoder layers L"})
    num_attention_heads: int = field(default=4, metadata={"help": "heads per layer H"})
    intermediate_size: int = field(default=128, metadata={"help": "FFN filters per layer F"})
    max_position_embeddings: int = field(default=64, metadata={"help": "max tokens"})


@dataclass
class TinyLlamaSpec:
    """Shape of the tiny Llama causal LM.

    Attributes:
        hidden_size: model width d.
        num_hidden_layers: L decoder layers.
        num_attention_heads: H query heads per layer.
        num_key_value_heads: K/V heads (H / this = query heads per K/V group).
        intermediate_size: F filters (SwiGLU neurons) per layer.
        max_position_embeddings: longest input in tokens.
    """

    hidden_size: int = field(default=128, metadata={"help": "model width"})
    num_hidden_layers: int = field(default=2, metadata={"help": "decoder layers L"})
    num_attention_heads: int = field(default=4, metadata={"help": "query heads per layer H"})
    num_key_value_heads: int = field(default=2, metadata={"help": "K/V heads (GQA groups)"})
    intermediate_size: int = field(default=256, metadata={"help": "FFN filters per layer F"})
    max_position_embeddings: int = field(default=128, metadata={"help": "max tokens"})


def tiny_bert(spec: TinyBertSpec, tokenizer: PreTrainedTokenizerFast, num_labels: int,
              label_names: list[str] | None = None, seed: int = 0) -> BertForSequenceClassification:
    """A freshly initialised tiny BERT classifier for ``tokenizer``'s vocabulary."""
    names = label_names or [str(i) for i in range(num_labels)]
    config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        num_labels=num_labels, id2label=dict(enumerate(names)),
                        label2id={n: i for i, n in enumerate(names)}, **asdict(spec))
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def tiny_llama(spec: TinyLlamaSpec, tokenizer: PreTrainedTokenizerFast,
               seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama causal LM for ``tokenizer``'s vocabulary."""
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False, **asdict(spec))
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
