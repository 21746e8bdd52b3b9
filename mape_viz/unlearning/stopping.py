"""Stop when forgotten, and the fidelity guard (docs/design.md §5).

A run may be checked while it runs. Every ``stop_every`` updates (and once before the first,
and once after the last) a :class:`Monitor` evaluates

- the **stop rule** (``UnlearnConfig.stop_when``) on the *forget rows only* — cheap: one
  batched, gradient-free pass over D_f in eval mode, the model's mode restored after;
- the **fidelity guard** (``UnlearnConfig.guard_drop``) on a small held-out check set (a
  seeded subsample of ``guard_rows`` rows of the task's ``extras["validation"]`` or, without
  one, its test split).

Stop rules (:func:`parse_stop_rule`):

============================  ==========================================================
``never``                     run every step (the library default)
``flipped``                   classification: every forget row's argmax differs from its
                              training label (forget accuracy = 0)
``retrained``                 forget score ≤ the same score of a model that never saw the
                              forget rows (the task's retrained model; classification:
                              accuracy, causal LM: ROUGE-L recall); an error if there is none
``forget-acc<=X``             classification: forget accuracy ≤ X
``rouge<=X``                  causal LM: mean ROUGE-L recall of the greedy answers ≤ X
``prob<=X``                   causal LM: mean length-normalised answer probability ≤ X
============================  ==========================================================

The guard (classification only: its metric is accuracy) stops the run when the check-set
accuracy falls more than ``guard_drop`` (a fraction: 0.03 = 3 points) below the starting
model's; the run then returns the model of the last check that was still within the guard.

Why a run stopped (:data:`STOP_REASONS`): ``criterion`` (the rule held at a check),
``max_steps``, ``epochs done``, ``guard``, ``error`` (a NaN/inf stop), and for runs without
steps ``one-shot`` (SO without a rule), ``eta ladder done`` (SO with a rule: the top rung η
was reached without the rule holding) and ``retrained model`` (RT returned the task's model).

Under ``accelerate launch`` every rank evaluates the check and all adopt rank 0's metrics
(:func:`mape_viz.distributed.broadcast_object`), so verdicts, stop steps and guard restores
agree across ranks (docs/design.md §10).
"""

from __future__ import annotations

import copy
import random
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..distributed import broadcast_object
from ..metrics.classification import accuracy
from ..metrics.evaluate import answer_logprob, classify, generate_answers
from ..metrics.tofu import normalised_probability, rouge_l_recall_batch

#: Why a run stopped (``UnlearnResult.stop_reason``).
CRITERION = "criterion"
MAX_STEPS = "max_steps"
EPOCHS_DONE = "epochs done"
GUARD = "guard"
ERROR = "error"
ONE_SHOT = "one-shot"
LADDER_DONE = "eta ladder done"
RETRAINED = "retrained model"
STOP_REASONS = (CRITERION, MAX_STEPS, EPOCHS_DONE, GUARD, ERROR, ONE_SHOT, LADDER_DONE,
                RETRAINED)

#: The accepted forms of ``stop_when`` (X: a number in [0, 1]).
STOP_RULE_FORMS = ("never", "flipped", "retrained", "forget-acc<=X", "rouge<=X", "prob<=X")
#: Threshold rules -> (forget metric they read, the task kind they fit).
THRESHOLD_RULES = {"forget-acc": ("forget_acc", "classification"),
                   "rouge": ("forget_rouge", "causal_lm"),
                   "prob": ("forget_prob", "causal_lm")}
