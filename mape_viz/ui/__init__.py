"""Interactive front ends over the library (docs/design.md §9). Nothing here imports Gradio.

- :mod:`~mape_viz.ui.explorer`: the module explorer's state (scores cached per objective and
  selector, selections per setting), its figures and summary — shared by the two below;
- :mod:`~mape_viz.ui.app_logic`: what the Gradio app (``app.py``) does, as plain functions;
- :mod:`~mape_viz.ui.widgets`: the notebook widgets ``ModuleExplorer`` and ``UnlearnPanel``
  (ipywidgets + plotly).

The modules are imported on their own (``from mape_viz.ui.widgets import ModuleExplorer``):
the app never loads ipywidgets, a notebook never loads the app's logic.
"""
