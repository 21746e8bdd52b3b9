"""``mape-viz`` command line.

Subcommands live in ``SUBCOMMANDS``: name -> builder. A builder gets the argparse
sub-parsers object, adds its parser and sets ``func`` (``args -> exit code``) as a default;
adding a subcommand (``score``, ``bench``, ``figures``) is one more ``@subcommand("name")``
function.

    mape-viz unlearn --task toy-sentiment --task-option forget=canaries \\
        --method npo --selector mape --sparsity 0.9 --out runs/npo

Exit codes: 0 ok; 1 the run stopped on a NaN/inf loss (the folder is still written, flagged);
2 bad input (unknown names, an existing --out without --overwrite, ...); 130 Ctrl-C (nothing
half-written is left behind).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

#: name -> builder(subparsers) that adds the subcommand's parser (with ``func`` set).
SUBCOMMANDS: dict[str, Callable[[Any], argparse.ArgumentParser]] = {}


def subcommand(name: str) -> Callable[[Callable], Callable]:
    """Register a subcommand builder under ``name``."""
    def deco(fn: Callable) -> Callable:
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        SUBCOMMANDS[name] = fn
        return fn
    return deco


class UsageError(Exception):
    """Bad command-line input: printed without a traceback, exit code 2."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_type(f: dataclasses.Field, hints: dict[str, Any]) -> Any:
    t = hints.get(f.name, f.type)
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """One ``--flag`` per dataclass field, help from ``metadata["help"]``, default = unset
    (``None``), so only the flags given on the command line override the config."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        group_name = f.metadata.get("group", "options")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{title}: {group_name}")
        g = groups[group_name]
        typ = _field_type(f, hints)
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        if typ is bool:
            g.add_argument(_flag(f.name), dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction,
                           default=None, help=help_)
        else:
            choices = f.metadata.get("choices")
            g.add_argument(_flag(f.name), dest=f"cfg_{f.name}", type=typ, default=None,
                           choices=choices, metavar=None if choices else typ.__name__.upper(),
                           help=help_)


def dataclass_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}


def _key_values(items: Sequence[str] | None) -> dict[str, Any]:
    """``["forget=canaries", "n_forget=64"]`` -> dict, values parsed as JSON when they parse."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise UsageError(f"--task-option takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


# ---------------------------------------------------------------------------------------------
# unlearn


@subcommand("unlearn")
def build_unlearn(sub: Any) -> argparse.ArgumentParser:
    from .unlearn import METHODS, UnlearnConfig

    methods = "; ".join(f"{n}: {METHODS.help(n)}" for n in METHODS.names())
    p = sub.add_parser(
        "unlearn", help="unlearn a forget set (one run, written to a run folder)",
        description="Unlearn a forget set from a model with a method and a module selector; "
                    f"writes config.json, mask/, metrics.json and weights.safetensors. Methods: {methods}.")
    src = p.add_argument_group("data and model")
    src.add_argument("--task", help="embedded or registered task name (e.g. toy-sentiment, tiny-tofu)")
    src.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                     help="option passed to load_task (repeatable), e.g. forget=canaries")
    src.add_argument("--model", help="local Hugging Face model folder (with --data)")
    src.add_argument("--data", help="folder with forget/retain[/test] .jsonl files or a saved DatasetDict")
    src.add_argument("--kind", choices=["classification", "causal_lm", "extractive_qa"],
                     help="task kind for --model (default: from the architecture)")
    run = p.add_argument_group("run")
    run.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS.names())}")
    run.add_argument("--selector", default="mape",
                     help="full | mape | sure | random | magnitude (default: %(default)s)")
    run.add_argument("--sparsity", type=float, default=0.9,
                     help="fraction of modules frozen (default: %(default)s)")
    run.add_argument("--mask", help="use a saved mask folder instead of scoring")
    run.add_argument("--out", help="run folder (default: runs/<task>-<method>-<selector>-<sparsity>-seed<seed>)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    run.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    run.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    run.add_argument("--config", help="JSON file of UnlearnConfig fields (flags override it)")
    run.add_argument("--eval-max-samples", type=int, default=None,
                     help="evaluate at most this many rows per split")
    run.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    add_dataclass_flags(p, UnlearnConfig, "hyperparameters")
    p.set_defaults(func=run_unlearn)
    return p


def _default_out(args: argparse.Namespace) -> Path:
    src = args.task or (Path(args.model).name if args.model else "run")
    sp = "full" if args.selector == "full" else f"{args.sparsity:g}"
    return Path("runs") / f"{src}-{args.method}-{args.selector}-{sp}-seed{args.seed}"


def _load_config(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields from --config and the flags (validated); the task's tuned defaults and
    the paper defaults fill in the rest inside ``unlearn``."""
    from .unlearn import UnlearnConfig

    base: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"--config {path} does not exist")
        base = json.loads(path.read_text())
        base = base.get("config", base)  # accept a run folder's config.json too
    base.update(dataclass_overrides(args))
    try:
        UnlearnConfig.from_dict(base)  # validate now, before any work
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from e
    return base


def _load_source(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The task (embedded/registered or built from --model/--data) and what to record."""
    if args.task and (args.model or args.data):
        raise UsageError("give either --task or --model with --data, not both")
    if args.task:
        from .tasks import load_task

        opts = _key_values(args.task_option)
        return load_task(args.task, **opts), {"task": args.task, "task_options": opts}
    if args.model and args.data:
        from .unlearn.data import simple_task

        return simple_task(args.model, args.data, args.kind), {
            "model_path": str(Path(args.model).resolve()), "data_path": str(Path(args.data).resolve())}
    raise UsageError("give --task NAME, or --model FOLDER with --data FOLDER")


def run_unlearn(args: argparse.Namespace) -> int:
    from .unlearn import METHODS, selector_names, unlearn

    if args.method not in METHODS:
        raise UsageError(f"unknown method {args.method!r}; known: {', '.join(METHODS.names())}")
    if args.selector not in selector_names():
        raise UsageError(f"unknown selector {args.selector!r}; known: {', '.join(selector_names())}")
    out = Path(args.out) if args.out else _default_out(args)
    if out.exists() and not args.overwrite:  # fail before any work is done
        raise UsageError(f"run folder {out} already exists; choose another --out or pass --overwrite")
    cfg = _load_config(args)
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    task, record = _load_source(args)
    mask = None
    if args.mask:
        from .mask_io import load_mask

        mask = load_mask(args.mask)
    result = unlearn(task, args.method, args.selector, args.sparsity, cfg, mask=mask,
                     progress=not args.quiet, device=device, seed=args.seed)
    if not args.no_eval:
        from .metrics import evaluate

        result.metrics.update(evaluate(task, result.model, max_samples=args.eval_max_samples,
                                       progress=not args.quiet))
    result.save(out, overwrite=args.overwrite, extra=record)
    summary = {k: v for k, v in result.summary().items() if not isinstance(v, (list, dict))}
    print(json.dumps({"out": str(out), **summary}, indent=2, default=str))
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mape-viz", description="Module-aware machine unlearning")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for build in SUBCOMMANDS.values():
        build(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"mape-viz {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"mape-viz {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no run folder was written", file=sys.stderr)
        return 130


# Subcommands defined in their own modules register themselves on import.
from . import cli_bench  # noqa: E402,F401  (``bench``)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