_THRESHOLD = re.compile(r"^\s*(forget-acc|rouge|prob)\s*<=\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class StopRule:
    """A parsed ``stop_when``.

    Attributes:
        name: ``never``, ``flipped``, ``retrained``, ``forget-acc``, ``rouge`` or ``prob``.
        target: X of a threshold rule, else None (``retrained`` gets its target at run time).
        text: the rule as written.
    """

    name: str
    target: float | None = None
    text: str = "never"

    @property
    def active(self) -> bool:
        return self.name != "never"

    def metric(self, kind: str) -> str:
        """The forget metric the rule reads on a task of ``kind`` (``forget_acc``, ...).

        Raises:
            ValueError: the rule does not fit ``kind``.
        """
        if self.name in THRESHOLD_RULES:
            metric, fits = THRESHOLD_RULES[self.name]
        elif self.name == "flipped":
            metric, fits = "forget_acc", "classification"
        elif self.name == "retrained":
            if kind not in ("classification", "causal_lm"):
                raise ValueError(f"stop_when='retrained' fits classification and causal LM "
                                 f"tasks, not {kind}")
            return "forget_acc" if kind == "classification" else "forget_rouge"
        else:
            raise ValueError("stop_when='never' reads no metric")
        if kind != fits:
            fitting = [f for f in STOP_RULE_FORMS
                       if f.split("<=")[0] in THRESHOLD_RULES
                       and THRESHOLD_RULES[f.split("<=")[0]][1] == kind]
            if kind == "classification":
                fitting = ["flipped", "retrained", *fitting]
            elif kind == "causal_lm":
                fitting = ["retrained", *fitting]
            raise ValueError(f"stop_when={self.text!r} fits {fits} tasks, not {kind}; rules "
                             f"for {kind}: {', '.join(fitting) or 'none'}")
        return metric

    def holds(self, value: float, target: float | None) -> bool:
        """Whether the rule holds for a measured forget ``value`` (``target``: the resolved
        threshold; ``flipped`` holds at forget accuracy 0)."""
        if self.name == "flipped":
            return value <= 0.0
        return target is not None and value <= target


def parse_stop_rule(text: str | None) -> StopRule:
    """``"forget-acc<=0.1"`` -> ``StopRule("forget-acc", 0.1)``; None -> never.

    Raises:
        ValueError: not one of :data:`STOP_RULE_FORMS` (the message lists them), or X
            outside [0, 1].
    """
    if text is None:
        return StopRule("never")
    if not isinstance(text, str):
        raise ValueError(f"stop_when must be a string, got {type(text).__name__}")
    t = text.strip().lower()
    if t in ("never", "flipped", "retrained"):
        return StopRule(t, None, t)
    m = _THRESHOLD.match(t)
    if m:
        try:
            x = float(m.group(2))
        except ValueError:
            x = float("nan")
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"stop_when={text!r}: the threshold must be in [0, 1]")
        return StopRule(m.group(1), x, f"{m.group(1)}<={m.group(2)}")
    raise ValueError(f"stop_when={text!r} is not a stop rule; accepted: "
                     f"{', '.join(STOP_RULE_FORMS)} (X a number in [0, 1])")


# ---------------------------------------------------------------------------------------------
# Metrics a check reads


Metric = Callable[[nn.Module], float]


def forget_accuracy(batches: Callable[[], list[dict]]) -> Metric:
    """``model -> accuracy`` on the batches (argmax of the logits vs the batch labels)."""
    def measure(model: nn.Module) -> float:
        lp, y = classify(model, batches())
        return accuracy(lp, y)
    return measure


def answer_probability(batches: Callable[[], list[dict]]) -> Metric:
    """``model -> mean length-normalised answer probability`` of causal-LM batches."""
    def measure(model: nn.Module) -> float:
        lp, n = answer_logprob(model, batches())
        return float(np.mean(normalised_probability(lp, n))) if len(lp) else float("nan")
    return measure


def answer_rouge(task: Any, rows: Any, batch_size: int) -> Metric:
    """``model -> mean ROUGE-L recall`` of the greedy answers to ``rows``' questions (as
    :func:`mape_viz.metrics.evaluate` computes ``forget_rouge``)."""
    collate = task.collate
    q_key = getattr(collate, "question_key", "question")
    a_key = getattr(collate, "answer_key", "answer")
    fmt = getattr(collate, "format_prompt", None) or (
        lambda r: "Question: {question}\nAnswer:".format(question=r[q_key]))
    listed = rows.to_list() if hasattr(rows, "to_list") else [dict(r) for r in rows]
    if not listed or any(q_key not in r or a_key not in r for r in listed):
        raise ValueError(f"stop_when on ROUGE needs forget rows with {q_key!r} and {a_key!r}")
    prompts = [fmt(r) for r in listed]
    answers = [str(r[a_key]) for r in listed]
    n_new = 16 + max(len(task.tokenizer(a, add_special_tokens=False)["input_ids"])
                     for a in answers)

    def measure(model: nn.Module) -> float:
        gens = generate_answers(model, task.tokenizer, prompts, n_new, batch_size)
        return float(rouge_l_recall_batch(gens, answers).mean())
    return measure


