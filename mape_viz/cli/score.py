"""``mape-viz score``: which heads and filters matter for forgetting a set — scores, the mask
and offline HTML figures in one folder, without the app (docs/design.md §9).

    mape-viz score --model my-bert --data glue_data/SST-2 --forget label-flip:32 --out runs/s
    mape-viz score --task toy-sentiment --task-option forget=canaries --out runs/toy

The scoring is the unlearning run's own step (:func:`mape_viz.unlearning.engine.make_mask`
on the data :func:`~mape_viz.unlearning.run_data.resolve_data` gives ``--method``): the same
retain subsample, objective and refinement as ``mape-viz unlearn`` with that method. The
folder (written whole into a temporary sibling, then renamed):

- ``scores.safetensors``: ``heads`` (L, H), ``filters`` (L, F), ``grad.*``, ``fisher.*``;
- ``scores.json``: selector, objective, family, shapes, the top heads, timings;
- ``mask/``: the selection (:func:`mape_viz.mask_io.save_mask`);
- ``figures/*.html`` + ``figures/index.html``: head heatmap, filter view, selected per
  layer, g vs F (MAPE), offline (plotly.js beside them);
- ``summary.json``: the task (name, options, split sizes, notes) and what was written.

An existing ``--out`` is refused unless ``--overwrite``, which replaces only a folder this
command wrote.

Under ``accelerate launch`` (docs/scale.md) every process scores its shard of the batches and
holds the combined scores; rank 0 loads the task first (the others then read its caches), each
process runs on its own device, and only rank 0 writes the folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..choices import describe, list_methods, list_selectors
from ..distributed import main_process_first, process_info
from ..mask_io import save_mask
from ..scores import OBJECTIVES
from ..types import MODULE_KINDS, ModuleMask, ModuleScores
from ..unlearning import UnlearnConfig, as_config
from ..unlearning.engine import FULL, make_mask
from ..unlearning.run_data import resolve_data
from ..viz import filter_view, g_vs_fisher, head_heatmap, selected_per_layer, write_figures
from ._flags import UsageError
from ._task_args import add_task_arguments, task_from_arguments

__all__ = ["FORMAT", "add_parser", "run_score", "write_scores"]

#: ``summary.json``'s ``format``: marks a folder this command wrote (``--overwrite`` replaces
#: only such a folder).
FORMAT = "mape_viz.score"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``score`` parser to ``sub`` (argparse sub-parsers); ``func`` runs it."""
    p = sub.add_parser(
        "score", help="score heads and filters for a forget set; write scores, mask and figures",
        description="Score every attention head and FFN filter for unlearning a forget set, "
                    "select a mask, and write scores.safetensors, mask/, offline HTML figures "
                    "and summary.json to --out.")
    add_task_arguments(p)
    run = p.add_argument_group("scoring")
    run.add_argument("--method", default="npo",
                     help=f"the unlearning method the scores are for (its objective: MLF for "
                          f"{', '.join(m for m in list_methods() if m != 'so')}, MLR for so); "
                          f"default %(default)s")
    run.add_argument("--objective", choices=sorted(OBJECTIVES),
                     help="override the method's objective")
    run.add_argument("--selector", default="mape",
                     help=f"{' | '.join(s for s in list_selectors() if s != FULL)} "
                          f"(default: %(default)s)")
    run.add_argument("--sparsity", type=float, default=0.9,
                     help="fraction of modules left frozen (default: %(default)s)")
    autocast = {f.name: f for f in dataclasses.fields(UnlearnConfig)}["score_autocast"]
    run.add_argument("--score-autocast", choices=autocast.metadata["choices"],
                     help=f"{autocast.metadata['help']} (default: {autocast.default})")
    run.add_argument("--config", help="JSON file of UnlearnConfig fields (scoring: "
                                      "score_batch_size, score_max_retain, refine, granularity)")
    run.add_argument("--out", required=True, help="the folder to write")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing folder written by mape-viz score")
    run.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    run.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    run.add_argument("--top", type=int, default=10, help="top heads listed in scores.json")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_score)
    return p


