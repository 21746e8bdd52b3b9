"""What the Gradio app does, as plain functions over library calls (no Gradio import).

``app.py`` lays out the page and binds these handlers; tests call them directly. The base model
is loaded once (``AppContext``) and never modified: scoring only reads it, and every unlearning
run works on a copy (``mape_viz.unlearn.unlearn`` deep-copies), kept per session in
``gr.State`` as a ``RunState``. Nothing typed into the UI is used as a path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .scores import SELECTORS, score_modules
from .selection import select_modules
from .types import ModuleMask, ModuleScores

REFINES = ("greedy", "converge", "none")
GRANULARITIES = ("both", "heads", "filters")
OBJECTIVES = {"MLF (for GA/GD/NPO)": "mlf", "MLR (for second-order)": "mlr"}
MAX_FORGET = 64


def weights_checksum(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter's bytes, in name order — proves the base model is untouched."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class AppContext:
    """Everything loaded once per server.

    Attributes:
        task: the loaded ``Task`` (its model is the base model, never modified).
        train: every training row (the task's forget ∪ retain), with ``idx``.
        predictions: per training row ``(predicted label, confidence of the prediction)``.
        retain_for_scoring: retain samples used for scores in the app (a seeded subsample).
        checksum: weights checksum of the base model at load time.
    """

    task: Any
    train: Any
    predictions: list[tuple[int, float]]
    retain_for_scoring: int = 256
    checksum: str = ""

    @classmethod
    def load(cls, task: str = "toy-sentiment", model_dir: str | None = None,
             retain_for_scoring: int = 256, **options: Any) -> "AppContext":
        """Load (or build and cache) the task; ``model_dir`` swaps in a local safetensors model."""
        from datasets import concatenate_datasets

        from .tasks import load_task

        if model_dir is not None:
            options["model"] = model_dir
        t = load_task(task, **options)
        if t.kind != "classification":
            raise ValueError(f"the app serves classification tasks; {task!r} is {t.kind!r}")
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
        from .metrics.evaluate import predict_proba

        if not ids:
            return []
        probs, _ = predict_proba(model, self.batches(self.rows(ids), 64))
        return [(int(p.argmax()), float(p.max())) for p in probs]

    def canary_ids(self) -> list[int]:
        return [i for i, c in enumerate(self.train["is_canary"]) if c]


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
    names = ctx.task.label_names or ["0", "1"]
    out = []
    for i, row in enumerate(ctx.train):
        if q == "canaries" and not row["is_canary"]:
            continue
        if q and q != "canaries" and q not in row["text"].lower():
            continue
        pred, conf = ctx.predictions[i]
        out.append([i, row["text"], names[row["label"]], names[row["rule_label"]],
                    bool(row["is_canary"]), names[pred], round(conf, 4)])
        if len(out) >= limit:
            break
    return out


# -- explore -------------------------------------------------------------------------------

@dataclass
class ExploreState:
    """Per-session cache of scores, so slider moves only re-select and redraw.

    Attributes:
        forget_ids: the samples the scores are for.
        scores: ``{(objective, selector): ModuleScores}``.
        key: the entry shown now.
        mask: the last selection drawn.
    """

    forget_ids: list[int] = field(default_factory=list)
    scores: dict[tuple[str, str], ModuleScores] = field(default_factory=dict)
    key: tuple[str, str] | None = None
    mask: ModuleMask | None = None


def compute_scores(ctx: AppContext, state: ExploreState | None, ids: list[int], objective: str,
                   selector: str, seed: int = 0) -> ExploreState:
    """Score the model's modules for forgetting ``ids``; reuses cached scores for the same key."""
    SELECTORS.get(selector)
    state = state if state is not None and state.forget_ids == ids else ExploreState(forget_ids=ids)
    key = (objective, selector)
    if key not in state.scores:
        forget = ctx.batches(ctx.rows(ids))
        retain_ds = ctx.retain_rows(ids).shuffle(seed=seed).select(
            range(min(ctx.retain_for_scoring, len(ctx.train) - len(ids))))
        state.scores[key] = score_modules(ctx.task.model, forget, ctx.batches(retain_ds),
                                          objective=objective, selector=selector, seed=seed,
                                          progress=True)
    state.key = key
    return state


def select(state: ExploreState, sparsity: float, granularity: str, refine: str) -> ModuleMask:
    """Re-select from cached scores (no model pass)."""
    if state is None or state.key is None:
        raise ValueError("compute scores first (press 'Compute scores')")
    scores = state.scores[state.key]
    state.mask = select_modules(scores, sparsity=sparsity, granularity=granularity,
                                refine=None if refine == "none" else refine)
    return state.mask


def explore_figures(state: ExploreState) -> dict[str, Any]:
    """The explore tab's figures for the current scores and mask."""
    from . import viz

    scores = state.scores[state.key]
    mask = state.mask
    return {"heads": viz.head_heatmap(scores, mask), "filters": viz.filter_view(scores, mask),
            "per_layer": viz.selected_per_layer(mask), "swaps": viz.swap_changes(mask)}


def mask_summary(state: ExploreState) -> str:
    mask, scores = state.mask, state.scores[state.key]
    n = mask.n_selected()
    gain = {k: float((mask.cost_before[k] - mask.cost_after[k]).sum()) if k in mask.cost_before else 0.0
            for k in ("heads", "filters")}
    return (f"**{scores.selector}** ({scores.objective}) scores for {len(state.forget_ids)} sample(s): "
            f"{n['heads']} of {scores.heads.numel()} heads and {n['filters']} of "
            f"{scores.filters.numel()} filters selected; greedy swaps: {len(mask.swaps)} "
            f"(layer cost lowered by {gain['heads']:.3g} on heads, {gain['filters']:.3g} on filters).")


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
    from .metrics.evaluate import evaluate

    retain = ctx.retain_rows(ids).shuffle(seed=0).select(range(min(max_samples, len(ctx.train) - len(ids))))
    task = dataclasses.replace(ctx.task, forget=ctx.rows(ids), retain=retain)
    test = ctx.task.test.select(range(min(max_samples, len(ctx.task.test))))
    task = dataclasses.replace(task, test=test)
    return dict(evaluate(task, model))


def run_unlearn(ctx: AppContext, ids: list[int], method: str, selector: str, sparsity: float,
                lr: float | None, epochs: int, eval_samples: int = 512,
                callbacks: Sequence[Callable] = ()) -> RunState:
    """Unlearn ``ids`` from a copy of the base model and measure before/after.

    Metrics (forget/retain/test accuracy and MIA) are reported for the original, the
    retrained model (when the task has one) and the unlearned model.
    """
    from .unlearn import unlearn

    # A constant lr: the app's defaults (app.py) were tuned with it; the engine's task
    # defaults for the canary bench decay it linearly over longer runs.
    config = {"epochs": int(epochs), "batch_size": max(1, min(len(ids), 16)),
              "score_max_retain": ctx.retain_for_scoring, "lr_schedule": "constant"}
    if lr:
        config["lr"] = float(lr)
    result = unlearn(ctx.task, method, selector=selector, sparsity=sparsity, config=config,
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
    names = ctx.task.label_names or ["0", "1"]
    rows = ctx.rows(run.forget_ids)
    return [[i, r["text"], names[r["label"]], names[r["rule_label"]], names[b[0]], round(b[1], 4),
             names[a[0]], round(a[1], 4)]
            for i, r, b, a in zip(run.forget_ids, rows, run.before, run.after)]


METRIC_COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia", "mia_auc")


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

def sweep(ctx: AppContext, ids: list[int], method: str, selectors: Sequence[str],
          sparsities: Sequence[float], epochs: int, lr: float | None = None,
          eval_samples: int = 256) -> Iterator[list[dict[str, Any]]]:
    """Run ``method`` at each sparsity × selector; yield the growing tidy records after each run."""
    records: list[dict[str, Any]] = []
    for selector in selectors:
        for s in sparsities:
            run = run_unlearn(ctx, ids, method, selector, float(s), lr, epochs, eval_samples)
            m = run.metrics["unlearned"]
            records.append({"method": method, "selector": selector, "granularity": "both",
                            "sparsity": float(s), "forget_acc": m.get("forget_acc"),
                            "retain_acc": m.get("retain_acc"), "test_acc": m.get("test_acc"),
                            "mia": m.get("mia"),
                            "seconds": run.result.seconds})
            yield list(records)


# -- export --------------------------------------------------------------------------------

def export_run(run: RunState, mask: ModuleMask | None = None, folder: str | None = None) -> list[str]:
    """Write the mask (safetensors + JSON), the changed weights and a report to a fresh temp folder.

    Returns the file paths (the app offers them for download). Always a new folder: nothing
    of the user's is overwritten.
    """
    from .mask_io import save_mask

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
