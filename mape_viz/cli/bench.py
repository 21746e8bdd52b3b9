"""``mape-viz bench``: the paper's method comparison (Table 2 / 3) on a task, as a table.

    mape-viz bench --task toy-sentiment                # full comparison (minutes on 2 CPUs)
    mape-viz bench --task toy-sentiment --quick        # fewer methods / samples
    mape-viz bench --task tiny-tofu --quick --figures
    mape-viz bench --task toy-sentiment --experiments compare,relearn,sweep,successive
    mape-viz bench --task toy-sentiment --experiments frontier --quick --figures
    mape-viz bench --model MODEL_DIR --data GLUE_SST2_DIR --forget label-flip:32 --quick

Prints a Table-2-shaped markdown table (efficacy: forget score ↓, MIA ↓; fidelity: retain and
test score ↑; seconds) and writes, into ``--out`` (refused if it exists, unless
``--overwrite``; written atomically):

- ``records.json`` — every record of every experiment, the command, task options, config;
- ``<experiment>.csv`` — one CSV of tidy records per experiment;
- ``table.md`` — the printed table and the command that made it;
- ``figures/*.html`` with ``--figures`` — offline HTML figures (``mape_viz.viz``).

``--experiments frontier`` (:mod:`mape_viz.experiments.frontier`) runs a step-size grid
(``--grid``: factors of each run's lr / η) × seeds per method × selector; ``frontier.csv``
holds every run with ``on_front``, ``records.json`` the summary and the rule, and
``table.md`` the Table-2-shaped frontier table computed by that one rule (fidelity at equal
efficacy, efficacy at equal fidelity, seed spread); ``figures/frontier.html`` the figure.

Tuned settings are the ``bench`` rows of :mod:`mape_viz.presets` (docs/design.md §8): the
learning rates each task's runs take, laid under ``--override`` and any hyperparameter flag
(``--no-bench-defaults`` drops them), and the task options used when none are given
(``toy-sentiment``: ``forget=canaries``, the 32 memorised rule-breaking rows that the
retrained model gets wrong — pass ``--task-option forget=random`` for the paper's random 128
rows). See docs/design.md §9 for the command line.

The task is given as for ``mape-viz score`` / ``unlearn`` (:mod:`mape_viz.cli._task_args`):
``--task NAME [--task-option KEY=VALUE ...]``, or your model and data (``--model PATH_OR_ID
--data PATH_OR_ID`` with the column, ``--forget``, ``--finetune``, ``--train-config`` and
``--retrained`` flags). A task without ``bench`` presets (your own model and data: the
``text-classification`` and ``causal-lm-qa`` loaders) runs at the paper's defaults
(``UnlearnConfig``), as the paper's comparison does; ``--lr`` / ``--override`` change them.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .. import experiments as ex
from .. import viz
from ..choices import list_granularities, list_methods, list_selectors
from ..experiments.records import comparison_markdown, table_columns
from ..presets import TASK_OPTIONS, preset_targets
from ..unlearning import UnlearnConfig
from ..unlearning.result import atomic_dir
from ._flags import (UsageError, add_dataclass_flags, csv_list, dataclass_overrides,
                     merge_targets, target_overrides)
from ._task_args import add_task_arguments, task_command_line, task_from_arguments

EXPERIMENTS = ("compare", "sweep", "successive", "relearn", "frontier")
SWEEP_SPARSITIES = ("0.5", "0.7", "0.9", "0.95")
SEEDS = ("0", "1", "2")
N_REQUESTS = 4       # successive: requests the forget set is cut into
RELEARN_EPOCHS = 5   # relearn: epochs of the attack

#: ``--quick``: what shrinks (each can still be set explicitly).
QUICK = {"methods": "ga,npo", "selectors": "full,mape", "eval_max_samples": 300, "sa_max_steps": 60,
         "relearn_epochs": 3, "sparsities": "0.5,0.9", "n_requests": 2,
         "grid": ",".join(f"{m:g}" for m in ex.frontier.QUICK_MULTIPLIERS)}
#: frontier: (efficacy, fidelity) record columns per task kind (default: forget / test).
FRONTIER_COLUMNS = {"causal_lm": ("forget_rouge", "model_utility")}

LABELS = {"forget": "forget acc.", "retain": "retain acc.", "test": "test acc.", "mia": "MIA",
          "forget_rouge": "forget ROUGE", "forget_prob": "forget prob.",
          "forget_quality": "forget quality", "retain_rouge": "retain ROUGE",
          "model_utility": "model utility", "seconds": "seconds"}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` parser to ``sub`` (argparse sub-parsers); ``func`` runs it."""
    defaults = ", ".join(f"{task}: {' '.join(f'{k}={v}' for k, v in opts.items())}"
                         for (task, front_end), opts in TASK_OPTIONS.items() if front_end == "bench")
    methods = "; ".join(f"{', '.join(ms)} for {kind}" for kind, ms in ex.DEFAULT_METHODS.items())
    p = sub.add_parser(
        "bench", help="compare unlearning methods on a task (paper Table 2) and write records",
        description="Run the paper's comparison (Original, RT, SA, and each method with full / "
                    "SURE / MAPE updates at one sparsity) on a task, print a Table-2-shaped "
                    "markdown table, and write records.json, <experiment>.csv and table.md "
                    "to --out (optionally offline HTML figures).")
    add_task_arguments(p)
    p.epilog = (f"Task options laid under --task-option (mape_viz.presets): {defaults}. Your "
                "model and data (--model/--data) run at the paper's defaults.")
    run = p.add_argument_group("bench")
    run.add_argument("--experiments", default="compare",
                     help=f"comma list of {', '.join(EXPERIMENTS)} (default: %(default)s)")
    run.add_argument("--methods", help=f"comma list of {', '.join(list_methods())} (default: "
                                       f"{methods})")
    run.add_argument("--selectors", help=f"comma list of {', '.join(list_selectors())} "
                                         f"(default: {','.join(ex.COMPARE_SELECTORS)})")
    run.add_argument("--sparsity", type=float, default=0.9,
                     help="sparsity of the masked runs (default: %(default)s)")
    run.add_argument("--seeds", help="comma list of seeds; the table averages them (default: "
                                     "0,1,2; --quick: 0)")
    run.add_argument("--no-rt", action="store_true", help="leave out the RT row")
    run.add_argument("--no-sa", action="store_true", help="leave out the SA row")
    run.add_argument("--override", action="append", metavar="TARGET:KEY=VALUE",
                     help="config override for some runs (repeatable); TARGET is * (every "
                          "run), full (every unmasked run), masked (every masked run), a method "
                          "(so) or method/selector (ga/mape); e.g. masked:lr=5e-3 so:eta=1e-7. "
                          "Applied least specific first, over the task's bench presets "
                          "(a hyperparameter flag such as --lr replaces those too)")
    run.add_argument("--no-bench-defaults", action="store_true",
                     help="use UnlearnConfig's defaults for every run instead of the task's "
                          "bench presets (mape_viz.presets: learning rates for the tiny models)")
    run.add_argument("--quick", action="store_true",
                     help="a few-minute version: 2 methods, full + MAPE, SA capped at "
                          f"{QUICK['sa_max_steps']} steps, at most {QUICK['eval_max_samples']} "
                          "eval rows per split, smaller side experiments")
    run.add_argument("--eval-max-samples", type=int, default=None,
                     help="evaluate at most this many rows per split (default: all)")
    run.add_argument("--sparsities",
                     help=f"sweep: comma list (default {','.join(SWEEP_SPARSITIES)})")
    run.add_argument("--granularities", default="both",
                     help=f"sweep: comma list of {', '.join(list_granularities())} "
                          "(default: %(default)s)")
    run.add_argument("--n-requests", type=int, default=None,
                     help=f"successive: number of requests (default {N_REQUESTS})")
    run.add_argument("--relearn-epochs", type=int, default=None,
                     help=f"relearn: epochs (default {RELEARN_EPOCHS})")
    run.add_argument("--grid", help="frontier: comma list of step-size factors applied to each "
                                    "run's lr (eta for SO) (default: "
                                    f"{','.join(f'{m:g}' for m in ex.DEFAULT_MULTIPLIERS)}; "
                                    f"--quick: {QUICK['grid']})")
    run.add_argument("--efficacy-margin", type=float, default=0.05,
                     help="frontier: equal efficacy = RT's forget score + this (default: "
                          "%(default)s = 5 points)")
    run.add_argument("--fidelity-margin", type=float, default=0.01,
                     help="frontier: equal fidelity = the original's test score − this "
                          "(default: %(default)s = 1 point)")
    run.add_argument("--relearn-lr", type=float, default=None,
                     help=f"relearn: learning rate (default {ex.DEFAULT_LR:g}, the tiny models' "
                          f"training scale; the paper's {ex.PAPER_LR:g} barely moves them)")
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