def _check_out(out: Path, overwrite: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise UsageError(f"{out} already exists; choose another --out or pass --overwrite")
    try:
        ours = json.loads((out / "summary.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours or out.is_symlink():
        raise UsageError(f"{out} exists and was not written by mape-viz score (no summary.json "
                         f"of format {FORMAT!r}); refusing to replace it even with --overwrite")


def top_heads(scores: ModuleScores, n: int) -> list[dict[str, Any]]:
    """The ``n`` highest-scoring heads: ``[{"layer", "head", "score"}, ...]``."""
    flat = scores.heads.reshape(-1).double()
    H = scores.heads.shape[1]
    order = torch.argsort(flat, descending=not scores.maximise, stable=True)[:n]
    return [{"layer": int(i) // H, "head": int(i) % H, "score": float(flat[i])} for i in order]


def write_scores(scores: ModuleScores, folder: Path, top: int = 10) -> None:
    """``scores.safetensors`` (float32 tensors) and ``scores.json`` (the rest) in ``folder``."""
    tensors = {k: scores[k].detach().float().cpu().contiguous() for k in MODULE_KINDS}
    for term in ("grad", "fisher"):
        for k in MODULE_KINDS:
            tensors[f"{term}.{k}"] = getattr(scores, term)[k].detach().float().cpu().contiguous()
    save_file(tensors, str(folder / "scores.safetensors"))
    doc = {"format": "mape_viz.ModuleScores", "selector": scores.selector,
           "objective": scores.objective, "family": scores.family, "n_fisher": scores.n_fisher,
           "maximise": bool(scores.maximise), "shape": scores.shape,
           "top_heads": top_heads(scores, top),
           "meta": json.loads(json.dumps(scores.meta, default=str))}
    (folder / "scores.json").write_text(json.dumps(doc, indent=1))


def _figures(scores: ModuleScores, mask: ModuleMask) -> dict[str, Any]:
    figs = {"head_heatmap": head_heatmap(scores, mask), "filter_view": filter_view(scores, mask),
            "selected_per_layer": selected_per_layer(mask)}
    if scores.selector == "mape":
        figs["g_vs_fisher"] = g_vs_fisher(scores, mask)
    return figs


def _sizes(task: Any) -> dict[str, int | None]:
    return {s: None if getattr(task, s) is None else len(getattr(task, s))
            for s in ("forget", "retain", "test")}


def run_score(args: argparse.Namespace) -> int:
    """Run ``mape-viz score``; returns the exit code."""
    if args.method not in list_methods():
        raise UsageError(f"unknown method {args.method!r}; known: {', '.join(list_methods())}")
    if args.selector == FULL or args.selector not in list_selectors():
        raise UsageError(f"unknown selector {args.selector!r}; a score selector is one of "
                         f"{', '.join(s for s in list_selectors() if s != FULL)}")
    out = Path(args.out)
    _check_out(out, args.overwrite)  # before any work
    base: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"--config {path} does not exist")
        base = json.loads(path.read_text())
        base = base.get("config", base)
    if args.objective:
        base["objective"] = args.objective
    if args.score_autocast:
        base["score_autocast"] = args.score_autocast
    info = process_info()
    with main_process_first(info):
        task, record = task_from_arguments(args, front_end="library")
    try:
        cfg = as_config(base or None, task, method=args.method, selector=args.selector,
                        masked=True)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from err
    if args.device:
        device = torch.device(args.device)
    elif info.distributed:
        device = info.device  # one device per process
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task.model.to(device)
    data, method = resolve_data(task, args.method, cfg, seed=args.seed)
    start = time.perf_counter()
    scores, mask = make_mask(task.model, data, method.objective, args.selector, args.sparsity,
                             cfg, args.seed, not args.quiet)
    seconds = time.perf_counter() - start
    if not info.is_main:
        return 0  # rank 0 writes the folder

    tmp = out.parent / f".tmp-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        write_scores(scores, tmp, args.top)
        save_mask(mask, tmp / "mask")
        written = write_figures(_figures(scores, mask), tmp / "figures", plotlyjs="directory",
                                index=True)
        summary = {"format": FORMAT, **record, "task_name": task.name, "kind": task.kind,
                   "sizes": _sizes(task), "notes": task.meta.get("notes", []),
                   "forget": task.meta.get("options", {}).get("forget"),
                   "method": args.method, "objective": scores.objective,
                   "selector": args.selector, "sparsity": args.sparsity, "seed": args.seed,
                   "n_selected": mask.n_selected(), "seconds": seconds,
                   "figures": sorted(p.name for p in written.values()),
                   "describe": describe("selector", args.selector)}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    top = ", ".join(f"L{h['layer']}H{h['head']}" for h in top_heads(scores, 5))
    print(f"scored {task.name} ({len(task.forget)} forget rows) in {seconds:.1f} s; top heads "
          f"{top}; wrote {out}/", file=sys.stderr)
    print(json.dumps({"out": str(out), "seconds": round(seconds, 2),
                      "n_selected": mask.n_selected()}, default=str))
    return 0
