"""Load time of the default world from its shipped weights (issue #11, item 3).

Each measurement runs in a fresh Python process (as ``python app.py`` would), with an empty
``$MAPE_VIZ_CACHE``, single-threaded torch:

* ``import``: ``import mape_viz``;
* ``load``: ``load_task("toy-sentiment", forget="canaries")`` after the import (corpus,
  tokenizer, both shipped models with their checksums verified);
* ``verify``: the SHA-256 checks alone (both entries).

Also printed: parameters, module counts and file sizes of the shipped entries.

    python benchmarks/bench_world.py             # 3 repeats
    python benchmarks/bench_world.py --repeats 1

Writes ``benchmarks/results/bench_world.json``. On a shared machine wall times include waiting
for a core; the CPU times beside them do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mape_viz.tasks.cache import SHIPPED_ROOT

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, time
t0, c0 = time.perf_counter(), time.process_time()
import torch
torch.set_num_threads(1)
import mape_viz as mv
from mape_viz.tasks.cache import SHIPPED_ROOT, verify_entry
t1, c1 = time.perf_counter(), time.process_time()
task = mv.load_task("toy-sentiment", forget="canaries")
t2, c2 = time.perf_counter(), time.process_time()
for p in sorted(SHIPPED_ROOT.glob("toy-sentiment/*")):
    verify_entry(p)
t3 = time.perf_counter()
shipped = all(i.get("shipped") for i in task.meta["models"].values())
print(json.dumps({"import_s": t1 - t0, "import_cpu_s": c1 - c0, "load_s": t2 - t1,
                  "load_cpu_s": c2 - c1, "verify_s": t3 - t2, "shipped": shipped,
                  "params": sum(p.numel() for p in task.model.parameters()),
                  "heads": task.model.config.num_hidden_layers
                  * task.model.config.num_attention_heads,
                  "filters": task.model.config.num_hidden_layers
                  * task.model.config.intermediate_size}))
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_world.json"))
    args = ap.parse_args(argv)
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "MAPE_VIZ_CACHE": cache, "HF_HUB_OFFLINE": "1",
                   "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            if any(Path(cache).iterdir()):
                raise SystemExit("the load wrote to the cache: it did not use shipped weights")
    files = {str(p.relative_to(SHIPPED_ROOT)): p.stat().st_size
             for p in sorted(SHIPPED_ROOT.rglob("*")) if p.is_file()}
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]
           if isinstance(runs[0][k], float)}
    print(f"| measure | median of {len(runs)} (s) | min (s) |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {min(r[k] for r in runs):.2f} |")
    r = runs[0]
    print(f"shipped: {r['shipped']}; params {r['params']:,}; heads {r['heads']}; "
          f"filters {r['filters']}; shipped bytes {sum(files.values()):,}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": runs, "median": med, "files": files,
                                          "machine": platform.platform(),
                                          "load_avg": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
