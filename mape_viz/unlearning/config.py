"""Hyperparameters of the unlearning engine, with the paper's defaults (Appendix D.2;
docs/design.md §5, presets: §8).

One flat dataclass, :class:`UnlearnConfig`, so that a run's ``config.json`` is one flat dict
and the CLI can generate one ``--flag`` per field (from the field's ``help`` metadata). Each
field's ``metadata["group"]`` says which part of the engine reads it:

- ``select``: how the module mask is made (scores, sparsity refinement);
- ``so``: second-order update (Eq. 2 / 10 / 11);
- ``finetune``: GA, GD, NPO, DPO, SA, RT (Appendix C);
- ``stop``: stop when forgotten and the fidelity guard (``unlearning/stopping.py``);
- ``common``: both.

Which fields each method reads is declared with the method (``METHODS[name].fields``, main
ones in ``main_fields``), so user interfaces show the right ones.

``None`` for ``lr`` / ``eta`` means "the default for this run": the paper grid-searches a
range for full and a 10× higher range for module-aware (90 % sparse) runs, because an update
restricted to 10 % of the parameters needs a larger step to move the loss as much.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..gradients import AUTOCAST_DTYPES
from ..presets import preset_values
from ..scores import OBJECTIVES
from ..selection import GRANULARITIES, REFINE_MODES
from ..wanda import WANDA_SPARSITY
from .second_order import FISHER_ENGINES
from .stopping import STOP_RULE_FORMS, parse_stop_rule

#: ``lr_schedule`` options: a constant lr, or linear decay to 0 over the run (no warm-up).
LR_SCHEDULES = ("constant", "linear")

#: Paper (Appendix D.2, traditional tasks): full fine-tuning lr ∈ [1e-5, 5e-5], module-aware
#: ∈ [1e-4, 5e-4]. Our defaults are tuned on ``toy-sentiment`` inside those ranges (upper end:
#: the toy forget set is small, so 3 epochs are only a few steps).
LR_FULL = 5e-5
LR_SPARSE = 5e-4
#: Paper: SO unlearning rate η ∈ [1e-8, 1e-7] (full), [8e-8, 8e-7] (MAPE-SO at 90 %).
ETA_FULL = 5e-8
ETA_SPARSE = 4e-7


def _f(default: Any, help: str, group: str, choices: tuple | None = None, **kw: Any) -> Any:
    meta = {"help": help, "group": group}
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta, **kw)


@dataclass
class UnlearnConfig:
    """Every hyperparameter of one unlearning run.

    Args:
        refine: greedy refinement of MAPE masks (Eq. 9): ``greedy`` (one round, the paper),
            ``converge``, ``exact`` or ``none``. Baseline selectors are never refined.
        granularity: which modules a mask may select: ``both``, ``heads`` or ``filters``.
        score_batch_size: batch size of the scoring passes.
        score_max_retain: score on at most this many retain samples (0 = all).
        score_autocast: precision of the scoring passes' forward (``off``, ``bf16``, ``fp16``):
            ``torch.autocast`` on the model's device, per-unit gradients reduced in float32
            and the scores' sums accumulated in float32/float64 (``gradients.scoring_autocast``;
            fp16 adds a loss scale and an unscaled retry on overflow). For GPUs; ``off`` (the
            default) scores in the model's own dtype (docs/design.md §10).
        objective: the scoring objective of MAPE masks (``OBJECTIVES``: ``mlr``, ``mlf``,
            ``mlf-argmax``); None = the method's own (``mlr`` for SO, ``mlf`` otherwise).
        wanda_sparsity: ``mape+wanda`` only: fraction of each selected slice's entries kept
            frozen (the largest |W|·‖X‖ are trained; the paper's 0.9).
        include_head: also update the task head (classifier / LM head, unless tied to the
            embeddings) in module-aware runs. Embeddings, norms and shared biases stay frozen.
        eta: SO unlearning rate η (None: 5e-8 full, 4e-7 module-aware).
        damping: SO damping λ added to the diagonal Fisher before inverting.
        fisher_batch_size: samples per vectorised (``vmap``) per-sample-gradient chunk.
        fisher_max_samples: estimate the retain Fisher on at most this many samples (0 = all
            of D_r, the paper's Eq. 11).
        fisher_engine: how per-sample gradients are formed (``second_order.fisher_sum``):
            ``vmap`` (``torch.func``, any parameter), ``hooks`` (module slices only, faster),
            ``auto`` (``hooks`` for MAPE-SO without the head, else ``vmap``).
        epochs: passes over the driving set (D_f for GA/GD/NPO/DPO, D_r for SA/RT).
        lr: AdamW learning rate (None: 5e-5 full, 5e-4 module-aware).
        batch_size: samples per step.
        retain_batch_size: retain samples per step when a retain batch rides along with each
            forget batch (GD, NPO with ``npo_retain_weight``); 0 = ``batch_size``.
        lr_schedule: ``constant`` or ``linear`` (decay to 0 over the run, no warm-up).
        weight_decay: AdamW weight decay (applies to the trained entries only).
        max_grad_norm: gradient clipping norm (0 = off).
        max_steps: stop after this many steps (0 = no limit).
        beta: NPO / DPO inverse temperature β (NPO paper default 0.1).
        gamma: SA's L1 weight γ in ``ℓ_r + γ‖θ‖₁``.
        retain_weight: weight of the retain loss in GD (and NPO when > 0).
        npo_retain_weight: retain-loss weight added to NPO (0 = the paper's plain NPO).
        train_mode: run fine-tuning in train mode (dropout on). Off by default: unlearning
            runs are short and deterministic results are easier to compare.
        stop_when: stop when forgotten (``unlearning/stopping.py``): ``never`` (default: run
            every step), ``flipped`` (classification: every forget row's argmax differs from
            its training label), ``retrained`` (forget accuracy — causal LM: ROUGE-L recall —
            ≤ the task's retrained model's; an error if the run has none), ``forget-acc<=X``,
            ``rouge<=X`` or ``prob<=X`` (causal LM: ROUGE-L recall / normalised answer
            probability of the forget answers). ``max_steps`` still bounds the run; the
            result records ``stopped_at`` and ``stop_reason``. SO has no steps: with a rule
            it tries the η ladder ``eta · 2^(i − eta_ladder)``, i = 1..``eta_ladder``, and
            keeps the first rung where the rule holds.
        stop_every: check the rule (and the guard) every this many steps (k); the checks read
            the forget rows only (and the guard's rows), in eval mode, without gradients.
        guard_drop: fidelity guard (classification): stop when the accuracy on a held-out
            check set falls more than this fraction (0.03 = 3 points) below the starting
            model's, and return the model of the last check within it. None = off.
        guard_rows: size of the guard's check set: a seeded subsample of the task's
            ``extras["validation"]`` rows, else its test rows (0 = all).
        eta_ladder: rungs of SO's η ladder when a stop rule or guard is set (1 = η alone).
    """

    # select
    refine: str = _f("greedy", "MAPE mask refinement (Eq. 9)", "select",
                     choices=tuple(REFINE_MODES))
    granularity: str = _f("both", "modules a mask may select", "select",
                          choices=tuple(GRANULARITIES))
    score_batch_size: int = _f(32, "batch size of the scoring passes", "select")
    score_max_retain: int = _f(1024, "score on at most this many retain samples (0 = all)",
                               "select")
    score_autocast: str = _f("off", "precision of the scoring forward: off (the model's dtype), "
                             "bf16 or fp16 autocast with float32 accumulation (GPU)", "select",
                             choices=tuple(AUTOCAST_DTYPES))
    objective: str | None = _f(None, "scoring objective of MAPE masks (default: the method's)",
                               "select", choices=tuple(OBJECTIVES))
    wanda_sparsity: float = _f(WANDA_SPARSITY, "mape+wanda: fraction of each selected slice's "
                               "entries left frozen", "select")
    include_head: bool = _f(False, "also update the task head in module-aware runs", "common")
    # second order
    eta: float | None = _f(None, "SO unlearning rate eta (default 5e-8 full, 4e-7 module-aware)",
                           "so")
    damping: float = _f(1e-6, "SO damping lambda added to the diagonal Fisher", "so")
    fisher_batch_size: int = _f(16, "samples per vmap chunk of per-sample gradients", "so")
    fisher_max_samples: int = _f(0, "retain samples for the Fisher (0 = all of D_r)", "so")
    fisher_engine: str = _f("auto", "per-sample gradients: vmap (torch.func), hooks (slices "
                            "only) or auto (hooks for MAPE-SO, vmap otherwise)", "so",
                            choices=FISHER_ENGINES)
    # fine-tuning
    epochs: int = _f(3, "passes over the driving set (paper: 3 for traditional tasks)", "finetune")
    lr: float | None = _f(None, "AdamW learning rate (default 5e-5 full, 5e-4 module-aware)",
                          "finetune")
    batch_size: int = _f(8, "samples per step", "finetune")
    retain_batch_size: int = _f(0, "retain samples per step (GD / NPO+retain; 0 = batch_size)",
                                "finetune")
    lr_schedule: str = _f("constant", "learning-rate schedule over the run", "finetune",
                          choices=LR_SCHEDULES)
    weight_decay: float = _f(0.01, "AdamW weight decay (trained entries only)", "finetune")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 = off)", "finetune")
    max_steps: int = _f(0, "stop after this many steps (0 = no limit)", "finetune")
    beta: float = _f(0.1, "NPO/DPO inverse temperature beta", "finetune")
    gamma: float = _f(5e-5, "SA L1 weight gamma", "finetune")
    retain_weight: float = _f(1.0, "GD retain-loss weight", "finetune")
    npo_retain_weight: float = _f(0.0, "retain-loss weight added to NPO (0 = plain NPO)",
                                  "finetune")
    train_mode: bool = _f(False, "fine-tune in train mode (dropout on)", "finetune")
    # stop when forgotten, fidelity guard
    stop_when: str = _f("never", "stop when forgotten: " + ", ".join(STOP_RULE_FORMS)
                        + " (X in [0, 1]; retrained = the task's retrained model's forget "
                        "accuracy)", "stop")
    stop_every: int = _f(1, "check the stop rule / guard every k steps (forget rows only)",
                         "stop")
    guard_drop: float | None = _f(None, "stop when held-out accuracy drops more than this "
                                  "fraction below the start (0.03 = 3 points; default off) and "
                                  "keep the last model within it", "stop")
    guard_rows: int = _f(256, "held-out rows the guard checks (0 = all)", "stop")
    eta_ladder: int = _f(8, "SO with a stop rule: try eta * 2^(i - n), i = 1..n", "stop")

    def __post_init__(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices and not (f.name in ("refine", "objective")
                                                         and value is None):
                problems.append(f"{f.name}={value!r} (accepted: {', '.join(choices)})")
        for name in ("score_batch_size", "fisher_batch_size", "batch_size", "epochs",
                     "stop_every", "eta_ladder"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)!r} (must be >= 1)")
        for name in ("score_max_retain", "fisher_max_samples", "max_steps", "retain_batch_size",
                     "guard_rows"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name}={getattr(self, name)!r} (must be >= 0)")
        for name in ("damping", "weight_decay", "max_grad_norm", "gamma", "retain_weight",
                     "npo_retain_weight"):
            if not float(getattr(self, name)) >= 0:
                problems.append(f"{name}={getattr(self, name)!r} (must be >= 0)")
        if isinstance(self.wanda_sparsity, bool) or not (
                isinstance(self.wanda_sparsity, (int, float)) and 0.0 <= self.wanda_sparsity < 1.0):
            problems.append(f"wanda_sparsity={self.wanda_sparsity!r} (must be in [0, 1))")
        try:
            parse_stop_rule(self.stop_when)
        except ValueError as e:
            problems.append(str(e))
        if self.guard_drop is not None and not (isinstance(self.guard_drop, (int, float))
                                                and not isinstance(self.guard_drop, bool)
                                                and 0.0 <= self.guard_drop < 1.0):
            problems.append(f"guard_drop={self.guard_drop!r} (a fraction in [0, 1), e.g. 0.03 "
                            "for 3 points, or None for off)")
        if not self.beta > 0:
            problems.append(f"beta={self.beta!r} (must be > 0)")
        for name in ("lr", "eta"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                problems.append(f"{name}={v!r} (must be > 0, or None for the default)")
        if problems:
            raise ValueError("invalid unlearning config: " + "; ".join(problems))

    # -- defaults that depend on the run -------------------------------------------------

    def lr_for(self, masked: bool) -> float:
        """The learning rate of a run: ``lr`` or the paper-range default."""
        return float(self.lr) if self.lr is not None else (LR_SPARSE if masked else LR_FULL)

    def eta_for(self, masked: bool) -> float:
        """The SO unlearning rate of a run: ``eta`` or the paper-range default."""
        return float(self.eta) if self.eta is not None else (ETA_SPARSE if masked else ETA_FULL)

    # -- (de)serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "UnlearnConfig":
        """Build from a (possibly partial) dict; unknown keys raise ``ValueError``."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "UnlearnConfig":
        return dataclasses.replace(self, **changes)


def config_fields() -> list[dataclasses.Field]:
    """The fields of :class:`UnlearnConfig`, in order (for the CLI and the app)."""
    return list(dataclasses.fields(UnlearnConfig))


def as_config(config: UnlearnConfig | Mapping[str, Any] | None, task: Any = None, *,
              method: str | None = None, selector: str | None = None, masked: bool = False,
              front_end: str = "library") -> UnlearnConfig:
    """The run's config.

    ``None`` → paper defaults with ``front_end``'s presets for ``task`` on top
    (:mod:`mape_viz.presets`, the rows that target this method / selector / masked run); a
    dict → the same with the dict on top; an ``UnlearnConfig`` → itself (explicit: no presets).
    """
    if isinstance(config, UnlearnConfig):
        return config
    base = preset_values(task, front_end, method, selector, masked) if task is not None else {}
    if config is None:
        return UnlearnConfig.from_dict(base)
    if isinstance(config, Mapping):
        return UnlearnConfig.from_dict({**base, **config})
    raise TypeError(f"config must be an UnlearnConfig, a dict or None, got {type(config).__name__}")
