"""The task flags every subcommand shares (docs/design.md §9): a named task, or your model and
data.

    parser = argparse.ArgumentParser()
    add_task_arguments(parser)
    args = parser.parse_args([...])
    task, record = task_from_arguments(args, front_end="library")

``--task NAME [--task-option KEY=VALUE ...]`` loads a registered task; ``--model PATH_OR_ID
--data PATH_OR_ID`` loads ``text-classification`` (or ``causal-lm-qa`` for a causal LM, or
``--kind``) with the column, forget and fine-tuning flags; both together hand the model and
data to the named task (``--task glue/sst2 --model DIR --data DIR``). A data folder holding
``forget.*`` and ``retain.*`` files is the older local layout
(:func:`mape_viz.tasks.load_local_task`) when no column or forget flag asks otherwise.
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from ..presets import task_options
from ..tasks import TASKS, load_local_task, load_task
from ..tasks.base import Task
from ..tasks.hub import load_config_and_tokenizer
from ..tasks.local import kind_of_model
from ..tasks.readers import FORMATS
from ._flags import UsageError, csv_list, key_values

__all__ = ["GENERIC_TASKS", "TASK_FLAGS", "add_task_arguments", "task_command_line",
           "task_from_arguments"]

#: ``--kind`` -> the generic loader of that kind.
GENERIC_TASKS = {"classification": "text-classification", "causal_lm": "causal-lm-qa"}

#: dest -> loader option, for the flags that pass through to the loader when given.
TASK_FLAGS = {"text_column": "text_column", "text_pair_column": "text_pair_column",
              "label_column": "label_column", "label_names": "label_names",
              "question_column": "question_column", "answer_column": "answer_column",
              "forget": "forget", "forget_seed": "seed", "n_forget": "n_forget",
              "data_config": "data_config", "retrained": "retrained",
              "max_length": "max_length", "max_train": "max_train",
              "train_split": "train_split", "test_split": "test_split",
              "forget_split": "forget_split", "retain_split": "retain_split",
              "finetune": "finetune", "train_config": "train"}

FINETUNE_CHOICES = {"auto": "auto", "yes": True, "no": False}


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the task flags (one argument group) to ``parser``; read them back with
    :func:`task_from_arguments`. None is required here: that function says what is missing."""
    g = parser.add_argument_group("task: a named task, or your model and data")
    g.add_argument("--task", help=f"registered task: {', '.join(TASKS.names())}")
    g.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                   help="option passed to load_task (repeatable), e.g. forget=canaries")
    g.add_argument("--model", help="model folder (safetensors) or hub id")
    g.add_argument("--data", help=f"data folder (train/dev/test files: "
                                  f"{', '.join('.' + s for s in FORMATS)}), one file, or a "
                                  f"hub dataset id")
    g.add_argument("--data-config", help="hub dataset configuration (e.g. sst2 of nyu-mll/glue)")
    g.add_argument("--kind", choices=sorted(GENERIC_TASKS) + ["extractive_qa"],
                   help="task kind for --model (default: from the model's architecture, "
                        "else classification)")
    g.add_argument("--text-column", help="text column (default: found: sentence, text, ...)")
    g.add_argument("--text-pair-column", help="second text column of sentence pairs")
    g.add_argument("--label-column", help="label column (default: found: label, ...)")
    g.add_argument("--label-names", metavar="A,B,...", help="class names in id order")
    g.add_argument("--question-column", help="question column (causal LM)")
    g.add_argument("--answer-column", help="answer column (causal LM)")
    g.add_argument("--forget", metavar="SPEC",
                   help="forget set: N or random:N, a fraction 0.05, ids:3,17, file:PATH, "
                        "column:NAME, label-flip:N (default: the task's, 128 random rows)")
    g.add_argument("--forget-seed", type=int, help="seed of random forget sets / label flips")
    g.add_argument("--n-forget", type=int, help="size of the 'random' forget set")
    g.add_argument("--forget-split", help="split of forget rows (causal LM, TOFU layout)")
    g.add_argument("--retain-split", help="split of retain rows (causal LM, TOFU layout)")
    g.add_argument("--train-split", help="training split name, when not train")
    g.add_argument("--test-split", help="held-out split name, when not validation/dev/test")
    g.add_argument("--finetune", choices=sorted(FINETUNE_CHOICES),
                   help="fine-tune the model on the data first: auto (when it has no fitting "
                        "head, or for label-flip), yes, no (default: the task's)")
    g.add_argument("--train-config", metavar="JSON",
                   help='fine-tuning recipe fields, e.g. \'{"epochs": 3, "lr": 3e-5}\'')
    g.add_argument("--retrained", action="store_true", default=None,
                   help="also build the retrained reference (a second fine-tuning run on D_r)")
    g.add_argument("--max-length", type=int, help="truncation length in tokens")
    g.add_argument("--max-train", type=int, help="keep only the first N training rows")


