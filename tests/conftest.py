"""Shared fixtures: tiny models of every supported family, built from configs (offline)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
import transformers as T

VOCAB = 40

# One row per family: (config factory, model class, task kind). Sizes are tiny but keep
# H > 1, d_head > 1, and GQA (KV < H) where the family has it.
FAMILIES = {
    "bert": (lambda: T.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=24,
                                  max_position_embeddings=32, num_labels=3),
             T.BertForSequenceClassification, "classification"),
    "roberta": (lambda: T.RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=24,
                                        max_position_embeddings=40, num_labels=2, pad_token_id=1),
                T.RobertaForSequenceClassification, "classification"),
    "distilbert": (lambda: T.DistilBertConfig(vocab_size=VOCAB, dim=16, n_layers=2, n_heads=4,
                                              hidden_dim=24, max_position_embeddings=32,
                                              num_labels=2),
                   T.DistilBertForSequenceClassification, "classification"),
    "gpt2": (lambda: T.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, n_inner=24,
                                  n_positions=32, bos_token_id=1, eos_token_id=2),
             T.GPT2LMHeadModel, "causal_lm"),
    "llama": (lambda: T.LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2,
                                    intermediate_size=24, max_position_embeddings=32),
              T.LlamaForCausalLM, "causal_lm"),
    "mistral": (lambda: T.MistralConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=24, max_position_embeddings=32),
                T.MistralForCausalLM, "causal_lm"),
    "qwen2": (lambda: T.Qwen2Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2,
                                    intermediate_size=24, max_position_embeddings=32),
              T.Qwen2ForCausalLM, "causal_lm"),
}


def make_model(family: str, dtype=torch.float64, seed: int = 0) -> torch.nn.Module:
    cfg_fn, cls, _ = FAMILIES[family]
    torch.manual_seed(seed)
    cfg = cfg_fn()
    cfg._attn_implementation = "eager"
    model = cls(cfg).to(dtype).eval()
    # Random (not default-initialised) weights make gradients non-trivial everywhere.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def make_batch(kind: str, bsz: int = 5, seq: int = 9, n_labels: int = 3, seed: int = 1,
               pad_last: bool = True) -> dict[str, torch.Tensor]:
    """A random batch of the HF form; the last samples are right-padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (bsz, seq), generator=g)
    am = torch.ones(bsz, seq, dtype=torch.long)
    if pad_last:
        for b in range(1, bsz, 2):
            am[b, seq - 1 - b % 4:] = 0
    batch = {"input_ids": ids, "attention_mask": am}
    if kind == "classification":
        batch["labels"] = torch.randint(0, 2, (bsz,), generator=g)
    elif kind == "causal_lm":
        labels = ids.clone()
        labels[:, :3] = -100  # prompt tokens are not scored
        labels[am == 0] = -100
        batch["labels"] = labels
    elif kind == "extractive_qa":
        batch["start_positions"] = torch.randint(0, seq // 2, (bsz,), generator=g)
        batch["end_positions"] = batch["start_positions"] + 2
    return batch


@pytest.fixture(params=list(FAMILIES))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (the tiny models run far slower with more threads
    than free cores); ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
