"""ModuleExplorer and UnlearnPanel with fake scorers / selection / unlearning / evaluation:
the explorer redraws from cached scores, the panel runs and shows before/after."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from mape_viz.ui import figure_pane
from mape_viz.types import ModuleMask, ModuleTerms
from mape_viz.ui.widgets import FigurePane, ModuleExplorer, UnlearnPanel

from test_viz import H, L, make_scores


def top_k_select(scores, sparsity=0.9, granularity="both", refine="greedy"):
    """A stand-in for select_modules: the global top ⌈(1−S)·n⌉ per kind, no refinement."""
    out = {}
    for kind in ("heads", "filters"):
        s = scores[kind]
        k = math.ceil((1 - sparsity) * s.numel())
        m = torch.zeros(s.numel(), dtype=torch.bool)
        if granularity in ("both", kind):
            m[torch.argsort(s.flatten(), descending=True)[:k]] = True
        out[kind] = m.reshape(s.shape)
    return ModuleMask(heads=out["heads"], filters=out["filters"],
                      warm_start=ModuleTerms(out["heads"].clone(), out["filters"].clone()),
                      meta={"sparsity": sparsity, "granularity": granularity, "refine": refine})


class CountingScorer:
    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def __call__(self, objective, selector):
        self.calls.append((objective, selector))
        sc = make_scores(seed=len(self.calls))
        sc.objective, sc.selector = objective, selector
        return sc


def overlay_cells(fig) -> set[tuple[int, int]]:
    ov = [t for t in fig.data if isinstance(t, go.Scatter)]
    return {(int(y), int(x)) for x, y in zip(ov[0].x, ov[0].y)} if ov else set()


@pytest.fixture(params=[True, False], ids=["figurewidget", "output-fallback"])
def live(request, monkeypatch):
    """Run each widget test with a live FigureWidget (when anywidget is installed) and with
    the static Output fallback."""
    if request.param and not figure_pane._figure_widget_available():
        pytest.skip("anywidget is not installed: FigureWidget unavailable")
    monkeypatch.setattr(figure_pane, "_figure_widget_available", lambda: request.param)
    return request.param


def test_slider_redraws_without_rescoring(live):
    scorer = CountingScorer()
    ex = ModuleExplorer(scorer, objectives=["mlr", "mlf"], selectors=["mape", "sure"],
                        select_fn=top_k_select, sparsity=0.9)
    assert scorer.calls == [("mlr", "mape")] and ex.n_scorer_calls == 1
    pane = ex.pane
    assert pane.live is live and ex.controls["view"].value == "heads"
    first = overlay_cells(ex.figure)
    assert len(first) == math.ceil(0.1 * L * H)
    n0 = pane.n_updates
    ex.controls["sparsity"].value = 0.5
    cells = overlay_cells(ex.figure)
    assert len(cells) == math.ceil(0.5 * L * H) and first < cells
    assert pane.n_updates == n0 + 1
    assert scorer.calls == [("mlr", "mape")]          # slider: no new scoring
    # the overlay is exactly the mask's selected heads
    assert cells == {tuple(ix) for ix in torch.nonzero(ex.mask().heads).tolist()}
    ex.controls["granularity"].value = "filters"
    assert overlay_cells(ex.figure) == set()
    ex.controls["refine"].value = None
    ex.controls["term"].value = "grad"
    np.testing.assert_allclose(np.asarray(ex.figure.data[0].z),
                               ex.scores().grad.heads.numpy(), rtol=1e-6)
    assert len(scorer.calls) == 1 and ex.error is None


def test_scorer_called_once_per_new_combination(live):
    scorer = CountingScorer()
    ex = ModuleExplorer(scorer, objectives=["mlr", "mlf"], selectors=["mape", "sure"],
                        select_fn=top_k_select)
    ex.controls["objective"].value = "mlf"
    assert scorer.calls == [("mlr", "mape"), ("mlf", "mape")]
    ex.controls["selector"].value = "sure"
    assert scorer.calls[-1] == ("mlf", "sure") and len(scorer.calls) == 3
    ex.controls["objective"].value = "mlr"              # (mlr, sure): new
    assert len(scorer.calls) == 4
    ex.controls["selector"].value = "mape"              # (mlr, mape): cached
    ex.controls["objective"].value = "mlf"              # (mlf, mape): cached
    ex.controls["sparsity"].value = 0.3
    assert len(scorer.calls) == 4
    assert ex.figure.layout.title.text.count("MLF") == 1


def test_selection_is_cached_per_setting(live):
    calls = []

    def select(scores, **kw):
        calls.append(kw)
        return top_k_select(scores, **kw)

    ex = ModuleExplorer({"mlr": make_scores()}, select_fn=select, sparsity=0.9)
    ex.controls["sparsity"].value = 0.5
    ex.controls["sparsity"].value = 0.9
    assert [c["sparsity"] for c in calls] == [0.9, 0.5]


def test_every_view_draws_from_a_mapping_of_scores(live):
    ex = ModuleExplorer({("mlr", "mape"): make_scores(), ("mlr", "sure"): make_scores(seed=3)},
                        select_fn=top_k_select)
    assert ex.controls["selector"].options == ("mape", "sure")
    expected = {"heads": go.Heatmap, "filters": go.Scatter, "per layer": go.Bar,
                "g vs F": go.Scatter, "swaps": None, "warm vs refined": go.Heatmap}
    for n, (view, cls) in enumerate(expected.items(), start=1):
        ex.controls["view"].value = view
        assert ex.error is None, (view, ex.error)
        assert ex.pane.n_updates == n
        if cls is None:                                 # the fake selection made no swaps
            assert any("no swaps" in a.text for a in ex.figure.layout.annotations)
        else:
            assert any(isinstance(t, cls) for t in ex.figure.data), view
        assert ex.figure.layout.title.text


def test_warm_vs_refined_view_without_warm_start(live):
    def no_warm(scores, **kw):
        m = top_k_select(scores, **kw)
        m.warm_start = None
        return m

    ex = ModuleExplorer({"mlr": make_scores()}, select_fn=no_warm, view="warm vs refined")
    assert ex.error is None and not ex.figure.data
    assert "no warm start" in ex.figure.layout.annotations[0].text


def test_explorer_shows_selection_errors(live):
    def broken(scores, **kw):
        raise RuntimeError("exact refinement is too large")

    ex = ModuleExplorer({"mlr": make_scores()}, select_fn=broken)
    assert isinstance(ex.error, RuntimeError)
    assert "too large" in ex.status.value


def test_explorer_with_the_library_selection():
    sel = pytest.importorskip("mape_viz.selection")
    ex = ModuleExplorer({"mlr": make_scores()}, sparsity=0.75)
    assert ex.error is None, ex.error
    mask = ex.mask()
    assert mask.n_selected()["heads"] == math.ceil(0.25 * L * H)
    ex.controls["view"].value = "swaps"
    ex.controls["view"].value = "warm vs refined"
    assert ex.error is None, ex.error
    ex.controls["view"].value = "heads"
    assert overlay_cells(ex.figure) == {tuple(ix) for ix in
                                                  torch.nonzero(mask.heads).tolist()}
    assert sel.select_modules  # the default select_fn


def test_figure_pane_fallback_renders_plotly_mime(monkeypatch):
    pane = FigurePane(live=False)
    fig = go.Figure(go.Bar(x=[0, 1], y=[2, 3]), layout={"title": {"text": "hello"}})
    pane.update(fig)
    (out,) = pane.widget.outputs
    spec = out["data"]["application/vnd.plotly.v1+json"]
    assert spec["layout"]["title"]["text"] == "hello" and spec["data"][0]["type"] == "bar"


# ------------------------------------------------------------------------------- panel

class FakeTask(SimpleNamespace):
    pass


def fake_task():
    forget = [{"text": f"sample {i}", "label": i % 2} for i in range(10)]
    return FakeTask(kind="classification", forget=forget, model="original")


def fake_unlearn_factory(calls, with_mask=True):
    def unlearn(task, method, selector, sparsity, config, *, callbacks=()):
        calls.append({"method": method, "selector": selector, "sparsity": sparsity,
                      "config": config, "callbacks": list(callbacks)})
        for step in range(2):
            for cb in callbacks:
                cb(step, "model", {"step": step, "loss": 1.5 - step})
        mask = top_k_select(make_scores(), sparsity=sparsity) if with_mask else None
        history = [{"step": s, "epoch": 0, "loss": 1.5 - s} for s in range(2)]
        return SimpleNamespace(model="unlearned", mask=mask, history=history)
    return unlearn


def fake_evaluate(task, model):
    return {"forget_acc": 1.0 if model == "original" else 0.25, "test_acc": 0.9}


def fake_predict(task, model, rows):
    return [r["label"] if model == "original" else 1 - r["label"] for r in rows]


def test_unlearn_panel_runs_and_shows_before_after(live):
    calls = []
    panel = UnlearnPanel(fake_task(), fake_unlearn_factory(calls), fake_evaluate,
                         methods=["so", "ga"], selectors=["full", "mape", "sure"],
                         predict_fn=fake_predict, n_show=4)
    c = panel.controls
    assert c["method"].value == "so" and c["selector"].value == "mape"
    c["method"].value = "ga"
    c["sparsity"].value = 0.8
    assert {"lr", "epochs", "refine", "granularity"} <= set(c["hp"])
    c["hp"]["epochs"].value = 5
    c["hp"]["lr"].value = "1e-4"
    c["run"].click()
    assert panel.error is None, panel.error
    (call,) = calls
    assert (call["method"], call["selector"], call["sparsity"]) == ("ga", "mape", 0.8)
    cfg = call["config"]
    assert cfg.epochs == 5 and cfg.lr == 1e-4         # an UnlearnConfig
    assert len(call["callbacks"]) == 1                # the progress callback
    assert panel.progress.value == 100 and panel.progress.description == "done"
    assert panel.before == {"forget_acc": 1.0, "test_acc": 0.9}
    assert panel.after["forget_acc"] == 0.25
    html = panel.metrics_html.value
    assert "forget_acc" in html and "0.25" in html and "-0.75" in html
    assert panel.predictions == {"before": [0, 1, 0, 1], "after": [1, 0, 1, 0]}
    shown = panel.predictions_html.value
    assert "sample 3" in shown and "sample 4" not in shown
    assert "2 steps" in panel.status.value
    bars = panel.mask_pane.figure.data
    assert [t.name for t in bars] == ["selected heads", "selected filters"]
    (loss,) = panel.history_pane.figure.data
    assert list(loss.x) == [0, 1] and list(loss.y) == [1.5, 0.5] and loss.name == "loss"
    # the original model is evaluated once; a second run reuses it
    panel.run()
    assert len(calls) == 2


def test_unlearn_panel_full_selector_and_dict_config(live):
    calls = []
    panel = UnlearnPanel(fake_task(), fake_unlearn_factory(calls, with_mask=False),
                         fake_evaluate, methods=["so"], selectors=["full", "mape"],
                         config_cls=None, fields={"so": ["eta", "damping"]},
                         predict_fn=fake_predict)
    panel.controls["selector"].value = "full"
    assert set(panel.controls["hp"]) == {"eta", "damping"}
    panel.run()
    assert calls[0]["config"] == {"eta": None, "damping": None}   # blank = the run's default
    assert calls[0]["selector"] == "full"
    assert "all parameters" in panel.status.value


def test_unlearn_panel_reports_errors(live):
    def boom(task, method, selector, sparsity, config):
        raise RuntimeError("loss became NaN")

    panel = UnlearnPanel(fake_task(), boom, fake_evaluate, methods=["ga"],
                         selectors=["mape"], predict_fn=fake_predict)
    assert panel.run() is None
    assert "loss became NaN" in panel.status.value and panel.progress.bar_style == "danger"
    assert not panel.controls["run"].disabled


def test_unlearn_panel_progress_callback_moves_the_bar():
    panel = UnlearnPanel(fake_task(), fake_unlearn_factory([]), fake_evaluate, methods=["ga"],
                         selectors=["mape"], predict_fn=fake_predict)
    seen = []
    panel.progress.observe(lambda ch: seen.append((ch["new"], panel.progress.description)),
                           "value")
    panel.run()
    values = [v for v, _ in seen]
    assert values == sorted(values) and values[-1] == 100
    assert any(d.startswith("step 2 · loss 0.5") for _, d in seen)


def test_unlearn_panel_lists_registered_methods():
    pytest.importorskip("mape_viz.unlearning")
    panel = UnlearnPanel(fake_task(), fake_unlearn_factory([]), fake_evaluate,
                         predict_fn=fake_predict)
    opts = list(panel.controls["method"].options)
    assert "so" in opts and "ga" in opts
    sels = list(panel.controls["selector"].options)
    assert sels[0] == "full" and "mape" in sels and panel.controls["selector"].value == "mape"
    panel.controls["method"].value = "so"
    hp = panel.controls["hp"]
    assert {"eta", "damping"} <= set(hp)
    assert list(hp["refine"].options) == ["greedy", "converge", "exact", "none"]
    assert hp["eta"].value == ""                      # blank: the run's default η
    cfg = panel.config()
    assert cfg.eta is None and cfg.refine == "greedy"


def test_unlearn_panel_starts_from_the_presets():
    """The controls show the front end's presets for the task, method and selector
    (mape_viz.presets); a value the user changed survives a change of method or selector."""
    from mape_viz.presets import preset_values

    calls = []
    task = FakeTask(name="toy-sentiment", kind="classification", forget=fake_task().forget,
                    model="original", meta={})
    panel = UnlearnPanel(task, fake_unlearn_factory(calls), fake_evaluate,
                         predict_fn=fake_predict)
    c = panel.controls
    c["method"].value = "so"
    so = preset_values("toy-sentiment", "notebook", "so", "mape", masked=True)
    assert float(c["hp"]["eta"].value) == so["eta"]
    c["method"].value = "ga"
    masked = preset_values("toy-sentiment", "notebook", "ga", "mape", masked=True)
    assert float(c["hp"]["lr"].value) == masked["lr"] and c["hp"]["epochs"].value == masked["epochs"]
    assert {"refine", "granularity"} <= set(c["hp"])
    c["selector"].value = "full"
    full = preset_values("toy-sentiment", "notebook", "ga", "full", masked=False)
    assert float(c["hp"]["lr"].value) == full["lr"] != masked["lr"]
    assert "refine" not in c["hp"]
    c["hp"]["epochs"].value = 7                       # the user's value ...
    c["selector"].value = "mape"
    assert c["hp"]["epochs"].value == 7              # ... is kept; the untouched lr follows
    assert float(c["hp"]["lr"].value) == masked["lr"]
    c["method"].value = "rt"                          # retraining takes no mask
    assert "refine" not in c["hp"] and c["hp"]["epochs"].value == 7
    panel.run()
    assert panel.error is None, panel.error
    cfg = calls[-1]["config"]
    assert cfg.epochs == 7 and cfg.lr == full["lr"]


def test_unlearn_panel_stop_when_forgotten():
    """Stop when forgotten is a shown control that starts from the notebook presets, reaches
    the run's config, and the status line reports the step the run stopped at and why."""
    from mape_viz.presets import preset_values

    calls = []

    def stopping_unlearn(task, method, selector, sparsity, config, *, callbacks=()):
        calls.append(config)
        history = [{"step": s, "epoch": 0, "loss": 1.5 - s} for s in range(3)]
        return SimpleNamespace(model="unlearned", mask=None, history=history, stopped_at=2,
                               stop_reason="criterion")

    task = FakeTask(name="toy-sentiment", kind="classification", forget=fake_task().forget,
                    model="original", meta={})
    panel = UnlearnPanel(task, stopping_unlearn, fake_evaluate, predict_fn=fake_predict)
    c = panel.controls
    c["method"].value = "ga"
    preset = preset_values("toy-sentiment", "notebook", "ga", "mape", masked=True)["stop_when"]
    assert c["hp"]["stop_when"].value == preset
    c["selector"].value = "full"                      # shown for full runs too
    assert c["hp"]["stop_when"].value == preset
    c["hp"]["stop_when"].value = "forget-acc<=0.5"
    panel.run()
    assert panel.error is None, panel.error
    assert calls[-1].stop_when == "forget-acc<=0.5"
    # stopped_at (2), not the history's length (3), is the number of steps in the model
    assert "2 steps (stopped: criterion)" in panel.status.value


