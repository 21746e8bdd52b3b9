"""The ``mape-viz`` command line (docs/design.md §9); also ``python -m mape_viz.cli``.

Subcommands (``mape-viz COMMAND --help`` lists each one's flags):

- ``unlearn`` (:mod:`mape_viz.cli.unlearn`) — one unlearning run, written to a run folder;
- ``bench`` (:mod:`mape_viz.cli.bench`) — the paper's method comparison and side
  experiments on a task, as a table and records;
- ``score`` (:mod:`mape_viz.cli.score`) — which heads and filters matter for a forget set:
  scores, the mask and offline HTML figures in a folder.

    mape-viz unlearn --task toy-sentiment --task-option forget=canaries \\
        --method npo --selector mape --sparsity 0.9 --out runs/npo
    mape-viz bench --task toy-sentiment --quick
    mape-viz score --model MODEL_DIR --data GLUE_SST2_DIR --forget label-flip:32 --out runs/s

:data:`SUBCOMMANDS` maps each name to the function that adds its parser; a new subcommand is
one module with such a function and one entry there. Exit codes: 0 ok; 1 a run stopped on a
NaN/inf loss (its folder is still written, flagged); 2 bad input (unknown names, an existing
``--out`` without ``--overwrite``, data or a model that do not fit, the hub unreachable for a
hub id, ...); 130 Ctrl-C (nothing half-written is left behind).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from ..tasks.hub import HubUnavailableError
from . import bench, score, unlearn
from ._flags import UsageError, add_dataclass_flags, dataclass_overrides
from ._task_args import add_task_arguments, task_from_arguments

__all__ = ["SUBCOMMANDS", "UsageError", "add_dataclass_flags", "add_task_arguments",
           "build_parser", "dataclass_overrides", "main", "task_from_arguments"]

#: name -> ``add_parser(subparsers)``, which adds the subcommand's parser with ``func`` set.
SUBCOMMANDS: dict[str, Callable[[Any], argparse.ArgumentParser]] = {
    "unlearn": unlearn.add_parser,
    "bench": bench.add_parser,
    "score": score.add_parser,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``mape-viz`` parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(prog="mape-viz", description="Module-aware machine unlearning")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add_parser in SUBCOMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mape-viz`` with ``argv`` (default: the command line); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"mape-viz {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError, HubUnavailableError) as e:
        print(f"mape-viz {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no run folder was written", file=sys.stderr)
        return 130
