"""Unlearning methods (paper Appendix C) and the registry ``METHODS`` the CLI and app list.

Every method is a :class:`Method` record: what it optimises, which data it walks over, which
task kinds it fits and which mask objective MAPE uses for it (MLR for second order, MLF for
the fine-tuning methods, DESIGN §2). Fine-tuning losses are plain functions of a forget batch
and/or a retain batch returning named terms; ``"loss"`` is what is minimised.

Losses (ℓ = per-sample loss of ``mape_viz.losses``, π(y|x) = exp of the answer log-prob):

- ``ga``:  −E_f[ℓ]
- ``gd``:  −E_f[ℓ] + w · E_r[ℓ]                       (w = ``retain_weight``)
- ``npo``: −(2/β) E_f[log σ(−β (log π_θ − log π_ref))]  (β = ``beta`` = 0.1, NPO's default;
  π_ref = the frozen input model; at step 0 π_θ = π_ref, so the loss is (2/β)·log 2)
- ``dpo``: −(1/β) E[log σ(β (log π_θ(y_idk) − log π_ref(y_idk)) − β (log π_θ(y) − log π_ref(y)))]
  with "I don't know" answers y_idk (generative tasks only; the paper's 1/β scaling)
- ``sa``:  E_r[ℓ] + γ ‖θ‖₁ over the trained entries (γ = 5e-5)
- ``rt``:  E_r[ℓ] — retraining; for an embedded task the task's retrained model is used
- ``so``:  the closed-form second-order update (``second_order.run_so``)

For classification and QA, log π(y|x) = −ℓ(x); for causal LMs it is the *summed* answer
log-probability (``losses.token_logprobs``), as NPO/DPO define it on sequences.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..losses import INPUT_KEYS, token_logprobs
from ..registry import Registry
from .second_order import loss_from_output, tensor_batch

Batch = Mapping[str, Any]
#: ``callback(step, model, row) -> dict | None``: extra metrics merged into the history row.
Callback = Callable[[int, nn.Module, dict], "dict | None"]

IDK_PREFIX = "idk_"


@dataclass(frozen=True)
class Method:
    """What one unlearning method needs and does.

    Attributes:
        name: registry name.
        family: ``"second_order"``, ``"finetune"`` or ``"retrain"``.
        objective: the MAPE scoring objective for this method (``"mlr"`` / ``"mlf"``), or
            ``None`` when masks do not apply (``rt``).
        drive: the set one epoch walks over: ``"forget"`` or ``"retain"``.
        needs: data the method reads: ``forget``, ``retain``, ``reference`` (frozen π_ref),
            ``idk`` ("I don't know" answers).
        kinds: task kinds it fits (``None`` = all).
        loss: ``loss(ctx, forget_batch, retain_batch) -> {"loss": ..., other terms}``.
        description: one line for ``--help``.
        fields: the ``UnlearnConfig`` fields this method reads (besides the ``select`` group,
            which every masked run reads), main ones first.
        main_fields: the few of ``fields`` a user interface shows by default.
        maskable: whether a module mask applies (False for ``rt``: retraining is always full).
    """

    name: str
    family: str
    objective: str | None
    drive: str
    needs: tuple[str, ...]
    kinds: tuple[str, ...] | None = None
    loss: Callable[..., dict[str, torch.Tensor]] | None = None
    description: str = ""
    fields: tuple[str, ...] = ()
    main_fields: tuple[str, ...] = ()
    maskable: bool = True

    def fits(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    METHODS.register(method.name, method.description)(method)
    return method


#: Task kinds whose training loss is another kind's (multiple choice trains on its text with
#: the causal-LM loss).
LOSS_KINDS = {"multiple_choice": "causal_lm"}


def methods_for(kind: str) -> list[str]:
    """Names of the methods that fit a task kind."""
    kind = LOSS_KINDS.get(kind, kind)
    return [n for n in METHODS.names() if METHODS.get(n).fits(kind)]


def check_method(name: str, kind: str) -> Method:
    """The registered method ``name``; ``ValueError`` listing the fitting ones if it does not
    fit ``kind``."""
    kind = LOSS_KINDS.get(kind, kind)
    m = METHODS.get(name)
    if not m.fits(kind):
        raise ValueError(f"method {name!r} does not fit a {kind} task (it needs "
                         f"{' / '.join(m.kinds or ())}); methods that fit: "
                         f"{', '.join(methods_for(kind))}")
    return m


# ---------------------------------------------------------------------------------------------
# Loss pieces


@dataclass
class LossContext:
    """What a loss function may read.

    Attributes:
        model: the model being trained (delta hooks attached for sparse runs).
        reference: the frozen reference model π_ref (NPO/DPO), or None.
        kind: task kind.
        config: the run's ``UnlearnConfig``.
        trainable: the trained tensors (for SA's L1 term).
        device: where batches go.
    """

    model: nn.Module
    reference: nn.Module | None
    kind: str
    config: Any
    trainable: Sequence[torch.Tensor]
    device: torch.device


def sample_losses(model: nn.Module, batch: Batch, kind: str, device: torch.device) -> torch.Tensor:
    """(B,) per-sample losses ℓ(x)."""
    b = tensor_batch(batch, device)
    out = model(**{k: v for k, v in b.items() if k in INPUT_KEYS})
    return loss_from_output(out, b, kind)


def sequence_logprob(model: nn.Module, batch: Batch, kind: str, device: torch.device) -> torch.Tensor:
    """(B,) log π(y|x): summed answer-token log-prob (causal LM) or −ℓ(x) otherwise."""
    b = tensor_batch(batch, device)
    out = model(**{k: v for k, v in b.items() if k in INPUT_KEYS})
    if kind == "causal_lm":
        return token_logprobs(out.logits, b["labels"])
    return -loss_from_output(out, b, kind)


def idk_batch(batch: Batch) -> dict[str, Any]:
    """The "I don't know" half of a DPO batch (keys ``idk_input_ids``, ...)."""
    out = {k[len(IDK_PREFIX):]: v for k, v in batch.items() if k.startswith(IDK_PREFIX)}
    if "input_ids" not in out or "labels" not in out:
        raise ValueError("a DPO forget batch needs 'idk_input_ids', 'idk_attention_mask' and "
                         "'idk_labels' (the same prompts with an \"I don't know\" answer)")
    return out


def _ga(ctx: LossContext, f: Batch, r: Batch | None) -> dict[str, torch.Tensor]:
    lf = sample_losses(ctx.model, f, ctx.kind, ctx.device).mean()
    return {"loss": -lf, "forget_loss": lf}


def _gd(ctx: LossContext, f: Batch, r: Batch | None) -> dict[str, torch.Tensor]:
    lf = sample_losses(ctx.model, f, ctx.kind, ctx.device).mean()
    lr = sample_losses(ctx.model, r, ctx.kind, ctx.device).mean()
    return {"loss": -lf + ctx.config.retain_weight * lr, "forget_loss": lf, "retain_loss": lr}


def _ref_logprob(ctx: LossContext, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        return sequence_logprob(ctx.reference, batch, ctx.kind, ctx.device)


def _npo(ctx: LossContext, f: Batch, r: Batch | None) -> dict[str, torch.Tensor]:
    beta = ctx.config.beta
    lp = sequence_logprob(ctx.model, f, ctx.kind, ctx.device)
    ratio = lp - _ref_logprob(ctx, f)
    npo = -(2.0 / beta) * F.logsigmoid(-beta * ratio).mean()
    terms = {"loss": npo, "npo_loss": npo, "forget_logratio": ratio.mean()}
    if ctx.config.npo_retain_weight > 0 and r is not None:
        lr = sample_losses(ctx.model, r, ctx.kind, ctx.device).mean()
        terms["retain_loss"] = lr
        terms["loss"] = npo + ctx.config.npo_retain_weight * lr
    return terms


def _dpo(ctx: LossContext, f: Batch, r: Batch | None) -> dict[str, torch.Tensor]:
    beta = ctx.config.beta
    i = idk_batch(f)
    lose = sequence_logprob(ctx.model, f, ctx.kind, ctx.device) - _ref_logprob(ctx, f)
    win = sequence_logprob(ctx.model, i, ctx.kind, ctx.device) - _ref_logprob(ctx, i)
    loss = -(1.0 / beta) * F.logsigmoid(beta * (win - lose)).mean()
    return {"loss": loss, "dpo_loss": loss, "idk_logratio": win.mean(),
            "forget_logratio": lose.mean()}


def _retain_only(ctx: LossContext, f: Batch | None, r: Batch) -> dict[str, torch.Tensor]:
    lr = sample_losses(ctx.model, r, ctx.kind, ctx.device).mean()
    return {"loss": lr, "retain_loss": lr}


def _sa(ctx: LossContext, f: Batch | None, r: Batch) -> dict[str, torch.Tensor]:
    lr = sample_losses(ctx.model, r, ctx.kind, ctx.device).mean()
    l1 = sum(t.abs().sum() for t in ctx.trainable)
    return {"loss": lr + ctx.config.gamma * l1, "retain_loss": lr, "l1": l1}


#: ``UnlearnConfig`` fields every fine-tuning method reads (the AdamW loop).
FINETUNE_FIELDS = ("lr", "epochs", "batch_size", "lr_schedule", "weight_decay", "max_grad_norm",
                   "max_steps", "train_mode", "include_head")

register(Method("so", "second_order", "mlr", "forget", ("forget", "retain"),
                description="second-order update θ* + η (F+λ)⁻¹ Σ∇ℓ_f (Eq. 2/10)",
                fields=("eta", "damping", "fisher_batch_size", "fisher_max_samples",
                        "fisher_engine", "include_head"),
                main_fields=("eta", "damping")))
register(Method("ga", "finetune", "mlf", "forget", ("forget",), loss=_ga,
                description="gradient ascent on the forget set",
                fields=FINETUNE_FIELDS, main_fields=("lr", "epochs", "batch_size")))
register(Method("gd", "finetune", "mlf", "forget", ("forget", "retain"), loss=_gd,
                description="gradient difference: −forget loss + retain loss",
                fields=FINETUNE_FIELDS + ("retain_weight", "retain_batch_size"),
                main_fields=("lr", "epochs", "batch_size", "retain_weight")))
register(Method("npo", "finetune", "mlf", "forget", ("forget", "reference"), loss=_npo,
                description="negative preference optimisation (β=0.1, frozen reference)",
                fields=FINETUNE_FIELDS + ("beta", "npo_retain_weight", "retain_batch_size"),
                main_fields=("lr", "epochs", "batch_size", "beta")))
register(Method("dpo", "finetune", "mlf", "forget", ("forget", "reference", "idk"),
                kinds=("causal_lm",), loss=_dpo,
                description="DPO towards \"I don't know\" answers (generative tasks)",
                fields=FINETUNE_FIELDS + ("beta",),
                main_fields=("lr", "epochs", "batch_size", "beta")))
register(Method("sa", "finetune", "mlf", "retain", ("retain",), loss=_sa,
                description="fine-tune on the retain set with γ‖θ‖₁ (γ=5e-5)",
                fields=FINETUNE_FIELDS + ("gamma",),
                main_fields=("lr", "epochs", "batch_size", "gamma")))
register(Method("rt", "retrain", None, "retain", ("retain",), loss=_retain_only,
                description="retrain on the retain set (gold standard)",
                fields=FINETUNE_FIELDS, main_fields=("lr", "epochs", "batch_size"),
                maskable=False))


# ---------------------------------------------------------------------------------------------
# The fine-tuning loop


@dataclass
class Source:
    """Batches of one data set, produced afresh for each epoch.

    ``make(epoch) -> iterable of batches``; ``n_samples`` and ``n_batches`` (per epoch) when
    known.
    """

    make: Callable[[int], Iterable[Batch]]
    n_samples: int | None = None
    name: str = ""
    n_batches: int | None = None

    def epoch(self, e: int) -> Iterable[Batch]:
        return self.make(e)


def cycle(source: Source, start_epoch: int = 0) -> Iterator[Batch]:
    """Endless batches of ``source``, one epoch after another (for GD's retain side)."""
    e = start_epoch
    while True:
        empty = True
        for b in source.epoch(e):
            empty = False
            yield b
        if empty:
            raise ValueError(f"the {source.name or 'data'} set is empty")
        e += 1


@dataclass
class FinetuneOutcome:
    """``history`` rows, number of updates applied, the stop reason (or None), and the bytes
    held by the optimizer state (AdamW moments + step counters) after the first step."""

    history: list[dict] = field(default_factory=list)
    steps: int = 0
    error: str | None = None
    optimizer_state_bytes: int = 0


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``opt.state`` (AdamW: exp_avg, exp_avg_sq, step)."""
    return sum(t.numel() * t.element_size() for st in opt.state.values()
               for t in st.values() if isinstance(t, torch.Tensor))


def _terms_to_floats(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in terms.items()}


def finetune(method: Method, ctx: LossContext, *, forget: Source | None, retain: Source | None,
             params: Sequence[torch.Tensor], lr: float, epochs: int, max_steps: int,
             schedule: str = "constant",
             weight_decay: float, max_grad_norm: float, after_step: Callable[[], None],
             callbacks: Sequence[Callback] = (), progress: bool = False,
             history: list[dict] | None = None) -> FinetuneOutcome:
    """Run ``method``'s loss with AdamW over ``epochs`` of its driving set.

    ``schedule``: ``constant`` lr, or ``linear`` decay to 0 over the run (needs the driving
    set's size; falls back to constant when it is unknown).

    ``after_step`` runs after every optimizer step (writes sparse values into the model).
    Before each step the loss terms and the gradient norm are checked; a NaN/inf stops the
    run *before* the step is applied, so the model keeps the last good state and the outcome
    carries the error.
    """
    out = FinetuneOutcome(history=history if history is not None else [])
    params = [p for p in params]
    if not params:
        raise ValueError("nothing to train: the mask selects no parameter slice")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    drive = forget if method.drive == "forget" else retain
    if drive is None:
        raise ValueError(f"method {method.name!r} needs a {method.drive} set")
    side = None
    if method.drive == "forget" and ("retain" in method.needs or _uses_retain(method, ctx)):
        if retain is None:
            raise ValueError(f"method {method.name!r} needs a retain set")
        side = cycle(retain)
    total = None
    if drive.n_batches is not None:
        total = epochs * drive.n_batches
        if max_steps:
            total = min(total, max_steps)
    sched = None
    if schedule == "linear" and total:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))
    bar = tqdm(total=total, desc=method.name, disable=not progress, leave=False)
    step = 0
    try:
        for epoch in range(epochs):
            for batch in drive.epoch(epoch):
                if max_steps and step >= max_steps:
                    break
                f, r = (batch, next(side) if side is not None else None) \
                    if method.drive == "forget" else (None, batch)
                opt.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                terms = method.loss(ctx, f, r)
                row = {"step": step, "epoch": epoch, **_terms_to_floats(terms)}
                if not math.isfinite(row["loss"]):
                    terms_txt = ", ".join(f"{k}={v:.4g}" for k, v in row.items()
                                          if k not in ("step", "epoch"))
                    out.error = (f"non-finite loss at step {step} (epoch {epoch}): {terms_txt}; "
                                 f"stopped: the model keeps its last good state, after {step} "
                                 f"update(s)")
                    row["stopped"] = True
                    out.history.append(row)
                    break
                terms["loss"].backward()
                norm = torch.nn.utils.clip_grad_norm_(
                    params, max_grad_norm if max_grad_norm > 0 else float("inf"))
                row["grad_norm"] = float(norm)
                if not math.isfinite(row["grad_norm"]):
                    out.error = (f"non-finite gradient at step {step} (epoch {epoch}); stopped: "
                                 f"the model keeps its last good state, after {step} update(s)")
                    row["stopped"] = True
                    out.history.append(row)
                    break
                row["lr"] = opt.param_groups[0]["lr"]
                opt.step()
                if sched is not None:
                    sched.step()
                after_step()
                if step == 0:
                    out.optimizer_state_bytes = optimizer_state_bytes(opt)
                step += 1
                row["seconds"] = time.perf_counter() - t0
                for cb in callbacks:
                    extra = cb(step, ctx.model, row)
                    if extra:
                        row.update(extra)
                out.history.append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            if out.error or (max_steps and step >= max_steps):
                break
    finally:
        bar.close()
        opt.zero_grad(set_to_none=True)
    out.steps = step
    return out


def _uses_retain(method: Method, ctx: LossContext) -> bool:
    """NPO reads a retain batch only when ``npo_retain_weight > 0``."""
    return method.name == "npo" and ctx.config.npo_retain_weight > 0
