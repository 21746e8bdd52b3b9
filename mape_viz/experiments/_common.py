"""Shared pieces of the experiments: task views, one run → one record, evaluation, progress."""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

from torch import nn
from tqdm.auto import tqdm

from .records import score_aliases

#: Called with each record as soon as it is made (e.g. to print or save partial results).
OnRecord = Callable[[dict], None]

#: Methods that never take a module mask (always a full run).
UNMASKED_METHODS = ("rt",)

#: Default methods of the comparison per task kind: the paper's Table 2 (traditional tasks:
#: SO, GA, GD, NPO) and Table 3 (TOFU: GA, GD, DPO, NPO).
DEFAULT_METHODS: dict[str, tuple[str, ...]] = {
    "classification": ("so", "ga", "gd", "npo"),
    "extractive_qa": ("so", "ga", "gd", "npo"),
    "causal_lm": ("ga", "gd", "dpo", "npo"),
    "multiple_choice": ("ga", "gd", "npo"),
}


def default_methods(kind: str) -> tuple[str, ...]:
    """The paper's comparison methods for a task kind (RT and SA are added separately)."""
    return DEFAULT_METHODS.get(kind, ("ga", "gd", "npo"))


def display_name(method: str, selector: str | None) -> str:
    """``SO`` for a full run, ``MAPE-SO`` / ``SURE-GA`` with a mask (as in Table 2)."""
    m = str(method).upper()
    return m if selector in (None, "", "full", "none") else f"{str(selector).upper()}-{m}"


def config_for(base: Any, overrides: Mapping[str, Mapping[str, Any]] | None, method: str,
               selector: str) -> Any:
    """``base`` (an ``UnlearnConfig``) with the ``overrides`` that target this run applied,
    least specific first: ``"full"`` or ``"masked"`` (every unmasked / masked run), then the
    method (``"ga"``), then ``"<method>/<selector>"`` (``"ga/mape"``).

    Example: ``{"full": {"lr": 5e-4}, "masked": {"lr": 5e-3}, "so": {"fisher_max_samples":
    1024}}`` — the paper's rule that module-aware runs take a 10× larger step, with one
    method's extra setting.
    """
    cfg = base
    over = overrides or {}
    masked = selector not in ("full", None) and method not in UNMASKED_METHODS
    for key in ("masked" if masked else "full", method, f"{method}/{selector}"):
        if key in over:
            cfg = cfg.replace(**dict(over[key]))
    return cfg


def check_overrides(overrides: Mapping[str, Mapping[str, Any]] | None) -> None:
    """``ValueError`` for an override key that is neither ``full``, ``masked``, a method nor
    ``method/selector``, or for a field ``UnlearnConfig`` does not have."""
    from ..unlearn import METHODS, UnlearnConfig, selector_names

    for key, fields in (overrides or {}).items():
        method, _, sel = key.partition("/")
        ok = key in ("full", "masked") or (method in METHODS and (not sel or sel in
                                                                   selector_names()))
        if not ok:
            raise ValueError(f"config override target {key!r} is not 'full', 'masked', a "
                             f"method ({', '.join(METHODS.names())}) or 'method/selector'")
        UnlearnConfig().replace(**dict(fields))


class TaskView:
    """A task with some attributes replaced (``model``, ``forget``, ``retain``, ``test``,
    ``extras``, ...); everything else is read from the wrapped task. ``None`` hides a split
    from :func:`mape_viz.metrics.evaluate` (it skips empty splits)."""

    def __init__(self, task: Any, **overrides: Any) -> None:
        self._task = task
        self._overrides = dict(overrides)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._task, name)

    def __repr__(self) -> str:
        return f"TaskView({self._task!r}, overrides={sorted(self._overrides)})"


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
        from datasets import concatenate_datasets

        return concatenate_datasets([a, b])
    return list(a) + list(b)


#: Extra sets that belong to a split (TOFU: ``test`` = real authors + world facts).
SPLIT_OF = {"real_authors": "test", "world_facts": "test"}


