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

The explorer draws into one ``plotly.graph_objects.FigureWidget`` (needs the ``anywidget``
package; each FigureWidget carries its own ≈5 MB copy of plotly.js to the browser, so there
is one per explorer, with a view selector, not one per view). Without ``anywidget``, and for
the panel's figure, a static figure is rendered into an ``ipywidgets.Output`` as a plotly
mime bundle (drawn by JupyterLab's bundled plotly renderer; no plotly.js copy).
"""

from __future__ import annotations

import dataclasses
import functools
import html
import importlib.util
import inspect
import json
import time
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W
import plotly.graph_objects as go

from .. import viz
from ..choices import (describe, list_granularities, list_methods, list_objectives,
                       list_refine_modes, list_selectors)
from ..experiments import is_masked
from ..metrics import classify, evaluate, generate_answers, qa_predictions
from ..metrics.evaluate import KIND_ALIASES
from ..selection import select_modules
from ..types import MODULE_KINDS, ModuleMask, ModuleScores
from ..unlearn import METHODS, UnlearnConfig, as_config, unlearn
from .explorer import VIEWS, ExplorerState, Scorer, SelectFn, mask_summary, view_figure

__all__ = ["FigurePane", "ModuleExplorer", "UnlearnPanel", "default_predict"]

#: The mask settings the panel shows for a masked run (the rest of the ``select`` group of
#: ``UnlearnConfig`` keeps its value).
MASK_FIELDS = ("refine", "granularity")


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


class _Widget:
    """Displays as its ``.widget`` (a ``VBox``)."""

    widget: W.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# ------------------------------------------------------------------------------ explorer

class ModuleExplorer(_Widget):
    """Objective / selector / granularity / sparsity / refine controls over the module figures.

    Args:
        scores_by_objective: either a mapping — ``{objective: ModuleScores}`` (the selector of
            each entry is its ``.selector``) or ``{(objective, selector): ModuleScores}`` — or
            a callable ``scorer(objective, selector) -> ModuleScores`` that is called at most
            once per combination, the first time it is shown (e.g. a ``functools.partial`` of
            :func:`mape_viz.scores.score_modules` with the model and data bound).
        objectives: objective names to offer with a callable (default
            :func:`~mape_viz.choices.list_objectives`).
        selectors: selector names to offer with a callable (default
            ``list_selectors(include_full=False)``: every score selector).
        select_fn: ``select_fn(scores, sparsity=, granularity=, refine=) -> ModuleMask``
            (default :func:`mape_viz.selection.select_modules`).
        sparsity, granularity, refine, term, filter_mode: initial control values (``refine``
            ``None`` = ``"none"``, the warm start only).
        views: which views to offer, from :attr:`VIEWS`; ``view`` the first one shown.
        mask_cache_size: how many selections to keep (one per control setting).
        live: draw into a ``FigureWidget`` (default: when ``anywidget`` is installed) or a
            static ``Output``.

    Attributes:
        controls: name -> ipywidget (``view``, ``objective``, ``selector``, ``granularity``,
            ``sparsity``, ``refine``, ``term``, ``filter_mode``, ``kind``).
        state: the :class:`~mape_viz.ui.explorer.ExplorerState` (cached scores and masks).
        pane: the :class:`FigurePane`; ``figure`` the figure drawn now.
        n_scorer_calls: how many times the scorer callable has run.
        status: an ``HTML`` line (scores used, selected counts, errors); ``error`` the last
            exception of a redraw (None when it worked).
    """

    VIEWS = VIEWS

    def __init__(self, scores_by_objective: Mapping[Any, ModuleScores] | Scorer, *,
                 objectives: Sequence[str] | None = None, selectors: Sequence[str] | None = None,
                 select_fn: SelectFn | None = None, sparsity: float = 0.9,
                 granularity: str = "both", refine: str | None = "greedy", term: str = "score",
                 filter_mode: str = "sorted", views: Sequence[str] | None = None,
                 view: str | None = None, mask_cache_size: int = 32,
                 live: bool | None = None) -> None:
        self.state = ExplorerState(mask_cache_size=mask_cache_size)
        self._select_fn = select_fn or select_modules
        self.error: Exception | None = None
        if callable(scores_by_objective) and not isinstance(scores_by_objective, Mapping):
            self._scorer: Scorer | None = scores_by_objective
            objs = list(objectives or list_objectives())
            sels = list(selectors) if selectors is not None else list_selectors(include_full=False)
            self._choices = {o: sels for o in objs}
        else:
            self._scorer = None
            self._choices: dict[str, list[str]] = {}
            for key, sc in dict(scores_by_objective).items():
                obj, sel = key if isinstance(key, tuple) else (key, sc.selector)
                self.state.scores[(obj, sel)] = sc
                self._choices.setdefault(obj, [])
                if sel not in self._choices[obj]:
                    self._choices[obj].append(sel)
            if not self._choices:
                raise ValueError("scores_by_objective is empty")
        views = list(views or self.VIEWS)
        bad = [v for v in views if v not in self.VIEWS]
        if bad:
            raise ValueError(f"unknown views {bad}; known: {self.VIEWS}")
        first = next(iter(self._choices))
        style = {"description_width": "initial"}
        refine_options = [(m, None if m == "none" else m) for m in list_refine_modes()]
        self.controls: dict[str, W.Widget] = {
            "view": W.ToggleButtons(options=views, value=view or views[0], description="view",
                                    style=style),
            "objective": W.Dropdown(options=list(self._choices), value=first,
                                    description="objective", style=style),
            "selector": W.Dropdown(options=self._choices[first], value=self._choices[first][0],
                                   description="selector", style=style),
            "granularity": W.ToggleButtons(options=list_granularities(), value=granularity,
                                           description="granularity", style=style),
            "sparsity": W.FloatSlider(value=sparsity, min=0.0, max=0.99, step=0.01,
                                      continuous_update=False, readout_format=".2f",
                                      description="sparsity", style=style),
            "refine": W.ToggleButtons(options=refine_options,
                                      value=None if refine == "none" else refine,
                                      tooltips=[describe("refine", m) for m, _ in refine_options],
                                      description="refine", style=style),
            "term": W.Dropdown(options=[("score (g + ½F)", "score"), ("g", "grad"),
                                        ("F", "fisher")], value=term, description="colour by",
                               style=style),
            "filter_mode": W.ToggleButtons(options=["sorted", "binned"], value=filter_mode,
                                           description="filters", style=style),
            "kind": W.ToggleButtons(options=list(MODULE_KINDS), value="heads",
                                    description="g vs F / warm start of", style=style),
        }
        self.status = W.HTML()
        self.pane = FigurePane(live=live)
        self._busy = False
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["objective"], c["selector"], c["term"]]),
            W.HBox([c["sparsity"], c["granularity"]]),
            W.HBox([c["refine"], c["filter_mode"]]),
            c["kind"], c["view"], self.status, self.pane.widget])
        c["objective"].observe(self._on_objective, "value")
        for name in ("view", "selector", "granularity", "sparsity", "refine", "term",
                     "filter_mode", "kind"):
            c[name].observe(self._on_change, "value")
        self.refresh()

    # -- data ---------------------------------------------------------------------------

    @property
    def figure(self) -> go.Figure:
        """The figure drawn now (the ``FigureWidget`` itself when live)."""
        return self.pane.figure

    @property
    def n_scorer_calls(self) -> int:
        return self.state.n_scorer_calls

    def scores(self) -> ModuleScores:
        """Scores of the current (objective, selector): cached, or scored once now."""
        return self.state.score(self.controls["objective"].value,
                                self.controls["selector"].value, self._scorer)

    def mask(self) -> ModuleMask:
        """The selection for the current controls (cached per setting)."""
        c = self.controls
        self.scores()
        return self.state.select(c["sparsity"].value, c["granularity"].value, c["refine"].value,
                                 self._select_fn)

    # -- drawing ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the current view from cached scores (and a cached or new selection)."""
        t0 = time.perf_counter()
        c = self.controls
        try:
            scores = self.scores()
            mask = self.mask()
            self.pane.update(view_figure(c["view"].value, scores, mask, term=c["term"].value,
                                         kind=c["kind"].value,
                                         filter_mode=c["filter_mode"].value))
        except Exception as exc:  # shown to the user; the previous figure stays
            self.status.value = (f"<span style='color:#b00'>⚠ {html.escape(type(exc).__name__)}: "
                                 f"{html.escape(str(exc))}</span>")
            self.error = exc
            return
        self.error = None
        s = mask_summary(scores, mask)
        self.status.value = (
            f"<b>{html.escape(c['selector'].value)}</b> / {html.escape(c['objective'].value)} · "
            f"selected {s.selected['heads']}/{s.sizes['heads']} heads, "
            f"{s.selected['filters']}/{s.sizes['filters']} filters · {s.n_swaps} swaps · "
            f"scorer calls: {self.n_scorer_calls} · {time.perf_counter() - t0:.2f} s")

    def _on_objective(self, change: dict) -> None:
        sel = self.controls["selector"]
        options = self._choices[change["new"]]
        self._busy = True
        try:
            keep = sel.value if sel.value in options else options[0]
            sel.options = options
            sel.value = keep
        finally:
            self._busy = False
        self.refresh()

    def _on_change(self, change: dict) -> None:
        if not self._busy:
            self.refresh()


# ---------------------------------------------------------------------------- unlearning

def default_predict(task: Any, model: Any, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Predictions of ``model`` on ``rows`` through :mod:`mape_viz.metrics` helpers, by
    ``task.kind``: class index (classification), answer text (extractive QA, causal LM)."""
    kind = KIND_ALIASES.get(str(getattr(task, "kind", "")).lower())
    rows = [dict(r) for r in rows]
    if kind == "classification":
        lp, _ = classify(model, [task.collate(rows)])
        names = getattr(task, "label_names", None)
        preds = [int(i) for i in lp.argmax(axis=1)]
        return [names[i] for i in preds] if names else preds
    if kind == "extractive_qa":
        return qa_predictions(model, task.tokenizer, rows,
                              int(getattr(task.collate, "max_length", 384)))
    if kind == "causal_lm":
        prompts = [task.collate.format_prompt(r) for r in rows]
        return generate_answers(model, task.tokenizer, prompts, max_new_tokens=32)
    raise NotImplementedError(f"no default predictions for {kind!r} tasks; pass predict_fn")


def _row_text(row: Mapping[str, Any]) -> str:
    for k in ("text", "question", "prompt", "sentence"):
        if k in row:
            return str(row[k])
    return str(dict(row))


def _row_label(row: Mapping[str, Any]) -> str:
    for k in ("label", "answer", "answers"):
        if k in row:
            v = row[k]
            if isinstance(v, Mapping) and "text" in v:
                v = v["text"][0] if v["text"] else ""
            return str(v)
    return ""


class UnlearnPanel(_Widget):
    """Run one unlearning from a notebook: controls, run button, progress, before/after.

    Args:
        task: the task object (``.model``, ``.forget`` rows, ``.kind``, ... — only passed on to
            the injected functions, and ``.forget`` / ``.model`` read for the display).
        unlearn_fn: ``unlearn_fn(task, method, selector, sparsity, config) -> UnlearnResult``
            with ``.model``, ``.mask`` (or None), ``.history`` (default
            :func:`mape_viz.unlearn.unlearn`). If it accepts a ``callbacks``
            keyword (as ``unlearn`` does), it gets ``[cb]`` with ``cb(step, model, row)``
            called after every update, which moves the progress bar.
        evaluate_fn: ``evaluate_fn(task, model) -> dict`` of metrics (default
            :func:`mape_viz.metrics.evaluate`).
        methods: method names (default :func:`~mape_viz.choices.list_methods` for
            ``task.kind``: the methods that fit the task).
        selectors: selector names (default :func:`~mape_viz.choices.list_selectors`:
            ``"full"`` = no mask, all parameters updated, then the score selectors).
        config_cls: the config dataclass (default :class:`~mape_viz.unlearn.UnlearnConfig`,
            built by :func:`~mape_viz.unlearn.as_config` with the presets underneath; None →
            ``config`` is passed as a dict of the shown fields).
        fields: method -> config field names to show (default the method's
            ``Method.main_fields``, plus :data:`MASK_FIELDS` for masked runs).
        front_end: whose presets (:mod:`mape_viz.presets`) the controls start from and the
            run reads underneath the shown values (default ``"notebook"``).
        predict_fn: ``predict_fn(task, model, rows) -> list`` (default :func:`default_predict`).
        forget_rows: rows to show predictions for (default the first ``n_show`` of
            ``task.forget``).
        model: the model before unlearning (default ``task.model``).

    Attributes:
        controls: ``method``, ``selector``, ``sparsity``, ``run``, and ``hp`` (field -> widget).
        progress: the ``IntProgress`` bar (0..100).
        result: the last ``UnlearnResult`` (None before a run); ``before`` / ``after`` the
            metric dicts; ``predictions`` {"before": [...], "after": [...]}; ``error``.
    """

    def __init__(self, task: Any, unlearn_fn: Callable[..., Any] | None = None,
                 evaluate_fn: Callable[[Any, Any], Mapping[str, float]] | None = None, *,
                 methods: Sequence[str] | None = None, selectors: Sequence[str] | None = None,
                 config_cls: type | None | str = "auto",
                 fields: Mapping[str, Sequence[str]] | None = None,
                 predict_fn: Callable[[Any, Any, Sequence[Mapping[str, Any]]], list] | None = None,
                 forget_rows: Sequence[Mapping[str, Any]] | None = None, n_show: int = 8,
                 model: Any = None, sparsity: float = 0.9, front_end: str = "notebook") -> None:
        self.task = task
        self._unlearn_fn = unlearn_fn or unlearn
        self._evaluate_fn = evaluate_fn or evaluate
        self._predict_fn = predict_fn or default_predict
        self._model = model
        self._fields = fields
        self.front_end = front_end
        self.config_cls = UnlearnConfig if config_cls == "auto" else config_cls
        self._built: dict[str, Any] = {}  # hp values as the controls were (re)built
        if forget_rows is None:
            forget = getattr(task, "forget", None)
            forget_rows = ([dict(forget[i]) for i in range(min(n_show, len(forget)))]
                           if forget is not None else [])
        self.forget_rows = list(forget_rows)[:n_show]
        self.result: Any = None
        self.before: dict[str, float] | None = None
        self.after: dict[str, float] | None = None
        self.predictions: dict[str, list] = {}
        self.error: Exception | None = None
        kind = getattr(task, "kind", None)
        methods = list(methods) if methods is not None else \
            (list_methods(kind) if kind is not None else []) or list_methods()
        selectors = list(selectors) if selectors is not None else list_selectors()
        style = {"description_width": "initial"}
        self.controls: dict[str, Any] = {
            "method": W.Dropdown(options=methods, value=methods[0] if methods else None,
                                 description="method", style=style),
            "selector": W.Dropdown(options=selectors,
                                   value="mape" if "mape" in selectors else selectors[0],
                                   description="selector", style=style),
            "sparsity": W.FloatSlider(value=sparsity, min=0.0, max=0.99, step=0.01,
                                      readout_format=".2f", continuous_update=False,
                                      description="sparsity", style=style),
            "run": W.Button(description="Run unlearning", button_style="primary", icon="play"),
            "hp": {},
        }
        self.progress = W.IntProgress(value=0, min=0, max=100, description="idle",
                                      style=style, layout=W.Layout(width="60%"))
        self.status = W.HTML()
        self.hp_box = W.VBox()
        self.metrics_html = W.HTML()
        self.predictions_html = W.HTML()
        self.mask_pane = FigurePane(viz.message_figure("no run yet"), live=False)
        self.history_pane = FigurePane(viz.message_figure("no run yet"), live=False)
        c = self.controls
        c["run"].on_click(lambda _b: self.run())
        c["method"].observe(lambda _c: self._build_hparams(), "value")
        c["selector"].observe(lambda _c: self._build_hparams(), "value")
        self._build_hparams()
        self.widget = W.VBox([
            W.HBox([c["method"], c["selector"], c["sparsity"]]), self.hp_box,
            W.HBox([c["run"], self.progress]), self.status,
            W.HBox([self.metrics_html, self.predictions_html]),
            W.HBox([self.mask_pane.widget, self.history_pane.widget])])

    # -- hyperparameters ------------------------------------------------------------------

    def _masked(self) -> bool:
        """Whether the chosen method with the chosen selector updates a module mask."""
        method, selector = self.controls["method"].value, self.controls["selector"].value
        # a method the registry does not know (an injected unlearn_fn's) takes masks
        return is_masked(method, selector) if method in METHODS else selector != "full"

    def _field_names(self) -> list[str]:
        method = self.controls["method"].value
        if self._fields is not None:
            names = list(self._fields.get(method, ()))
        else:
            names = list(METHODS.get(method).main_fields) if method in METHODS else []
        if self._masked():
            names += [f for f in MASK_FIELDS if f not in names]
        if self.config_cls is not None and dataclasses.is_dataclass(self.config_cls):
            known = {f.name for f in dataclasses.fields(self.config_cls)}
            names = [n for n in names if n in known]
        return names

    def _initial_values(self) -> dict[str, Any]:
        """What the controls start from: the config of this run with no user change (the
        paper defaults and the front end's presets for the task, method and selector)."""
        if self.config_cls is UnlearnConfig:
            c = self.controls
            return as_config(None, self.task, method=c["method"].value,
                             selector=c["selector"].value, masked=self._masked(),
                             front_end=self.front_end).to_dict()
        if self.config_cls is not None and dataclasses.is_dataclass(self.config_cls):
            return dataclasses.asdict(self.config_cls())
        return {}

    def _build_hparams(self) -> None:
        """(Re)build the hyperparameter controls; a value the user changed is kept."""
        old = {k: w.value for k, w in self.controls["hp"].items()}
        changed = {k: v for k, v in old.items() if v != self._built.get(k)}
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)} \
            if self.config_cls is not None and dataclasses.is_dataclass(self.config_cls) else {}
        initial = self._initial_values()
        hp: dict[str, W.Widget] = {}
        for name in self._field_names():
            f = fields.get(name)
            meta = dict(f.metadata) if f is not None else {}
            hp[name] = _field_widget(name, f.default if f is not None else None,
                                     str(f.type) if f is not None else "", meta.get("help", ""),
                                     meta.get("choices"), initial.get(name))
        self._built = {k: w.value for k, w in hp.items()}
        for name, value in changed.items():
            if name in hp:
                try:
                    hp[name].value = value
                except Exception:  # noqa: BLE001 — an incompatible old value is dropped
                    pass
        self.controls["hp"] = hp
        self.hp_box.children = list(hp.values())

    def config(self) -> Any:
        """The config for the current controls: with the default ``config_cls``,
        :func:`~mape_viz.unlearn.as_config` of the shown fields over the presets (a blank
        optional field leaves the preset or paper default); else ``config_cls(**shown
        fields)``, or the dict of them."""
        values: dict[str, Any] = {}
        for name, w in self.controls["hp"].items():
            v = w.value
            if getattr(w, "_optional_float", False):  # blank = the run's default
                v = v.strip()
                v = None if v in ("", "default", "None") else float(v)
            values[name] = v
        if not self._masked():
            for name in MASK_FIELDS:
                values.pop(name, None)
        if self.config_cls is UnlearnConfig:
            c = self.controls
            return as_config({k: v for k, v in values.items() if v is not None}, self.task,
                             method=c["method"].value, selector=c["selector"].value,
                             masked=self._masked(), front_end=self.front_end)
        if self.config_cls is not None:
            return self.config_cls(**values)
        return values

    # -- running --------------------------------------------------------------------------

    def _set_progress(self, value: float, text: str) -> None:
        self.progress.value = int(max(0, min(100, value)))
        self.progress.description = text

    def run(self) -> Any:
        """Evaluate the original model (once), unlearn, evaluate again, predict; draw all.

        Returns the ``UnlearnResult`` (None on error; the message is in ``status``).
        """
        c = self.controls
        c["run"].disabled = True
        self.error = None
        self.progress.bar_style = ""
        try:
            unlearn_fn, evaluate_fn, predict_fn = \
                self._unlearn_fn, self._evaluate_fn, self._predict_fn
            original = self._model if self._model is not None else getattr(self.task, "model", None)
            self.status.value = ""
            if self.before is None and original is not None:
                self._set_progress(2, "evaluating original")
                self.before = dict(evaluate_fn(self.task, original))
                self.predictions["before"] = self._predict(predict_fn, original)
            self._set_progress(15, "unlearning")
            method, selector = c["method"].value, c["selector"].value
            sparsity = float(c["sparsity"].value)
            kwargs: dict[str, Any] = {}
            if _accepts(unlearn_fn, "callbacks"):
                kwargs["callbacks"] = [self._step_callback]
            t0 = time.perf_counter()
            result = unlearn_fn(self.task, method, selector, sparsity, self.config(), **kwargs)
            seconds = time.perf_counter() - t0
            self._set_progress(80, "evaluating")
            self.after = dict(evaluate_fn(self.task, result.model))
            self._set_progress(92, "predicting")
            self.predictions["after"] = self._predict(predict_fn, result.model)
            self.result = result
            self._draw(result, seconds)
            self._set_progress(100, "done")
            return result
        except Exception as exc:  # shown in the panel; the notebook keeps running
            self.error = exc
            self.progress.description = "failed"
            self.progress.bar_style = "danger"
            self.status.value = (f"<span style='color:#b00'>⚠ {html.escape(type(exc).__name__)}: "
                                 f"{html.escape(str(exc))}</span>")
            return None
        finally:
            c["run"].disabled = False
            if self.error is None:
                self.progress.bar_style = "success"

    def _step_callback(self, step: int, model: Any, row: Mapping[str, Any]) -> None:
        """``unlearn`` callback after every update: the bar creeps towards 80 % (the number of
        steps is not known in advance) and names the step and its loss."""
        frac = 1.0 - 1.0 / (1.0 + (step + 1) / 20.0)
        loss = row.get("loss") if isinstance(row, Mapping) else None
        text = f"step {step + 1}" + (f" · loss {float(loss):.3g}" if loss is not None else "")
        self._set_progress(15 + 65 * frac, text)
        return None

    def _predict(self, predict_fn: Callable, model: Any) -> list:
        if not self.forget_rows:
            return []
        try:
            return list(predict_fn(self.task, model, self.forget_rows))
        except NotImplementedError:
            return []

    def _draw(self, result: Any, seconds: float) -> None:
        c = self.controls
        mask = getattr(result, "mask", None)
        steps = len(getattr(result, "history", None) or [])
        sel = "all parameters" if mask is None else ", ".join(
            f"{v}/{int(mask[k].numel())} {k}" for k, v in mask.n_selected().items())
        warn = ""
        if getattr(result, "ok", True) is False:
            warn = (f" · <span style='color:#b00'>⚠ stopped early: "
                    f"{html.escape(str(getattr(result, 'error', '')))}</span>")
        self.status.value = (f"<b>{html.escape(str(c['method'].value))}</b> with "
                             f"<b>{html.escape(str(c['selector'].value))}</b> · updated: {sel} · "
                             f"{steps} steps · {seconds:.1f} s{warn}")
        self.metrics_html.value = _metrics_table(self.before, self.after)
        self.predictions_html.value = _predictions_table(
            self.forget_rows, self.predictions.get("before", []), self.predictions.get("after", []))
        self.mask_pane.update(viz.selected_per_layer(mask, height=300) if mask is not None
                              else viz.message_figure("full update: no module mask"))
        self.history_pane.update(_history_figure(getattr(result, "history", None) or []))


def _history_figure(history: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Loss terms per step of ``UnlearnResult.history`` (rows with ``step`` and ``loss``)."""
    rows = [dict(r) for r in history if isinstance(r, Mapping) and "step" in r and "loss" in r]
    if not rows:
        return viz.message_figure("no per-step history (one-shot update)")
    terms = [k for k in rows[0] if (k == "loss" or k.endswith("_loss"))
             and isinstance(rows[0][k], (int, float))]
    long = [{"step": r["step"], "term": k, "value": r[k]} for r in rows for k in terms
            if isinstance(r.get(k), (int, float))]
    return viz.line_figure(long, x="step", y="value", color="term", error=None,
                           main_title="Unlearning loss terms", labels={"value": "loss"},
                           height=300)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _field_widget(name: str, default: Any, type_str: str, help_: str,
                  choices: Sequence[Any] | None = None, value: Any = None) -> W.Widget:
    """An input widget for one config field, chosen from its declared default, type and
    ``metadata["choices"]``, showing ``value`` (default: the declared default).

    A float field whose default is None (``lr``, ``eta``: "the run's default") becomes a text
    box where blank means None; it is marked ``_optional_float``.
    """
    style = {"description_width": "initial"}
    common = {"description": name, "style": style, "tooltip": help_,
              "layout": W.Layout(width="320px")}
    value = default if value is None else value
    if isinstance(default, bool):
        return W.Checkbox(value=bool(value), indent=False, **common)
    if isinstance(default, int):
        return W.IntText(value=int(value), **common)
    if isinstance(default, float):
        return W.FloatText(value=float(value), **common)
    if isinstance(default, str) and choices and default in choices:
        return W.Dropdown(options=list(choices), value=value if value in choices else default,
                          **common)
    if default is None and ("float" in type_str or not type_str):
        w = W.Text(value="" if value is None else str(value), placeholder="default", **common)
        w._optional_float = True
        return w
    return W.Text(value="" if value is None else str(value), **common)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return html.escape(str(v))


def _metrics_table(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    before, after = dict(before or {}), dict(after or {})
    keys = list(dict.fromkeys([*before, *after]))
    rows = []
    for k in keys:
        b, a = before.get(k), after.get(k)
        try:
            d = f"{float(a) - float(b):+.4g}"
        except (TypeError, ValueError):
            d = "–"
        rows.append(f"<tr><td>{html.escape(k)}</td><td>{_fmt(b)}</td><td>{_fmt(a)}</td>"
                    f"<td>{d}</td></tr>")
    return ("<table style='margin-right:2em'><thead><tr><th>metric</th><th>before</th>"
            "<th>after</th><th>Δ</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _predictions_table(rows: Sequence[Mapping[str, Any]], before: Sequence[Any],
                       after: Sequence[Any]) -> str:
    if not rows:
        return "<i>no forget samples to show</i>"
    if not before and not after:
        return "<i>no predictions (pass predict_fn)</i>"
    out = []
    for i, r in enumerate(rows):
        text = _row_text(r)
        text = text if len(text) <= 90 else text[:87] + "…"
        b = before[i] if i < len(before) else None
        a = after[i] if i < len(after) else None
        changed = b is not None and a is not None and str(a) != str(b)
        style = " style='background:#fff3cd'" if changed else ""
        out.append(f"<tr{style}><td>{html.escape(text)}</td><td>{html.escape(_row_label(r))}</td>"
                   f"<td>{_fmt_pred(b)}</td><td>{_fmt_pred(a)}</td></tr>")
    return ("<table><thead><tr><th>forget sample</th><th>label</th><th>before</th>"
            "<th>after</th></tr></thead><tbody>" + "".join(out) + "</tbody></table>")


def _fmt_pred(v: Any) -> str:
    return "–" if v is None else html.escape(str(v))