def guard_batches(task: Any, n_rows: int, batch_size: int, seed: int) -> list[dict]:
    """The guard's check set: ``n_rows`` seeded rows (0 = all) of ``task.extras['validation']``
    or, without one, ``task.test``, collated.

    Raises:
        ValueError: no task, or a task with neither.
    """
    rows = None
    if task is not None:
        extras = getattr(task, "extras", None) or {}
        rows = extras.get("validation") if hasattr(extras.get("validation"), "__len__") else None
        if rows is None:
            rows = getattr(task, "test", None)
    if rows is None or len(rows) == 0:
        raise ValueError("guard_drop needs held-out rows: pass a Task with a test split (or "
                         "extras['validation']); a model with batches has none")
    if n_rows and len(rows) > n_rows:
        idx = sorted(random.Random(seed).sample(range(len(rows)), n_rows))
        rows = rows.select(idx) if hasattr(rows, "select") else [rows[i] for i in idx]
    return list(task.batches(rows, batch_size, shuffle=False))


# ---------------------------------------------------------------------------------------------
# The monitor


@dataclass
class Monitor:
    """Checks one run (see module doc); built by :func:`build_monitor`.

    Attributes:
        rule: the stop rule.
        every: check every this many updates (the SO ladder checks every rung).
        forget_metric: ``model -> forget score`` (None when the rule is ``never``).
        metric_name: its name (``forget_acc``, ``forget_rouge``, ``forget_prob``).
        target: the resolved threshold (``retrained``: the reference model's score).
        guard_metric: ``model -> check-set accuracy`` (None: no guard).
        guard_drop: largest allowed drop below the start (a fraction).
        checks: one dict per check: ``step``, the metrics, ``verdict`` (None, ``criterion``
            or ``guard``), ``seconds``.
        good_step: the last checked step still within the guard.
        start_guard: the starting model's check-set accuracy.
    """

    rule: StopRule
    every: int = 1
    forget_metric: Metric | None = None
    metric_name: str | None = None
    target: float | None = None
    guard_metric: Metric | None = None
    guard_drop: float | None = None
    checks: list[dict] = field(default_factory=list)
    good_step: int = 0
    start_guard: float | None = None
    _saved: list[torch.Tensor] | None = None

    @property
    def guarded(self) -> bool:
        return self.guard_metric is not None

    def due(self, step: int) -> bool:
        """Whether ``step`` (updates done) is a check step."""
        return step % self.every == 0

    def checked(self, step: int) -> bool:
        return bool(self.checks) and self.checks[-1]["step"] == step

    def check(self, step: int, model: nn.Module) -> str | None:
        """Evaluate ``model`` after ``step`` updates: ``guard`` (the check set fell more than
        ``guard_drop`` below the start), ``criterion`` (the rule holds) or None."""
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"step": step}
        verdict = None
        acc = self.guard_metric(model) if self.guard_metric is not None else None
        value = self.forget_metric(model) if self.forget_metric is not None else None
        # under a launcher every rank decides on rank 0's numbers (docs/design.md §10)
        acc, value = broadcast_object((acc, value))
        if self.guard_metric is not None:
            if self.start_guard is None:
                self.start_guard = acc
            rec["guard_acc"] = acc
            if self.start_guard - acc > float(self.guard_drop) + 1e-12:
                verdict = GUARD
        if self.forget_metric is not None:
            rec[f"check_{self.metric_name}"] = value
            if verdict is None and self.rule.holds(value, self.target):
                verdict = CRITERION
        if verdict != GUARD:
            self.good_step = step
        rec["verdict"] = verdict
        rec["seconds"] = time.perf_counter() - t0
        self.checks.append(rec)
        return verdict

    def row_metrics(self) -> dict[str, Any]:
        """The last check's metrics, for the history row of that step."""
        last = self.checks[-1] if self.checks else {}
        return {k: v for k, v in last.items() if k not in ("step", "seconds")}

    # -- the guard's snapshot --------------------------------------------------------------

    @torch.no_grad()
    def save(self, tensors: Sequence[torch.Tensor]) -> None:
        """Keep a copy of the trained tensors (at a check within the guard)."""
        if self.guarded:
            self._saved = [t.detach().clone() for t in tensors]

    @torch.no_grad()
    def restore(self, tensors: Sequence[torch.Tensor]) -> None:
        """Write the last saved copy back into the trained tensors."""
        if self._saved is None:
            raise RuntimeError("the guard has no saved state to restore")
        for t, s in zip(tensors, self._saved):
            t.copy_(s)

    def summary(self) -> dict[str, Any]:
        """What the run records in ``meta['stop']``."""
        return {"rule": self.rule.text, "every": self.every, "metric": self.metric_name,
                "target": self.target, "guard_drop": self.guard_drop,
                "start_guard_acc": self.start_guard, "checks": list(self.checks),
                "check_seconds": sum(c["seconds"] for c in self.checks)}


