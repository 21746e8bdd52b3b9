"""Module-aware unlearning: one run (:func:`unlearn`), successive requests, run folders
(docs/design.md §5).

Public API:

- :func:`unlearn` — run a method (``METHODS``: so, ga, gd, npo, dpo, sa, rt) with a selector
  (``full``, ``mape``, ``sure``, ``random``, ``magnitude``) → :class:`UnlearnResult`;
- :func:`successive` — requests one after another on the current model (Fig. 3, Table 1);
  :func:`successive_so` — the Eq. 12 variant: always from θ*, with kept sums and Eq. 13 masks;
- :class:`UnlearnConfig` — every hyperparameter, paper defaults (Appendix D.2); :func:`as_config`
  lays the presets of :mod:`mape_viz.presets` underneath;
- :data:`METHODS` / :func:`register_method` — the method registry: each method carries its
  objective, data needs, loss, config fields and runner;
- :func:`load_run` / :func:`read_run` — rebuild a saved run exactly;
- :class:`SparseParams` — the sparse parametrisation that keeps frozen entries bit-identical.

Files, bottom up: ``config.py`` (UnlearnConfig) · ``sparse.py`` (SparseParams) ·
``second_order.py`` (SO: forget gradient, Fisher, update) · ``finetune.py`` (the AdamW loop
and its data sources) · ``methods.py`` (registry, runners, the seven methods; their losses are
in ``mape_viz.losses``) · ``run_data.py`` (task or batches → RunData) · ``engine.py``
(``unlearn``: data → mask → the method's runner → result) · ``successive.py`` (request
sequences) · ``result.py`` (UnlearnResult, run folders).
"""

from .config import UnlearnConfig, as_config, config_fields
from .engine import make_mask, selector_names, unlearn
from .methods import METHODS, Method, check_method, methods_for, register_method
from .result import UnlearnResult, load_run, read_run, save_run
from .run_data import resolve_data
from .second_order import fisher_sum, grad_sum, run_so, so_update
from .sparse import SparseParams, head_param_names, slice_specs
from .successive import SuccessiveResult, successive, successive_so

__all__ = [
    "METHODS", "Method", "SparseParams", "SuccessiveResult", "UnlearnConfig",
    "UnlearnResult", "as_config", "check_method", "config_fields", "fisher_sum", "grad_sum",
    "head_param_names", "load_run", "make_mask", "methods_for", "read_run", "register_method",
    "resolve_data", "run_so", "save_run", "selector_names", "slice_specs", "so_update",
    "successive", "successive_so", "unlearn",
]
