"""Figures of MAPE-Unlearn results: plain functions returning ``plotly.graph_objects.Figure``.

They draw library results (``ModuleScores``, ``ModuleMask``, tidy experiment records) and
never call ``.show()`` nor compute a score or a selection. The notebooks, the widgets
(:mod:`mape_viz.ui`), the app and ``mape-viz bench --figures`` all draw with these
(docs/design.md §9).

- :mod:`~mape_viz.viz.modules`: :func:`head_heatmap`, :func:`filter_view`,
  :func:`selected_per_layer`, :func:`g_vs_fisher`.
- :mod:`~mape_viz.viz.swaps`: :func:`swap_changes`, :func:`warm_vs_refined`.
- :mod:`~mape_viz.viz.curves`: :func:`sparsity_curves` (Fig. 2/7), :func:`successive_curves`
  (Fig. 3), :func:`relearn_curves` (Fig. 4), :func:`comparison_table` (Table 2), and the
  generic :func:`line_figure`.
- :mod:`~mape_viz.viz.frontier`: :func:`frontier` — efficacy–fidelity frontiers, one curve
  per method × selector, RT and the original as reference points.
- :mod:`~mape_viz.viz.export`: :func:`to_html`, :func:`write_figures` (offline HTML).
- :func:`message_figure`: a figure that says why a view has nothing to draw.
"""

from ._common import message_figure
from .curves import (comparison_rows, comparison_table, line_figure, relearn_curves,
                     sparsity_curves, successive_curves)
from .export import to_html, write_figures
from .frontier import frontier
from .modules import filter_view, g_vs_fisher, head_heatmap, selected_per_layer
from .swaps import swap_changes, warm_vs_refined

__all__ = [
    "head_heatmap", "filter_view", "selected_per_layer", "g_vs_fisher",
    "swap_changes", "warm_vs_refined",
    "line_figure", "sparsity_curves", "successive_curves", "relearn_curves",
    "comparison_rows", "comparison_table", "frontier",
    "to_html", "write_figures", "message_figure",
]