def eval_view(task: Any, splits: Sequence[str] | None, forget: Any = None) -> Any:
    """A view of ``task`` that :func:`~mape_viz.metrics.evaluate` scores on ``splits`` only.

    ``splits=None`` keeps every split. Hidden splits are ``None``; for generative tasks the
    ``extras`` are filtered to the kept splits' sets (``forget_perturbed`` ...), so
    ``evaluate`` does not score the others. ``forget`` replaces the forget rows (then the
    forget sets in ``extras``, e.g. ``forget_perturbed``, are dropped: they describe the old
    rows and ``evaluate`` would prefer them).
    """
    over: dict[str, Any] = {}
    if forget is not None:
        over["forget"] = forget
    extras = dict(getattr(task, "extras", None) or {})
    if splits is None:
        if forget is not None:
            extras = {k: v for k, v in extras.items() if not k.startswith("forget")}
        over["extras"] = extras
        return TaskView(task, **over)
    keep = set(splits)
    for s in ("forget", "retain", "test"):
        if s not in keep:
            over[s] = None
    kept = {}
    for k, v in extras.items():
        head = next((s for s in ("forget", "retain", "test", "real_authors", "world_facts")
                     if k == s or k.startswith(s + "_")), None)
        head = SPLIT_OF.get(head, head)  # real authors / world facts are the TOFU test
        if head is None:
            kept[k] = v  # not a split's set (e.g. "idk"): harmless to evaluate
        elif head in keep and not (forget is not None and head == "forget"):
            kept[k] = v
    over["extras"] = kept
    return TaskView(task, **over)


def evaluate_model(task: Any, model: nn.Module, *, splits: Sequence[str] | None = None,
                   max_samples: int | None = None, batch_size: int = 32,
                   forget: Any = None) -> tuple[dict[str, float], float]:
    """(:func:`mape_viz.metrics.evaluate` on the kept ``splits``, seconds) + score aliases."""
    from ..metrics import evaluate

    t0 = time.perf_counter()
    res = dict(evaluate(eval_view(task, splits, forget), model, max_samples=max_samples,
                        batch_size=batch_size))
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


def run_record(task: Any, method: str, selector: str, sparsity: float, config: Any, *,
               seed: int = 0, forget: Any = None, retain: Any = None, device: Any = None,
               eval_splits: Sequence[str] | None = None, eval_max_samples: int | None = None,
               eval_batch_size: int = 32, progress: bool = False,
               extra: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
    """One :func:`mape_viz.unlearn.unlearn` run and its evaluation → (record, result).

    The record has the run's identity (``task``, ``kind``, ``method``, ``selector``,
    ``name``, ``granularity``, ``sparsity``, ``seed``), its cost (``seconds`` = scoring +
    unlearning wall time, ``mask_seconds``, ``unlearn_seconds``, ``eval_seconds``), its size
    (``n_changed_params``, ``n_trainable_params``, ``n_selected_heads``,
    ``n_selected_filters``), the resolved ``lr`` / ``eta``, ``steps``, ``ok`` / ``error``,
    every metric of :func:`mape_viz.metrics.evaluate` and the ``forget`` / ``retain`` /
    ``test`` score aliases. A full run (``selector="full"``) records ``sparsity=0.0``.
    """
    from ..unlearn import as_config, unlearn

    cfg = as_config(config)
    if method in UNMASKED_METHODS:
        selector = "full"
    sp = 0.0 if selector == "full" else float(sparsity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = unlearn(task, method, selector, sp, cfg, forget=forget, retain=retain,
                      progress=False, device=device, seed=seed)
    counts = res.mask.n_selected() if res.mask is not None else {}
    timings = res.meta.get("timings", {})
    rec: dict[str, Any] = {
        "task": getattr(task, "name", None), "kind": getattr(task, "kind", None),
        "method": method, "selector": selector, "name": display_name(method, selector),
        "granularity": cfg.granularity if selector != "full" else "all",
        "sparsity": sp, "seed": seed, "ok": res.ok, "error": res.error,
        "seconds": res.seconds, "mask_seconds": timings.get("mask_seconds"),
        "unlearn_seconds": timings.get("unlearn_seconds"),
        "n_changed_params": res.n_changed_params, "n_trainable_params": res.n_trainable_params,
        "n_selected_heads": counts.get("heads"), "n_selected_filters": counts.get("filters"),
        "lr": res.meta.get("lr"), "eta": res.meta.get("eta"), "steps": len(res.history),
        **dict(extra or {}),
    }
    metrics, secs = evaluate_model(task, res.model, splits=eval_splits,
                                   max_samples=eval_max_samples, batch_size=eval_batch_size)
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


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