def _source_name(args: argparse.Namespace) -> str:
    """What the bench runs on, for the default folder and the table's title."""
    if args.task:
        return args.task
    return Path(str(args.model)).name if args.model else "task"


def _default_out(args: argparse.Namespace) -> Path:
    name = _source_name(args).replace("/", "_")
    return Path("runs") / f"bench-{name}{'-quick' if args.quick else ''}"


def _figures(kind: str, experiments: dict[str, list[dict]]) -> dict[str, Any]:
    """The figures of the experiments that ran (plotting lives here, not in experiments)."""
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
    eff, fid, dirs = table_columns(kind)
    eff = tuple(c for c in eff if any(r.get(c) is not None for r in records))
    fid = tuple(c for c in fid if any(r.get(c) is not None for r in records))
    return eff, fid, dirs


def comparison_markdown_for(records: list[dict], kind: str,
                            wanda: dict[str, float] | None = None) -> str:
    """The bench's Table-2-shaped markdown table of comparison records (best per method
    group in bold, as :func:`mape_viz.viz.comparison_rows` decides). ``wanda``: {method:
    wanda_sparsity} of the ``mape+wanda`` runs, named as the paper's "MAPE-SO(90%)"
    (Appendix B.2) instead of ``MAPE+WANDA-SO``."""
    eff, fid, dirs = table_columns_for(records, kind)
    rows = viz.comparison_rows(records, efficacy=eff, fidelity=(*fid, "seconds"),
                           directions={**dirs, "seconds": "min"}, reference=("rt", "original"))
    for r in rows:
        r["best"].discard("seconds")
        if r["method"] == "original":
            r["name"] = "Original"
        if r["selector"] == "mape+wanda" and r["method"] in (wanda or {}):
            r["name"] = f"MAPE-{str(r['method']).upper()}({wanda[r['method']]:.0%})"
    fmts = {"forget": ".2%", "retain": ".2%", "test": ".2%", "mia": ".4f",
            "forget_quality": ".3g", "seconds": ".1f"}
    return comparison_markdown(rows, eff, fid, extra=("seconds",), directions=dirs,
                               labels=LABELS, formats=fmts)


