"""App latency benchmark (issue #7): prints a markdown table and writes JSON.

Server-side times of the app's handlers on the embedded default task (toy-sentiment,
canaries), measured in one run:
  - scores for one sample (MAPE, MLF objective, retain subsample of the app's size);
  - the slider redraw: re-selection from cached scores + the four explore figures
    (target: under 150 ms), and the greedy-swap panel alone;
  - a full MAPE-NPO run on one canary (scoring + unlearning + before/after evaluation).

    python benchmarks/bench_app.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from mape_viz.ui import app_logic as L  # noqa: E402
from mape_viz.viz import swap_changes  # noqa: E402
from mape_viz.viz.swaps import swap_candidates  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_app.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one thread, as the app's scoring
    t0 = time.perf_counter()
    ctx = L.AppContext.load("toy-sentiment", forget="canaries")
    load_s = time.perf_counter() - t0
    ids = ctx.canary_ids()[:1]

    score_s = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        state = L.compute_scores(ctx, None, ids, "mlf", "mape")
        score_s.append(time.perf_counter() - t)

    redraw_s = []
    for i in range(args.repeats * 4):
        t = time.perf_counter()
        L.select(state, 0.80 + 0.01 * (i % 15), "both", "greedy")
        L.explore_figures(state)
        redraw_s.append(time.perf_counter() - t)

    swaps_s = []
    for _ in range(args.repeats * 4):
        t = time.perf_counter()
        swap_changes(state.mask)
        swaps_s.append(time.perf_counter() - t)
    mask = L.select(state, 0.9, "both", "greedy")
    world = {"layers": int(mask.heads.shape[0]), "heads_per_layer": int(mask.heads.shape[1]),
             "filters_per_layer": int(mask.filters.shape[1])}

    t = time.perf_counter()
    preset = L.app_config(ctx.task, "npo", "mape")  # the Unlearn tab's initial lr and epochs
    run = L.run_unlearn(ctx, ids, "npo", "mape", 0.9, preset.lr, preset.epochs)
    npo_s = time.perf_counter() - t

    res = {"task": "toy-sentiment (canaries)", "world": world, "load_s": load_s,
           "retain_for_scoring": ctx.retain_for_scoring,
           "score_one_sample_s": statistics.median(score_s),
           "slider_redraw_s": statistics.median(redraw_s), "slider_redraw_max_s": max(redraw_s),
           "swap_panel_s": statistics.median(swaps_s),
           "greedy_swaps_at_0.9": len(mask.swaps),
           "greedy_candidates_at_0.9": {k: swap_candidates(mask, k) for k in ("heads", "filters")},
           "mape_npo_run_s": npo_s, "mape_npo_unlearn_only_s": run.result.seconds,
           "repeats": args.repeats, "cpus": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0]}
    print(f"\n| handler (server side) | median s |\n|---|---:|")
    print(f"| scores for one sample (MAPE, MLF, {ctx.retain_for_scoring} retain samples) | {res['score_one_sample_s']:.3f} |")
    print(f"| slider redraw (re-select + 4 figures) | {res['slider_redraw_s']:.3f} (max {res['slider_redraw_max_s']:.3f}) |")
    print(f"| greedy-swap panel alone | {res['swap_panel_s']:.3f} |")
    print(f"| full MAPE-NPO run on one canary ({len(run.result.history)} steps + evaluation of 3 models) | {npo_s:.1f} |")
    print(f"\n{world['layers']} layers x {world['heads_per_layer']} heads, "
          f"{world['filters_per_layer']} filters per layer; greedy at 0.9: {len(mask.swaps)} swaps "
          f"of {sum(res['greedy_candidates_at_0.9'].values()):,} candidates")
    print(f"\n(load average during the run: {res['load_average_1min']:.1f} on {res['cpus']} cores)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
