"""A minimal task for your own model and data (what ``mape-viz unlearn --model --data`` uses).

:class:`SimpleTask` has the attributes ``unlearn`` and ``mape_viz.metrics.evaluate`` read from
a task (``model``, ``tokenizer``, ``forget``, ``retain``, ``test``, ``collate``, ``kind``,
``batches``, ``retrained_model``, ``extras``). :func:`load_model_folder` and
:func:`load_data_folder` read a local model (safetensors only, no remote code) and a folder of
splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

SPLIT_NAMES = ("forget", "retain", "test")
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

#: Architecture-name suffix -> task kind.
ARCH_KINDS = (("ForSequenceClassification", "classification"),
              ("ForQuestionAnswering", "extractive_qa"),
              ("ForCausalLM", "causal_lm"), ("LMHeadModel", "causal_lm"))


@dataclass
class SimpleTask:
    """A task made of a model, a tokenizer, datasets and a collator.

    Attributes:
        model: the trained model θ*.
        tokenizer: its tokenizer (right padding).
        forget, retain, test: ``datasets.Dataset`` (test may be None).
        collate: rows (list of dicts) -> batch dict.
        kind: ``classification``, ``causal_lm`` or ``extractive_qa``.
        name: for run folders and logs.
        retrained_model: a model trained on the retain set only, if you have one.
        extras: e.g. ``{"idk": [...]}`` "I don't know" answers for DPO.
    """

    model: nn.Module
    tokenizer: Any
    forget: Any
    retain: Any
    test: Any
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    kind: str
    name: str = "custom"
    retrained_model: nn.Module | None = None
    extras: dict = field(default_factory=dict)

    def batches(self, split_or_dataset: Any, batch_size: int, shuffle: bool = False,
                seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Collated batches of a split name or a dataset; shuffled by ``seed`` if asked."""
        ds = getattr(self, split_or_dataset) if isinstance(split_or_dataset, str) else split_or_dataset
        if ds is None:
            raise ValueError(f"this task has no {split_or_dataset!r} split")
        n = len(ds)
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed))
                 if shuffle else torch.arange(n))
        for chunk in order.split(batch_size):
            yield self.collate([ds[int(i)] for i in chunk])


def kind_of_model(model_or_config: Any) -> str | None:
    """Task kind from the architecture name (``BertForSequenceClassification`` ...)."""
    config = getattr(model_or_config, "config", model_or_config)
    names = list(getattr(config, "architectures", None) or [])
    if isinstance(model_or_config, nn.Module):
        names.append(type(model_or_config).__name__)
    for name in names:
        for suffix, kind in ARCH_KINDS:
            if name.endswith(suffix):
                return kind
    return None


def load_model_folder(path: str | Path, kind: str | None = None) -> tuple[nn.Module, Any, str]:
    """(model, tokenizer, kind) from a local Hugging Face folder (safetensors only)."""
    import transformers as T

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    config = T.AutoConfig.from_pretrained(path, trust_remote_code=False)
    kind = kind or kind_of_model(config)
    auto = {"classification": T.AutoModelForSequenceClassification,
            "causal_lm": T.AutoModelForCausalLM,
            "extractive_qa": T.AutoModelForQuestionAnswering}
    if kind not in auto:
        raise ValueError(f"cannot tell the task kind of {path} from its config "
                         f"(architectures={getattr(config, 'architectures', None)}); pass --kind "
                         f"({', '.join(auto)})")
    model = auto[kind].from_pretrained(path, use_safetensors=True, trust_remote_code=False).eval()
    tok = T.AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    tok.padding_side = "right"
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return model, tok, kind


def _load_split(path: Path) -> Any:
    import datasets

    fmt = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[path.suffix]
    return datasets.load_dataset(fmt, data_files=str(path), split="train")


def load_data_folder(path: str | Path) -> dict[str, Any]:
    """``{"forget", "retain", "test"}`` datasets from a folder.

    Either a ``DatasetDict.save_to_disk`` folder with those splits, or files
    ``forget.jsonl`` / ``retain.jsonl`` / ``test.jsonl`` (``.json``, ``.csv``, ``.parquet``
    also read). ``forget`` and ``retain`` are required.
    """
    import datasets

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {path} does not exist")
    if (path / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(path))
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


def collator_for(kind: str, tokenizer: Any, columns: list[str]) -> Callable:
    """The ``mape_viz.tasks.collate`` collator for ``kind``, with column names guessed."""
    from ..tasks.collate import CausalLMCollator, ClassificationCollator, ExtractiveQACollator

    if kind == "classification":
        text = next((c for c in ("text", "sentence", "sentence1", "premise", "question1")
                     if c in columns), None)
        if text is None:
            raise ValueError(f"no text column among {columns} (expected text / sentence / ...)")
        pair = next((c for c in ("sentence2", "hypothesis", "question2") if c in columns), None)
        return ClassificationCollator(tokenizer, text_key=text, pair_key=pair,
                                      label_key="label")
    if kind == "causal_lm":
        return CausalLMCollator(tokenizer)
    if kind == "extractive_qa":
        return ExtractiveQACollator(tokenizer)
    raise ValueError(f"unknown task kind {kind!r}")


def simple_task(model_path: str | Path, data_path: str | Path, kind: str | None = None) -> SimpleTask:
    """A :class:`SimpleTask` from a model folder and a data folder."""
    model, tok, kind = load_model_folder(model_path, kind)
    splits = load_data_folder(data_path)
    collate = collator_for(kind, tok, list(splits["forget"].column_names))
    extras = {}
    idk = Path(data_path) / "idk.json"
    if idk.is_file():
        extras["idk"] = json.loads(idk.read_text())
    return SimpleTask(model=model, tokenizer=tok, forget=splits["forget"],
                      retain=splits["retain"], test=splits["test"], collate=collate, kind=kind,
                      name=Path(model_path).name, extras=extras)
