"""``UnlearnPanel``: run one unlearning from a notebook (docs/design.md §9).

Method, selector, sparsity and the method's main hyperparameters (``Method.main_fields``,
input widgets from ``UnlearnConfig``'s field metadata, initial values from the front end's
presets), a run button with a progress bar, metrics before / after, predictions on forget
samples, the mask per layer and the loss terms per step. The heavy functions (unlearning,
evaluation, prediction) are injected callables with library defaults, so the panel is
testable with fakes.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import time
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W

from .. import viz
from ..choices import list_methods, list_selectors
from ..experiments import is_masked
from ..metrics import evaluate
from ..unlearning import METHODS, UnlearnConfig, as_config, unlearn
from .figure_pane import FigurePane, WidgetBase
from .panel_views import (default_predict, field_widget, history_figure, metrics_table,
                          predictions_table)

__all__ = ["MASK_FIELDS", "STOP_FIELDS", "UnlearnPanel"]

#: The mask settings the panel shows for a masked run (the rest of the ``select`` group of
#: ``UnlearnConfig`` keeps its value).
MASK_FIELDS = ("refine", "granularity")
#: Fields shown for every method (when the config class has them): stop when forgotten
#: (docs/design.md §5), on by default in the notebooks' presets.
STOP_FIELDS = ("stop_when",)


class UnlearnPanel(WidgetBase):
    """Run one unlearning from a notebook: controls, run button, progress, before/after.

    Args:
        task: the task object (``.model``, ``.forget`` rows, ``.kind``, ... — only passed on to
            the injected functions, and ``.forget`` / ``.model`` read for the display).
        unlearn_fn: ``unlearn_fn(task, method, selector, sparsity, config) -> UnlearnResult``
            with ``.model``, ``.mask`` (or None), ``.history`` (default
            :func:`mape_viz.unlearning.unlearn`). If it accepts a ``callbacks``
            keyword (as ``unlearn`` does), it gets ``[cb]`` with ``cb(step, model, row)``
            called after every update, which moves the progress bar.
        evaluate_fn: ``evaluate_fn(task, model) -> dict`` of metrics (default
            :func:`mape_viz.metrics.evaluate`).
        methods: method names (default :func:`~mape_viz.choices.list_methods` for
            ``task.kind``: the methods that fit the task).
        selectors: selector names (default :func:`~mape_viz.choices.list_selectors`:
            ``"full"`` = no mask, all parameters updated, then the score selectors).
        config_cls: the config dataclass (default :class:`~mape_viz.unlearning.UnlearnConfig`,
            built by :func:`~mape_viz.unlearning.as_config` with the presets underneath; None →
            ``config`` is passed as a dict of the shown fields).
        fields: method -> config field names to show (default the method's
            ``Method.main_fields``, plus :data:`STOP_FIELDS` and, for masked runs,
            :data:`MASK_FIELDS`).
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
            names += [f for f in STOP_FIELDS if f not in names]
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
            hp[name] = field_widget(name, f.default if f is not None else None,
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
        :func:`~mape_viz.unlearning.as_config` of the shown fields over the presets (a blank
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
        steps = getattr(result, "stopped_at", None)
        if steps is None:
            steps = len(getattr(result, "history", None) or [])
        reason = getattr(result, "stop_reason", None)
        sel = "all parameters" if mask is None else ", ".join(
            f"{v}/{int(mask[k].numel())} {k}" for k, v in mask.n_selected().items())
        warn = ""
        if getattr(result, "ok", True) is False:
            warn = (f" · <span style='color:#b00'>⚠ stopped early: "
                    f"{html.escape(str(getattr(result, 'error', '')))}</span>")
        self.status.value = (f"<b>{html.escape(str(c['method'].value))}</b> with "
                             f"<b>{html.escape(str(c['selector'].value))}</b> · updated: {sel} · "
                             f"{steps} steps"
                             + (f" (stopped: {html.escape(str(reason))})" if reason else "")
                             + f" · {seconds:.1f} s{warn}")
        self.metrics_html.value = metrics_table(self.before, self.after)
        self.predictions_html.value = predictions_table(
            self.forget_rows, self.predictions.get("before", []), self.predictions.get("after", []))
        self.mask_pane.update(viz.selected_per_layer(mask, height=300) if mask is not None
                              else viz.message_figure("full update: no module mask"))
        self.history_pane.update(history_figure(getattr(result, "history", None) or []))


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
