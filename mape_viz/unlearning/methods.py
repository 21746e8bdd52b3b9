"""The unlearning methods (paper Appendix C): the registry ``METHODS`` and the seven entries.

A method is registered once, PEFT-style, with :func:`register_method`: its name, the MAPE
objective its masks are scored with (MLR for second order, MLF for fine-tuning; docs/design.md
§3), the set one epoch walks over, the data it needs, the task kinds it fits, its loss (a
function of ``mape_viz.losses``), the ``UnlearnConfig`` fields it reads, whether a module mask
applies, and its **runner** — the function that performs the update of one run
(docs/design.md §5):

- :func:`finetune_runner` (ga, gd, npo, dpo, sa): the method's loss with AdamW on the trained
  slices of a :class:`~mape_viz.unlearning.sparse.SparseParams` (``finetune.finetune``);
- :func:`so_runner` (so): the closed-form second-order update (``second_order.run_so``);
- :func:`retrain_runner` (rt): the task's retrained model when the forget set is the task's
  own (the embedded tasks ship the model trained on D_r alone), else retraining on the retain
  set with the fine-tuning runner.

``mape_viz.unlearning.unlearn`` resolves the data, makes the mask and calls
``method.runner(Run(...))``; the runner returns a :class:`RunOutcome`. Adding a method is one
``register_method`` call; the CLI, the widgets and the app list it from ``METHODS``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..losses import (LOSS_KINDS, LossContext, dpo_loss, ga_loss, gd_loss, npo_loss,
                      retain_loss, sa_loss)
from ..registry import Registry
from ..scores import OBJECTIVES
from ..types import ModuleMask
from .config import UnlearnConfig
from .finetune import Callback, LossFn, Source, finetune
from .result import whole_changes
from .second_order import apply_so, so_sums, so_update
from .sparse import SparseParams
from .stopping import (CRITERION, ERROR, GUARD, LADDER_DONE, ONE_SHOT, RETRAINED, Monitor)

Batch = Mapping[str, Any]
#: What a method may need: the forget / retain sets, a frozen copy of the input model as
#: reference (π_ref), "I don't know" answers (DPO).
NEEDS = ("forget", "retain", "reference", "idk")
#: The sets one epoch may walk over.
DRIVES = ("forget", "retain")


def never(config: UnlearnConfig) -> bool:
    """``reads_retain`` of methods that read no retain batch beside the driving set."""
    return False


def always(config: UnlearnConfig) -> bool:
    """``reads_retain`` of methods that always pair a retain batch with each forget batch."""
    return True


@dataclass(frozen=True)
class Method:
    """What one unlearning method needs and does (build it with :func:`register_method`).

    Attributes:
        name: registry name.
        family: ``"second_order"``, ``"finetune"`` or ``"retrain"`` (a grouping for help texts
            and user interfaces; the engine never reads it — the runner does the work).
        objective: the MAPE scoring objective for this method (``"mlr"`` / ``"mlf"``), or
            ``None`` when masks do not apply (``rt``).
        drive: the set one epoch walks over: ``"forget"`` or ``"retain"``.
        needs: data the method reads: ``forget``, ``retain``, ``reference`` (frozen π_ref),
            ``idk`` ("I don't know" answers); the engine supplies (or refuses) them.
        runner: ``runner(run: Run) -> RunOutcome``, performs the update.
        kinds: task kinds it fits (``None`` = all).
        loss: ``loss(ctx, forget_batch, retain_batch) -> {"loss": ..., other terms}``
            (fine-tuning methods; ``mape_viz.losses``).
        reads_retain: ``reads_retain(config) -> bool``: whether a retain batch rides along
            with each forget batch (GD: always; NPO: when ``npo_retain_weight > 0``).
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
    runner: Callable[["Run"], "RunOutcome"]
    kinds: tuple[str, ...] | None = None
    loss: LossFn | None = None
    reads_retain: Callable[[UnlearnConfig], bool] = never
    description: str = ""
    fields: tuple[str, ...] = ()
    main_fields: tuple[str, ...] = ()
    maskable: bool = True

    def fits(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


METHODS: Registry[Method] = Registry("method")


def register_method(name: str, *, family: str, objective: str | None, drive: str,
                    needs: Sequence[str], runner: Callable[["Run"], "RunOutcome"],
                    kinds: Sequence[str] | None = None, loss: LossFn | None = None,
                    reads_retain: Callable[[UnlearnConfig], bool] = never,
                    description: str = "", fields: Sequence[str] = (),
                    main_fields: Sequence[str] = (), maskable: bool = True) -> Method:
    """Check and register a method (see :class:`Method` for the arguments); returns it.

    Raises:
        ValueError: a name already registered, an unknown objective / drive / need / config
            field, ``main_fields`` not among ``fields``.
    """
    problems = []
    if objective is not None and objective not in OBJECTIVES:
        problems.append(f"objective={objective!r} (accepted: {', '.join(OBJECTIVES)} or None)")
    if drive not in DRIVES:
        problems.append(f"drive={drive!r} (accepted: {', '.join(DRIVES)})")
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        problems.append(f"needs {unknown} (accepted: {', '.join(NEEDS)})")
    known = {f.name for f in dataclasses.fields(UnlearnConfig)}
    bad = [f for f in fields if f not in known]
    if bad:
        problems.append(f"fields {bad} are not UnlearnConfig fields")
    extra = [f for f in main_fields if f not in fields]
    if extra:
        problems.append(f"main_fields {extra} are not among fields")
    if problems:
        raise ValueError(f"cannot register method {name!r}: " + "; ".join(problems))
    method = Method(name=name, family=family, objective=objective, drive=drive,
                    needs=tuple(needs), runner=runner,
                    kinds=tuple(kinds) if kinds is not None else None, loss=loss,
                    reads_retain=reads_retain, description=description, fields=tuple(fields),
                    main_fields=tuple(main_fields), maskable=maskable)
    METHODS.register(name, description)(method)
    return method


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
# Runners


@dataclass
class Run:
    """One unlearning run as the engine hands it to a method's runner.

    Attributes:
        method: the method being run.
        model: the working copy to update in place (on ``device``, in the config's train
            mode); the input model is never given to a runner to write.
        kind: the task kind the losses use.
        forget, retain: training sources (None when absent).
        fisher_retain: ``() -> retain batches`` for the SO Fisher (capped), or None.
        reference: the frozen reference π_ref when the method needs one, else None.
        retrained: the task's model trained on D_r alone, when the forget set is the task's
            own, else None.
        config: the run's ``UnlearnConfig``.
        mask: the module mask, or None for a full run.
        device: where the run happens.
        callbacks: ``cb(step, model, row) -> dict | None`` after every update.
        progress: show tqdm bars.
        monitor: the stop rule / guard checks (``unlearning/stopping.py``), or None.
    """

    method: Method
    model: nn.Module
    kind: str
    forget: Source | None
    retain: Source | None
    fisher_retain: Callable[[], list[Batch]] | None
    reference: nn.Module | None
    retrained: nn.Module | None
    config: UnlearnConfig
    mask: ModuleMask | None
    device: torch.device
    callbacks: Sequence[Callback] = ()
    progress: bool = False
    monitor: Monitor | None = None


@dataclass
class RunOutcome:
    """What a runner returns.

    Attributes:
        model: the unlearned model (``run.model`` updated in place, or a new model).
        history: one row per step (see ``UnlearnResult.history``).
        changes: what changed, per parameter ``{"dim", "index", "values"}`` (CPU).
        n_trainable: number of entries the run was allowed to change.
        error: the stop reason (NaN/inf), or None.
        meta: resolved settings (``lr`` / ``eta``), ``optimizer_state_bytes``,
            ``retrained_from``.
        timings: seconds of the method's phases (SO: ``grad_seconds``, ``fisher_seconds``).
        stopped_at: updates (SO: ladder rungs) in the returned model; None when the notion
            does not apply (RT returning the task's retrained model).
        stop_reason: why the run ended (``stopping.STOP_REASONS``).
    """

    model: nn.Module
    history: list[dict]
    changes: dict[str, dict]
    n_trainable: int
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    stopped_at: int | None = None
    stop_reason: str | None = None


def _changes(sparse: SparseParams, model: nn.Module) -> dict[str, dict]:
    """Stop training and list what may have changed: the slices of a masked run, else every
    parameter."""
    sparse.detach_()
    return sparse.state() if sparse.mask is not None else whole_changes(model)


def finetune_runner(run: Run) -> RunOutcome:
    """The method's loss with AdamW on the trained tensors (slices of the mask, or every
    parameter), frozen entries bit-identical (``finetune.finetune``)."""
    m, cfg = run.method, run.config
    if m.loss is None:
        raise ValueError(f"method {m.name!r} has no loss: the fine-tuning runner needs one")
    sparse = SparseParams(run.model, run.mask, include_head=cfg.include_head)
    n_trainable = sparse.n_trainable()
    lr = cfg.lr_for(run.mask is not None)
    ctx = LossContext(model=run.model, reference=run.reference, kind=run.kind, config=cfg,
                      trainable=sparse.trainable(), device=run.device)
    history: list[dict] = []
    with sparse.attached():
        outcome = finetune(m.loss, ctx, forget=run.forget, retain=run.retain, drive=m.drive,
                           with_retain=m.reads_retain(cfg), params=sparse.trainable(), lr=lr,
                           epochs=cfg.epochs, schedule=cfg.lr_schedule, max_steps=cfg.max_steps,
                           weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                           after_step=sparse.sync_, callbacks=run.callbacks,
                           progress=run.progress, history=history, name=m.name,
                           monitor=run.monitor)
    return RunOutcome(model=run.model, history=history, changes=_changes(sparse, run.model),
                      n_trainable=n_trainable, error=outcome.error,
                      meta={"lr": lr, "optimizer_state_bytes": outcome.optimizer_state_bytes},
                      stopped_at=outcome.steps, stop_reason=outcome.stop_reason)


def eta_ladder(eta: float, rungs: int) -> list[float]:
    """SO's η ladder: ``eta · 2^(i − rungs)`` for i = 1..rungs (the last rung is ``eta``)."""
    return [eta * 2.0 ** (i - rungs) for i in range(1, rungs + 1)]


_NOT_FINITE = "the SO update has NaN/inf entries (Fisher + damping too small?); not applied"


def so_runner(run: Run) -> RunOutcome:
    """θ* + η (F + λ)⁻¹ Σ∇ℓ_f on the trained tensors (Eq. 2 / 10), in one step.

    With a stop rule or guard (``run.monitor``) SO has no steps to stop between; it walks
    the η ladder instead (:func:`eta_ladder`, ``config.eta_ladder`` rungs up to η): the
    forget gradient and Fisher are computed once, each rung sets θ = θ* + η_i (F + λ)⁻¹
    Σ∇ℓ_f — exactly the one-shot update with ``eta = η_i`` — and is checked; the run keeps
    the first rung where the rule holds (``criterion``), the last rung within the guard
    (``guard``), or η itself (``eta ladder done``). ``stopped_at`` is the rung (0: θ*).
    """
    cfg = run.config
    sparse = SparseParams(run.model, run.mask, include_head=cfg.include_head)
    n_trainable = sparse.n_trainable()
    eta = cfg.eta_for(run.mask is not None)
    stats = so_sums(run.model, sparse, run.forget.epoch(0), run.fisher_retain(), run.kind,
                    chunk=cfg.fisher_batch_size, progress=run.progress,
                    engine=cfg.fisher_engine)
    timings = {"grad_seconds": stats["grad_seconds"], "fisher_seconds": stats["fisher_seconds"]}
    mon = run.monitor
    if mon is None:
        info = apply_so(sparse, stats, eta, cfg.damping)
        row = {"step": 0, **info}
        error = None
        if not info["finite"]:
            error = _NOT_FINITE
            row["stopped"] = True
        else:
            for cb in run.callbacks:
                extra = cb(1, run.model, row)
                if extra:
                    row.update(extra)
        return RunOutcome(model=run.model, history=[row], changes=_changes(sparse, run.model),
                          n_trainable=n_trainable, error=error, meta={"eta": eta},
                          timings=timings, stopped_at=0 if error else 1,
                          stop_reason=ERROR if error else ONE_SHOT)
    return _so_ladder(run, sparse, stats, eta, mon, n_trainable, timings)


def _so_ladder(run: Run, sparse: SparseParams, stats: dict, eta: float, mon: Monitor,
               n_trainable: int, timings: dict) -> RunOutcome:
    """The η ladder of :func:`so_runner`."""
    cfg = run.config
    etas = eta_ladder(eta, cfg.eta_ladder)
    base = [t.detach().clone() for t in sparse.trainable()]

    @torch.no_grad()
    def set_rung(i: int) -> dict:
        for t, b in zip(sparse.trainable(), base):
            t.copy_(b)
        sparse.sync_()
        return apply_so(sparse, stats, etas[i - 1], cfg.damping) if i else {"finite": True}

    history: list[dict] = []
    error, reason, at = None, LADDER_DONE, len(etas)
    if mon.check(0, run.model) == CRITERION:
        reason, at = CRITERION, 0
    else:
        for i in range(1, len(etas) + 1):
            info = set_rung(i)
            row = {"step": i - 1, "eta": etas[i - 1], **info}
            history.append(row)
            if not info["finite"]:
                error, reason, at = _NOT_FINITE, ERROR, i - 1
                row["stopped"] = True
                set_rung(at)
                break
            for cb in run.callbacks:
                extra = cb(i, run.model, row)
                if extra:
                    row.update(extra)
            verdict = mon.check(i, run.model)
            row.update({k: v for k, v in mon.row_metrics().items() if k != "verdict"})
            if verdict == GUARD:
                reason, at = GUARD, mon.good_step
                set_rung(at)
                break
            if verdict == CRITERION:
                reason, at = CRITERION, i
                break
    del history[at + (error is not None):]  # the rows of the returned rung (+ a NaN row)
    meta = {"eta": etas[at - 1] if at else 0.0, "eta_max": eta, "eta_ladder": etas}
    return RunOutcome(model=run.model, history=history, changes=_changes(sparse, run.model),
                      n_trainable=n_trainable, error=error, meta=meta, timings=timings,
                      stopped_at=at, stop_reason=reason)


def retrain_runner(run: Run) -> RunOutcome:
    """The task's retrained model when there is one for this forget set (that *is*
    retraining), else retraining on the retain set (:func:`finetune_runner`)."""
    if run.retrained is None:
        return finetune_runner(run)
    model = copy.deepcopy(run.retrained).to(run.device)
    return RunOutcome(model=model, history=[{"step": 0, "source": "task.retrained_model"}],
                      changes=whole_changes(model),
                      n_trainable=sum(p.numel() for p in model.parameters()),
                      meta={"retrained_from": "task.retrained_model"},
                      stop_reason=RETRAINED)


def npo_reads_retain(config: UnlearnConfig) -> bool:
    """NPO reads a retain batch only when ``npo_retain_weight > 0``."""
    return config.npo_retain_weight > 0


# ---------------------------------------------------------------------------------------------
# The methods

#: ``UnlearnConfig`` fields every fine-tuning method reads (the AdamW loop).
FINETUNE_FIELDS = ("lr", "epochs", "batch_size", "lr_schedule", "weight_decay", "max_grad_norm",
                   "max_steps", "train_mode", "include_head")

register_method(
    "so", family="second_order", objective="mlr", drive="forget", needs=("forget", "retain"),
    runner=so_runner, description="second-order update θ* + η (F+λ)⁻¹ Σ∇ℓ_f (Eq. 2/10)",
    fields=("eta", "damping", "fisher_batch_size", "fisher_max_samples", "fisher_engine",
            "include_head"),
    main_fields=("eta", "damping"))
register_method(
    "ga", family="finetune", objective="mlf", drive="forget", needs=("forget",),
    runner=finetune_runner, loss=ga_loss, description="gradient ascent on the forget set",
    fields=FINETUNE_FIELDS, main_fields=("lr", "epochs", "batch_size"))
register_method(
    "gd", family="finetune", objective="mlf", drive="forget", needs=("forget", "retain"),
    runner=finetune_runner, loss=gd_loss, reads_retain=always,
    description="gradient difference: −forget loss + retain loss",
    fields=FINETUNE_FIELDS + ("retain_weight", "retain_batch_size"),
    main_fields=("lr", "epochs", "batch_size", "retain_weight"))
register_method(
    "npo", family="finetune", objective="mlf", drive="forget", needs=("forget", "reference"),
    runner=finetune_runner, loss=npo_loss, reads_retain=npo_reads_retain,
    description="negative preference optimisation (β=0.1, frozen reference)",
    fields=FINETUNE_FIELDS + ("beta", "npo_retain_weight", "retain_batch_size"),
    main_fields=("lr", "epochs", "batch_size", "beta"))
register_method(
    "dpo", family="finetune", objective="mlf", drive="forget",
    needs=("forget", "reference", "idk"), kinds=("causal_lm",), runner=finetune_runner,
    loss=dpo_loss, description="DPO towards \"I don't know\" answers (generative tasks)",
    fields=FINETUNE_FIELDS + ("beta",), main_fields=("lr", "epochs", "batch_size", "beta"))
register_method(
    "sa", family="finetune", objective="mlf", drive="retain", needs=("retain",),
    runner=finetune_runner, loss=sa_loss,
    description="fine-tune on the retain set with γ‖θ‖₁ (γ=5e-5)",
    fields=FINETUNE_FIELDS + ("gamma",), main_fields=("lr", "epochs", "batch_size", "gamma"))
register_method(
    "rt", family="retrain", objective=None, drive="retain", needs=("retain",),
    runner=retrain_runner, loss=retain_loss,
    description="retrained reference: the task's model trained on D_r alone when it has one, "
                "else fine-tuning the current model on D_r (not a retrain from scratch)",
    fields=FINETUNE_FIELDS, main_fields=("lr", "epochs", "batch_size"), maskable=False)