def test_ui_package_imports_no_gradio():
    """The ui package (app logic, widgets, explorer state) never imports Gradio; app.py does."""
    import ast
    from pathlib import Path

    import mape_viz

    root = Path(mape_viz.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "gradio" for n in names), path


# ------------------------------------------------------- with the real library (tiny BERT)

def tiny_classification_task():
    """A Task: untrained tiny BERT, word tokenizer, 6 forget / 12 retain / 8 test rows."""
    datasets = pytest.importorskip("datasets")
    import transformers as T

    from mape_viz.tasks import Task
    from mape_viz.tasks.collate import ClassificationCollator
    from mape_viz.tasks.tokenizer import build_word_tokenizer

    words = ["good", "bad", "fine", "awful", "great", "dull", "nice", "poor"]
    rows = [{"text": f"the film was {words[i % 8]} and {words[(3 * i) % 8]}", "label": i % 2}
            for i in range(26)]
    tok = build_word_tokenizer([r["text"] for r in rows], "bert")
    torch.manual_seed(0)
    model = T.BertForSequenceClassification(T.BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=24, max_position_embeddings=32, num_labels=2)).eval()
    ds = datasets.Dataset.from_list(rows)
    return Task(model=model, tokenizer=tok, forget=ds.select(range(6)),
                retain=ds.select(range(6, 18)), test=ds.select(range(18, 26)),
                collate=ClassificationCollator(tok), kind="classification")


