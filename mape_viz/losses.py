"""Losses: the per-sample loss ℓ(x) of each task kind, and the unlearning methods' losses.

Per-sample losses (docs/design.md §2) — every function returns a (B,) tensor; the batch loss
that gives per-sample mask gradients is its *sum*:

- classification: cross-entropy of the label;
- causal LM: mean token NLL over the answer tokens (labels != -100; logits[:, t] predict
  labels[:, t+1] as in HF);
- extractive QA: CE(start) + CE(end).

:func:`loss_from_output` is the one dispatch from a model output to ℓ; :func:`per_sample_loss`
and :func:`sample_losses` run the model first.

Method losses (paper Appendix C; docs/design.md §5) — ``loss(ctx, forget_batch,
retain_batch) -> {"loss": ..., other named terms}``; ``"loss"`` is what the fine-tuning loop
minimises, the other terms go to the run's history:

- ``ga``:  −E_f[ℓ]
- ``gd``:  −E_f[ℓ] + w · E_r[ℓ]                       (w = ``retain_weight``)
- ``npo``: −(2/β) E_f[log σ(−β (log π_θ − log π_ref))]  (+ ``npo_retain_weight`` · E_r[ℓ]
  when > 0; π_ref = the frozen input model; at step 0 π_θ = π_ref, so the loss is (2/β)·log 2)
- ``dpo``: −(1/β) E[log σ(β (log π_θ(y_idk) − log π_ref(y_idk)) − β (log π_θ(y) − log π_ref(y)))]
  with "I don't know" answers y_idk (the paper's 1/β scaling)
- ``sa``:  E_r[ℓ] + γ ‖θ‖₁ over the trained entries
- retain only (``rt``): E_r[ℓ]

For classification and QA, log π(y|x) = −ℓ(x); for causal LMs it is the *summed* answer
log-probability (:func:`token_logprobs`), as NPO/DPO define it on sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Batch = Mapping[str, Any]

#: Task kinds a per-sample loss is defined for.
SAMPLE_LOSS_KINDS = ("classification", "causal_lm", "extractive_qa")
#: Task kinds that train with another kind's loss (multiple choice trains on its text with
#: the causal-LM loss): ``LOSS_KINDS.get(kind, kind)`` is the kind whose loss a task uses.
LOSS_KINDS = {"multiple_choice": "causal_lm"}

#: Keys of a batch that are model inputs; everything else (labels, positions) is a target.
INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
TARGET_KEYS = ("labels", "start_positions", "end_positions")
#: A DPO forget batch carries its "I don't know" twin under these prefixed keys
#: (``idk_input_ids``, ``idk_attention_mask``, ``idk_labels``).
IDK_PREFIX = "idk_"


def _check_kind(kind: str) -> None:
    if kind not in SAMPLE_LOSS_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; accepted: {', '.join(SAMPLE_LOSS_KINDS)}")


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits to float32 for a stable softmax; float32/64 stay as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def infer_kind(batch: Batch) -> str:
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


def model_inputs(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """The model inputs of ``batch`` as tensors on ``device``."""
    return {k: torch.as_tensor(batch[k]).to(device) for k in INPUT_KEYS if k in batch}


def tensor_batch(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """The model inputs and targets of ``batch`` as tensors on ``device``."""
    return {k: torch.as_tensor(batch[k]).to(device) for k in INPUT_KEYS + TARGET_KEYS if k in batch}


# ---------------------------------------------------------------------------------------------
# Per-sample losses


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


def loss_from_output(out: Any, batch: Mapping[str, torch.Tensor], kind: str) -> torch.Tensor:
    """(B,) per-sample losses from a model output and the batch's targets (tensors on the
    output's device, e.g. from :func:`tensor_batch`)."""
    _check_kind(kind)
    if kind == "classification":
        return classification_loss(out.logits, batch["labels"])
    if kind == "causal_lm":
        return causal_lm_loss(out.logits, batch["labels"])
    return qa_loss(out.start_logits, out.end_logits, batch["start_positions"],
                   batch["end_positions"])


def sample_losses(model: nn.Module, batch: Batch, kind: str, device: torch.device) -> torch.Tensor:
    """Run ``model`` on ``batch`` (moved to ``device``) -> (B,) per-sample losses ℓ(x)."""
    _check_kind(kind)
    b = tensor_batch(batch, device)
    out = model(**{k: v for k, v in b.items() if k in INPUT_KEYS})
    return loss_from_output(out, b, kind)


def per_sample_loss(model: nn.Module, batch: Batch, kind: str | None = None) -> torch.Tensor:
    """Run ``model`` on ``batch`` and return the (B,) per-sample losses on the model's device
    (``kind`` inferred from the batch when None)."""
    return sample_losses(model, batch, kind or infer_kind(batch), next(model.parameters()).device)