def task_command_line(args: argparse.Namespace) -> list[str]:
    """The task flags given, as command-line words (for records: ``--model DIR --data DIR
    --forget label-flip:8 ...``)."""
    parts: list[str] = []
    for dest in ("task", "model", "data", "kind"):
        if getattr(args, dest, None) is not None:
            parts += [f"--{dest}", str(getattr(args, dest))]
    for kv in getattr(args, "task_option", None) or ():
        parts += ["--task-option", kv]
    for dest in TASK_FLAGS:
        value = getattr(args, dest, None)
        if value is True:
            parts.append(f"--{dest.replace('_', '-')}")
        elif value is not None and value is not False:
            parts += [f"--{dest.replace('_', '-')}", str(value)]
    return parts


def _flag_options(args: argparse.Namespace) -> dict[str, Any]:
    """The loader options of the task flags given (``None`` = not given)."""
    out: dict[str, Any] = {}
    for dest, option in TASK_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "label_names":
            value = csv_list(value)
        elif dest == "finetune":
            value = FINETUNE_CHOICES[value]
        elif dest == "train_config":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise UsageError(f"--train-config takes a JSON object, got {value!r} ({err})")
        elif dest == "forget":
            value = _forget_value(value)
        out[option] = value
    return out


def _forget_value(text: str) -> Any:
    """``"128"`` -> 128, ``"0.05"`` -> 0.05, ``"[1, 2]"`` -> [1, 2]; anything else stays text
    (a spec such as ``label-flip:8`` or a task's own set name such as ``canaries``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, (int, float, list)) and not isinstance(value, bool) \
        else text


def _old_layout(data: str) -> bool:
    folder = Path(data)
    stems = {p.name.split(".")[0] for p in folder.iterdir()} if folder.is_dir() else set()
    return {"forget", "retain"} <= stems and not (stems & {"train", "training"})


def _generic_name(args: argparse.Namespace) -> str:
    if args.kind in GENERIC_TASKS:
        return GENERIC_TASKS[args.kind]
    if args.kind == "extractive_qa":
        raise UsageError("--kind extractive_qa reads a data folder of forget/retain[/test] "
                         "files (the local layout); use --task squad for SQuAD-style files")
    config, _ = load_config_and_tokenizer(args.model)
    kind = kind_of_model(config)
    return GENERIC_TASKS.get(kind or "classification", "text-classification")


def task_from_arguments(args: argparse.Namespace, front_end: str | None = None,
                        merge_defaults: bool = False) -> tuple[Task, dict[str, Any]]:
    """The task the flags of :func:`add_task_arguments` describe, and what to record
    (``{"task", "task_options"}``, JSON-able).

    ``front_end`` (``"library"``, ``"bench"``, ...) fills in that front end's task options
    (:func:`mape_viz.presets.task_options`) for a named task given without any;
    ``merge_defaults=True`` lays them under the given ones instead (``mape-viz bench``:
    ``--task-option n_forget=64`` keeps the bench's ``forget=canaries``). Raises
    :class:`~mape_viz.cli._flags.UsageError` for a missing or contradictory flag; the
    loaders raise ``ValueError`` (bad data or model, with what to change),
    ``FileNotFoundError`` and ``HubUnavailableError``.
    """
    flags = _flag_options(args)
    opts = key_values(getattr(args, "task_option", None))
    name = args.task
    if name is None:
        if not (args.model and args.data):
            raise UsageError("give --task NAME, or --model PATH_OR_ID with --data PATH_OR_ID")
        if _old_layout(args.data) and not flags and args.kind != "classification":
            task = load_local_task(args.model, args.data, args.kind)
            return task, {"task": "local", "task_options": {"model": str(args.model),
                                                            "data": str(args.data)}}
        name = _generic_name(args)
    elif front_end is not None and (merge_defaults or not opts):
        opts = {**task_options(name, front_end), **opts}
    params = inspect.signature(TASKS.get(name)).parameters
    if args.model:
        opts["model"] = args.model
    if args.data:
        key = "data" if "data" in params else "data_files" if "data_files" in params else None
        if key is None:
            raise UsageError(f"task {name!r} takes no --data (it generates its own)")
        opts[key] = args.data
    if "retrained" in flags and "retrained" not in params and "retrain" in params:
        flags["retrain"] = flags.pop("retrained")  # the GLUE/SQuAD presets' name for it
    unknown = [k for k in flags if k not in params]
    if unknown:
        names = {v: k for k, v in TASK_FLAGS.items()}
        given = ", ".join("--" + names.get(k, k).replace("_", "-") for k in unknown)
        raise UsageError(f"task {name!r} takes no {given}; its options: {', '.join(params)} "
                         f"(pass others with --task-option KEY=VALUE)")
    opts.update(flags)
    task = load_task(name, **opts)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}
    return task, {"task": name, "task_options": record}
