"""Tasks: data, models and collators for unlearning runs (docs/design.md §7).

One type, :class:`Task`. ``load_task(name, **options) -> Task``; ``TASKS.names()`` lists
the names. Embedded defaults (offline, trained locally and cached): ``toy-sentiment``,
``tiny-tofu``. Real tasks (hub name or local files): ``glue/sst2``, ``glue/mnli``,
``glue/qqp``, ``squad``, ``squad_v2``, ``tofu``, ``wmdp``, ``mmlu``. Your own model and
data folders: ``load_local_task(model_path, data_path)``. Variants of a task (other rows, a
split hidden from evaluation): ``task.replace(...)``.
"""

from . import generic, real, real_lm, tiny_tofu, toy_sentiment  # noqa: F401  (register the tasks)
from .base import SPLIT_NAMES, TASK_KINDS, TASKS, Task, coerce_dataclass, load_task
from .cache import cache_root
from .collate import (
                      CausalLMCollator,
                      ClassificationCollator,
                      ExtractiveQACollator,
                      MultipleChoiceCollator,
)
from .hub import HubUnavailableError
from .local import load_local_task
from .sentiment_data import SentimentSpec, generate_sentiment
from .tiny_models import TinyBertSpec, TinyLlamaSpec
from .tofu_data import TofuSpec, generate_tofu
from .train import TrainConfig, train_model

__all__ = ["SPLIT_NAMES", "TASK_KINDS", "TASKS", "CausalLMCollator", "ClassificationCollator",
           "ExtractiveQACollator", "HubUnavailableError", "MultipleChoiceCollator",
           "SentimentSpec", "Task", "TinyBertSpec", "TinyLlamaSpec", "TofuSpec", "TrainConfig",
           "cache_root", "coerce_dataclass", "generate_sentiment", "generate_tofu",
           "load_local_task", "load_task", "train_model"]