def test_panel_and_explorer_with_the_library_on_a_tiny_task():
    task = tiny_classification_task()
    pytest.importorskip("mape_viz.metrics")
    from mape_viz.scores import score_modules

    panel = UnlearnPanel(task, n_show=3)             # unlearn, evaluate, predictions: library
    panel.controls["method"].value = "ga"
    panel.controls["selector"].value = "mape"
    panel.controls["sparsity"].value = 0.5
    panel.controls["hp"]["epochs"].value = 1
    result = panel.run()
    assert panel.error is None, panel.error
    assert result.method == "ga" and result.selector == "mape" and result.mask is not None
    assert {t.name for t in panel.history_pane.figure.data} >= {"loss", "forget_loss"}
    assert {"forget_acc", "retain_acc", "test_acc"} <= set(panel.after)
    assert len(panel.predictions["before"]) == len(panel.predictions["after"]) == 3
    assert all(p in (0, 1) for p in panel.predictions["after"])

    forget = list(task.batches("forget", 3))
    retain = list(task.batches("retain", 4))
    def scorer(objective, selector):
        return score_modules(task.model, forget, retain, objective=objective, selector=selector)

    ex = ModuleExplorer(scorer, selectors=["mape", "sure"], sparsity=0.5, live=False)
    assert ex.error is None, ex.error
    for view in ModuleExplorer.VIEWS:
        ex.controls["view"].value = view
        assert ex.error is None, (view, ex.error)
    ex.controls["sparsity"].value = 0.75
    ex.controls["refine"].value = "exact"
    assert ex.error is None and ex.n_scorer_calls == 1
