"""``mape-viz bench``: the paper's method comparison (Table 2 / 3) on a task, as a table.

    mape-viz bench --task toy-sentiment                # full comparison (minutes on 2 CPUs)
    mape-viz bench --task toy-sentiment --quick        # fewer methods / samples
    mape-viz bench --task tiny-tofu --quick --figures
    mape-viz bench --task toy-sentiment --experiments compare,relearn,sweep,successive

Prints a Table-2-shaped markdown table (efficacy: forget score ↓, MIA ↓; fidelity: retain and
test score ↑; seconds) and writes, into ``--out`` (refused if it exists, unless
``--overwrite``; written atomically):

- ``records.json`` — every record of every experiment, the command, task options, config;
- ``<experiment>.csv`` — one CSV of tidy records per experiment;
- ``table.md`` — the printed table and the command that made it;
- ``figures/*.html`` with ``--figures`` — offline HTML figures (``mape_viz.viz``).

``toy-sentiment`` defaults to ``--task-option forget=canaries`` (32 memorised rule-breaking
rows, which the retrained model gets wrong: the one forget set of the toy task where
forgetting is visible); pass ``--task-option forget=random`` for the paper's random 128 rows.

Registered by importing this module (``mape_viz.cli`` does ``from . import cli_bench``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

from .cli import UsageError, _key_values, add_dataclass_flags, dataclass_overrides, subcommand

EXPERIMENTS = ("compare", "sweep", "successive", "relearn")
SWEEP_SPARSITIES = ("0.5", "0.7", "0.9", "0.95")
SEEDS = ("0", "1", "2")

#: Task options used when none are given on the command line.
DEFAULT_TASK_OPTIONS: dict[str, dict[str, Any]] = {"toy-sentiment": {"forget": "canaries"}}

#: Per-task config overrides of the bench (``--no-bench-defaults`` drops them; ``--override``
#: wins over them). Targets as in :func:`mape_viz.experiments._common.config_for`.
#:
#: ``toy-sentiment``: UnlearnConfig's defaults (the paper's ranges for BERT-base: lr 5e-5
#: full / 5e-4 masked, η 5e-8 / 4e-7) leave the 32 canaries memorised (canary accuracy
#: stays ≥ 97 %): the tiny model was trained from scratch at lr 1e-3 and 3 epochs over 32
#: rows are 12 steps. Each (method, full | masked) value below is the largest of a small grid
#: that keeps test accuracy ≥ 95 % (original: 99.4 %): lr ∈ {5e-4, 2e-3, 5e-3} full and
#: {2e-3, 5e-3, 2e-2} masked; η ∈ {5e-7, 1e-6, 2e-6, 5e-6} full and {4e-5, 1e-4, 2e-4} masked
#: (docs/bench_toy_sentiment.md lists the grid's numbers). SA keeps the library default lr
#: (5e-5): 3 epochs over D_r already unlearn the canaries.
#:
#: ``tiny-tofu``: 5 epochs (the paper's TOFU setting); lr = the largest of {1e-4, 2e-4,
#: 5e-4, 2e-3} (full) / {5e-4, 1e-3, 2e-3, 5e-3} (masked) keeping retain ROUGE ≥ 0.95
#: (original 1.0); DPO with a mask breaks the retain set at 1e-3 already, so 5e-4.
BENCH_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "toy-sentiment": {"full": {"lr": 5e-4}, "masked": {"lr": 2e-3},
                      "so": {"eta": 1e-4}, "so/full": {"eta": 1e-6}, "sa": {"lr": 5e-5}},
    "tiny-tofu": {"full": {"lr": 2e-4, "epochs": 5}, "masked": {"lr": 1e-3, "epochs": 5},
                  "dpo/mape": {"lr": 5e-4}, "dpo/sure": {"lr": 5e-4}, "sa": {"lr": 5e-5}},
}

#: ``--quick``: what shrinks (each can still be set explicitly).
QUICK = {"methods": {"classification": "ga,npo", "extractive_qa": "ga,npo",
                     "causal_lm": "ga,npo", "multiple_choice": "ga,npo"},
         "selectors": "full,mape", "eval_max_samples": 300, "sa_max_steps": 60,
         "relearn_epochs": 3, "sparsities": "0.5,0.9", "n_requests": 2}

LABELS = {"forget": "forget acc.", "retain": "retain acc.", "test": "test acc.", "mia": "MIA",
          "forget_rouge": "forget ROUGE", "forget_prob": "forget prob.",
          "forget_quality": "forget quality", "retain_rouge": "retain ROUGE",
          "model_utility": "model utility", "seconds": "seconds"}


def _merge(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Override layers merged per target (later layers win field by field)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for target, fields in layer.items():
            out.setdefault(target, {}).update(fields)
    return out


def _csv_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"empty list {text!r}")
    return items


def _overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["so:eta=1e-7", "masked:lr=5e-3", "ga/mape:epochs=5"]`` ->
    ``{"so": {"eta": 1e-7}, "masked": {"lr": 5e-3}, "ga/mape": {"epochs": 5}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        if ":" not in item or "=" not in item.split(":", 1)[1]:
            raise UsageError(f"--override takes TARGET:KEY=VALUE, got {item!r}")
        target, kv = item.split(":", 1)
        out.setdefault(target.strip(), {}).update(_key_values([kv]))
    return out


@subcommand("bench")
def build_bench(sub: Any) -> argparse.ArgumentParser:
    from .unlearn import UnlearnConfig

    p = sub.add_parser(
        "bench", help="compare unlearning methods on a task (paper Table 2) and write records",
        description="Run the paper's comparison (Original, RT, SA, and each method with full / "
                    "SURE / MAPE updates at one sparsity) on a task, print a Table-2-shaped "
                    "markdown table, and write records.json, <experiment>.csv and table.md "
                    "to --out (optionally offline HTML figures).")
    src = p.add_argument_group("task")
    src.add_argument("--task", required=True, help="embedded or registered task name "
                                                  "(toy-sentiment, tiny-tofu, ...)")
    src.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                     help="option passed to load_task (repeatable); toy-sentiment defaults to "
                          "forget=canaries")
    run = p.add_argument_group("bench")
    run.add_argument("--experiments", default="compare",
                     help=f"comma list of {', '.join(EXPERIMENTS)} (default: %(default)s)")
    run.add_argument("--methods", help="comma list (default: so,ga,gd,npo for classification; "
                                       "ga,gd,dpo,npo for causal LM)")
    run.add_argument("--selectors", help="comma list of full, sure, mape, random, magnitude "
                                         "(default: full,sure,mape)")
    run.add_argument("--sparsity", type=float, default=0.9,
                     help="sparsity of the masked runs (default: %(default)s)")
    run.add_argument("--seeds", help="comma list of seeds; the table averages them (default: "
                                     "0,1,2; --quick: 0)")
    run.add_argument("--no-rt", action="store_true", help="leave out the RT row")
    run.add_argument("--no-sa", action="store_true", help="leave out the SA row")
    run.add_argument("--override", action="append", metavar="TARGET:KEY=VALUE",
                     help="config override for some runs (repeatable); TARGET is full (every "
                          "unmasked run), masked (every masked run), a method (so) or "
                          "method/selector (ga/mape); e.g. masked:lr=5e-3 so:eta=1e-7. "
                          "Applied least specific first, over the task's bench defaults "
                          "(a hyperparameter flag such as --lr replaces those too)")
    run.add_argument("--no-bench-defaults", action="store_true",
                     help="use UnlearnConfig's defaults for every run instead of the task's "
                          "bench defaults (BENCH_DEFAULTS: learning rates for the tiny models)")
    run.add_argument("--quick", action="store_true",
                     help="a few-minute version: 2 methods, full + MAPE, SA capped at "
                          f"{QUICK['sa_max_steps']} steps, at most {QUICK['eval_max_samples']} "
                          "eval rows per split, smaller side experiments")
    run.add_argument("--eval-max-samples", type=int, default=None,
                     help="evaluate at most this many rows per split (default: all)")
    run.add_argument("--sparsities",
                     help=f"sweep: comma list (default {','.join(SWEEP_SPARSITIES)})")
    run.add_argument("--granularities", default="both",
                     help="sweep: comma list of both, heads, filters (default: %(default)s)")
    run.add_argument("--n-requests", type=int, default=None,
                     help="successive: number of requests (default 4)")
    run.add_argument("--relearn-epochs", type=int, default=None,
                     help="relearn: epochs (default 5)")
    run.add_argument("--relearn-lr", type=float, default=None,
                     help="relearn: learning rate (default 1e-3, the tiny models' training "
                          "scale; the paper's 1e-5 barely moves them)")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="output folder (default: runs/bench-<task>[-quick])")
    out.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    out.add_argument("--figures", action="store_true",
                     help="also write offline HTML figures to <out>/figures")
    out.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    out.add_argument("--threads", type=int, default=1,
                     help="torch CPU threads (default: %(default)s; more threads than free "
                          "cores makes the tiny models much slower)")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    add_dataclass_flags(p, UnlearnConfig, "unlearning hyperparameters (all methods)")
    p.set_defaults(func=run_bench)
    return p


def _default_out(args: argparse.Namespace) -> Path:
    return Path("runs") / f"bench-{args.task.replace('/', '_')}{'-quick' if args.quick else ''}"


def _figures(kind: str, experiments: dict[str, list[dict]]) -> dict[str, Any]:
    """The figures of the experiments that ran (plotting lives here, not in experiments)."""
    from . import viz

    figs: dict[str, Any] = {}
    if experiments.get("compare"):
        eff, fid, dirs = table_columns_for(experiments["compare"], kind)
        figs["comparison_table"] = viz.comparison_table(
            experiments["compare"], efficacy=eff, fidelity=fid, directions=dirs,
            reference=("rt", "original"), labels=LABELS,
            formats=dict.fromkeys(("forget", "retain", "test"), ".2%") if kind != "causal_lm"
            else {"forget_quality": ".3g"})
    ys_main = ["forget", "test"] if kind != "causal_lm" else ["forget_rouge", "model_utility"]
    recs = experiments.get("sweep")
    if recs:
        ys = [y for y in ys_main if any(y in r for r in recs)]
        figs["sparsity_curves"] = viz.sparsity_curves(recs, y=ys)
        if len({r.get("granularity") for r in recs}) > 2:
            figs["granularity_curves"] = viz.sparsity_curves(
                recs, y=ys, color="granularity", dash=None, main_title="Granularity (Fig. 7)")
    recs = experiments.get("successive")
    if recs:
        ys = [y for y in (["forget", "removed", "test"] if kind != "causal_lm"
                          else ["forget_rouge", "removed_rouge", "model_utility"])
              if any(r.get(y) is not None for r in recs)]
        figs["successive_curves"] = viz.successive_curves(recs, y=ys)
    recs = experiments.get("relearn")
    if recs:
        ys = [y for y in (["forget", "heldout"] if kind != "causal_lm"
                          else ["forget_rouge", "heldout_rouge", "forget_quality"])
              if any(r.get(y) is not None for r in recs)]
        figs["relearn_curves"] = viz.relearn_curves(recs, y=ys)
    return figs


def table_columns_for(records: list[dict], kind: str) -> tuple[tuple, tuple, dict]:
    """(efficacy, fidelity, directions) of the kind's table, keeping only the columns the
    records have (e.g. no MIA without a test split)."""
    from .experiments.records import table_columns

    eff, fid, dirs = table_columns(kind)
    eff = tuple(c for c in eff if any(r.get(c) is not None for r in records))
    fid = tuple(c for c in fid if any(r.get(c) is not None for r in records))
    return eff, fid, dirs


def comparison_markdown_for(records: list[dict], kind: str) -> str:
    """The bench's Table-2-shaped markdown table of comparison records (best per method
    group in bold, as :func:`mape_viz.viz.comparison_rows` decides)."""
    from .experiments.records import comparison_markdown
    from .viz import comparison_rows

    eff, fid, dirs = table_columns_for(records, kind)
    rows = comparison_rows(records, efficacy=eff, fidelity=(*fid, "seconds"),
                           directions={**dirs, "seconds": "min"}, reference=("rt", "original"))
    for r in rows:
        r["best"].discard("seconds")
        if r["method"] == "original":
            r["name"] = "Original"
    fmts = {"forget": ".2%", "retain": ".2%", "test": ".2%", "mia": ".4f",
            "forget_quality": ".3g", "seconds": ".1f"}
    return comparison_markdown(rows, eff, fid, extra=("seconds",), directions=dirs,
                               labels=LABELS, formats=fmts)


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from . import experiments as ex
    from .unlearn import METHODS, UnlearnConfig, methods_for, selector_names
    from .unlearn.result import atomic_dir

    t_start = time.perf_counter()
    exps = _csv_list(args.experiments) or ["compare"]
    unknown = [e for e in exps if e not in EXPERIMENTS]
    if unknown:
        raise UsageError(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    out = Path(args.out) if args.out else _default_out(args)
    if out.exists() and not args.overwrite:  # fail before any work is done
        raise UsageError(f"output folder {out} already exists; choose another --out or pass "
                         "--overwrite")
    selectors = _csv_list(args.selectors) or \
        (QUICK["selectors"].split(",") if args.quick else ["full", "sure", "mape"])
    bad = [s for s in selectors if s not in selector_names()]
    if bad:
        raise UsageError(f"unknown selector(s) {bad}; known: {', '.join(selector_names())}")
    methods_arg = _csv_list(args.methods)
    if methods_arg:
        bad = [m for m in methods_arg if m not in METHODS]
        if bad:
            raise UsageError(f"unknown method(s) {bad}; known: {', '.join(METHODS.names())}")
    try:
        seeds = [int(s) for s in _csv_list(args.seeds) or (["0"] if args.quick else SEEDS)]
    except ValueError as e:
        raise UsageError(f"--seeds takes integers: {e}") from e
    if not 0.0 <= args.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    try:
        sweep_sps = [float(x) for x in _csv_list(args.sparsities) or
                     (QUICK["sparsities"].split(",") if args.quick else SWEEP_SPARSITIES)]
        grans = _csv_list(args.granularities) or ["both"]
        if "sweep" in exps:
            ex.sweep_plan(["ga"], ["mape"], sweep_sps, grans)  # validates both lists
    except ValueError as e:
        raise UsageError(f"--sparsities / --granularities: {e}") from e
    user_over = _overrides(args.override)
    try:
        cfg = UnlearnConfig.from_dict(dataclass_overrides(args))
        ex.check_overrides(user_over)  # validate now, not after minutes of work
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from e
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    progress = not args.quiet

    from .tasks import load_task

    opts = {**DEFAULT_TASK_OPTIONS.get(args.task, {}), **_key_values(args.task_option)}
    if progress:
        print(f"loading task {args.task} {opts or ''} (trains and caches the tiny models on "
              "first use)", file=sys.stderr)
    task = load_task(args.task, **opts)
    kind = task.kind
    methods = methods_arg or (QUICK["methods"][kind].split(",") if args.quick
                              else list(ex.default_methods(kind)))
    fitting = methods_for(kind)
    bad = [m for m in methods if m not in fitting]
    if bad:
        raise UsageError(f"method(s) {bad} do not fit a {kind} task; methods that fit: "
                         f"{', '.join(fitting)}")
    eval_max = args.eval_max_samples if args.eval_max_samples is not None else \
        (QUICK["eval_max_samples"] if args.quick else None)
    # a hyperparameter flag given on the command line (--lr ...) beats the bench defaults
    given = set(dataclass_overrides(args))
    task_defaults = {} if args.no_bench_defaults else BENCH_DEFAULTS.get(args.task, {})
    bench = {t: {k: v for k, v in f.items() if k not in given}
             for t, f in task_defaults.items()}
    overrides = _merge({t: f for t, f in bench.items() if f},
                       {"sa": {"max_steps": QUICK["sa_max_steps"]}} if args.quick else {},
                       user_over)
    common: dict[str, Any] = {"config": cfg, "overrides": overrides,
                              "eval_max_samples": eval_max, "device": device,
                              "progress": progress}

    results: dict[str, list[dict]] = {}
    if "compare" in exps:
        results["compare"] = ex.compare_methods(
            task, methods, selectors, args.sparsity, include_rt=not args.no_rt,
            include_sa=not args.no_sa, seeds=seeds, **common)
    if "sweep" in exps:
        results["sweep"] = ex.sweep_sparsity(task, methods, selectors, sweep_sps, grans,
                                             seeds=seeds, **common)
    if "successive" in exps:
        n_req = args.n_requests or (QUICK["n_requests"] if args.quick else 4)
        succ_method = "so" if "so" in methods else methods[0]
        results["successive"] = ex.successive(
            task, n_req, None, [s for s in selectors if s != "sure"] or selectors, succ_method,
            args.sparsity, cfg, overrides=overrides, scenarios=("successive", "batch"),
            seed=seeds[0],
            eval_max_samples=eval_max, device=device, progress=progress)
    if "relearn" in exps:
        epochs = args.relearn_epochs or (QUICK["relearn_epochs"] if args.quick else 5)
        lr = args.relearn_lr if args.relearn_lr is not None else ex.DEFAULT_LR
        rl_methods = [m for m in methods if m not in ("so",)] or methods
        results["relearn"] = ex.relearn(
            task, rl_methods, [s for s in selectors if s in ("full", "mape")] or selectors,
            epochs, 0.2, lr, sparsity=args.sparsity, config=cfg, overrides=overrides,
            seed=seeds[0], eval_max_samples=eval_max, device=device, progress=progress)

    command = _command_line(args)
    table = comparison_markdown_for(results["compare"], kind) if results.get("compare") else ""
    seconds = time.perf_counter() - t_start
    figs = _figures(kind, results) if args.figures else {}

    doc = {"format": "mape-viz-bench/1", "command": command, "task": args.task,
           "task_options": opts, "kind": kind, "quick": bool(args.quick),
           "methods": methods, "selectors": selectors, "sparsity": args.sparsity,
           "seeds": seeds, "config": cfg.to_dict(), "overrides": overrides,
           "eval_max_samples": eval_max, "device": device, "threads": torch.get_num_threads(),
           "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "environment": {"python": platform.python_version(), "torch": torch.__version__,
                           "platform": platform.platform()},
           "table": table, "experiments": results}
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        ex.write_json(doc, tmp / "records.json")
        for name, recs in results.items():
            ex.write_csv(recs, tmp / f"{name}.csv")
        md = [f"# mape-viz bench: {args.task}", "", "```", command, "```", "",
              f"Wall time: {seconds:.0f} s (threads: {torch.get_num_threads()}, "
              f"device: {device}).", ""]
        if table:
            md += [table]
        (tmp / "table.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        if figs:
            from .viz import write_figures

            write_figures(figs, tmp / "figures", index=True)
    if table:
        print(table, end="")
    failed = [r for recs in results.values() for r in recs if r.get("ok") is False]
    print(f"\n{sum(len(r) for r in results.values())} records in {seconds:.1f} s; wrote "
          f"{out}/records.json, {', '.join(f'{n}.csv' for n in results)}, table.md"
          f"{', figures/' if figs else ''}")
    if failed:
        names = ", ".join(sorted({str(r.get('name')) for r in failed}))
        print(f"warning: {len(failed)} run(s) stopped on a NaN/inf loss: {names}",
              file=sys.stderr)
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """A readable command line rebuilt from the parsed arguments (non-default flags)."""
    parts = ["mape-viz", "bench", "--task", args.task]
    for kv in args.task_option or ():
        parts += ["--task-option", kv]
    for flag in ("experiments", "methods", "selectors", "seeds", "sparsities", "granularities"):
        v = getattr(args, flag)
        if v is not None and not (flag == "experiments" and v == "compare") \
                and not (flag == "granularities" and v == "both"):
            parts += [f"--{flag.replace('_', '-')}", v]
    if args.sparsity != 0.9:
        parts += ["--sparsity", f"{args.sparsity:g}"]
    for flag in ("no_rt", "no_sa", "no_bench_defaults", "quick", "figures", "overwrite", "quiet"):
        if getattr(args, flag):
            parts.append(f"--{flag.replace('_', '-')}")
    for flag in ("eval_max_samples", "n_requests", "relearn_epochs", "relearn_lr", "out",
                 "device"):
        v = getattr(args, flag)
        if v is not None:
            parts += [f"--{flag.replace('_', '-')}", str(v)]
    if args.threads != 1:
        parts += ["--threads", str(args.threads)]
    for mo in args.override or ():
        parts += ["--override", mo]
    for k, v in dataclass_overrides(args).items():
        flag = k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(f"--{flag}" if v else f"--no-{flag}")
        else:
            parts += [f"--{flag}", str(v)]
    return " ".join(parts)
