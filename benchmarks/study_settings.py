"""Fig. 2 and Fig. 7 of the issue-#11 study on the frontier rule (docs/bench_toy_sentiment.md).

MAPE-GD (``--method``) on ``toy-sentiment`` (the bench's presets, the canaries as forget set):
the frontier's step-size grid at sparsities 0.5, 0.95 (``--sparsities``; granularity both)
and at granularity heads / filters (sparsity 0.9); sparsity 0.9 / both and the full run are
the main table's frontiers, so they are not rerun here (``study_tables.py`` joins them). GD,
not GA: GA has no retain term and collapses the 4-layer model at every grid point. Each setting is summarised by the one
frontier rule (:func:`mape_viz.experiments.sweep.frontier_by_setting`, docs/design.md §6).

    python benchmarks/study_settings.py --out benchmarks/results/study/settings --grid 0.25,1,4 \
        --method gd --sparsities 0.5,0.95
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from mape_viz import experiments as ex  # noqa: E402
from mape_viz.presets import preset_targets, task_options  # noqa: E402
from mape_viz.tasks import load_task  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="toy-sentiment")
    ap.add_argument("--method", default="gd")
    ap.add_argument("--out", required=True)
    ap.add_argument("--grid", default="0.25,1,4")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--sparsities", default="0.5,0.95")
    ap.add_argument("--granularities", default="heads,filters")
    ap.add_argument("--eval-max-samples", type=int, default=1000)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    task = load_task(a.task, **task_options(a.task, "bench"))
    overrides = preset_targets(task, "bench")
    fc = ex.FrontierConfig(methods=(a.method,), selectors=("mape",),
                           multipliers=tuple(float(v) for v in a.grid.split(",")),
                           seeds=tuple(int(s) for s in a.seeds.split(",")))
    common = dict(fc=fc, overrides=overrides, eval_max_samples=a.eval_max_samples,
                  progress=False)
    sps = [float(s) for s in a.sparsities.split(",")]
    grans = a.granularities.split(",")
    by_sparsity = ex.sweep.sweep_frontier(task, [a.method], ["mape"], sps, ["both"], **common)
    by_gran = ex.sweep.sweep_frontier(task, [a.method], ["mape"], [0.9], grans, **common)
    records = by_sparsity["records"] + by_gran["records"]
    seconds = time.perf_counter() - t0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python benchmarks/study_settings.py " + " ".join(sys.argv[1:]),
           "task": a.task, "overrides": overrides, "frontier_config": fc.__dict__,
           "seconds": seconds, "original": by_sparsity["original"],
           "retrained": by_sparsity["retrained"], "records": records}
    (out / "records.json").write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    rows = ex.sweep.frontier_by_setting(records, doc["original"], doc["retrained"], fc)
    md = ex.sweep.frontier_setting_markdown(rows, doc["original"], doc["retrained"], fc)
    (out / "table.md").write_text(md, encoding="utf-8")
    print(md)
    print(f"{len(records)} runs in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
