"""What the Gradio app does, as plain functions over library calls (docs/design.md §9).

``app.py`` lays out the page and binds these handlers; tests call them directly; nothing here
imports Gradio. The base model is loaded once (:class:`AppContext`) and never modified:
scoring only reads it, and every unlearning run works on a copy (:func:`mape_viz.unlearning.unlearn`
deep-copies), kept per session in ``gr.State`` as a :class:`RunState`. The explore tab's
caches are the shared :class:`~mape_viz.ui.explorer.ExplorerState`. The app's tuned settings
are the ``app`` rows of :mod:`mape_viz.presets` (docs/design.md §8), read by
:func:`app_config`. Nothing typed into the UI is used as a path.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from datasets import concatenate_datasets

from ..experiments import is_masked, run_record
from ..mask_io import save_mask
from ..metrics import evaluate, predict_proba
from ..presets import task_options
from ..scores import SELECTORS, score_modules
from ..tasks import Task, load_task
from ..types import ModuleMask
from ..viz import frontier as viz_frontier
from ..unlearning import METHODS, UnlearnConfig, as_config, unlearn
from .explorer import ExplorerState, Scorer, mask_summary as summarize, view_figure

#: The most samples one request may name (a UI guard: every run scores and trains on them).
MAX_FORGET = 64
#: Columns of a sweep record shown in the app (the run records carry more).
SWEEP_COLUMNS = ("method", "selector", "granularity", "sparsity", "forget_acc", "retain_acc",
                 "test_acc", "mia", "seconds")
#: Columns of the side-by-side table (:func:`compare_table`).
COMPARE_COLUMNS = ("run", "lr / η", "parameters changed", "steps", "stop reason",
                   "forget flipped", "test acc change", "MIA")


class Cancelled(Exception):
    """Raised inside a run when its session pressed Cancel or closed the tab."""


def cancel_callback(event: threading.Event | None) -> Callable:
    """An engine callback (``cb(step, model, row)``) that stops the run once ``event`` is set."""
    def check(step: int, model: Any, row: Any) -> None:
        if event is not None and event.is_set():
            raise Cancelled(f"cancelled at step {step}")
    return check


#: Metric columns of the metrics table, in order.
METRIC_COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia", "mia_auc")


def weights_checksum(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter's bytes, in name order — proves the base model is untouched."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def app_config(task: Task, method: str, selector: str,
               changes: Mapping[str, Any] | None = None) -> UnlearnConfig:
    """The config of one app run: the paper defaults, the ``app`` presets of ``task`` for
    this method / selector, then ``changes`` (what the user set)."""
    return as_config(dict(changes or {}), task, method=method, selector=selector,
                     masked=is_masked(method, selector), front_end="app")


@dataclass
class AppContext:
    """Everything loaded once per server.

    Attributes:
        task: the loaded ``Task`` (its model is the base model, never modified).
        train: every training row (the task's forget ∪ retain), with ``idx``.
        predictions: per training row ``(predicted label, confidence of the prediction)``.
        retain_for_scoring: retain samples used for scores in the app (a seeded subsample;
            0 = all); by default the app preset's ``score_max_retain``.
        checksum: weights checksum of the base model at load time.
    """

    task: Task
    train: Any
    predictions: list[tuple[int, float]]
    retain_for_scoring: int
    checksum: str = ""
    cancel_events: dict[str, threading.Event] = field(default_factory=dict)
    #: scoring installs hooks on the model it scores, so it never scores ``task.model`` —
    #: which other sessions read (predict, evaluate, copy) at the same time — but this
    #: private copy, one session at a time under ``score_lock``
    scoring_model: Any = None
    score_lock: Any = field(default_factory=threading.Lock)

    def cancel_event(self, session: str | None) -> threading.Event:
        """The cancel flag of one browser session (created cleared on first use)."""
        return self.cancel_events.setdefault(str(session), threading.Event())

    @classmethod
    def load(cls, task: str = "toy-sentiment", model_dir: str | None = None,
             retain_for_scoring: int | None = None, **options: Any) -> "AppContext":
        """Load (or build and cache) the task; ``model_dir`` swaps in a local safetensors model."""
        if model_dir is not None:
            options["model"] = model_dir
        options = {**task_options(task, "app"), **options}  # toy world: forget = the canaries
        return cls.from_task(load_task(task, **options), retain_for_scoring)

    @classmethod
    def from_task(cls, t: Task, retain_for_scoring: int | None = None) -> "AppContext":
        """Serve an already loaded classification task (e.g. ``text-classification`` on your
        model and data); its forget rows play the canaries' role when it has none."""
        if t.kind != "classification":
            raise ValueError(f"the app serves classification tasks; {t.name!r} is {t.kind!r}")
        if retain_for_scoring is None:
            retain_for_scoring = as_config(None, t, front_end="app").score_max_retain
        train = concatenate_datasets([t.forget, t.retain]).sort("idx")
        ctx = cls(task=t, train=train, predictions=[], retain_for_scoring=retain_for_scoring)
        ctx.predictions = ctx.predict(t.model, list(range(len(train))))
        ctx.checksum = weights_checksum(t.model)
        return ctx

    # -- data -------------------------------------------------------------------------------
    def rows(self, ids: Sequence[int]) -> Any:
        bad = [i for i in ids if not 0 <= int(i) < len(self.train)]
        if bad:
            raise ValueError(f"sample ids {bad} are out of range; accepted: 0..{len(self.train) - 1}")
        return self.train.select([int(i) for i in ids])

    def retain_rows(self, forget_ids: Sequence[int]) -> Any:
        keep = sorted(set(range(len(self.train))) - {int(i) for i in forget_ids})
        return self.train.select(keep)

    def batches(self, ds: Any, batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
        return list(self.task.batches(ds, batch_size))

    def predict(self, model: torch.nn.Module, ids: Sequence[int]) -> list[tuple[int, float]]:
        """(predicted label, its probability) for training rows ``ids``."""
        if not ids:
            return []
        probs, _ = predict_proba(model, self.batches(self.rows(ids), 64))
        return [(int(p.argmax()), float(p.max())) for p in probs]

    def text_of(self, row: Mapping[str, Any]) -> str:
        """A training row's text as the model reads it: the task's text column (and its pair
        column, after " ‖ "), as recorded by the loader in ``task.meta["columns"]``; the toy
        world's column is ``text``."""
        cols = self.task.meta.get("columns") or {}
        text = str(row[cols.get("text", "text")])
        pair = cols.get("pair")
        return f"{text} ‖ {row[pair]}" if pair else text

    def label_of(self, row: Mapping[str, Any]) -> int:
        """A training row's (integer) label, from the task's label column."""
        return int(row[(self.task.meta.get("columns") or {}).get("label", "label")])

    def canary_ids(self) -> list[int]:
        """The toy world's canaries; on a task without them, its forget rows (label-flip rows
        play the canaries' role)."""
        if "is_canary" in self.train.column_names:
            return [i for i, c in enumerate(self.train["is_canary"]) if c]
        return self.reference_ids()

    def reference_ids(self) -> list[int]:
        """Rows the task's retrained model was trained without (its forget set)."""
        return sorted(int(i) for i in self.task.forget["idx"])

    def reference_label(self) -> str:
        """Name of the retrained reference row, saying exactly which rows it excluded."""
        ids = self.reference_ids()
        canaries = "is_canary" in self.train.column_names and ids == self.canary_ids()
        what = f"the {len(ids)} canaries" if canaries else f"the task's {len(ids)} forget rows"
        shown = ", ".join(map(str, ids[:6])) + (", …" if len(ids) > 6 else "")
        return f"retrained without {what} (ids {shown})"

    def reference_note(self, ids: Sequence[int]) -> str | None:
        """None when the retrained reference applies to forgetting ``ids``, else why not."""
        if self.task.retrained_model is None:
            return "No retrained reference: this task has no model trained without its forget rows."
        outside = sorted(set(map(int, ids)) - set(self.reference_ids()))
        if outside:
            return (f"No retrained reference: ids {outside[:8]} are not among the rows the "
                    f"retrained model excluded ({self.reference_label()}), so it saw them.")
        return None

    def label(self, index: int) -> str:
        names = self.task.label_names or ["0", "1"]
        return names[index]

    def scorer(self, ids: Sequence[int], seed: int = 0) -> Scorer:
        """``scorer(objective, selector)`` for forgetting ``ids``: the base model's module
        scores against a seeded subsample of the other training rows."""
        def score(objective: str, selector: str):
            retain = self.retain_rows(ids).shuffle(seed=seed)
            n = len(retain) if self.retain_for_scoring == 0 else \
                min(self.retain_for_scoring, len(retain))
            with self.score_lock:
                if self.scoring_model is None:
                    self.scoring_model = copy.deepcopy(self.task.model)
                return score_modules(self.scoring_model, self.batches(self.rows(ids)),
                                     self.batches(retain.select(range(n))), objective=objective,
                                     selector=selector, seed=seed, progress=True)
        return score


def parse_ids(text: str | Sequence[int] | None, ctx: AppContext) -> list[int]:
    """'3, 17 40' or [3, 17] -> [3, 17, 40]; 'canaries' -> every canary. Clear errors otherwise."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise ValueError("pick at least one training sample (type its id, or 'canaries')")
    if isinstance(text, str):
        if text.strip().lower() == "canaries":
            return ctx.canary_ids()
        parts = text.replace(",", " ").split()
        try:
            ids = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"sample ids must be integers separated by commas or spaces, got {text!r}") from None
    else:
        ids = [int(i) for i in text]
    ids = sorted(set(ids))
    ctx.rows(ids)  # range check
    if len(ids) > MAX_FORGET:
        raise ValueError(f"{len(ids)} samples picked; the app unlearns at most {MAX_FORGET} at once")
    return ids


def toy_columns(ctx: AppContext) -> list[str]:
    """The toy-only columns (``rule label``, ``canary``) this task's rows have."""
    have = set(ctx.train.column_names)
    return [name for name, col in (("rule label", "rule_label"), ("canary", "is_canary"))
            if col in have]


def sample_headers(ctx: AppContext) -> list[str]:
    """Headers of :func:`sample_table` (toy-only columns only when present)."""
    return ["id", "text", "label", *toy_columns(ctx), "prediction", "confidence"]


#: Widths (% of the table) of the sample table's short columns; the text takes the rest.
_SAMPLE_WIDTHS = {"id": 6, "label": 11, "rule label": 11, "canary": 9, "prediction": 13,
                  "confidence": 14}


def sample_column_widths(ctx: AppContext) -> list[str]:
    """Column widths of :func:`sample_table` in % (summing to 100; the text takes what the
    short columns leave), so that the last column stays inside the table at any width."""
    widths = [_SAMPLE_WIDTHS.get(h, 0) for h in sample_headers(ctx)]
    widths[sample_headers(ctx).index("text")] = 100 - sum(widths)
    return [f"{w}%" for w in widths]


def before_after_headers(ctx: AppContext) -> list[str]:
    """Headers of :func:`before_after_table`."""
    return ["id", "text", "label", *(["rule label"] if "rule label" in toy_columns(ctx) else []),
            "before", "conf. before", "after", "conf. after"]


def _toy_cells(ctx: AppContext, row: Mapping[str, Any], canary: bool = True) -> list[Any]:
    cols = toy_columns(ctx)
    out = [ctx.label(row["rule_label"])] if "rule label" in cols else []
    if canary and "canary" in cols:
        out.append(bool(row["is_canary"]))
    return out


def sample_table(ctx: AppContext, query: str = "", limit: int = 200) -> list[list[Any]]:
    """Rows of the searchable sample table (:func:`sample_headers`); ``canaries`` lists the
    canaries (or, without them, the task's forget rows)."""
    q = (query or "").strip().lower()
    special = set(ctx.canary_ids()) if q == "canaries" else None
    out = []
    for i, row in enumerate(ctx.train):
        if special is not None and i not in special:
            continue
        text = ctx.text_of(row)
        if q and special is None and q not in text.lower():
            continue
        pred, conf = ctx.predictions[i]
        out.append([i, text, ctx.label(ctx.label_of(row)), *_toy_cells(ctx, row),
                    ctx.label(pred), round(conf, 4)])
        if len(out) >= limit:
            break
    return out


def prediction_summary(ctx: AppContext, ids: Sequence[int], limit: int = 8) -> str:
    """'#3: predicts **positive** (97.1%); ...' for the first ``limit`` of ``ids``."""
    return "; ".join(f"#{i}: predicts **{ctx.label(ctx.predictions[i][0])}** "
                     f"({ctx.predictions[i][1]:.1%})" for i in list(ids)[:limit])


def check_number(name: str, value: Any, low: float, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = True, empty_ok: bool = False,
                 integer: bool = False) -> float | None:
    """One rule for every numeric box of the app: ``low <= value < high`` (``low_open``: ``>``;
    ``high_open=False``: ``<=``; ``high`` None: no upper bound); ``empty_ok``: None/'' allowed
    (returns None). Clear error otherwise, naming the input, the value and what is accepted."""
    accepted = (f"{'an integer' if integer else 'a number'} {'>' if low_open else '>='} {low:g}"
                + ("" if high is None else f" and {'<' if high_open else '<='} {high:g}"))
    if empty_ok:
        accepted = f"empty (the preset) or {accepted}"
    if value is None or (isinstance(value, str) and not value.strip()):
        if empty_ok:
            return None
        raise ValueError(f"{name} is empty; accepted: {accepted}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}; accepted: {accepted}") from None
    if (v != v or v < low or (low_open and v == low) or
            (high is not None and (v > high or (high_open and v == high))) or
            (integer and v != int(v))):
        raise ValueError(f"{name}={value!r} is out of range; accepted: {accepted}")
    return int(v) if integer else v


#: The most epochs a request may ask for (the sliders' maximum).
MAX_EPOCHS = 50
#: What each numeric input of the app accepts: one rule each, read by :func:`check_inputs`
#: (Explore, Unlearn, Sweep and the budget line all validate through it).
NUMERIC_RULES: dict[str, tuple[str, dict[str, Any]]] = {
    "sparsity": ("sparsity", {"low": 0.0, "high": 1.0}),
    # empty or 0: each run's preset (an empty Number box sends 0 from the browser)
    "lr": ("learning rate", {"low": 0.0, "empty_ok": True}),
    "epochs": ("epochs", {"low": 1, "high": MAX_EPOCHS, "high_open": False, "integer": True}),
}


def check_inputs(ctx: AppContext, ids: Any = None, **values: Any) -> dict[str, Any]:
    """Validate what one request typed, the same way for every tab.

    Args:
        ids: the forget-set box (:func:`parse_ids`); None: not part of this request.
        values: numeric inputs by :data:`NUMERIC_RULES` key (``sparsity``, ``lr``,
            ``epochs``), and ``sparsities`` (a list, each checked as ``sparsity``).
    Returns:
        ``{"ids": [...], key: checked value, ...}`` for what was given.
    Raises:
        ValueError: the first bad input, saying what was wrong and what is accepted.
    """
    out: dict[str, Any] = {}
    if ids is not None:
        out["ids"] = parse_ids(ids, ctx)
    for key, value in values.items():
        if key == "sparsities":
            if not value:
                raise ValueError("choose at least one sparsity")
            name, rule = NUMERIC_RULES["sparsity"]
            out[key] = sorted(check_number(name, v, **rule) for v in value)
            continue
        if key not in NUMERIC_RULES:
            raise KeyError(f"no rule for input {key!r}; known: {', '.join(NUMERIC_RULES)}")
        name, rule = NUMERIC_RULES[key]
        out[key] = check_number(name, value, **rule)
    return out


def error_html(message: str) -> str:
    """The inline error line shown under the control that caused it ('' clears it)."""
    return (f'<div class="mape-error" role="alert" style="color:#b00020;font-weight:600">'
            f"⚠ {html.escape(message)}</div>")


def expected_steps(ctx: AppContext, ids: Sequence[int], method: str, epochs: int,
                   selector: str = "mape") -> str:
    """The run's budget before it starts: steps = min(max_steps, epochs x batches), where SA
    and RT pass over the retain set and the other methods over the forget set."""
    cfg = app_config(ctx.task, method, selector, {"epochs": int(epochs)})
    over_retain = method in ("sa", "rt")
    n = len(ctx.train) - len(ids) if over_retain else len(ids)
    per_epoch = -(-n // max(1, cfg.batch_size))
    steps = cfg.epochs * per_epoch if method != "so" else 1
    capped = bool(cfg.max_steps) and steps > cfg.max_steps
    steps = min(steps, cfg.max_steps) if cfg.max_steps else steps
    where = f"{n} retain rows" if over_retain else f"{n} forget row(s)"
    return (f"Budget: at most {steps} steps ({cfg.epochs} epoch(s) over {where}, batch "
            f"{cfg.batch_size}{', capped at max_steps' if capped else ''}); stops earlier when "
            f"{cfg.stop_when} (checked every {cfg.stop_every} steps).")


# -- explore -------------------------------------------------------------------------------

def compute_scores(ctx: AppContext, state: ExplorerState | None, ids: list[int], objective: str,
                   selector: str, seed: int = 0) -> ExplorerState:
    """Make (objective, selector) current for forgetting ``ids``, scoring only if not cached.

    ``state`` is the session's explorer state (None at first); a new forget set starts a
    fresh one.
    """
    SELECTORS.get(selector)  # an unknown selector fails here, listing the known ones
    state = (state if state is not None else ExplorerState()).for_forget(tuple(ids))
    state.score(objective, selector, ctx.scorer(ids, seed))
    return state


def select(state: ExplorerState | None, sparsity: float, granularity: str, refine: str) -> ModuleMask:
    """Re-select from cached scores (no model pass); ``refine`` ``"none"`` = the warm start."""
    if state is None or state.key is None:
        raise ValueError("compute scores first (press 'Compute scores')")
    return state.select(sparsity, granularity, refine)


def explore_figures(state: ExplorerState) -> dict[str, Any]:
    """The explore tab's figures (``heads``, ``filters``, ``per_layer``, ``swaps``) for the
    current scores and mask."""
    views = {"heads": "heads", "filters": "filters", "per_layer": "per layer", "swaps": "swaps"}
    return {name: view_figure(view, state.current_scores, state.mask) for name, view in views.items()}


def mask_summary(state: ExplorerState) -> str:
    """One markdown line: which scores, how many modules selected, what the greedy swap did."""
    s = summarize(state.current_scores, state.mask)
    return (f"**{s.selector}** ({s.objective}) scores for {len(state.forget_key)} sample(s): "
            f"{s.selected['heads']} of {s.sizes['heads']} heads and {s.selected['filters']} of "
            f"{s.sizes['filters']} filters selected; greedy swaps: {s.n_swaps} "
            f"(layer cost lowered by {s.cost_gain['heads']:.3g} on heads, "
            f"{s.cost_gain['filters']:.3g} on filters).")


# -- unlearn -------------------------------------------------------------------------------

def unlearn_mask(ctx: AppContext, state: ExplorerState | None, ids: list[int], objective: str,
                 selector: str, granularity: str, sparsity: float, refine: str
                 ) -> tuple[ExplorerState, ModuleMask, bool]:
    """The mask Explore shows for these settings: (state, mask, rescored). Scores are computed
    again only when the forget set or the (objective, selector) changed; the selection at
    (granularity, sparsity, refine) comes from the same cache Explore draws from."""
    before = None if state is None else (state.forget_key, state.n_scorer_calls)
    state = compute_scores(ctx, state, ids, objective, selector)
    rescored = before is None or before != (state.forget_key, state.n_scorer_calls)
    return state, select(state, sparsity, granularity, refine), rescored


def mask_line(mask: ModuleMask | None, rescored: bool = False) -> str:
    """'mask from Explore: a of N heads, b of M filters' (or the full model)."""
    if mask is None:
        return "full model: every parameter may change"
    n = mask.n_selected()
    return (f"mask from Explore: {n['heads']} of {int(mask['heads'].numel())} heads, "
            f"{n['filters']} of {int(mask['filters'].numel())} filters"
            + (" (scored now: the forget set or scoring settings changed)" if rescored else ""))


@dataclass
class RunState:
    """One session's last unlearning run (a copy of the model; the base stays untouched).

    ``full`` is the same request run on the full model when asked for (side by side)."""

    result: Any = None
    forget_ids: list[int] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    before: list[tuple[int, float]] = field(default_factory=list)
    after: list[tuple[int, float]] = field(default_factory=list)
    mask_note: str = ""
    reference_note: str | None = None
    selector: str = "full"
    full: "RunState | None" = None


def _eval_rows(ctx: AppContext, model: torch.nn.Module, ids: list[int], max_samples: int) -> dict[str, float]:
    retain = ctx.retain_rows(ids).shuffle(seed=0)
    task = ctx.task.replace(forget=ctx.rows(ids),
                            retain=retain.select(range(min(max_samples, len(retain)))),
                            test=ctx.task.test.select(range(min(max_samples, len(ctx.task.test)))))
    return dict(evaluate(task, model))


def _one_run(ctx: AppContext, ids: list[int], method: str, selector: str, sparsity: float,
             mask: ModuleMask | None, changes: dict[str, Any], callbacks: Sequence[Callable]):
    result = unlearn(ctx.task, method, selector=selector, sparsity=sparsity,
                     config=app_config(ctx.task, method, selector, changes),
                     forget=ctx.rows(ids), retain=ctx.retain_rows(ids), mask=mask,
                     callbacks=callbacks, progress=True)
    if not result.ok:
        raise RuntimeError(f"the run stopped early: {result.error}")
    return result


def run_unlearn(ctx: AppContext, ids: list[int], method: str, selector: str, sparsity: float,
                lr: float | None, epochs: int, eval_samples: int = 512,
                callbacks: Sequence[Callable] = (), mask: ModuleMask | None = None,
                mask_note: str = "", with_full: bool = False,
                cancel: threading.Event | None = None) -> RunState:
    """Unlearn ``ids`` from a copy of the base model and measure before/after.

    The config is :func:`app_config` (stop when forgotten, the step cap) with the user's
    ``epochs`` and ``lr`` (empty: the preset's). ``mask``: Explore's mask (scored here when
    None and ``selector`` is not ``full``). ``with_full``: the same request on the full model
    too (``run.full``), at the full model's preset lr (the user's ``lr`` is the masked run's).
    ``cancel``: set -> the run raises :class:`Cancelled` at its next step.
    Metrics are reported for the original, the retrained model (only when ``ids`` are among
    the rows it excluded; else ``run.reference_note`` says why not) and the unlearned model.
    """
    changes: dict[str, Any] = {"epochs": int(epochs), "score_max_retain": ctx.retain_for_scoring}
    if lr:
        changes["lr"] = float(lr)
    callbacks = [*callbacks, cancel_callback(cancel)]
    from_mask = mask is not None
    if not METHODS.get(method).maskable:
        selector, mask = "full", None
    result = _one_run(ctx, ids, method, selector, sparsity, mask, changes, callbacks)
    run = RunState(result=result, forget_ids=ids, selector=selector,
                   mask_note=mask_note if (from_mask and mask is not None) else
                   mask_line(result.mask))
    run.before = [ctx.predictions[i] for i in ids]
    run.after = ctx.predict(result.model, ids)
    run.metrics["original"] = _eval_rows(ctx, ctx.task.model, ids, eval_samples)
    run.reference_note = ctx.reference_note(ids)
    if run.reference_note is None:
        run.metrics[ctx.reference_label()] = _eval_rows(ctx, ctx.task.retrained_model, ids,
                                                        eval_samples)
    run.metrics["unlearned"] = _eval_rows(ctx, result.model, ids, eval_samples)
    if with_full and result.mask is not None:
        # the full model at its own preset step, not the mask's: a 90 %-sparse mask takes a
        # ~10x larger lr (the paper's rule), and at the mask's lr the full model lost up to
        # 48 test points on one canary (benchmarks/bench_canaries.py)
        full_changes = {k: v for k, v in changes.items() if k not in ("lr", "eta")}
        full = _one_run(ctx, ids, method, "full", 0.0, None, full_changes, callbacks)
        run.full = RunState(result=full, forget_ids=ids, mask_note=mask_line(None))
        run.full.before = run.before
        run.full.after = ctx.predict(full.model, ids)
        run.metrics["unlearned, full model"] = _eval_rows(ctx, full.model, ids, eval_samples)
    return run


def before_after_table(ctx: AppContext, run: RunState) -> list[list[Any]]:
    rows = ctx.rows(run.forget_ids)
    return [[i, ctx.text_of(r), ctx.label(ctx.label_of(r)), *_toy_cells(ctx, r, canary=False),
             ctx.label(b[0]), round(b[1], 4), ctx.label(a[0]), round(a[1], 4)]
            for i, r, b, a in zip(run.forget_ids, rows, run.before, run.after)]


def metrics_table(run: RunState) -> list[list[Any]]:
    return [[name] + [round(m.get(c, float("nan")), 4) for c in METRIC_COLUMNS]
            for name, m in run.metrics.items()]


def _flipped(run: RunState) -> int:
    return sum(b[0] != a[0] for b, a in zip(run.before, run.after))


def compare_table(run: RunState) -> list[list[Any]]:
    """The lesson in one table (:data:`COMPARE_COLUMNS`): the masked run and the same request
    on the full model, side by side (one row when no full run was made)."""
    base = run.metrics["original"].get("test_acc", float("nan"))
    out = []
    for name, r, key in (("module-aware (Explore's mask)" if run.result.mask is not None
                          else "full model", run, "unlearned"),
                         ("full model (its preset lr)", run.full, "unlearned, full model")):
        if r is None:
            continue
        m = run.metrics[key]
        cfg = r.result.config
        masked = r.result.mask is not None  # None when the config leaves them to the defaults
        step = cfg.eta_for(masked) if r.result.method == "so" else cfg.lr_for(masked)
        out.append([name, f"{step:.0e}", int(r.result.n_changed_params), r.result.stopped_at,
                    r.result.stop_reason, f"{_flipped(r)} of {len(r.forget_ids)}",
                    round(m.get("test_acc", float("nan")) - base, 4),
                    round(m.get("mia", float("nan")), 4)])
    return out


def run_summary(run: RunState) -> str:
    r = run.result
    lines = [f"**{run.selector.upper()}-{r.method.upper()}** ({run.mask_note}): "
             f"{r.n_changed_params:,} parameter entries changed (of {r.n_trainable_params:,} "
             f"trainable), {len(r.history)} steps in {r.seconds:.1f} s, stopped at step "
             f"{r.stopped_at} ({r.stop_reason}); {_flipped(run)} of {len(run.forget_ids)} "
             f"forget predictions changed."]
    if run.reference_note:
        lines.append(run.reference_note)
    return "\n\n".join(lines)


# -- sweep ---------------------------------------------------------------------------------

def sweep_plan(method: str, selectors: Sequence[str], sparsities: Sequence[float]
               ) -> list[tuple[str, float]]:
    """(selector, sparsity) runs of a sweep: a run without a mask (selector ``full``, or a
    method that takes none) does not depend on the sparsity, so it runs once, as ``full`` at
    sparsity 0."""
    plan: list[tuple[str, float]] = []
    for selector in selectors:
        runs = [(selector, float(s)) for s in sparsities] if is_masked(method, selector) \
            else [("full", 0.0)]
        plan += [run for run in runs if run not in plan]
    return plan


def sweep(ctx: AppContext, ids: list[int], method: str, selectors: Sequence[str],
          sparsities: Sequence[float], epochs: int, lr: float | None = None,
          eval_samples: int = 256) -> Iterator[list[dict[str, Any]]]:
    """Run ``method`` at each selector × sparsity (:func:`sweep_plan`) through
    :func:`mape_viz.experiments.run_record`; yield the growing records
    (:data:`SWEEP_COLUMNS`) after each run."""
    changes: dict[str, Any] = {"epochs": int(epochs), "score_max_retain": ctx.retain_for_scoring}
    if lr:
        changes["lr"] = float(lr)
    forget, retain = ctx.rows(ids), ctx.retain_rows(ids)
    records: list[dict[str, Any]] = []
    for selector, s in sweep_plan(method, selectors, sparsities):
        record, _ = run_record(ctx.task, method, selector, s,
                               app_config(ctx.task, method, selector, changes),
                               forget=forget, retain=retain, eval_max_samples=eval_samples)
        records.append({k: record.get(k) for k in SWEEP_COLUMNS})
        yield list(records)


def original_metrics(ctx: AppContext, ids: list[int], eval_samples: int = 256) -> dict[str, float]:
    """The base model's metrics for forgetting ``ids`` (the sweep's reference point)."""
    return _eval_rows(ctx, ctx.task.model, ids, eval_samples)


def sweep_frontier(records: Sequence[Mapping[str, Any]], original: Mapping[str, float]) -> Any:
    """The sweep drawn as efficacy-fidelity frontiers (:func:`mape_viz.viz.frontier`): one
    curve per method x selector through its sparsities (forget accuracy vs test accuracy)."""
    rows = [{"method": r["method"], "selector": r["selector"], "seed": 0,
             "step_size": r["sparsity"], "forget": r["forget_acc"], "test": r["test_acc"],
             "mia": r.get("mia")} for r in records]
    ref = {"forget": original["forget_acc"], "test": original["test_acc"]}
    return viz_frontier(rows, original=ref)


# -- export --------------------------------------------------------------------------------

def export_run(run: RunState, mask: ModuleMask | None = None, folder: str | None = None) -> list[str]:
    """Write the mask (safetensors + JSON), the changed weights and a report to a fresh temp folder.

    Returns the file paths (the app offers them for download). Always a new folder: nothing
    of the user's is overwritten.
    """
    if run is None or run.result is None:
        raise ValueError("run an unlearning job first; there is nothing to export yet")
    out = Path(folder or tempfile.mkdtemp(prefix="mape_viz_export_"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = run.result.save(out / f"unlearn-run-{run.selector}-{run.result.method}-{stamp}")
    # downloads show base names only: each offered file is a copy named by what it is
    # ("run-…": the run's folder, its mask included; "explored-…": the mask shown on Explore)
    offered = out / f"download-{stamp}"
    offered.mkdir()

    def offer(folder: Path, prefix: str) -> list[str]:
        names = []
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            dest = offered / f"{prefix}-{'-'.join(p.relative_to(folder).parts)}"
            shutil.copyfile(p, dest)
            names.append(str(dest))
        return names

    files = offer(Path(run_dir), "run")
    if mask is not None:
        files += offer(Path(save_mask(mask, out / f"explored-mask-{stamp}")), "explored")
    report = out / f"report-{stamp}.json"
    report.write_text(json.dumps({"forget_ids": run.forget_ids, "summary": run.result.summary(),
                                  "metrics": run.metrics,
                                  "before": run.before, "after": run.after}, indent=2, default=str))
    return files + [str(report)]
