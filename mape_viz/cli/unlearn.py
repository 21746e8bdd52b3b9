"""``mape-viz unlearn``: one unlearning run, written to a run folder (docs/design.md §9).

    mape-viz unlearn --task toy-sentiment --task-option forget=canaries \\
        --method npo --selector mape --sparsity 0.9 --out runs/npo
    mape-viz unlearn --model MODEL_DIR --data DATA_DIR --method ga --lr 1e-4

Every ``UnlearnConfig`` field is a flag; the ``library`` presets of an embedded task and the
paper defaults fill in the rest (docs/design.md §8).

The run folder is :func:`mape_viz.unlearning.result.save_run`'s, and its ``metrics.json``
also holds the evaluation of each model side by side, one dict of metrics per model (the
task kind's, :func:`mape_viz.metrics.evaluate`)::

    "original":  the model before unlearning
    "unlearned": the unlearned model (also under "metrics", as in every run folder)
    "retrained": the retrained reference, only when the task built one (--retrained)

``--no-eval`` leaves all three out. The folder is written atomically: complete or absent.

Under ``accelerate launch`` (docs/design.md §10) rank 0 loads the task first (the others then
read its caches), each process runs on its own device, only rank 0 evaluates and writes the
folder, and the other ranks only take part in the collective save.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from ..choices import describe, list_methods, list_selectors
from ..distributed import main_process_first, process_info
from ..mask_io import load_mask
from ..metrics import evaluate
from ..unlearning import UnlearnConfig
from ..unlearning.result import METRICS, atomic_dir
from ._flags import UsageError, add_dataclass_flags, dataclass_overrides
from ._task_args import add_task_arguments, task_from_arguments

# The package itself, not its ``unlearn`` function bound at import: the run looks the function
# up when it starts, so a test can stand in for it (tests/test_unlearn.py interrupts a run by
# patching ``mape_viz.unlearning.unlearn``).
unlearning = importlib.import_module("mape_viz.unlearning")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``unlearn`` parser to ``sub`` (argparse sub-parsers); ``func`` runs it."""
    methods = "; ".join(f"{n}: {describe('method', n)}" for n in list_methods())
    p = sub.add_parser(
        "unlearn", help="unlearn a forget set (one run, written to a run folder)",
        description="Unlearn a forget set from a model with a method and a module selector; "
                    f"writes config.json, mask/, metrics.json and weights.safetensors. Methods: {methods}.")
    add_task_arguments(p)
    run = p.add_argument_group("run")
    run.add_argument("--method", required=True, help=f"one of: {', '.join(list_methods())}")
    run.add_argument("--selector", default="mape",
                     help=f"{' | '.join(list_selectors())} (default: %(default)s)")
    run.add_argument("--sparsity", type=float, default=0.9,
                     help="fraction of modules frozen (default: %(default)s)")
    run.add_argument("--mask", help="use a saved mask folder instead of scoring")
    run.add_argument("--out", help="run folder (default: runs/<task>-<method>-<selector>-<sparsity>-seed<seed>)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    run.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    run.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    run.add_argument("--config", help="JSON file of UnlearnConfig fields (flags override it)")
    run.add_argument("--eval-max-samples", type=int, default=None,
                     help="evaluate at most this many rows per split")
    run.add_argument("--no-eval", action="store_true",
                     help="skip the evaluation of the original, unlearned (and retrained) "
                          "models")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    add_dataclass_flags(p, UnlearnConfig, "hyperparameters")
    p.set_defaults(func=run_unlearn)
    return p


def _default_out(args: argparse.Namespace) -> Path:
    src = args.task or (Path(args.model).name if args.model else "run")
    sp = "full" if args.selector == "full" else f"{args.sparsity:g}"
    return Path("runs") / f"{src}-{args.method}-{args.selector}-{sp}-seed{args.seed}"


def _load_config(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields from --config and the flags (validated); the task's presets and the
    paper defaults fill in the rest inside ``unlearn``."""
    base: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"--config {path} does not exist")
        base = json.loads(path.read_text())
        base = base.get("config", base)  # accept a run folder's config.json too
    base.update(dataclass_overrides(args))
    try:
        UnlearnConfig.from_dict(base)  # validate now, before any work
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from e
    return base


def run_unlearn(args: argparse.Namespace) -> int:
    """Run ``mape-viz unlearn``; returns the exit code (1: the run stopped on a NaN/inf loss)."""
    if args.method not in list_methods():
        raise UsageError(f"unknown method {args.method!r}; known: {', '.join(list_methods())}")
    if args.selector not in list_selectors():
        raise UsageError(f"unknown selector {args.selector!r}; known: {', '.join(list_selectors())}")
    out = Path(args.out) if args.out else _default_out(args)
    if out.exists() and not args.overwrite:  # fail before any work is done
        raise UsageError(f"run folder {out} already exists; choose another --out or pass --overwrite")
    cfg = _load_config(args)
    info = process_info()
    if args.device:
        device = args.device
    elif info.distributed:
        device = str(info.device)  # one device per process
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    with main_process_first(info):
        task, record = task_from_arguments(args)
    mask = load_mask(args.mask) if args.mask else None

    def score(model: torch.nn.Module) -> dict[str, float | str]:
        report = evaluate(task, model, max_samples=args.eval_max_samples,
                          progress=not args.quiet)
        # JSON has no NaN/inf: written as text, as the run folder writes them
        return {k: v if math.isfinite(v) else str(v) for k, v in report.items()}

    # the original before the run (which works on a copy of it)
    evaluating = info.is_main and not args.no_eval
    side: dict[str, dict[str, float]] = {"original": score(task.model)} if evaluating else {}
    result = unlearning.unlearn(task, args.method, args.selector, args.sparsity, cfg, mask=mask,
                                progress=not args.quiet and info.is_main, device=device,
                                seed=args.seed)
    if not info.is_main:
        # save_run is collective under a launcher: rank 0 writes, the others wait for it
        result.save(out, overwrite=True, extra=record)
        return 0 if result.ok else 1
    if evaluating:
        side["unlearned"] = score(result.model)
        if task.retrained_model is not None:
            side["retrained"] = score(task.retrained_model)
        result.metrics.update(side["unlearned"])  # the run folder's own "metrics"
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        result.save(tmp, overwrite=True, extra=record)  # the run folder, inside ours
        if side:
            doc = json.loads((tmp / METRICS).read_text())
            (tmp / METRICS).write_text(json.dumps({**doc, **side}, indent=2) + "\n")
    summary = {k: v for k, v in result.summary().items()
               if not isinstance(v, (list, dict)) and k not in side.get("unlearned", {})}
    print(json.dumps({"out": str(out), **summary, **side}, indent=2, default=str))
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0
