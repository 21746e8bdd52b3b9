"""What the unlearning panel shows, as plain functions (docs/design.md §9): predictions on
forget rows, the before / after tables, the loss-terms figure and one input widget per
config field (from ``UnlearnConfig``'s field metadata)."""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import ipywidgets as W
import plotly.graph_objects as go

from .. import viz
from ..metrics import classify, generate_answers, qa_predictions
from ..metrics.evaluate import KIND_ALIASES

__all__ = ["default_predict", "field_widget", "history_figure", "metrics_table",
           "predictions_table"]


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


def history_figure(history: Sequence[Mapping[str, Any]]) -> go.Figure:
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


def field_widget(name: str, default: Any, type_str: str, help_: str,
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


def metrics_table(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """An HTML table of each metric before, after and the change."""
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


def predictions_table(rows: Sequence[Mapping[str, Any]], before: Sequence[Any],
                       after: Sequence[Any]) -> str:
    """An HTML table of forget rows with their label and the predictions before / after
    (changed predictions highlighted)."""
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
