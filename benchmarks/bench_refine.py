"""Benchmark module selection on random problems shaped like BERT-base and Llama-2-7B.

For each shape, at 90 % sparsity, times side by side in one run:

* ``warm start`` — the global top-k (:func:`mape_viz.selection.warm_start`);
* ``greedy``     — ``select_modules(refine="greedy")`` end to end (warm start, the paper's one
  round of swaps on every head and filter layer, cost bookkeeping);
* ``converge``   — ``select_modules(refine="converge")`` (rounds until no improving swap);
* ``reference``  — the naive greedy (``tests/naive_greedy.py``'s ``greedy_swap_reference``: formed n×n
  F, a Python loop per candidate) on the first ``--ref-layers`` layers of each kind, scaled to
  all layers; it must make the same swaps as the fast greedy on those layers (checked).

Random problem: factor G ~ N(0, 1) of shape (N, L, n) in float32, g ~ N(0, 1),
fisher = mean(G²), scores = g + fisher/2, n_fisher = N. Real mask gradients are correlated
across modules, so real swap counts (and times) differ; the swap counts are reported.

Wall time (``perf_counter``) and CPU time (``process_time``) are both reported: on a shared
machine the wall time includes waiting for the CPU. Everything runs single-threaded (see
:func:`mape_viz.refine.one_thread`).

    python benchmarks/bench_refine.py            # full: BERT-base and Llama-2-7B shapes
    python benchmarks/bench_refine.py --quick    # a few layers of each, in seconds
    python benchmarks/bench_refine.py --shape bert-base --out /tmp/bert.json

Writes ``benchmarks/results/bench_refine.json`` (``bench_refine_quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mape_viz.refine import greedy_swap
from mape_viz.selection import select_modules, warm_start
from mape_viz.types import MODULE_KINDS, ModuleScores, ModuleTerms

# The naive greedy is a test-only reference; the benchmark times it beside the fast one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from naive_greedy import greedy_swap_reference  # noqa: E402

SHAPES: dict[str, dict[str, int]] = {
    "bert-base": {"L": 12, "H": 12, "F": 3072, "N": 512},
    "llama-2-7b": {"L": 32, "H": 32, "F": 11008, "N": 256},
}
SPARSITY = 0.9


def random_scores(L: int, H: int, F: int, N: int, seed: int = 0) -> ModuleScores:
    gen = torch.Generator().manual_seed(seed)
    G = {"heads": torch.randn(N, L, H, generator=gen), "filters": torch.randn(N, L, F, generator=gen)}
    g = {k: torch.randn(L, v.shape[2], generator=gen) for k, v in G.items()}
    fisher = {k: (v * v).mean(0) for k, v in G.items()}
    return ModuleScores(
        heads=g["heads"] + fisher["heads"] / 2,
        filters=g["filters"] + fisher["filters"] / 2,
        grad=ModuleTerms(**g),
        fisher=ModuleTerms(**fisher),
        factor=ModuleTerms(**G),
        n_fisher=N,
        objective="mlr",
        family="random",
    )


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def bench_shape(name: str, L: int, H: int, F: int, N: int, ref_layers: int) -> list[dict[str, Any]]:
    print(f"[{name}] building random scores: L={L} H={H} F={F} N={N}", flush=True)
    sc = random_scores(L, H, F, N)
    rows: list[dict[str, Any]] = []
    base = {"shape": name, "L": L, "H": H, "F": F, "N": N, "sparsity": SPARSITY}

    _, w, c = timed(lambda: warm_start(sc, SPARSITY))
    rows.append({**base, "method": "warm start", "wall_s": w, "cpu_s": c, "layers_timed": L, "swaps": 0})
    print(f"[{name}] warm start {w:.3f}s", flush=True)

    fast = {}
    for refine in ("greedy", "converge"):
        m, w, c = timed(lambda refine=refine: select_modules(sc, SPARSITY, refine=refine))
        fast[refine] = m
        drop = {k: float((m.cost_before[k] - m.cost_after[k]).sum()) for k in MODULE_KINDS}
        rows.append(
            {
                **base,
                "method": refine,
                "wall_s": w,
                "cpu_s": c,
                "layers_timed": L,
                "swaps": len(m.swaps),
                "max_rounds": max(max(r) for r in m.meta["rounds"].values()),
                "cost_drop": drop,
            }
        )
        print(f"[{name}] {refine}: {w:.2f}s wall, {c:.2f}s cpu, {len(m.swaps)} swaps", flush=True)

    # Naive reference on the first ref_layers layers of each kind, scaled to L layers; also
    # time the fast per-layer greedy on the same layers for a like-for-like per-layer ratio.
    n_ref = min(ref_layers, L)
    warm = fast["greedy"].warm_start
    ref_w = ref_c = fast_w = fast_c = 0.0
    ref_swaps = 0
    matches = True
    for kind in MODULE_KINDS:
        for l in range(n_ref):
            args = (sc.grad[kind][l], sc.factor[kind][:, l], ~warm[kind][l].numpy(), sc[kind][l])
            ref, w, c = timed(lambda args=args: greedy_swap_reference(*args, n_fisher=N, rounds=1))
            ref_w, ref_c, ref_swaps = ref_w + w, ref_c + c, ref_swaps + len(ref.swaps)
            res, w, c = timed(lambda args=args: greedy_swap(*args, n_fisher=N, rounds=1))
            fast_w, fast_c = fast_w + w, fast_c + c
            matches &= [s[:2] for s in res.swaps] == [s[:2] for s in ref.swaps]
    scale = L / n_ref
    rows.append(
        {
            **base,
            "method": f"reference (naive), {n_ref} of {L} layers scaled ×{scale:g}",
            "wall_s": ref_w * scale,
            "cpu_s": ref_c * scale,
            "layers_timed": n_ref,
            "swaps": ref_swaps,
            "same_swaps_as_fast": matches,
            "fast_same_layers_wall_s": fast_w * scale,
            "fast_same_layers_cpu_s": fast_c * scale,
        }
    )
    print(f"[{name}] reference: {ref_w:.2f}s on {n_ref} layer(s) per kind, same swaps: {matches}", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| shape | method | wall s | CPU s | swaps | rounds | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        note = ""
        if "same_swaps_as_fast" in r:
            note = (
                f"fast greedy on the same layers, same scaling: {r['fast_same_layers_wall_s']:.2f} s wall, "
                f"{r['fast_same_layers_cpu_s']:.2f} s CPU; same swaps: {r['same_swaps_as_fast']}"
            )
        out.append(
            f"| {r['shape']} (L={r['L']}, H={r['H']}, F={r['F']}, N={r['N']}) | {r['method']} | "
            f"{r['wall_s']:.3f} | {r['cpu_s']:.3f} | {r['swaps']} | {r.get('max_rounds', '')} | {note} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few layers per shape (seconds)")
    ap.add_argument(
        "--ref-layers",
        type=int,
        default=None,
        help="layers per kind timed with the naive reference (default 2; 1 with --quick)",
    )
    ap.add_argument("--shape", action="append", choices=list(SHAPES), help="only these shapes (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = ap.parse_args(argv)

    shapes = {k: dict(v) for k, v in SHAPES.items() if not args.shape or k in args.shape}
    if args.quick:  # same layer widths, fewer layers
        shapes["bert-base"]["L"] = 2
        shapes["llama-2-7b"]["L"] = 1
    ref_layers = args.ref_layers or (1 if args.quick else 2)
    out = args.out or Path(__file__).parent / "results" / (
        "bench_refine_quick.json" if args.quick else "bench_refine.json"
    )

    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows: list[dict[str, Any]] = []
    for name, s in shapes.items():
        rows.extend(bench_shape(name, ref_layers=ref_layers, **s))
    table = markdown(rows)
    print()
    print(table)

    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": " ".join(["python", "benchmarks/bench_refine.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "load_avg_1m": [load_start, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        },
        "rows": rows,
        "markdown": table,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
