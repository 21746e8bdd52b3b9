"""Shared pieces of the experiments (docs/design.md §6): one run → one record
(:func:`run_record`), evaluation on chosen splits (:func:`evaluate_model`), which config a run
gets (:func:`config_for`), the paper's comparison defaults, progress bars."""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

from datasets import concatenate_datasets
from torch import nn
from tqdm.auto import tqdm

from ..metrics import evaluate
from ..presets import resolve_targets
from ..tasks import SPLIT_NAMES, Task
from ..unlearning import METHODS, UnlearnConfig, as_config, selector_names, unlearn
from .records import score_aliases

#: Called with each record as soon as it is made (e.g. to print or save partial results).
OnRecord = Callable[[dict], None]

#: The paper's comparison methods: Table 2 (traditional tasks) and Table 3 (TOFU).
TABLE2_METHODS = ("so", "ga", "gd", "npo")
TABLE3_METHODS = ("ga", "gd", "dpo", "npo")
#: Default methods of the comparison per task kind; multiple choice (also the fallback for
#: any other kind) drops DPO: WMDP / MMLU have no "I don't know" answers.
DEFAULT_METHODS: dict[str, tuple[str, ...]] = {
    "classification": TABLE2_METHODS,
    "extractive_qa": TABLE2_METHODS,
    "causal_lm": TABLE3_METHODS,
    "multiple_choice": tuple(m for m in TABLE3_METHODS if m != "dpo"),
}
#: The comparison's selectors per method (Table 2: all parameters, SURE, MAPE).
COMPARE_SELECTORS = ("full", "sure", "mape")

#: Override targets besides methods and ``method/selector`` (see :func:`config_for`).
GROUP_TARGETS = ("*", "full", "masked")


def default_methods(kind: str) -> tuple[str, ...]:
    """The paper's comparison methods for a task kind (RT and SA are added separately)."""
    return DEFAULT_METHODS.get(kind, DEFAULT_METHODS["multiple_choice"])


def display_name(method: str, selector: str | None) -> str:
    """``SO`` for a full run, ``MAPE-SO`` / ``SURE-GA`` with a mask (as in Table 2)."""
    m = str(method).upper()
    return m if selector in (None, "", "full", "none") else f"{str(selector).upper()}-{m}"


def maskable(method: str) -> bool:
    """Whether a module mask applies to ``method`` (the methods registry says; not RT)."""
    return METHODS.get(method).maskable


def is_masked(method: str, selector: str | None) -> bool:
    """Whether a (method, selector) run updates a module-masked subset of the parameters."""
    return selector not in ("full", None) and maskable(method)


def config_for(base: UnlearnConfig, overrides: Mapping[str, Mapping[str, Any]] | None,
               method: str, selector: str) -> UnlearnConfig:
    """``base`` with the ``overrides`` that target this run applied, least specific first
    (:func:`mape_viz.presets.run_targets`, the order of the presets table): ``"*"`` (every
    run), ``"full"`` or ``"masked"`` (every unmasked / masked run), then the method
    (``"ga"``), then ``"<method>/<selector>"`` (``"ga/mape"``).

    Example: ``{"full": {"lr": 5e-4}, "masked": {"lr": 5e-3}, "so": {"fisher_max_samples":
    1024}}`` — the paper's rule that module-aware runs take a 10× larger step, with one
    method's extra setting.
    """
    values = resolve_targets(overrides, method, selector, is_masked(method, selector))
    return base.replace(**values) if values else base


def check_overrides(overrides: Mapping[str, Mapping[str, Any]] | None) -> None:
    """``ValueError`` for an override key that is neither ``*``, ``full``, ``masked``, a
    method nor ``method/selector``, or for a field ``UnlearnConfig`` does not have."""
    for key, fields in (overrides or {}).items():
        method, _, sel = key.partition("/")
        ok = key in GROUP_TARGETS or (method in METHODS and (not sel or sel in
                                                              selector_names()))
        if not ok:
            raise ValueError(f"config override target {key!r} is not 'full', 'masked', "
                             f"'*' (every run), a method ({', '.join(METHODS.names())}) or "
                             "'method/selector'")
        UnlearnConfig().replace(**dict(fields))


