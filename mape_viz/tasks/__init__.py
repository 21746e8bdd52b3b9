"""Tasks: data, models and collators for unlearning runs, by name.

``load_task(name, **options) -> Task``; ``TASKS.names()`` lists the names. Embedded
defaults (offline, trained locally and cached): ``toy-sentiment``, ``tiny-tofu``. Real
tasks (hub name or local files): ``glue/sst2``, ``glue/mnli``, ``glue/qqp``, ``squad``,
``squad_v2``, ``tofu``, ``wmdp``, ``mmlu``.
"""

from . import real, real_lm, tiny_tofu, toy_sentiment  # noqa: F401  (register the tasks)
from .base import TASK_KINDS, TASKS, Task, load_task
from .cache import cache_root
from .collate import (
                      CausalLMCollator,
                      ClassificationCollator,
                      ExtractiveQACollator,
                      MultipleChoiceCollator,
)
from .hub import HubUnavailableError
from .sentiment_data import SentimentSpec, generate_sentiment
from .tiny_models import TinyBertSpec, TinyLlamaSpec
from .tofu_data import TofuSpec, generate_tofu
from .train import TrainConfig, train_model

__all__ = ["TASK_KINDS", "TASKS", "CausalLMCollator", "ClassificationCollator",
           "ExtractiveQACollator", "HubUnavailableError", "MultipleChoiceCollator",
           "SentimentSpec", "Task", "TinyBertSpec", "TinyLlamaSpec", "TofuSpec", "TrainConfig",
           "cache_root", "generate_sentiment", "generate_tofu", "load_task", "train_model"]
