"""Experiments of the paper as functions returning tidy records (one ``dict`` per run/point;
docs/design.md §6).

- :func:`run_record` — one (method, selector, sparsity) run and its evaluation, the record
  every experiment (and the app's sweep) is made of;
- :func:`sweep_sparsity` — sparsity × method × selector × granularity (Fig. 2, Fig. 7);
- :func:`successive` — removal requests one after another (Fig. 3, Table 1;
  :mod:`~mape_viz.experiments.successive_requests`);
- :func:`relearn` — the relearning attack, forget metrics per epoch (Fig. 4);
- :func:`compare_methods` — method × selector with Original / RT / SA rows (Table 2, 3);
- :func:`run_frontier` — step-size grid × seeds per method × selector, Pareto fronts and the
  Table-2 summary by one rule (:mod:`~mape_viz.experiments.frontier`);
- :mod:`~mape_viz.experiments.records` — markdown / CSV / JSON writers for records.

Every experiment takes a :class:`mape_viz.tasks.Task`, a base config and ``overrides`` by
target (``"*"``, ``"full"`` / ``"masked"``, a method, ``"method/selector"``: the targets of
the presets table, :func:`config_for`).

Records carry the columns the figure functions of :mod:`mape_viz.viz` read by default
(``method``, ``selector``, ``granularity``, ``sparsity``, ``request``, ``scenario``,
``epoch``, the :func:`mape_viz.metrics.evaluate` metrics and the ``forget`` / ``retain`` /
``test`` score aliases), so ``sparsity_curves(sweep_sparsity(...))`` just works. Nothing here
plots: the ``mape-viz bench`` command composes these with the figures.

Runs are CPU-friendly on the embedded tasks; on a shared machine set
``torch.set_num_threads(1)`` (``mape-viz bench`` does, see ``--threads``): with more threads
than free cores, the tiny models run many times slower.
"""

from ._common import (COMPARE_SELECTORS, DEFAULT_METHODS, check_overrides, config_for,
                      default_methods, display_name, eval_view, evaluate_model, is_masked,
                      run_record)
from .compare import compare_methods, compare_plan
from .frontier import (DEFAULT_MULTIPLIERS, FrontierConfig, FrontierResult, at_efficacy,
                       at_fidelity, frontier_markdown, frontier_plan, pareto_front, run_frontier,
                       summarise)
from .records import (comparison_markdown, markdown_table, read_csv, read_json, score_aliases,
                      table_columns, write_csv, write_json)
from .relearn import DEFAULT_LR, PAPER_LR, relearn, relearn_model, relearn_split
from .successive_requests import SCENARIOS, make_requests, successive
from .sweep import sweep_plan, sweep_sparsity

__all__ = [
    "sweep_sparsity", "sweep_plan", "successive", "make_requests", "SCENARIOS", "relearn",
    "relearn_model", "relearn_split", "PAPER_LR", "DEFAULT_LR", "compare_methods",
    "compare_plan", "markdown_table", "comparison_markdown", "write_csv", "read_csv",
    "write_json", "read_json", "score_aliases", "table_columns", "default_methods",
    "display_name", "evaluate_model", "eval_view", "run_record", "is_masked",
    "COMPARE_SELECTORS", "DEFAULT_METHODS", "config_for", "check_overrides",
    "run_frontier", "frontier_plan", "FrontierConfig", "FrontierResult", "pareto_front",
    "at_efficacy", "at_fidelity", "summarise", "frontier_markdown", "DEFAULT_MULTIPLIERS",
]
