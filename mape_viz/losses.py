"""Per-sample losses ℓ(x) for the three task kinds (DESIGN §1).

- classification: cross-entropy of the label;
- causal LM: mean token NLL over the answer tokens (labels != -100; logits[:, t] predict
  labels[:, t+1] as in HF);
- extractive QA: CE(start) + CE(end).

Every function returns a (B,) tensor; the batch loss that gives per-sample mask gradients is
its *sum*.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

TASK_KINDS = ("classification", "causal_lm", "extractive_qa")

#: Keys of a batch that are model inputs; everything else (labels, positions) is a target.
def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits to float32 for a stable softmax; float32/64 stay as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
TARGET_KEYS = ("labels", "start_positions", "end_positions")


def infer_kind(batch: Mapping[str, Any]) -> str:
    """Task kind from the batch: QA positions, (B, T) LM labels, or (B,) class labels."""
    if not isinstance(batch, Mapping):
        raise TypeError(f"a batch must be a dict of tensors, got {type(batch).__name__}")
    if "start_positions" in batch and "end_positions" in batch:
        return "extractive_qa"
    labels = batch.get("labels")
    if labels is None:
        raise ValueError(
            f"batch has no targets (keys: {sorted(batch)}); accepted: 'labels' ((B,) class ids "
            "or (B, T) token ids with -100 on prompt tokens) or 'start_positions' + 'end_positions'"
        )
    return "causal_lm" if torch.as_tensor(labels).dim() == 2 else "classification"


def model_inputs(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(batch[k]).to(device) for k in INPUT_KEYS if k in batch}


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, C) logits, (B,) labels -> (B,) cross-entropy."""
    return F.cross_entropy(_upcast(logits), labels, reduction="none")


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (B, T) labels with -100 ignored -> (B,) mean answer-token NLL.

    A sample with no scored token gets loss 0 (and so zero gradient) rather than NaN.
    """
    shift_logits = _upcast(logits[:, :-1])
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100,
                          reduction="none")  # (B, T-1)
    n_tokens = (shift_labels != -100).sum(1)
    return nll.sum(1) / n_tokens.clamp(min=1)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V), (B, T) -> (B,) summed log-probability of the answer tokens (for NPO/DPO)."""
    shift_logits = _upcast(logits[:, :-1])
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100,
                          reduction="none")
    return -nll.sum(1)


def qa_loss(start_logits: torch.Tensor, end_logits: torch.Tensor,
            start_positions: torch.Tensor, end_positions: torch.Tensor) -> torch.Tensor:
    """(B, T) start/end logits and (B,) positions -> (B,) CE(start) + CE(end)."""
    return (F.cross_entropy(_upcast(start_logits), start_positions, reduction="none")
            + F.cross_entropy(_upcast(end_logits), end_positions, reduction="none"))


def per_sample_loss(model: nn.Module, batch: Mapping[str, Any], kind: str | None = None) -> torch.Tensor:
    """Run ``model`` on ``batch`` and return the (B,) per-sample losses on the model's device."""
    kind = kind or infer_kind(batch)
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; accepted: {', '.join(TASK_KINDS)}")
    device = next(model.parameters()).device
    out = model(**model_inputs(batch, device))
    if kind == "classification":
        return classification_loss(out.logits, torch.as_tensor(batch["labels"]).to(device))
    if kind == "causal_lm":
        return causal_lm_loss(out.logits, torch.as_tensor(batch["labels"]).to(device))
    return qa_loss(out.start_logits, out.end_logits,
                   torch.as_tensor(batch["start_positions"]).to(device),
                   torch.as_tensor(batch["end_positions"]).to(device))
