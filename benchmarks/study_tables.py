"""Join the issue-#11 study's per-method bench folders into one frontier table per task, and
the Fig. 2 / Fig. 7 settings with the main table's MAPE-GA / GA runs (docs/bench_toy_sentiment.md).

    python benchmarks/study_tables.py benchmarks/results/study

Reads ``<OUT>/<task>/<methods>/records.json`` (``mape-viz bench --experiments frontier``) and
``<OUT>/settings*/records.json`` (``study_settings.py``, one folder per seed run); writes ``<OUT>/<task>/table.md`` and
``<OUT>/settings/table_joined.md``, and prints them. The rule is the frontier's
(:mod:`mape_viz.experiments.frontier`, docs/design.md §6), applied to the joined records.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mape_viz.experiments.frontier import FrontierConfig, frontier_markdown, summarise
from mape_viz.experiments.sweep import frontier_by_setting, frontier_setting_markdown

ORDER = {"so": 0, "ga": 1, "gd": 2, "npo": 3}
SEL = {"full": 0, "mape": 1, "sure": 2, "random": 3}


def load_task_dir(d: Path):
    recs, ref, cmds = [], None, []
    for f in sorted(d.glob("*/records.json")):
        doc = json.loads(f.read_text())
        recs += doc["experiments"]["frontier"]
        ref = doc["frontier"]
        cmds.append((doc["command"], doc["seconds"]))
    return recs, ref, cmds


def main(out: str) -> int:
    root = Path(out)
    main_recs = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("settings")):
        recs, ref, cmds = load_task_dir(d)
        if not recs:
            continue
        cfg = {k: v for k, v in ref["config"].items() if k != "grid"}
        fc = FrontierConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        fc = FrontierConfig(**{**fc.__dict__, "methods": tuple(sorted({r["method"] for r in recs},
                                                                       key=ORDER.get))})
        rows = summarise(recs, ref["original"], ref["retrained"], fc)
        rows.sort(key=lambda r: (ORDER.get(r["method"], 9), SEL.get(r["selector"], 9)))
        md = frontier_markdown(rows, ref["original"], ref["retrained"], fc)
        head = [f"# Frontier study: {d.name}", "", "Commands (seconds as the bench reports them):",
                ""] + [f"- `{c}` ({s:.0f} s)" for c, s in cmds] + [""]
        (d / "table.md").write_text("\n".join(head) + md, encoding="utf-8")
        print(f"## {d.name}\n\n{md}")
        main_recs[d.name] = (recs, ref, fc)
    sfs = sorted(root.glob("settings*/records.json"))  # settings/, settings-seed1/ ...
    if sfs and "toy-sentiment" in main_recs:
        docs = [json.loads(f.read_text()) for f in sfs]
        doc = {**docs[0], "records": [r for d in docs for r in d["records"]]}
        recs, ref, fc = main_recs["toy-sentiment"]
        seeds = {r.get("seed", 0) for r in doc["records"]}
        joined = doc["records"] + [r for r in recs if r["method"] == doc["records"][0]["method"]
                                   and r["selector"] in ("full", "mape")
                                   and r.get("seed", 0) in seeds]
        rows = frontier_by_setting(joined, doc["original"], doc["retrained"], fc)
        md = frontier_setting_markdown(rows, doc["original"], doc["retrained"], fc)
        (root / "settings" / "table_joined.md").write_text(
            f"Seeds {sorted(seeds)}; sparsity 0.9 / both and the full run are the main table's "
            f"runs of those seeds.\n\n" + md, encoding="utf-8")
        print(f"## settings (joined)\n\n{md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/study"))