def subset(ds: Any, n: int, seed: int) -> tuple[Any, Any]:
    """A seeded random ``n``-row subset of a dataset and the rest, both as datasets
    (``.select``) when possible, else lists. Row order inside each part is preserved."""
    idx = list(range(len(ds)))
    pick = sorted(random.Random(seed).sample(idx, n))
    rest = sorted(set(idx) - set(pick))
    if hasattr(ds, "select"):
        return ds.select(pick), ds.select(rest)
    return [ds[i] for i in pick], [ds[i] for i in rest]


def concat(a: Any, b: Any) -> Any:
    """Rows of ``a`` then ``b`` (datasets with the same columns, or lists)."""
    if hasattr(a, "select") and hasattr(b, "select"):
        return concatenate_datasets([a, b])
    return list(a) + list(b)


#: Extra sets that belong to a split (TOFU: ``test`` = real authors + world facts).
SPLIT_OF = {"real_authors": "test", "world_facts": "test"}


def split_of_extra(name: str) -> str | None:
    """The split an ``extras`` set describes (``forget_perturbed`` -> ``forget``,
    ``world_facts`` -> ``test``), or ``None`` for a set of no split (``idk``)."""
    head = next((s for s in (*SPLIT_NAMES, *SPLIT_OF) if name == s or name.startswith(s + "_")),
                None)
    return SPLIT_OF.get(head, head)


def require_task(task: Any) -> Task:
    """``task`` itself; ``TypeError`` unless it is a :class:`~mape_viz.tasks.Task`."""
    if not isinstance(task, Task):
        raise TypeError(f"experiments take a mape_viz.tasks.Task (load_task, load_local_task "
                        f"or Task(...)), got {type(task).__name__}")
    return task


def eval_view(task: Task, splits: Sequence[str] | None, forget: Any = None,
              retain: Any = None) -> Task:
    """``task`` as :func:`~mape_viz.metrics.evaluate` should see it to score ``splits`` only.

    ``splits=None`` keeps every split. The other splits are set to ``None`` (``evaluate``
    skips them) and the ``extras`` that describe them are dropped (``forget_perturbed`` ...),
    so ``evaluate`` does not score them. ``forget`` / ``retain`` replace those rows; then the
    extras of that split are dropped too: they describe the old rows and ``evaluate`` would
    prefer them.
    """
    require_task(task)
    replaced = {s: rows for s, rows in (("forget", forget), ("retain", retain))
                if rows is not None}
    keep = set(SPLIT_NAMES if splits is None else splits)
    changes: dict[str, Any] = {s: None for s in SPLIT_NAMES if s not in keep}
    changes.update(replaced)
    extras = {}
    for k, v in task.extras.items():
        owner = split_of_extra(k)
        if owner is None or (owner in keep and owner not in replaced):
            extras[k] = v  # a set of no split (e.g. "idk") is harmless to evaluate
    return task.replace(**changes, extras=extras)


def evaluate_model(task: Task, model: nn.Module, *, splits: Sequence[str] | None = None,
                   max_samples: int | None = None, batch_size: int = 32,
                   forget: Any = None, retain: Any = None) -> tuple[dict[str, float], float]:
    """(:func:`mape_viz.metrics.evaluate` on the kept ``splits``, with ``forget`` /
    ``retain`` rows replaced if given (see :func:`eval_view`), + the score aliases; seconds)."""
    t0 = time.perf_counter()
    res = dict(evaluate(eval_view(task, splits, forget, retain), model,
                        max_samples=max_samples, batch_size=batch_size))
    res.update(score_aliases(res))
    return res, time.perf_counter() - t0


def prefixed(metrics: Mapping[str, Any], prefix: str, splits: Sequence[str] = ("forget",)
             ) -> dict[str, Any]:
    """Metrics of the given split(s) renamed ``<prefix>_<metric>``: e.g. ``forget_acc`` of a
    held-out view -> ``heldout_acc``; the ``forget`` alias -> ``heldout``."""
    out = {}
    for k, v in metrics.items():
        for s in splits:
            if k == s:
                out[prefix] = v
            elif k.startswith(s + "_"):
                out[f"{prefix}_{k[len(s) + 1:]}"] = v
    return out


