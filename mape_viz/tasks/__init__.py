"""Tasks: data, models and collators for unlearning runs (docs/design.md §7).

One type, :class:`Task`. ``load_task(name, **options) -> Task``; ``TASKS.names()`` lists
the names. Embedded defaults (offline, trained locally and cached): ``toy-sentiment``,
``tiny-tofu``. Real tasks (hub name or local files): ``glue/sst2``, ``glue/mnli``,
``glue/qqp``, ``squad``, ``squad_v2``, ``tofu``, ``wmdp``, ``mmlu``. Your own model and
data: ``load_task("text-classification", data=..., model=...)`` and ``"causal-lm-qa"``
(:mod:`~mape_viz.tasks.generic`: GLUE TSV / CSV / JSON / parquet folders or hub ids, columns
found or named, forget specs of :mod:`~mape_viz.tasks.forget_spec` such as
``"label-flip:32"``, base checkpoints fine-tuned and cached); forget/retain folders:
``load_local_task(model_path, data_path)``. A small BERT pre-trained by masked LM on your
text, as a base checkpoint for those loaders: :func:`~mape_viz.tasks.pretrain_mlm.pretrain_mlm`.
Variants of a task (other rows, a split hidden
from evaluation): ``task.replace(...)``. Data that does not fit raises :class:`DataError`.
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
from .finetune_base import CPU_RECIPE, PAPER_RECIPE
from .forget_spec import ForgetPlan, plan_forget
from .hub import HubUnavailableError
from .local import load_local_task
from .pretrain_mlm import MLMSpec, pretrain_mlm
from .readers import DataError, SplitNotFoundError, open_data
from .sentiment_data import SentimentSpec, generate_sentiment
from .tiny_models import TinyBertSpec, TinyLlamaSpec
from .tofu_data import TofuSpec, generate_tofu
from .train import TrainConfig, train_model

__all__ = ["CPU_RECIPE", "PAPER_RECIPE", "SPLIT_NAMES", "TASK_KINDS", "TASKS",
           "CausalLMCollator", "ClassificationCollator", "DataError", "ExtractiveQACollator",
           "ForgetPlan", "HubUnavailableError", "MLMSpec", "MultipleChoiceCollator",
           "SentimentSpec",
           "SplitNotFoundError", "Task", "TinyBertSpec", "TinyLlamaSpec", "TofuSpec",
           "TrainConfig", "cache_root", "coerce_dataclass", "generate_sentiment",
           "generate_tofu", "load_local_task", "load_task", "open_data", "plan_forget",
           "pretrain_mlm", "train_model"]
