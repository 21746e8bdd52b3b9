"""Your own model and data as a :class:`~mape_viz.tasks.base.Task` (what ``mape-viz unlearn
--model --data`` uses; docs/design.md §7).

:func:`load_local_task` reads a local Hugging Face model folder (safetensors only, no remote
code; the task kind comes from its architecture name unless given) and a folder of splits,
and picks the collator of that kind with the column names guessed. The pieces are public:
:func:`load_model_folder`, :func:`load_data_folder`, :func:`collator_for`,
:func:`kind_of_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForQuestionAnswering,
                          AutoModelForSequenceClassification, AutoTokenizer,
                          PreTrainedTokenizerBase)

from .base import SPLIT_NAMES, Collate, Task
from .collate import CausalLMCollator, ClassificationCollator, ExtractiveQACollator
from .readers import FORMATS, read_file

__all__ = ["ARCH_KINDS", "DATA_SUFFIXES", "SPLIT_NAMES", "collator_for", "kind_of_model",
           "load_data_folder", "load_local_task", "load_model_folder"]

#: File suffixes read for a split file (``forget.jsonl`` ...), in order of preference.
DATA_SUFFIXES = tuple(f".{ext}" for ext in FORMATS)

#: Architecture-name suffix -> task kind.
ARCH_KINDS = (("ForSequenceClassification", "classification"),
              ("ForQuestionAnswering", "extractive_qa"),
              ("ForCausalLM", "causal_lm"), ("LMHeadModel", "causal_lm"))

#: Task kind -> the auto class that loads a model of that kind.
AUTO_MODELS = {"classification": AutoModelForSequenceClassification,
               "causal_lm": AutoModelForCausalLM,
               "extractive_qa": AutoModelForQuestionAnswering}

#: Column names tried, in order, for the text (and the optional second text) of a
#: classification row.
TEXT_COLUMNS = ("text", "sentence", "sentence1", "premise", "question1")
PAIR_COLUMNS = ("sentence2", "hypothesis", "question2")


def kind_of_model(model_or_config: Any) -> str | None:
    """Task kind from the architecture name (``BertForSequenceClassification`` ...), or
    ``None`` when no name tells."""
    config = getattr(model_or_config, "config", model_or_config)
    names = list(getattr(config, "architectures", None) or [])
    if isinstance(model_or_config, nn.Module):
        names.append(type(model_or_config).__name__)
    for name in names:
        for suffix, kind in ARCH_KINDS:
            if name.endswith(suffix):
                return kind
    return None


def load_model_folder(path: str | Path, kind: str | None = None
                      ) -> tuple[nn.Module, PreTrainedTokenizerBase, str]:
    """(model in eval mode, tokenizer with right padding, kind) from a local Hugging Face
    folder (safetensors only, no remote code)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    kind = kind or kind_of_model(config)
    if kind not in AUTO_MODELS:
        raise ValueError(f"cannot tell the task kind of {path} from its config "
                         f"(architectures={getattr(config, 'architectures', None)}); pass --kind "
                         f"({', '.join(AUTO_MODELS)})")
    model = AUTO_MODELS[kind].from_pretrained(path, use_safetensors=True,
                                              trust_remote_code=False).eval()
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    tok.padding_side = "right"
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return model, tok, kind


def _load_split(path: Path) -> Dataset:
    return read_file(path)


def load_data_folder(path: str | Path) -> dict[str, Dataset | None]:
    """``{"forget", "retain", "test"}`` datasets from a folder (``test`` may be ``None``).

    Either a ``DatasetDict.save_to_disk`` folder with those splits, or files
    ``forget.jsonl`` / ``retain.jsonl`` / ``test.jsonl`` (``.json``, ``.tsv``, ``.csv``,
    ``.parquet`` also read). ``forget`` and ``retain`` are required.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {path} does not exist")
    if (path / "dataset_dict.json").is_file():
        dd = load_from_disk(str(path))
        out = {s: dd[s] if s in dd else None for s in SPLIT_NAMES}
    else:
        out = {}
        for s in SPLIT_NAMES:
            files = [path / f"{s}{suf}" for suf in DATA_SUFFIXES if (path / f"{s}{suf}").is_file()]
            out[s] = _load_split(files[0]) if files else None
    missing = [s for s in ("forget", "retain") if out.get(s) is None]
    if missing:
        raise FileNotFoundError(f"{path} has no {' / '.join(missing)} split; expected "
                                f"forget.jsonl and retain.jsonl (or a saved DatasetDict)")
    return out


def collator_for(kind: str, tokenizer: PreTrainedTokenizerBase, columns: list[str]) -> Collate:
    """The :mod:`mape_viz.tasks.collate` collator for ``kind``, with column names guessed
    from ``columns`` (classification: the first of :data:`TEXT_COLUMNS`, the optional pair
    from :data:`PAIR_COLUMNS`, labels in ``label``)."""
    if kind == "classification":
        text = next((c for c in TEXT_COLUMNS if c in columns), None)
        if text is None:
            raise ValueError(f"no text column among {columns} (expected one of "
                             f"{', '.join(TEXT_COLUMNS)})")
        pair = next((c for c in PAIR_COLUMNS if c in columns), None)
        return ClassificationCollator(tokenizer, text_key=text, pair_key=pair,
                                      label_key="label")
    if kind == "causal_lm":
        return CausalLMCollator(tokenizer)
    if kind == "extractive_qa":
        return ExtractiveQACollator(tokenizer)
    raise ValueError(f"unknown task kind {kind!r}; local tasks take "
                     f"{', '.join(AUTO_MODELS)}")


def load_local_task(model_path: str | Path, data_path: str | Path,
                    kind: str | None = None) -> Task:
    """A :class:`Task` from a model folder and a data folder.

    ``name`` is the model folder's name; ``test`` is ``None`` when the folder has no test
    split; an ``idk.json`` in the data folder (a list of "I don't know" answers) becomes
    ``extras["idk"]`` for DPO. No retrained model.
    """
    model, tok, kind = load_model_folder(model_path, kind)
    splits = load_data_folder(data_path)
    collate = collator_for(kind, tok, list(splits["forget"].column_names))
    extras: dict[str, Any] = {}
    idk = Path(data_path) / "idk.json"
    if idk.is_file():
        extras["idk"] = json.loads(idk.read_text())
    return Task(name=Path(model_path).name, kind=kind, model=model, tokenizer=tok,
                forget=splits["forget"], retain=splits["retain"], test=splits["test"],
                collate=collate, extras=extras)
