"""Notebook widgets: explore module scores and masks, and run one unlearning interactively
(docs/design.md §9).

- :class:`ModuleExplorer` — objective / selector / granularity / sparsity / refinement
  controls over the figures of :mod:`mape_viz.viz`. Its caches are the shared
  :class:`~mape_viz.ui.explorer.ExplorerState` (the app's explore tab uses the same): scores
  per (objective, selector), selections per setting — moving a slider only re-runs the
  *selection*, never the scorer.
- :class:`UnlearnPanel` — method, selector, sparsity and the method's main hyperparameters
  (``Method.main_fields``, widgets from ``UnlearnConfig``'s field metadata, initial values
  from the ``notebook`` presets), a run button with a progress bar, metrics before / after
  and predictions on forget samples.

Both compose library calls and hold no algorithm; the heavy functions (scorer, selection,
unlearning, evaluation, prediction) are injected callables with library defaults, so the
widgets are testable with fakes. Every choice list comes from :mod:`mape_viz.choices`.

The widgets live in :mod:`~mape_viz.ui.module_explorer`, :mod:`~mape_viz.ui.unlearn_panel`
(with :mod:`~mape_viz.ui.panel_views`) and :mod:`~mape_viz.ui.figure_pane`; import them from
here. The explorer draws into one ``plotly.graph_objects.FigureWidget`` (needs the ``anywidget``
package; each FigureWidget carries its own ≈5 MB copy of plotly.js to the browser, so there
is one per explorer, with a view selector, not one per view). Without ``anywidget``, and for
the panel's figure, a static figure is rendered into an ``ipywidgets.Output`` as a plotly
mime bundle (drawn by JupyterLab's bundled plotly renderer; no plotly.js copy).
"""

from .figure_pane import FigurePane
from .module_explorer import ModuleExplorer
from .panel_views import default_predict
from .unlearn_panel import UnlearnPanel

__all__ = ["FigurePane", "ModuleExplorer", "UnlearnPanel", "default_predict"]