def run_bench(args: argparse.Namespace) -> int:
    """Run ``mape-viz bench``; returns the exit code."""
    t_start = time.perf_counter()
    exps = csv_list(args.experiments) or ["compare"]
    unknown = [e for e in exps if e not in EXPERIMENTS]
    if unknown:
        raise UsageError(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    out = Path(args.out) if args.out else _default_out(args)
    if out.exists() and not args.overwrite:  # fail before any work is done
        raise UsageError(f"output folder {out} already exists; choose another --out or pass "
                         "--overwrite")
    selectors = csv_list(args.selectors) or \
        (QUICK["selectors"].split(",") if args.quick else list(ex.COMPARE_SELECTORS))
    bad = [s for s in selectors if s not in list_selectors()]
    if bad:
        raise UsageError(f"unknown selector(s) {bad}; known: {', '.join(list_selectors())}")
    methods_arg = csv_list(args.methods)
    if methods_arg:
        bad = [m for m in methods_arg if m not in list_methods()]
        if bad:
            raise UsageError(f"unknown method(s) {bad}; known: {', '.join(list_methods())}")
    try:
        seeds = [int(s) for s in csv_list(args.seeds) or (["0"] if args.quick else SEEDS)]
    except ValueError as e:
        raise UsageError(f"--seeds takes integers: {e}") from e
    if not 0.0 <= args.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    try:
        sweep_sps = [float(x) for x in csv_list(args.sparsities) or
                     (QUICK["sparsities"].split(",") if args.quick else SWEEP_SPARSITIES)]
        grans = csv_list(args.granularities) or ["both"]
        if "sweep" in exps:
            ex.sweep_plan(["ga"], ["mape"], sweep_sps, grans)  # validates both lists
    except ValueError as e:
        raise UsageError(f"--sparsities / --granularities: {e}") from e
    fc = None
    if "frontier" in exps:
        try:
            grid = [float(v) for v in csv_list(args.grid) or QUICK["grid"].split(",")] \
                if (args.grid or args.quick) else list(ex.DEFAULT_MULTIPLIERS)
            fc = ex.FrontierConfig(selectors=tuple(selectors), sparsity=args.sparsity,
                                   multipliers=tuple(grid), seeds=tuple(seeds),
                                   efficacy_margin=args.efficacy_margin,
                                   fidelity_margin=args.fidelity_margin)
        except ValueError as e:
            raise UsageError(f"--grid / --efficacy-margin / --fidelity-margin: {e}") from e
    user_over = target_overrides(args.override)
    try:
        cfg = UnlearnConfig.from_dict(dataclass_overrides(args))
        ex.check_overrides(user_over)  # validate now, not after minutes of work
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from e
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    progress = not args.quiet

    if progress:
        print(f"loading task {' '.join(task_command_line(args))} (trains or fine-tunes models "
              "and caches them on first use)", file=sys.stderr)
    task, record = task_from_arguments(args, front_end="bench", merge_defaults=True)
    opts = record["task_options"]
    kind = task.kind
    methods = methods_arg or (QUICK["methods"].split(",") if args.quick
                              else list(ex.default_methods(kind)))
    fitting = list_methods(kind)
    bad = [m for m in methods if m not in fitting]
    if bad:
        raise UsageError(f"method(s) {bad} do not fit a {kind} task; methods that fit: "
                         f"{', '.join(fitting)}")
    eval_max = args.eval_max_samples if args.eval_max_samples is not None else \
        (QUICK["eval_max_samples"] if args.quick else None)
    # a hyperparameter flag given on the command line (--lr ...) beats the bench presets
    given = set(dataclass_overrides(args))
    presets = {} if args.no_bench_defaults else preset_targets(task, "bench")
    bench = {t: {k: v for k, v in f.items() if k not in given} for t, f in presets.items()}
    overrides = merge_targets({t: f for t, f in bench.items() if f},
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
        n_req = args.n_requests or (QUICK["n_requests"] if args.quick else N_REQUESTS)
        succ_method = "so" if "so" in methods else methods[0]
        results["successive"] = ex.successive(
            task, n_req, None, [s for s in selectors if s != "sure"] or selectors, succ_method,
            args.sparsity, cfg, overrides=overrides, scenarios=("successive", "batch"),
            seed=seeds[0],
            eval_max_samples=eval_max, device=device, progress=progress)
    if "relearn" in exps:
        epochs = args.relearn_epochs or (QUICK["relearn_epochs"] if args.quick else RELEARN_EPOCHS)
        lr = args.relearn_lr if args.relearn_lr is not None else ex.DEFAULT_LR
        rl_methods = [m for m in methods if m not in ("so",)] or methods
        results["relearn"] = ex.relearn(
            task, rl_methods, [s for s in selectors if s in ("full", "mape")] or selectors,
            epochs, 0.2, lr, sparsity=args.sparsity, config=cfg, overrides=overrides,
            seed=seeds[0], eval_max_samples=eval_max, device=device, progress=progress)

    front = None
    if fc is not None:
        eff, fid = FRONTIER_COLUMNS.get(kind, ("forget", "test"))
        fc = dataclasses.replace(fc, methods=tuple(methods), efficacy=eff, fidelity=fid)
        front = ex.run_frontier(task, fc, config=cfg, overrides=overrides,
                                eval_max_samples=eval_max, device=device, progress=progress)
        results["frontier"] = front.rows()

    command = _command_line(args)
    wanda = {m: ex.config_for(cfg, overrides, m, "mape+wanda").wanda_sparsity
             for m in methods} if "mape+wanda" in selectors else None
    table = comparison_markdown_for(results["compare"], kind, wanda) \
        if results.get("compare") else ""
    if front is not None:
        table += ("\n" if table else "") + "Efficacy–fidelity frontier\n\n" + front.markdown()
    seconds = time.perf_counter() - t_start
    figs = _figures(kind, results) if args.figures else {}
    if args.figures and front is not None:
        figs["frontier"] = viz.frontier(front)

    doc = {"format": "mape-viz-bench/1", "command": command, "task": record["task"],
           "task_options": opts, "kind": kind, "quick": bool(args.quick),
           "methods": methods, "selectors": selectors, "sparsity": args.sparsity,
           "seeds": seeds, "config": cfg.to_dict(), "overrides": overrides,
           "eval_max_samples": eval_max, "device": device, "threads": torch.get_num_threads(),
           "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "environment": {"python": platform.python_version(), "torch": torch.__version__,
                           "platform": platform.platform()},
           "table": table, "experiments": results}
    if front is not None:
        doc["frontier"] = {k: v for k, v in front.to_dict().items() if k != "records"}
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        ex.write_json(doc, tmp / "records.json")
        for name, recs in results.items():
            ex.write_csv(recs, tmp / f"{name}.csv")
        md = [f"# mape-viz bench: {_source_name(args)}", "", "```", command, "```", "",
              f"Wall time: {seconds:.0f} s (threads: {torch.get_num_threads()}, "
              f"device: {device}).", ""]
        if table:
            md += [table]
        (tmp / "table.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        if figs:
            viz.write_figures(figs, tmp / "figures", index=True)
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
    parts = ["mape-viz", "bench", *(shlex.quote(w) for w in task_command_line(args))]
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
    for flag in ("eval_max_samples", "n_requests", "relearn_epochs", "relearn_lr", "grid", "out",
                 "device"):
        v = getattr(args, flag)
        if v is not None:
            parts += [f"--{flag.replace('_', '-')}", str(v)]
    if args.threads != 1:
        parts += ["--threads", str(args.threads)]
    for flag, default in (("efficacy_margin", 0.05), ("fidelity_margin", 0.01)):
        if getattr(args, flag) != default:
            parts += [f"--{flag.replace('_', '-')}", f"{getattr(args, flag):g}"]
    for mo in args.override or ():
        parts += ["--override", mo]
    for k, v in dataclass_overrides(args).items():
        flag = k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(f"--{flag}" if v else f"--no-{flag}")
        else:
            parts += [f"--{flag}", str(v)]
    return " ".join(parts)
