"""Masked unlearning on the toy-sentiment task in one process vs under ``accelerate launch``
(docs/design.md §10, docs/scale.md).

Each process runs ``mv.unlearn(task, METHOD, "mape", 0.9, ...)`` with the task's library
presets and a few steps, writes its trained weights to ``OUT/rank{r}.pt`` and (rank 0) the
timings to ``OUT/timings.json``. ``--compare ONE TWO`` prints the largest weight difference
between two such folders and the timings side by side.

    python benchmarks/bench_dist_unlearn.py runs/bench-one
    ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 \\
        --num_machines 1 --mixed_precision no --dynamo_backend no --main_process_port 0 \\
        benchmarks/bench_dist_unlearn.py runs/bench-two
    python benchmarks/bench_dist_unlearn.py --compare runs/bench-one runs/bench-two
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

import mape_viz as mv
from mape_viz.distributed import is_main_process, main_process_first, process_info

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(out: Path, method: str, steps: int, batch_size: int, float64: bool = False) -> None:
    torch.set_num_threads(1)
    info = process_info()
    with main_process_first(info):
        task = mv.load_task("toy-sentiment", forget="canaries")
    if float64:  # sums in another order then differ by ~1e-16 instead of ~1e-7
        task.model.double()
    base = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = mv.unlearn(task, method, "mape", 0.9, {"max_steps": steps, "batch_size": batch_size,
                                                   "retain_batch_size": batch_size},
                     seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out.mkdir(parents=True, exist_ok=True)
    state = {n: p.detach().clone() for n, p in res.model.named_parameters()}
    torch.save({"state": state, "base": base, "history": res.history}, out / f"rank{info.rank}.pt")
    if is_main_process():
        timings = {"world": info.world, "method": method, "steps": res.steps,
                   "dtype": str(next(res.model.parameters()).dtype),
                   "batch_size": batch_size, "wall_seconds": wall, "rank0_cpu_seconds": cpu,
                   **res.meta["timings"], "load_average": os.getloadavg(),
                   "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        (out / "timings.json").write_text(json.dumps(timings, indent=1))


def compare(one: Path, two: Path) -> None:
    a, b = torch.load(one / "rank0.pt"), torch.load(two / "rank0.pt")
    per = {k: float((a["state"][k] - b["state"][k]).abs().max()) for k in a["state"]}
    diff = max(per.values())
    # attention key biases: their true gradient is 0 (softmax ignores a shift shared by all
    # keys), so AdamW moves them by normalised rounding noise in any run
    rest = max(v for k, v in per.items() if not k.endswith(("key.bias", "k_proj.bias")))
    moved = max(float((a["state"][k] - a["base"][k]).abs().max()) for k in a["state"])
    ranks = [torch.load(two / f) for f in sorted(os.listdir(two)) if f.startswith("rank")]
    same = all(torch.equal(r["state"][k], ranks[0]["state"][k]) for r in ranks
               for k in ranks[0]["state"])
    t1, t2 = (json.loads((d / "timings.json").read_text()) for d in (one, two))
    print(json.dumps({"max_abs_weight_diff": diff, "without_key_biases": rest,
                      "largest": sorted(per.items(), key=lambda kv: -kv[1])[:4],
                      "max_abs_change": moved,
                      "ranks_bit_identical": same, "one": t1, "two": t2}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", type=Path)
    p.add_argument("--method", default="gd")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--float64", action="store_true", help="run the model in float64")
    p.add_argument("--compare", nargs=2, type=Path)
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        run(args.out, args.method, args.steps, args.batch_size, args.float64)


if __name__ == "__main__":
    main()
