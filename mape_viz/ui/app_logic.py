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

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from datasets import concatenate_datasets

from ..experiments import is_masked, run_record
from ..mask_io import save_mask
from ..metrics import evaluate, predict_proba
from ..scores import SELECTORS, score_modules
from ..tasks import Task, load_task
from ..types import ModuleMask
from ..unlearning import UnlearnConfig, as_config, unlearn
from .explorer import ExplorerState, Scorer, mask_summary as summarize, view_figure

#: The most samples one request may name (a UI guard: every run scores and trains on them).
MAX_FORGET = 64
#: Columns of a sweep record shown in the app (the run records carry more).
SWEEP_COLUMNS = ("method", "selector", "granularity", "sparsity", "forget_acc", "retain_acc",
                 "test_acc", "mia", "seconds")
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

    @classmethod
    def load(cls, task: str = "toy-sentiment", model_dir: str | None = None,
             retain_for_scoring: int | None = None, **options: Any) -> "AppContext":
        """Load (or build and cache) the task; ``model_dir`` swaps in a local safetensors model."""
        if model_dir is not None:
            options["model"] = model_dir
        t = load_task(task, **options)
        if t.kind != "classification":
            raise ValueError(f"the app serves classification tasks; {task!r} is {t.kind!r}")
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

    def canary_ids(self) -> list[int]:
        return [i for i, c in enumerate(self.train["is_canary"]) if c]

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
            return score_modules(self.task.model, self.batches(self.rows(ids)),
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


def sample_table(ctx: AppContext, query: str = "", limit: int = 200) -> list[list[Any]]:
    """Rows of the searchable sample table: id, text, label, rule label, canary, prediction, confidence."""
    q = (query or "").strip().lower()
    out = []
    for i, row in enumerate(ctx.train):
        if q == "canaries" and not row["is_canary"]:
            continue
        if q and q != "canaries" and q not in row["text"].lower():
            continue
        pred, conf = ctx.predictions[i]
        out.append([i, row["text"], ctx.label(row["label"]), ctx.label(row["rule_label"]),
                    bool(row["is_canary"]), ctx.label(pred), round(conf, 4)])
        if len(out) >= limit:
            break
    return out


def prediction_summary(ctx: AppContext, ids: Sequence[int], limit: int = 8) -> str:
    """'#3: predicts **positive** (97.1%); ...' for the first ``limit`` of ``ids``."""
    return "; ".join(f"#{i}: predicts **{ctx.label(ctx.predictions[i][0])}** "
                     f"({ctx.predictions[i][1]:.1%})" for i in list(ids)[:limit])


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

@dataclass
class RunState:
    """One session's last unlearning run (a copy of the model; the base stays untouched)."""

    result: Any = None
    forget_ids: list[int] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    before: list[tuple[int, float]] = field(default_factory=list)
    after: list[tuple[int, float]] = field(default_factory=list)


def _eval_rows(ctx: AppContext, model: torch.nn.Module, ids: list[int], max_samples: int) -> dict[str, float]:
    retain = ctx.retain_rows(ids).shuffle(seed=0)
    task = ctx.task.replace(forget=ctx.rows(ids),
                            retain=retain.select(range(min(max_samples, len(retain)))),
                            test=ctx.task.test.select(range(min(max_samples, len(ctx.task.test)))))
    return dict(evaluate(task, model))


def run_unlearn(ctx: AppContext, ids: list[int], method: str, selector: str, sparsity: float,
                lr: float | None, epochs: int, eval_samples: int = 512,
                callbacks: Sequence[Callable] = ()) -> RunState:
    """Unlearn ``ids`` from a copy of the base model and measure before/after.

    The config is :func:`app_config` with the user's ``epochs`` and ``lr`` (empty: the
    preset's, else the paper default). Metrics (forget/retain/test accuracy and MIA) are
    reported for the original, the retrained model (when the task has one) and the
    unlearned model.
    """
    changes: dict[str, Any] = {"epochs": int(epochs), "score_max_retain": ctx.retain_for_scoring}
    if lr:
        changes["lr"] = float(lr)
    result = unlearn(ctx.task, method, selector=selector, sparsity=sparsity,
                     config=app_config(ctx.task, method, selector, changes),
                     forget=ctx.rows(ids), retain=ctx.retain_rows(ids), callbacks=callbacks,
                     progress=True)
    if not result.ok:
        raise RuntimeError(f"the run stopped early: {result.error}")
    run = RunState(result=result, forget_ids=ids)
    run.before = [ctx.predictions[i] for i in ids]
    run.after = ctx.predict(result.model, ids)
    run.metrics["original"] = _eval_rows(ctx, ctx.task.model, ids, eval_samples)
    if ctx.task.retrained_model is not None:
        run.metrics["retrained (forget = task's canaries)"] = _eval_rows(
            ctx, ctx.task.retrained_model, ids, eval_samples)
    run.metrics["unlearned"] = _eval_rows(ctx, result.model, ids, eval_samples)
    return run


def before_after_table(ctx: AppContext, run: RunState) -> list[list[Any]]:
    rows = ctx.rows(run.forget_ids)
    return [[i, r["text"], ctx.label(r["label"]), ctx.label(r["rule_label"]), ctx.label(b[0]),
             round(b[1], 4), ctx.label(a[0]), round(a[1], 4)]
            for i, r, b, a in zip(run.forget_ids, rows, run.before, run.after)]


def metrics_table(run: RunState) -> list[list[Any]]:
    return [[name] + [round(m.get(c, float("nan")), 4) for c in METRIC_COLUMNS]
            for name, m in run.metrics.items()]


def run_summary(run: RunState) -> str:
    r = run.result
    flipped = sum(b[0] != a[0] for b, a in zip(run.before, run.after))
    return (f"**{r.selector.upper()}-{r.method.upper()}** at sparsity {r.sparsity:g}: "
            f"{r.n_changed_params:,} parameter entries changed (of {r.n_trainable_params:,} "
            f"trainable), {len(r.history)} steps in {r.seconds:.1f} s; "
            f"{flipped} of {len(run.forget_ids)} forget predictions changed.")


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
    run_dir = run.result.save(out / f"run-{stamp}")
    files = sorted(str(p) for p in Path(run_dir).rglob("*") if p.is_file())
    if mask is not None:
        mask_dir = save_mask(mask, out / f"explore-mask-{stamp}")
        files += sorted(str(p) for p in Path(mask_dir).iterdir() if p.is_file())
    report = out / f"report-{stamp}.json"
    report.write_text(json.dumps({"forget_ids": run.forget_ids, "summary": run.result.summary(),
                                  "metrics": run.metrics,
                                  "before": run.before, "after": run.after}, indent=2, default=str))
    return files + [str(report)]
