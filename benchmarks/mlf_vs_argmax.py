"""MLF's direction (issue 14 item 1, docs/design.md §3): combine two ``mape-viz bench
--experiments frontier`` runs that differ only in ``--objective`` (``mlf`` vs ``mlf-argmax``)
into one frontier table, each (method, objective) summarised by the same rule
(:func:`mape_viz.experiments.summarise`).

    python benchmarks/mlf_vs_argmax.py --name toy-sentiment-small \\
        --run mlf=/tmp/toy-mlf --run mlf-argmax=/tmp/toy-mlf-argmax \\
        --out benchmarks/results/mlf_vs_argmax

Each ``--run LABEL=DIR[,DIR...]`` names bench output folders (their ``records.json``; several
folders = parts of one step-size grid, same task and rule); the frontier
keys curves by (method, selector), so each run's selector is relabelled ``mape[LABEL]``.
Writes ``<name>.md`` (table + per-seed values) and ``<name>.json`` (records with the label,
summaries) under ``--out``; refuses to overwrite them without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mape_viz.experiments import FrontierConfig, frontier_markdown, summarise


def load_run(folder: Path, label: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(records relabelled ``selector = "<selector>[label]"``, the bench's frontier block)."""
    d = json.loads((folder / "records.json").read_text())
    if d["config"].get("objective") != label:
        raise ValueError(f"{folder}: run with objective {d['config'].get('objective')!r}, "
                         f"labelled {label!r}")
    recs = [{**r, "objective": label, "selector": f"{r['selector']}[{label}]"}
            for r in d["experiments"]["frontier"]]
    return recs, {**d["frontier"], "command": d.get("command"), "seconds": d.get("seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="output file stem (the task)")
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=DIR[,DIR]")
    ap.add_argument("--out", default="benchmarks/results/mlf_vs_argmax")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md_path, js_path = out / f"{args.name}.md", out / f"{args.name}.json"
    for p in (md_path, js_path):
        if p.exists() and not args.overwrite:
            raise SystemExit(f"{p} exists; pass --overwrite to replace it")
    records, blocks = [], {}
    commands: dict[str, list[str]] = {}
    for spec in args.run:
        label, _, folders = spec.partition("=")
        for folder in folders.split(","):  # grid parts of one curve: same rule, same task
            recs, block = load_run(Path(folder), label)
            records += recs
            blocks.setdefault(label, block)
            commands.setdefault(label, []).append(block["command"])
    first = next(iter(blocks.values()))
    fc = FrontierConfig(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in first["config"].items()})
    summary = summarise(records, first["original"], first["retrained"], fc)
    summary.sort(key=lambda r: (r["method"], r["selector"]))
    table = frontier_markdown(summary, first["original"], first["retrained"], fc)
    lines = [f"# MLF direction on {args.name}", "", table, "Per seed (seed order "
             f"{summary[0]['seeds']}):", ""]
    for r in summary:
        f = [None if v is None else round(v * 100, 1) for v in r["fidelity_at_efficacy"]["values"]]
        e = [None if v is None else round(v * 100, 1) for v in r["efficacy_at_fidelity"]["values"]]
        mine = [x for x in records if (x["method"], x["selector"]) == (r["method"], r["selector"])]
        heads = sorted({x.get("n_selected_heads") for x in mine}, key=str)
        filters = sorted({x.get("n_selected_filters") for x in mine}, key=str)
        lines.append(f"- {r['name']}: fidelity at equal efficacy {f}; efficacy at equal "
                     f"fidelity {e}; selected heads {heads}, filters {filters}")
    lines += ["", "Commands:", ""] + [f"- {lab}: `{c}`" for lab, cs in commands.items() for c in cs]
    md_path.write_text("\n".join(lines) + "\n")
    slim = [{k: r[k] for k in r if k not in ("at_efficacy", "at_fidelity")} for r in summary]
    js_path.write_text(json.dumps({"records": records, "original": first["original"],
                                   "retrained": first["retrained"], "summary": slim,
                                   "commands": commands},
                                  indent=1, default=str))
    print(md_path.read_text())


if __name__ == "__main__":
    main()