def once(make: Callable[[], list[dict]]) -> Callable[[], list[dict]]:
    """``make`` called on first use only (the forget rows are collated once per run)."""
    cache: list[list[dict]] = []

    def get() -> list[dict]:
        if not cache:
            cache.append(make())
        return cache[0]
    return get


def build_monitor(cfg: Any, data: Any, device: torch.device, seed: int = 0) -> Monitor | None:
    """The run's :class:`Monitor`, or None when neither a stop rule nor a guard is set.

    Args:
        cfg: the ``UnlearnConfig`` (``stop_when``, ``stop_every``, ``guard_drop``,
            ``guard_rows``, ``score_batch_size``).
        data: the run's ``RunData`` (forget batches, task, the model that never saw D_f).
        device: where the reference model is evaluated.
        seed: picks the guard's rows.

    Raises:
        ValueError: a rule that does not fit the task kind, ``retrained`` without a model
            that never saw the forget rows, a guard without held-out rows or on a task kind
            other than classification.
    """
    rule = parse_stop_rule(cfg.stop_when)
    if not rule.active and cfg.guard_drop is None:
        return None
    task = data.task
    kind = getattr(task, "kind", None) or data.kind
    mon = Monitor(rule=rule, every=int(cfg.stop_every))
    if rule.active:
        name = rule.metric(kind)
        mon.metric_name = name
        if name == "forget_acc":
            mon.forget_metric = forget_accuracy(once(data.score_forget))
        elif name == "forget_prob":
            mon.forget_metric = answer_probability(once(data.score_forget))
        else:
            if task is None or data.forget_rows is None:
                raise ValueError(f"stop_when={rule.text!r} on ROUGE needs a Task (questions, "
                                 "answers and a tokenizer to generate with); with a model and "
                                 "batches use prob<=X")
            mon.forget_metric = answer_rouge(task, data.forget_rows, cfg.score_batch_size)
        mon.target = rule.target
        if rule.name == "retrained":
            ref = data.unseen_model
            if ref is None:
                raise ValueError("stop_when='retrained' needs a model that never saw the "
                                 "forget rows (the task's retrained model, when the forget rows "
                                 "are among the task's forget rows); this run has none — use "
                                 f"{'forget-acc' if name == 'forget_acc' else 'rouge'}<=X")
            if next(ref.parameters()).device != device:  # .to() would move the task's model
                ref = copy.deepcopy(ref).to(device)
            mon.target = mon.forget_metric(ref)
    if cfg.guard_drop is not None:
        if kind != "classification":
            raise ValueError(f"guard_drop watches held-out accuracy: it fits classification "
                             f"tasks, not {kind}")
        try:
            rows = guard_batches(task, int(cfg.guard_rows), int(cfg.score_batch_size), seed)
        except ValueError as e:
            # A preset may turn the guard on for data that came without a held-out split: the
            # run goes on unguarded and says so, rather than refusing to unlearn.
            warnings.warn(f"fidelity guard off for this run: {e}", RuntimeWarning, stacklevel=3)
            rows = None
        if rows is not None:
            mon.guard_metric = forget_accuracy(lambda: rows)
            mon.guard_drop = float(cfg.guard_drop)
    return mon
