"""mape_viz: module-aware machine unlearning (MAPE-Unlearn) on Transformers.

The top-level API, for ``import mape_viz as mv``::

    task = mv.load_task("toy-sentiment", forget="canaries")
    scores = mv.score_modules(task.model, task.batches("forget", 32), task.batches("retain", 32))
    mask = mv.select_modules(scores, sparsity=0.9, refine="greedy")
    result = mv.unlearn(task, "npo", selector="mape", sparsity=0.9)
    report = mv.evaluate(task, result.model)

The choice lists the CLI, the notebooks and the app offer come from ``mv.list_methods()``,
``mv.list_selectors()``, ``mv.list_objectives()``, ``mv.list_refine_modes()``,
``mv.list_granularities()``, ``mv.list_tasks()`` and ``mv.list_families()``.

Everything else lives in its subpackage: ``mape_viz.unlearning`` (methods, successive requests,
run folders), ``mape_viz.tasks``, ``mape_viz.metrics``, ``mape_viz.experiments``,
``mape_viz.viz`` (plotly figures, not imported here so the core stays UI-free), ``mape_viz.ui``
and ``mape_viz.cli``. The design as built: docs/design.md.
"""

from .choices import (describe, list_families, list_granularities, list_methods,
                      list_objectives, list_refine_modes, list_selectors, list_tasks)
from .mask_io import load_mask, save_mask
from .metrics import EvalResult, evaluate
from .scores import score_modules
from .selection import select_modules
from .tasks import Task, load_task
from .types import ModuleMask, ModuleScores
from .unlearning import UnlearnConfig, UnlearnResult, as_config, load_run, unlearn

__version__ = "0.1.0"

__all__ = [
    "EvalResult", "ModuleMask", "ModuleScores", "Task", "UnlearnConfig", "UnlearnResult",
    "as_config", "describe", "evaluate", "list_families", "list_granularities", "list_methods",
    "list_objectives", "list_refine_modes", "list_selectors", "list_tasks", "load_mask",
    "load_run", "load_task", "save_mask", "score_modules", "select_modules", "unlearn",
]