def sequence_logprob(model: nn.Module, batch: Batch, kind: str,
                     device: torch.device) -> torch.Tensor:
    """(B,) log π(y|x): summed answer-token log-prob (causal LM) or −ℓ(x) otherwise."""
    _check_kind(kind)
    b = tensor_batch(batch, device)
    out = model(**{k: v for k, v in b.items() if k in INPUT_KEYS})
    if kind == "causal_lm":
        return token_logprobs(out.logits, b["labels"])
    return -loss_from_output(out, b, kind)


def idk_batch(batch: Batch) -> dict[str, Any]:
    """The "I don't know" half of a DPO batch (keys ``idk_input_ids``, ...), unprefixed."""
    out = {k[len(IDK_PREFIX):]: v for k, v in batch.items() if k.startswith(IDK_PREFIX)}
    if "input_ids" not in out or "labels" not in out:
        raise ValueError("a DPO forget batch needs 'idk_input_ids', 'idk_attention_mask' and "
                         "'idk_labels' (the same prompts with an \"I don't know\" answer)")
    return out


# ---------------------------------------------------------------------------------------------
# Method losses


@dataclass
class LossContext:
    """What a method loss may read.

    Attributes:
        model: the model being trained (delta hooks attached for sparse runs).
        reference: the frozen reference model π_ref (NPO/DPO), or None.
        kind: task kind (one of ``SAMPLE_LOSS_KINDS``).
        config: the run's ``UnlearnConfig`` (``beta``, ``gamma``, ``retain_weight``,
            ``npo_retain_weight`` are read here).
        trainable: the trained tensors (for SA's L1 term).
        device: where batches go.
    """

    model: nn.Module
    reference: nn.Module | None
    kind: str
    config: Any
    trainable: Sequence[torch.Tensor]
    device: torch.device


Terms = dict[str, torch.Tensor]


def _mean_loss(ctx: LossContext, batch: Batch) -> torch.Tensor:
    return sample_losses(ctx.model, batch, ctx.kind, ctx.device).mean()


def _ref_logprob(ctx: LossContext, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        return sequence_logprob(ctx.reference, batch, ctx.kind, ctx.device)


def ga_loss(ctx: LossContext, f: Batch, r: Batch | None) -> Terms:
    """Gradient ascent: −E_f[ℓ]."""
    lf = _mean_loss(ctx, f)
    return {"loss": -lf, "forget_loss": lf}


def gd_loss(ctx: LossContext, f: Batch, r: Batch | None) -> Terms:
    """Gradient difference: −E_f[ℓ] + ``retain_weight`` · E_r[ℓ]."""
    lf = _mean_loss(ctx, f)
    lr = _mean_loss(ctx, r)
    return {"loss": -lf + ctx.config.retain_weight * lr, "forget_loss": lf, "retain_loss": lr}


def npo_loss(ctx: LossContext, f: Batch, r: Batch | None) -> Terms:
    """NPO: −(2/β) E_f[log σ(−β (log π_θ − log π_ref))] (+ ``npo_retain_weight`` · E_r[ℓ])."""
    beta = ctx.config.beta
    lp = sequence_logprob(ctx.model, f, ctx.kind, ctx.device)
    ratio = lp - _ref_logprob(ctx, f)
    npo = -(2.0 / beta) * F.logsigmoid(-beta * ratio).mean()
    terms = {"loss": npo, "npo_loss": npo, "forget_logratio": ratio.mean()}
    if ctx.config.npo_retain_weight > 0 and r is not None:
        lr = _mean_loss(ctx, r)
        terms["retain_loss"] = lr
        terms["loss"] = npo + ctx.config.npo_retain_weight * lr
    return terms


def dpo_loss(ctx: LossContext, f: Batch, r: Batch | None) -> Terms:
    """DPO towards the "I don't know" answers, with the paper's −(1/β) scaling."""
    beta = ctx.config.beta
    i = idk_batch(f)
    lose = sequence_logprob(ctx.model, f, ctx.kind, ctx.device) - _ref_logprob(ctx, f)
    win = sequence_logprob(ctx.model, i, ctx.kind, ctx.device) - _ref_logprob(ctx, i)
    loss = -(1.0 / beta) * F.logsigmoid(beta * (win - lose)).mean()
    return {"loss": loss, "dpo_loss": loss, "idk_logratio": win.mean(),
            "forget_logratio": lose.mean()}


def sa_loss(ctx: LossContext, f: Batch | None, r: Batch) -> Terms:
    """Sparsity-aware fine-tuning: E_r[ℓ] + γ ‖θ‖₁ over the trained entries."""
    lr = _mean_loss(ctx, r)
    l1 = sum(t.abs().sum() for t in ctx.trainable)
    return {"loss": lr + ctx.config.gamma * l1, "retain_loss": lr, "l1": l1}


def retain_loss(ctx: LossContext, f: Batch | None, r: Batch) -> Terms:
    """Retraining: E_r[ℓ]."""
    lr = _mean_loss(ctx, r)
    return {"loss": lr, "retain_loss": lr}
