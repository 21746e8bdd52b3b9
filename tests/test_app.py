"""The Gradio app: handlers called directly, the served app through gradio_client (one and
three concurrent clients), and a headless Chromium run that saves screenshots."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from app_helpers import app_page, serve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx():
    from mape_viz.ui import app_logic as L

    # The 2-layer world by default: its app runs are shorter than the default world's (whose
    # weights ship with the package). MAPE_VIZ_APP_TEST_TASK=toy-sentiment serves the default
    # world (with MAPE_VIZ_SCREENSHOT_DIR=docs: the README's screenshots). The app's task
    # options make the canaries the forget set.
    return L.AppContext.load(os.environ.get("MAPE_VIZ_APP_TEST_TASK", "toy-sentiment-small"))


@pytest.fixture(scope="module")
def served(ctx):
    import app

    demo = app.build_app(ctx)
    with serve(demo) as url:
        yield demo, url


def test_parse_ids_and_errors(ctx):
    from mape_viz.ui import app_logic as L

    assert L.parse_ids("3, 1 3", ctx) == [1, 3]
    assert L.parse_ids("canaries", ctx) == ctx.canary_ids()
    with pytest.raises(ValueError, match="at least one"):
        L.parse_ids("", ctx)
    with pytest.raises(ValueError, match="integers"):
        L.parse_ids("three", ctx)
    with pytest.raises(ValueError, match="out of range"):
        L.parse_ids(str(10 ** 6), ctx)
    with pytest.raises(ValueError, match="at most"):
        L.parse_ids(" ".join(map(str, range(L.MAX_FORGET + 1))), ctx)


def test_sample_table_search(ctx):
    from mape_viz.ui import app_logic as L

    rows = L.sample_table(ctx, "canaries")
    assert rows and all(r[4] for r in rows)
    assert len(rows) == len(ctx.canary_ids())
    # the original model memorised the canaries: it predicts their (rule-breaking) label
    assert sum(r[2] == r[5] for r in rows) >= 0.9 * len(rows)
    word = rows[0][1].split()[-2]
    assert all(word.lower() in r[1].lower() for r in L.sample_table(ctx, word))


def test_redraw_uses_cached_scores(ctx, monkeypatch):
    from mape_viz.ui import app_logic as L

    ids = ctx.canary_ids()[:1]
    state = L.compute_scores(ctx, None, ids, "mlf", "mape")
    calls = []
    monkeypatch.setattr(L, "score_modules", lambda *a, **k: calls.append(1))
    for s in (0.5, 0.8, 0.95):
        mask = L.select(state, s, "both", "greedy")
        figs = L.explore_figures(state)
        assert set(figs) == {"heads", "filters", "per_layer", "swaps"}
        assert mask.meta["sparsity"] == s
    assert L.compute_scores(ctx, state, ids, "mlf", "mape") is state
    assert not calls


def test_reference_is_trained_without_the_canaries(ctx):
    from mape_viz.ui import app_logic as L

    assert ctx.task.meta["options"]["forget"] == "canaries"
    assert ctx.reference_ids() == ctx.canary_ids() and len(ctx.canary_ids()) == 32
    assert ctx.reference_label().startswith("retrained without the 32 canaries")
    assert ctx.reference_note(ctx.canary_ids()[:3]) is None
    non_canary = next(i for i in range(len(ctx.train)) if i not in set(ctx.canary_ids()))
    note = ctx.reference_note([ctx.canary_ids()[0], non_canary])
    assert note and str(non_canary) in note and "saw them" in note
    # the retrained model really has not memorised the canaries (it predicts their rule label)
    preds = ctx.predict(ctx.task.retrained_model, ctx.canary_ids())
    rule = ctx.train.select(ctx.canary_ids())["rule_label"]
    assert sum(p[0] == r for p, r in zip(preds, rule)) >= 0.8 * 32
    assert L.sample_headers(ctx)[3:5] == ["rule label", "canary"]


def test_numbers_checked_one_way(ctx):
    from mape_viz.ui import app_logic as L

    assert L.check_number("sparsity", "0.9", 0.0, 1.0) == 0.9
    for bad in (1.0, 1.5, -1, "x", float("nan")):
        with pytest.raises(ValueError, match="sparsity"):
            L.check_number("sparsity", bad, 0.0, 1.0)
    assert L.check_number("learning rate", "", 0.0, empty_ok=True) is None
    with pytest.raises(ValueError, match="integer"):
        L.check_number("epochs", 2.5, 1, integer=True)
    # one helper for every tab: the same rule and message for each input, whoever asks
    got = L.check_inputs(ctx, "3, 1", sparsity="0.5", lr="", epochs=50.0, sparsities=["0.95", 0.8])
    assert got == {"ids": [1, 3], "sparsity": 0.5, "lr": None, "epochs": 50,
                   "sparsities": [0.8, 0.95]}
    for kwargs, message in [
            ({"sparsity": 1.5}, "sparsity=1.5 is out of range; accepted: a number >= 0 and < 1"),
            ({"lr": -0.1}, "learning rate=-0.1 is out of range; accepted: empty (the preset) "
                           "or a number >= 0"),
            ({"epochs": 51}, "epochs=51 is out of range; accepted: an integer >= 1 and <= 50"),
            ({"epochs": "two"}, "epochs must be a number, got 'two'"),
            ({"sparsities": ["0.5", "1"]}, "sparsity='1' is out of range"),
            ({"sparsities": []}, "choose at least one sparsity")]:
        with pytest.raises(ValueError) as info:
            L.check_inputs(ctx, **kwargs)
        assert message in str(info.value)
    with pytest.raises(KeyError, match="known: sparsity, lr, epochs"):
        L.check_inputs(ctx, seed=1)
    assert "&lt;b&gt;" in L.error_html("<b>") and "role=\"alert\"" in L.error_html("x")
    widths = L.sample_column_widths(ctx)
    assert len(widths) == len(L.sample_headers(ctx)) and sum(int(w[:-1]) for w in widths) == 100
    budget = L.expected_steps(ctx, [ctx.canary_ids()[0]], "sa", 50)
    cfg = L.app_config(ctx.task, "sa", "mape")
    assert f"at most {cfg.max_steps} steps" in budget and "retain rows" in budget


def test_unlearn_uses_explores_mask_stops_and_runs_full_beside(ctx, monkeypatch):
    import torch

    from mape_viz.ui import app_logic as L

    cid = ctx.canary_ids()[1]
    state = L.compute_scores(ctx, None, [cid], "mlf", "mape")
    shown = L.select(state, 0.8, "both", "greedy")
    calls = []
    real = L.score_modules
    monkeypatch.setattr(L, "score_modules", lambda *a, **k: calls.append(1) or real(*a, **k))
    state2, mask, rescored = L.unlearn_mask(ctx, state, [cid], "mlf", "mape", "both", 0.8, "greedy")
    assert mask is shown and not rescored and not calls, "same settings: no new scoring"
    _, _, rescored = L.unlearn_mask(ctx, state2, [cid], "mlr", "mape", "both", 0.8, "greedy")
    assert rescored and len(calls) == 1, "a changed objective scores again"
    preset = L.app_config(ctx.task, "ga", "mape")  # the values the Unlearn tab starts with
    run = L.run_unlearn(ctx, [cid], "ga", "mape", 0.8, preset.lr, preset.epochs, mask=shown,
                        mask_note=L.mask_line(shown), with_full=True)
    for kind in ("heads", "filters"):
        assert torch.equal(run.result.mask[kind], shown[kind])
    n = shown.n_selected()
    assert f"mask from Explore: {n['heads']} of" in L.run_summary(run)
    rule = ctx.train[cid]["rule_label"]
    assert run.before[0][0] != rule and run.after[0][0] == rule
    # stop when flipped: ended by the criterion, before the step cap
    assert run.result.stop_reason == "criterion"
    assert run.result.stopped_at < preset.max_steps
    table = L.before_after_table(ctx, run)
    assert table[0][0] == cid
    assert {"original", "unlearned", ctx.reference_label(), "unlearned, full model"} <= set(run.metrics)
    rows = L.compare_table(run)
    assert [r[0] for r in rows] == ["module-aware (Explore's mask)", "full model (its preset lr)"]
    assert rows[0][2] == run.result.n_changed_params < rows[1][2] == run.full.result.n_changed_params
    base = run.metrics["original"]["test_acc"]
    assert rows[1][6] == round(run.metrics["unlearned, full model"]["test_acc"] - base, 4)
    # each run at its own preset step (the full model's is not the mask's)
    full_preset = L.app_config(ctx.task, "ga", "full")
    assert (rows[0][1], rows[1][1]) == (f"{preset.lr:.0e}", f"{full_preset.lr:.0e}")
    assert run.full.result.config.lr == full_preset.lr
    assert L.weights_checksum(ctx.task.model) == ctx.checksum
    files = L.export_run(run, shown)
    names = {Path(f).name for f in files}
    assert any(n.startswith("run-") and "mask" in n for n in names)
    assert any(n.startswith("explored-") and n.endswith(".safetensors") for n in names)
    assert any(n.endswith(".safetensors") for n in names) and any(n.startswith("report") for n in names)


def _unlearn_args(cid, method="ga", modules="explore", lr=None, epochs=20, with_full=False):
    # ids, method, modules, objective, selector, granularity, sparsity, refine, lr, epochs, full
    return (str(cid), method, modules, "mlf", "mape", "both", 0.9, "greedy", lr, epochs, with_full)


def test_client_explore_then_unlearn_same_mask(served, ctx):
    import re

    from gradio_client import Client

    _, url = served
    client = Client(url, verbose=False)
    cid = ctx.canary_ids()[2]
    *_, explore_status = out = client.predict(str(cid), "mlf", "mape", "both", 0.9, "greedy",
                                              api_name="/explore")
    summary = out[0]
    assert explore_status == ""
    heads, n_heads, filters, n_filters = re.search(
        r"(\d+) of (\d+) heads and (\d+) of (\d+) filters selected", summary).groups()
    run_md, before_after, metrics, compare, status = client.predict(
        *_unlearn_args(cid, with_full=True), api_name="/unlearn")
    assert status == "", "a successful run leaves the status line empty"
    assert (f"mask from Explore: {heads} of {n_heads} heads, {filters} of {n_filters} filters"
            in run_md), "Unlearn's mask is the one Explore showed"
    assert "scored now" not in run_md, "same forget set and settings: no second scoring"
    row = before_after["data"][0]
    assert row[0] == cid
    assert row[4] != row[3] and row[6] == row[3], "the canary's prediction flips to the rule's label"
    assert "(criterion)" in run_md and "parameter entries changed" in run_md
    names = [r[0] for r in metrics["data"]]
    assert any(n.startswith("retrained without the 32 canaries") for n in names)
    assert [r[0] for r in compare["data"]] == ["module-aware (Explore's mask)",
                                                "full model (its preset lr)"]
    # a forget set outside the canaries: no retrained row, a line says why
    other = next(i for i in range(len(ctx.train)) if i not in set(ctx.canary_ids()))
    run_md, _, metrics, _, _ = client.predict(*_unlearn_args(other), api_name="/unlearn")
    assert "No retrained reference" in run_md
    assert not any(r[0].startswith("retrained") for r in metrics["data"])


def test_three_concurrent_clients_get_their_own_results(served, ctx):
    from gradio_client import Client

    from mape_viz.ui import app_logic as L

    _, url = served
    ids = ctx.canary_ids()[3:6]
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def one(cid: int) -> None:
        try:
            client = Client(url, verbose=False)
            results[cid] = client.predict(*_unlearn_args(cid), api_name="/unlearn")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert not errors, errors
    for cid in ids:
        row = results[cid][1]["data"][0]
        assert row[0] == cid, "each client sees its own forget sample"
    assert L.weights_checksum(ctx.task.model) == ctx.checksum, "the base model is unchanged"


def test_cancel_stops_the_server_work(served, ctx, monkeypatch):
    """Cancel through gradio_client: the run's steps stop within seconds, the outputs say
    'cancelled', and the next job starts at once."""
    from gradio_client import Client

    from mape_viz.ui import app_logic as L

    steps: list[float] = []
    real = L.unlearn

    def slow_unlearn(*a, callbacks=(), **k):  # every step takes 0.2 s: a run of 120 steps, 24 s+
        def slow(step, model, row):
            steps.append(time.monotonic())
            time.sleep(0.2)
        return real(*a, callbacks=[slow, *callbacks], **k)

    monkeypatch.setattr(L, "unlearn", slow_unlearn)
    _, url = served
    client = Client(url, verbose=False)
    cid = ctx.canary_ids()[7]
    job = client.submit(*_unlearn_args(cid, method="rt", modules="full", epochs=1),
                        api_name="/unlearn")
    deadline = time.monotonic() + 120
    while len(steps) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(steps) >= 3, "the run started"
    assert client.predict(api_name="/cancel") == "cancelled"
    t_cancel = time.monotonic()
    time.sleep(3)
    n = len(steps)
    time.sleep(2)
    assert len(steps) == n, "no step runs after Cancel"
    assert steps[-1] - t_cancel < 3, "the run stopped within seconds of Cancel"
    assert n < 60, "the run did not finish its 120 steps"
    monkeypatch.setattr(L, "unlearn", real)
    t0 = time.monotonic()
    other = Client(url, verbose=False)
    out = other.predict(str(cid), "mlf", "mape", "both", 0.9, "greedy", api_name="/explore")
    assert "selected" in out[0]
    assert time.monotonic() - t0 < 60, "the next job was not held behind the cancelled one"


def test_ui_errors_are_messages_not_tracebacks(served, capfd, caplog):
    """A bad input shows as one line in the tab's status line (the last output of each
    endpoint), logged once without a traceback; the next successful action clears it."""
    from gradio_client import Client

    _, url = served
    client = Client(url, verbose=False)
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="mape_viz.app"):
        status = client.predict(*_unlearn_args("not-an-id"), api_name="/unlearn")[-1]
    assert "sample ids must be integers separated by commas or spaces, got" in status
    assert "not-an-id" in status and 'role="alert"' in status and "Traceback" not in status
    # the server's terminal: one log line without a traceback, and nothing printed by Gradio
    logged = [r for r in caplog.records if r.name == "mape_viz.app"]
    assert len(logged) == 1 and "integers" in logged[0].getMessage() and not logged[0].exc_info
    assert "Traceback" not in capfd.readouterr().err
    # every numeric input through the same check, the slider's range included
    args = _unlearn_args(0)
    for i, value, message in [
            (6, 1.5, "sparsity=1.5 is out of range; accepted: a number &gt;= 0 and &lt; 1"),
            (8, -1.0, "learning rate=-1.0 is out of range; accepted: empty (the preset) or a "
                      "number &gt;= 0"),
            (9, 0, "epochs=0 is out of range; accepted: an integer &gt;= 1 and &lt;= 50")]:
        bad = list(args)
        bad[i] = value
        assert message in client.predict(*bad, api_name="/unlearn")[-1]
    assert "sparsity=1.5 is out of range" in client.predict(
        "3", "mlf", "mape", "both", 1.5, "greedy", api_name="/explore")[-1]
    assert "epochs=0 is out of range" in client.predict(
        "3", "ga", ["mape"], ["0.8"], 0, None, api_name="/sweep")[-1]
    assert "run an unlearning job first" in client.predict(api_name="/export")[-1]
    # the next successful action clears the line
    assert client.predict("3", "mlf", "mape", "both", 0.9, "greedy", api_name="/explore")[-1] == ""


_BOXES_JS = """(sel) => {
  const root = document.querySelector(sel);
  const box = e => { if (!e) return null; const r = e.getBoundingClientRect();
                     return [r.left, r.top, r.right, r.bottom]; };
  return {svg: box(root.querySelector('.main-svg')), title: box(root.querySelector('.gtitle')),
          label: box(root.querySelector('[data-testid="block-label"]')),
          ann: [...root.querySelectorAll('g.annotation')].map(
              g => ({text: g.textContent, box: box(g.querySelector('text'))})),
          xticks: [...root.querySelectorAll('.xaxislayer-above text')].map(t => t.textContent)};
}"""


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _check_explore_layout(page, width: int, n_layers: int) -> None:
    """At this window width: the sample table's last header cell inside the table; in the
    greedy-swap panel, title, subplot titles, note and Gradio's label apart, the note inside
    the figure, and layer ticks exactly 0..L-1."""
    table = page.evaluate("""() => {
      const t = document.querySelector('#samples'); const ths = t.querySelectorAll('thead th');
      const c = t.getBoundingClientRect(), h = ths[ths.length - 1].getBoundingClientRect();
      return {cell: [h.left, h.right], box: [c.left, c.right], text: ths[ths.length - 1].innerText};
    }""")
    assert table["text"].strip() == "confidence"
    assert table["box"][0] <= table["cell"][0] and table["cell"][1] <= table["box"][1] + 0.5, \
        f"the last column is cut off at {width} px: {table}"
    boxes = page.evaluate(_BOXES_JS, "#swaps-plot")
    texts = [boxes["title"]] + [a["box"] for a in boxes["ann"]]
    if boxes["label"]:
        texts.append(boxes["label"])
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            assert not _overlap(a, b), f"texts of the swap panel overlap at {width} px: {boxes}"
    notes = [a for a in boxes["ann"] if a["text"].startswith("no swaps")]
    if notes:
        svg = boxes["svg"]
        for note in notes:
            n = note["box"]
            assert svg[0] <= n[0] and n[2] <= svg[2] and svg[1] <= n[1] and n[3] <= svg[3]
        assert "greedy checked" in notes[0]["text"] and "candidate" in notes[0]["text"]
    assert set(boxes["xticks"]) == {str(i) for i in range(n_layers)}, boxes["xticks"]


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_browser_inline_errors_and_layout_at_1000px(served, ctx):
    """A ~1000 px window: the layout holds, and errors show under their tab's controls until
    the next successful action."""
    _, url = served
    with app_page(url, 1000, 1400, "#swaps-plot .js-plotly-plot") as page:
        time.sleep(1)
        _check_explore_layout(page, 1000, ctx.task.model.config.num_hidden_layers)
        page.fill("#forget-ids textarea", "abc")
        page.get_by_role("button", name="Compute scores").click()
        page.wait_for_function("document.querySelector('#explore-status')?.innerText"
                               ".includes('must be integers')", timeout=120_000)
        assert page.inner_text("#explore-status").strip() == (
            "⚠ sample ids must be integers separated by commas or spaces, got 'abc'")
        box = page.locator("#explore-status").bounding_box()
        btn = page.locator("#score-btn").bounding_box()
        assert 0 <= box["y"] - (btn["y"] + btn["height"]) < 400, "next to its controls"
        # a typed sparsity out of the slider's range: the same inline line
        number = page.locator("input[type=number]").first
        number.fill("1.5")
        number.press("Enter")
        page.wait_for_function("document.querySelector('#explore-status')?.innerText"
                               ".includes('sparsity=1.5')", timeout=60_000)
        assert "accepted: a number >= 0 and < 1" in page.inner_text("#explore-status")
        page.get_by_role("tab", name="Export").click()
        page.get_by_role("button", name="Prepare files").click()
        page.wait_for_function("document.querySelector('#export-status')?.innerText"
                               ".includes('first')", timeout=60_000)
        assert "run an unlearning job first" in page.inner_text("#export-status")
        page.get_by_role("tab", name="Explore").click()
        number.fill("0.9")
        page.fill("#forget-ids textarea", str(ctx.canary_ids()[0]))
        page.get_by_role("button", name="Compute scores").click()
        page.wait_for_function("document.querySelector('#explore-status')?.innerText"
                               ".trim() === ''", timeout=300_000)


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_browser_explore_unlearn_sweep_export(served, ctx, tmp_path):
    """Drives every tab; MAPE_VIZ_SCREENSHOT_DIR=docs refreshes the README's screenshots."""
    _, url = served
    out = Path(os.environ.get("MAPE_VIZ_SCREENSHOT_DIR", tmp_path))
    with app_page(url, 1400, 1800, "#score-btn") as page:
        page.get_by_role("button", name="Compute scores").click()
        page.wait_for_function(
            "document.querySelector('#explore-summary')?.innerText.includes('selected')",
            timeout=300_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        time.sleep(1)
        _check_explore_layout(page, 1400, ctx.task.model.config.num_hidden_layers)
        assert page.inner_text("#explore-status").strip() == ""
        page.screenshot(path=str(out / "app_explore.png"), full_page=True)
        page.get_by_role("tab", name="Unlearn").click()
        page.get_by_role("button", name="Unlearn", exact=True).click()
        page.wait_for_function(
            "document.querySelector('#run-summary')?.innerText.includes('changed')",
            timeout=600_000)
        time.sleep(1)
        page.screenshot(path=str(out / "app_unlearn.png"), full_page=True)
        assert "changed" in page.inner_text("#run-summary")
        page.get_by_role("tab", name="Sweep").click()
        page.get_by_role("button", name="Run sweep").click()
        # both default sparsities (0.8, 0.95) have finished and been drawn
        page.wait_for_function(
            "document.querySelector('#sweep-records')?.innerText.includes('0.95') && "
            "document.querySelector('#sweep-plot .js-plotly-plot') !== null",
            timeout=600_000)
        time.sleep(1)
        page.screenshot(path=str(out / "app_sweep.png"), full_page=True)
        page.get_by_role("tab", name="Export").click()
        page.get_by_role("button", name="Prepare files").click()
        page.wait_for_function("document.body.innerText.includes('.safetensors')", timeout=120_000)
        time.sleep(1)
        page.screenshot(path=str(out / "app_export.png"), full_page=True)


def test_sweep_draws_the_frontier(ctx):
    from mape_viz.ui import app_logic as L

    ids = [ctx.canary_ids()[4]]
    preset = L.app_config(ctx.task, "ga", "mape")
    original = L.original_metrics(ctx, ids)
    records = list(L.sweep(ctx, ids, "ga", ["mape"], [0.9], preset.epochs))[-1]
    fig = L.sweep_frontier(records, original)
    names = [t.name for t in fig.data]
    assert "MAPE-GA" in names and "Original" in names
    front = fig.data[names.index("MAPE-GA")]
    # the front passes through the run (and is anchored at the original model)
    assert (records[0]["forget_acc"], records[0]["test_acc"]) in set(zip(front.x, front.y))
