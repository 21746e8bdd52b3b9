"""Experiments of the paper as functions returning tidy records (one ``dict`` per run/point).

- :func:`sweep_sparsity` — sparsity × method × selector × granularity (Fig. 2, Fig. 7);
- :func:`successive` — removal requests one after another (Fig. 3, Table 1);
- :func:`relearn` — the relearning attack, forget metrics per epoch (Fig. 4);
- :func:`compare_methods` — method × selector with Original / RT / SA rows (Table 2, 3);
- :mod:`~mape_viz.experiments.records` — markdown / CSV / JSON writers for records.

Records carry the columns the figure functions of :mod:`mape_viz.viz` read by default
(``method``, ``selector``, ``granularity``, ``sparsity``, ``request``, ``scenario``,
``epoch``, the :func:`mape_viz.metrics.evaluate` metrics and the ``forget`` / ``retain`` /
``test`` score aliases), so ``sparsity_curves(sweep_sparsity(...))`` just works. Nothing here
plots: the ``mape-viz bench`` command (``mape_viz.cli_bench``) composes these with the
figures.

Runs are CPU-friendly on the embedded tasks; on a shared machine set
``torch.set_num_threads(1)`` (``mape-viz bench`` does, see ``--threads``): with more threads
than free cores, the tiny models run many times slower.
"""

from ._common import (DEFAULT_METHODS, TaskView, check_overrides, config_for, default_methods,
                      display_name, evaluate_model)
from .compare import compare_methods, compare_plan
from .records import (comparison_markdown, markdown_table, read_csv, read_json, score_aliases,
                      table_columns, write_csv, write_json)
from .relearn import DEFAULT_LR, PAPER_LR, relearn, relearn_model, relearn_split
from .successive import SCENARIOS, make_requests, successive
from .sweep import sweep_plan, sweep_sparsity

__all__ = [
    "sweep_sparsity", "sweep_plan", "successive", "make_requests", "SCENARIOS", "relearn",
    "relearn_model", "relearn_split", "PAPER_LR", "DEFAULT_LR", "compare_methods",
    "compare_plan", "markdown_table", "comparison_markdown", "write_csv", "read_csv",
    "write_json", "read_json", "score_aliases", "table_columns", "TaskView",
    "default_methods", "display_name", "evaluate_model", "DEFAULT_METHODS", "config_for",
    "check_overrides",
]
