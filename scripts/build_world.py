"""Build the default world's shipped weights (docs/design.md §7).

Trains the ``toy-sentiment`` original model (on D) and the model retrained without the 32
canaries (on D_r) from scratch, in a fresh temporary cache, with the seeds of
``mape_viz.tasks.toy_sentiment.SIZES``; checks them against
``mape_viz.tasks.world.QUALITY_BARS``; copies both, with their SHA-256, into
``mape_viz/tasks/weights/``; prints a table and writes ``benchmarks/results/build_world.json``.

    python scripts/build_world.py             # refuses to replace shipped weights
    python scripts/build_world.py --force     # replace them (e.g. after a checksum error)
    python scripts/build_world.py --dest /tmp/w   # build elsewhere (the package is untouched)

One thread (the training loop's setting); about 10 minutes per model on an idle core.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from mape_viz.tasks.toy_sentiment import SIZES
from mape_viz.tasks.world import QUALITY_BARS, build_world

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="toy-sentiment", choices=list(SIZES),
                    help="which toy-sentiment size (default: toy-sentiment)")
    ap.add_argument("--dest", default=None,
                    help="shipped-weights root to write (default: mape_viz/tasks/weights)")
    ap.add_argument("--force", action="store_true", help="replace existing shipped weights")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "build_world.json"),
                    help="JSON report path")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mape_viz_build_") as tmp:
        res = build_world(Path(tmp) / "cache", dest=args.dest, size=args.size, force=args.force)
    res["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                      "cpu": platform.processor() or platform.machine()}
    print(f"\n{args.size}: built in {res['build_seconds']:.0f} s wall")
    print("| model | test | canaries (forget) | retain | params | train s (wall / CPU) | "
          "weights bytes | same as before |")
    print("|---|---|---|---|---|---|---|---|")
    for role, m in res["models"].items():
        q = res["quality"][role]
        print(f"| {role} | {q['test']:.4f} | {q['forget']:.4f} | {q['retain']:.4f} | "
              f"{m['params']:,} | {m['seconds']:.0f} / {m['cpu_seconds']:.0f} | "
              f"{m['files']['model.safetensors']:,} | {m['identical_to_previous']} |")
    print("bars:", ", ".join(f"{r} {s} {op} {b}" for (r, s), (op, b) in QUALITY_BARS.items()))
    if res["failures"]:
        print("FAILED:", "; ".join(res["failures"]), "- nothing written")
    else:
        print("written:", ", ".join(m["path"] for m in res["models"].values()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
