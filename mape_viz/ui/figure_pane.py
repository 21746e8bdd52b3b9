"""A figure inside an ipywidgets layout, redrawn in place, and the base of the notebook
widgets (docs/design.md §9).

A ``plotly.graph_objects.FigureWidget`` needs the ``anywidget`` package and carries its own
≈5 MB copy of plotly.js to the browser, so each widget has at most one. Without
``anywidget`` (and where a static figure is enough), the figure is rendered into an
``ipywidgets.Output`` as a plotly mime bundle, drawn by JupyterLab's bundled plotly renderer.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

__all__ = ["FigurePane", "WidgetBase"]


@functools.lru_cache(maxsize=1)
def _figure_widget_available() -> bool:
    """Whether ``go.FigureWidget`` can be built (it needs ``anywidget``); builds none."""
    try:
        return importlib.util.find_spec("anywidget") is not None
    except (ImportError, ValueError):
        return False


class FigurePane:
    """One figure inside a widget layout, updated in place.

    Attributes:
        widget: what to put in a layout (a ``go.FigureWidget`` or an ``ipywidgets.Output``).
        figure: the current figure (the ``FigureWidget`` itself when live, else a
            ``go.Figure``) — read its ``.data`` / ``.layout`` to inspect what is drawn.
        live: True when backed by a ``FigureWidget`` (``anywidget`` installed).
        n_updates: how many times :meth:`update` has redrawn it.
    """

    def __init__(self, fig: go.Figure | None = None, *, live: bool | None = None) -> None:
        self.live = _figure_widget_available() if live is None else live
        self.n_updates = 0
        if self.live:
            self.figure: go.Figure = go.FigureWidget(fig)
            self.widget: W.Widget = self.figure
        else:
            self.figure = go.Figure(fig)
            self.widget = W.Output(layout=W.Layout(width="100%"))
            self._render()

    def update(self, fig: go.Figure) -> None:
        """Replace the drawn traces and layout by those of ``fig``."""
        if self.live:
            with self.figure.batch_update():
                self.figure.data = []
                self.figure.add_traces(list(fig.data))
                self.figure.layout = fig.layout
        else:
            self.figure = fig
            self._render()
        self.n_updates += 1

    def _render(self) -> None:
        # A plotly mime bundle (rendered by JupyterLab's plotly extension); no plotly.js copy.
        spec = json.loads(self.figure.to_json())
        self.widget.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"application/vnd.plotly.v1+json": spec,
                                         "text/plain": f"<{len(self.figure.data)}-trace figure>"}},)


class WidgetBase:
    """A notebook widget object that displays as its ``.widget`` (a ``VBox``)."""

    widget: W.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
