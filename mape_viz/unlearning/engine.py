"""``unlearn()``: one unlearning run — data, mask, the method's runner, result
(docs/design.md §5).

Flow, top to bottom:

1. :func:`~mape_viz.unlearning.run_data.resolve_data` turns a ``Task`` or a model + batches into
   a :class:`~mape_viz.unlearning.run_data.RunData` and checks the method fits the task kind;
2. the model is deep-copied (the input is never modified);
3. the module mask is made (:func:`make_mask`): ``full``: none; ``mape``: MAPE scores with
   the method's objective, refined by ``config.refine``; ``sure`` / ``random`` /
   ``magnitude``: baseline scores, not refined. Methods that are not ``maskable`` (``rt``)
   always run full;
4. the stop rule and guard of the config become a
   :class:`~mape_viz.unlearning.stopping.Monitor` (none by default);
5. the method's **runner** (registered with it in :mod:`~mape_viz.unlearning.methods`) performs
   the update on the copy, checked by the monitor, and says what changed and why it stopped —
   the engine does not know which kind of method it runs;
6. the copy is handed back like the input came (same ``requires_grad`` flags, eval mode) in an
   :class:`~mape_viz.unlearning.result.UnlearnResult` with timings, peak memory
   (:mod:`~mape_viz.unlearning.memory`), ``stopped_at`` and ``stop_reason``.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..distributed import process_info
from ..gradients import scoring_autocast
from ..scores import SELECTORS, WANDA_SELECTOR, score_modules
from ..selection import select_modules
from ..sitemaps import get_sites
from ..types import ModuleMask, ModuleScores
from ..wanda import restrict_to_wanda
from .config import UnlearnConfig, as_config
from .finetune import Callback
from .memory import MemoryMeter
from .methods import METHODS, Run
from .result import UnlearnResult, count_changed, fingerprint
from .run_data import RunData, is_task, resolve_data
from .stopping import build_monitor

#: Selector name accepted by ``unlearn`` besides the score selectors of ``mape_viz.scores``:
#: no mask, every parameter is updated.
FULL = "full"


def selector_names() -> list[str]:
    """``full`` plus every registered score selector (``mape``, ``sure``, ``random``, ...)."""
    return [FULL] + SELECTORS.names()


def make_mask(model: nn.Module, data: RunData, objective: str, selector: str, sparsity: float,
              cfg: UnlearnConfig, seed: int = 0, progress: bool = False
              ) -> tuple[ModuleScores, ModuleMask]:
    """Score modules with ``selector`` (MAPE: ``cfg.objective`` when the config sets one, else
    the method's objective) and select the top ``1 − sparsity`` per kind (the lowest for
    ``mlf-argmax``); MAPE masks are refined by ``cfg.refine``. ``mape+wanda`` then keeps,
    inside the selected modules, the entries with the largest Wanda score on the forget set
    at ``cfg.wanda_sparsity`` (:mod:`mape_viz.wanda`). The scoring passes run under
    ``cfg.score_autocast`` (``off`` / ``bf16`` / ``fp16``; docs/design.md §10)."""
    if data.score_retain is None:
        raise ValueError("scoring needs a retain set: pass retain=")
    objective = cfg.objective or objective
    mape = selector in ("mape", WANDA_SELECTOR)
    refine = cfg.refine if mape and cfg.refine not in (None, "none") else None
    with scoring_autocast(cfg.score_autocast):
        scores = score_modules(model, data.score_forget(), data.score_retain(),
                               objective=objective, selector=selector, kind=data.kind,
                               seed=seed, progress=progress)
        mask = select_modules(scores, sparsity=sparsity, granularity=cfg.granularity,
                              refine=refine, seed=seed)
    if selector == WANDA_SELECTOR:
        mask = restrict_to_wanda(model, mask, data.score_forget(),
                                 cfg.wanda_sparsity, progress)
    return scores, mask


def unlearn(task_or_model: Any, method: str, selector: str = "mape", sparsity: float = 0.9,
            config: UnlearnConfig | Mapping[str, Any] | None = None, *, forget: Any = None,
            retain: Any = None, kind: str | None = None, mask: ModuleMask | None = None,
            callbacks: Sequence[Callback] = (), progress: bool = False,
            device: str | torch.device | None = None, seed: int = 0) -> UnlearnResult:
    """Unlearn a forget set from a model, optionally updating only selected modules.

    Args:
        task_or_model: a ``Task`` (``mape_viz.tasks.load_task``) or a model (then pass
            ``forget`` and, for most methods, ``retain`` as iterables of batches).
        method: a name in ``METHODS``: ``so``, ``ga``, ``gd``, ``npo``, ``dpo`` (causal LM
            only), ``sa``, ``rt``.
        selector: ``full`` (no mask), ``mape`` (MLR scores for ``so``, MLF for fine-tuning
            methods; refined by ``config.refine``), ``sure``, ``random``, ``magnitude``.
            Ignored (with a warning) for ``rt``, which always retrains fully.
        sparsity: fraction of modules (per kind) left frozen, in [0, 1).
        config: ``UnlearnConfig`` (used as is), or a dict of its fields laid over the defaults
            (the paper's, plus the ``library`` presets of :mod:`mape_viz.presets` for a known
            embedded task), or None.
        forget, retain: override the task's sets (a ``Dataset`` or batches), or the data for a
            bare model. Batches: dicts with ``input_ids`` (B, T), ``attention_mask`` (B, T) and
            ``labels`` ((B,) classes or (B, T) tokens with -100) or QA positions; DPO batches
            also carry ``idk_input_ids`` / ``idk_attention_mask`` / ``idk_labels``.
        kind: task kind (inferred when None).
        mask: use this ``ModuleMask`` instead of scoring (``selector`` is recorded as
            ``"given"``).
        callbacks: ``cb(step, model, row) -> dict | None`` after every update; returned
            metrics are merged into that history row.
        progress: tqdm bars.
        device: run on this device (default: the model's; under a launcher ``"cuda"``
            without an index is this process's GPU).
        seed: seeds shuffling, random selectors and dropout.

    Under ``accelerate launch`` every process must call ``unlearn`` with the same arguments:
    scoring, the fine-tuning steps (rows of each global batch per rank, gradients summed) and
    SO's sums are split across the processes, and every process returns the same result as
    one process would (docs/design.md §10); ``result.save`` then writes on rank 0 only.

    Returns:
        an :class:`UnlearnResult`; ``result.ok`` is False if a NaN/inf loss stopped the run
        (``result.model`` then holds the last good state; a ``RuntimeWarning`` says so).
        ``result.stopped_at`` / ``result.stop_reason`` say after how many updates and why the
        run ended (``config.stop_when`` / ``guard_drop``: docs/design.md §5).

    Raises:
        ValueError: unknown method/selector, a method that does not fit the task (the message
            lists the methods that do), empty data, sparsity outside [0, 1), a stop rule or
            guard the run cannot check (no retrained model, no held-out rows, wrong kind).
    """
    if isinstance(sparsity, bool) or not (isinstance(sparsity, (int, float)) and 0.0 <= float(sparsity) < 1.0):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if mask is not None:
        selector = "given"
    elif selector not in selector_names():
        raise ValueError(f"unknown selector {selector!r}; known: {', '.join(selector_names())}")
    maskable = METHODS.get(method).maskable
    masked = mask is not None or (selector != FULL and maskable)
    cfg = as_config(config, task_or_model if is_task(task_or_model) else None, method=method,
                    selector=selector, masked=masked)
    data, m = resolve_data(task_or_model, method, cfg, forget=forget, retain=retain, kind=kind,
                           seed=seed)
    if not m.maskable and selector != FULL:
        warnings.warn(f"method {m.name!r} retrains the whole model; selector {selector!r} "
                      "ignored", stacklevel=2)
        selector, mask = FULL, None
    if "retain" in m.needs and data.retain is None:
        raise ValueError(f"method {m.name!r} needs a retain set: pass retain=")

    model_in = data.model
    dev = run_device(device, model_in)
    torch.manual_seed(seed)
    meter = MemoryMeter(dev)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    work = copy.deepcopy(model_in).to(dev)
    work.train(cfg.train_mode)

    scores = None
    if mask is None and selector != FULL:
        t0 = time.perf_counter()
        scores, mask = make_mask(work, data, m.objective, selector, sparsity, cfg, seed, progress)
        timings["mask_seconds"] = time.perf_counter() - t0
    meta: dict[str, Any] = {"kind": data.kind, "base_fingerprint": fingerprint(model_in),
                            "family": _family(model_in), "task": getattr(data.task, "name", None)}

    t0 = time.perf_counter()
    monitor = build_monitor(cfg, data, dev, seed)
    outcome = m.runner(Run(
        method=m, model=work, kind=data.kind, forget=data.forget, retain=data.retain,
        fisher_retain=data.fisher_retain,
        reference=_reference(model_in, dev) if "reference" in m.needs else None,
        retrained=data.retrained, config=cfg, mask=mask, device=dev, callbacks=callbacks,
        progress=progress, monitor=monitor))
    timings.update(outcome.timings)
    timings["unlearn_seconds"] = time.perf_counter() - t0
    if monitor is not None:
        meta["stop"] = monitor.summary()
        timings["check_seconds"] = meta["stop"]["check_seconds"]
    work = outcome.model
    # hand the model back like the input came: same requires_grad flags, eval mode
    flags = {n: p.requires_grad for n, p in model_in.named_parameters()}
    for n, p in work.named_parameters():
        p.requires_grad_(flags.get(n, p.requires_grad))
    work.eval()
    peak, peak_kind = meter.peak()
    seconds = time.perf_counter() - t_start
    if outcome.error:
        warnings.warn(f"unlearning stopped early: {outcome.error}", RuntimeWarning, stacklevel=2)
    meta.update(outcome.meta, timings=timings)
    return UnlearnResult(
        model=work, mask=mask, history=outcome.history, seconds=seconds,
        peak_memory_bytes=peak, peak_memory_kind=peak_kind,
        n_changed_params=count_changed(model_in, work), n_trainable_params=outcome.n_trainable,
        config=cfg, method=m.name, selector=selector, sparsity=float(sparsity), seed=seed,
        ok=outcome.error is None, error=outcome.error, scores=scores, changes=outcome.changes,
        meta=meta, stopped_at=outcome.stopped_at, stop_reason=outcome.stop_reason)


# ---------------------------------------------------------------------------------------------
# Helpers


def run_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    """Where a run happens: ``device`` (default: the model's). Under a launcher (one device
    per process) a device type without an index — ``"cuda"`` — means this process's device
    (``cuda:<local rank>``), so that processes do not share GPU 0 (docs/design.md §10)."""
    dev = torch.device(device) if device is not None else device_of(model)
    info = process_info()
    if info.distributed and dev.index is None and dev.type == info.device.type \
            and info.device.index is not None:
        return info.device
    return dev


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _reference(model_in: nn.Module, dev: torch.device) -> nn.Module:
    """π_ref: the input model itself when it can be used as is (eval mode, same device) —
    it is never written to — else a frozen copy."""
    if not model_in.training and device_of(model_in) == dev:
        return model_in
    ref = copy.deepcopy(model_in).to(dev).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _family(model: nn.Module) -> str | None:
    """The model's site-map family, or None for a model ``get_sites`` cannot read (full runs
    accept any model: no site map, not even a Hugging Face config)."""
    try:
        return get_sites(model).family
    except Exception:  # noqa: BLE001 — whatever the reason, the run just records no family
        return None
