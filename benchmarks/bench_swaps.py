"""How many greedy swaps typical requests make on the default world (issue #11, item 3).

For each request — single canaries and all 32 canaries — and each objective (MLF, MLR), the
modules are scored once (``mv.score_modules`` on the forget rows and the first ``--retain``
retain rows, the app's setting by default), then selected at each sparsity with
``mv.select_modules(..., refine="greedy" | "converge")``. Printed per row: swaps for heads
and filters, and, to explain a zero, the decisive numbers: the smallest score gap across
the warm-start boundary and the largest advantage the off-diagonal Fisher coupling could give
a swap (a swap needs off-diagonal terms to beat the gap, see docs/design.md §4; the bound
is in :func:`boundary_stats`); and, as a diagnostic, the swaps the greedy makes when the
Fisher is summed over its samples like ``g`` instead of averaged (:func:`summed_fisher`).

    python benchmarks/bench_swaps.py                              # toy-sentiment, app setting
    python benchmarks/bench_swaps.py --task toy-sentiment-small   # the 2-layer world
    python benchmarks/bench_swaps.py --retain 0                   # score on all retain rows

Writes ``benchmarks/results/bench_swaps_<task>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

import mape_viz as mv
from mape_viz.presets import preset_values
from mape_viz.scores import OBJECTIVES
from mape_viz.types import MODULE_KINDS, ModuleScores, ModuleTerms

ROOT = Path(__file__).resolve().parents[1]


def boundary_stats(scores: ModuleScores, mask: Any, kind: str) -> dict[str, float]:
    """Per kind, over the layers: the smallest score gap across the warm-start boundary
    (``min s_selected − max s_frozen``) and the largest coupling advantage a swap could use.

    A swap of frozen ``i`` (enters) with selected ``j`` (leaves) changes the layer cost by
    ``Δ = (s_j − s_i) + c_j − c_i − F_ij``, where ``c_k = Σ_{m∈P, m≠k} F_km`` is module k's
    off-diagonal coupling to the frozen set P (docs/design.md §4). ``max_coupling`` bounds
    ``c_i − c_j + |F_ij|`` from above; while it is below ``min_gap``, no swap can improve.
    """
    gaps, adv = [], []
    factor = None if scores.factor is None else scores.factor[kind]
    for layer in range(scores[kind].shape[0]):
        sel = mask.warm_start[kind][layer]
        s = scores[kind][layer].double()
        if sel.all() or (~sel).all():
            continue
        gap = s[~sel].min() - s[sel].max() if getattr(scores, "maximise", False) \
            else s[sel].min() - s[~sel].max()
        gaps.append(float(gap))
        if factor is not None:
            G = factor[:, layer].double()
            F = G.T @ G / scores.n_fisher
            off = F - torch.diag(torch.diag(F))
            c = off[:, ~sel].sum(1)  # coupling to the frozen set, without the diagonal
            adv.append(float(c[~sel].max() - c[sel].min() + off.abs().max()))
    return {"min_gap": min(gaps) if gaps else float("nan"),
            "max_coupling": max(adv) if adv else float("nan")}


def summed_fisher(scores: ModuleScores) -> ModuleScores:
    """The same scores with the Fisher as a *sum* over its samples (like ``g``), not a mean:
    ``F_sum = n_fisher · F``. A diagnostic only (what the greedy would do if the quadratic
    term had the gradient term's scale); the library's scores are not changed."""
    n = float(scores.n_fisher)
    fisher = ModuleTerms(heads=scores.fisher.heads * n, filters=scores.fisher.filters * n)
    return dataclasses.replace(scores, fisher=fisher, n_fisher=1,
                               heads=scores.grad.heads + 0.5 * fisher.heads,
                               filters=scores.grad.filters + 0.5 * fisher.filters)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="toy-sentiment")
    ap.add_argument("--retain", type=int, default=None,
                    help="retain rows for scoring (default: the app preset's score_max_retain; "
                         "0 = all)")
    ap.add_argument("--singles", type=int, default=4, help="how many single canaries")
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.9])
    ap.add_argument("--model", default=None,
                    help="score this saved classifier folder instead of the task's model "
                         "(same tokenizer), e.g. one trained another way")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    task = mv.load_task(args.task, forget="canaries", retrained=False,
                        **({"model": args.model} if args.model else {}))
    n_retain = args.retain if args.retain is not None else \
        preset_values(task, "app").get("score_max_retain", 0)
    retain = task.retain if not n_retain else task.retain.select(range(n_retain))
    requests = {f"canary {task.forget[i]['idx']}": task.forget.select([i])
                for i in range(args.singles)}
    requests["32 canaries"] = task.forget
    rows = []
    print(f"{args.task}: scoring on {len(retain)} retain rows")
    print("| request | objective | sparsity | refine | head swaps | filter swaps | "
          "min gap heads / filters | max coupling heads / filters | swaps if F summed (h / f) | "
          "score s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, forget in requests.items():
        for objective in OBJECTIVES:
            t0 = time.perf_counter()
            scores = mv.score_modules(task.model, list(task.batches(forget, 32)),
                                      list(task.batches(retain, 32)), objective=objective)
            score_s = time.perf_counter() - t0
            for sparsity in args.sparsity:
                for refine in ("greedy", "converge"):
                    mask = mv.select_modules(scores, sparsity=sparsity, refine=refine)
                    n = {k: sum(1 for s in mask.swaps if s.kind == k) for k in MODULE_KINDS}
                    st = {k: boundary_stats(scores, mask, k) for k in MODULE_KINDS}
                    alt = mv.select_modules(summed_fisher(scores), sparsity=sparsity,
                                            refine=refine)
                    n_sum = {k: sum(1 for s in alt.swaps if s.kind == k) for k in MODULE_KINDS}
                    rows.append({"request": name, "objective": objective, "sparsity": sparsity,
                                 "refine": refine, "swaps": n, "boundary": st,
                                 "swaps_if_fisher_summed": n_sum, "score_seconds": score_s})
                    print(f"| {name} | {objective} | {sparsity} | {refine} | {n['heads']} | "
                          f"{n['filters']} | {st['heads']['min_gap']:.3g} / "
                          f"{st['filters']['min_gap']:.3g} | {st['heads']['max_coupling']:.3g} / "
                          f"{st['filters']['max_coupling']:.3g} | {n_sum['heads']} / "
                          f"{n_sum['filters']} | {score_s:.1f} |", flush=True)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"bench_swaps_{args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"task": args.task, "n_retain_scored": len(retain),
                               "machine": platform.platform(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