def run_record(task: Task, method: str, selector: str, sparsity: float, config: Any, *,
               seed: int = 0, forget: Any = None, retain: Any = None, device: Any = None,
               eval_splits: Sequence[str] | None = None, eval_max_samples: int | None = None,
               eval_batch_size: int = 32, progress: bool = False,
               extra: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
    """One :func:`mape_viz.unlearning.unlearn` run from ``task.model`` and its evaluation →
    (record, :class:`~mape_viz.unlearning.UnlearnResult`). The one place that runs and records a
    (method, selector, sparsity): the sweep, the comparison and the app's sweep call it.

    Args:
        task: a :class:`~mape_viz.tasks.Task`, possibly a ``task.replace(...)`` variant.
        method, selector, sparsity: the run (a method that takes no mask, e.g. ``rt``, runs
            with selector ``full``; a full run records ``sparsity=0.0``).
        config: ``UnlearnConfig``, dict (over the paper defaults) or ``None``.
        seed: the run's seed.
        forget, retain: other rows to unlearn / keep (datasets batched by the task's
            collator), evaluated in place of the task's (their ``extras`` dropped). Prefer
            these to ``task.replace(forget=...)`` when the rows are not the task's own split:
            RT then retrains instead of returning ``task.retrained_model``.
        device: run on this device (default: the model's).
        eval_splits: evaluate only these splits (``None``: all; MIA needs all three).
        eval_max_samples: evaluate at most this many rows per split (the first ones).
        eval_batch_size: rows per evaluation forward pass.
        progress: unused (kept for callers that pass it; runs show no bar).
        extra: fields added to the record as they are (e.g. ``{"experiment": "sweep"}``).

    Record keys:
        identity: ``task``, ``kind``, ``method``, ``selector``, ``name`` (``MAPE-GA``),
        ``granularity`` (``"all"`` for a full run), ``sparsity``, ``seed``;
        outcome: ``ok``, ``error``;
        cost: ``seconds`` (scoring + unlearning wall time), ``mask_seconds``,
        ``unlearn_seconds``, ``eval_seconds``;
        size: ``n_changed_params``, ``n_trainable_params``, ``n_selected_heads``,
        ``n_selected_filters`` (``None`` for a full run);
        settings: ``lr``, ``eta`` (as resolved by the run), ``steps`` (updates in the
        returned model), ``stopped_at``, ``stop_reason`` (docs/design.md §5);
        then ``extra``, every metric of :func:`mape_viz.metrics.evaluate` (``forget_acc``,
        ``mia`` ...) and the ``forget`` / ``retain`` / ``test`` score aliases.
    """
    require_task(task)
    cfg = as_config(config)
    if not maskable(method):
        selector = "full"
    sp = 0.0 if selector == "full" else float(sparsity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = unlearn(task, method, selector, sp, cfg, forget=forget, retain=retain,
                      progress=False, device=device, seed=seed)
    counts = res.mask.n_selected() if res.mask is not None else {}
    timings = res.meta.get("timings", {})
    rec: dict[str, Any] = {
        "task": task.name, "kind": task.kind,
        "method": method, "selector": selector, "name": display_name(method, selector),
        "granularity": cfg.granularity if selector != "full" else "all",
        "sparsity": sp, "seed": seed, "ok": res.ok, "error": res.error,
        "seconds": res.seconds, "mask_seconds": timings.get("mask_seconds"),
        "unlearn_seconds": timings.get("unlearn_seconds"),
        "n_changed_params": res.n_changed_params, "n_trainable_params": res.n_trainable_params,
        "n_selected_heads": counts.get("heads"), "n_selected_filters": counts.get("filters"),
        "lr": res.meta.get("lr"), "eta": res.meta.get("eta"), "steps": res.steps,
        "stopped_at": res.stopped_at, "stop_reason": res.stop_reason,
        **dict(extra or {}),
    }
    metrics, secs = evaluate_model(task, res.model, splits=eval_splits,
                                   max_samples=eval_max_samples, batch_size=eval_batch_size,
                                   forget=forget, retain=retain)
    rec["eval_seconds"] = secs
    rec.update(metrics)
    return rec, res


@contextlib.contextmanager
def bar(total: int | None, desc: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar (a no-op object when ``enabled`` is False)."""
    b = tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
    try:
        yield b
    finally:
        b.close()
