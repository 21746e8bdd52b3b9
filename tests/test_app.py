"""The Gradio app: handlers called directly, the served app through gradio_client (one and
three concurrent clients), and a headless Chromium run that saves screenshots."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx():
    from mape_viz.ui import app_logic as L

    return L.AppContext.load("toy-sentiment", forget="canaries")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(ctx):
    import app

    demo = app.build_app(ctx)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


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


def test_unlearn_handler_flips_a_canary_and_keeps_the_base(ctx):
    from mape_viz.ui import app_logic as L

    cid = ctx.canary_ids()[1]
    preset = L.app_config(ctx.task, "ga", "mape")  # the values the Unlearn tab starts with
    run = L.run_unlearn(ctx, [cid], "ga", "mape", 0.9, preset.lr, preset.epochs)
    rule = ctx.train[cid]["rule_label"]
    assert run.before[0][0] != rule and run.after[0][0] == rule
    table = L.before_after_table(ctx, run)
    assert table[0][0] == cid
    assert {"original", "unlearned"} <= set(run.metrics)
    assert L.weights_checksum(ctx.task.model) == ctx.checksum
    files = L.export_run(run)
    names = {Path(f).name for f in files}
    assert any(n.endswith(".safetensors") for n in names) and any(n.startswith("report") for n in names)


def test_client_explore_then_unlearn(served, ctx):
    from gradio_client import Client

    from mape_viz.ui import app_logic as L

    _, url = served
    client = Client(url, verbose=False)
    cid = ctx.canary_ids()[2]
    out = client.predict(str(cid), "mlf", "mape", "both", 0.9, "greedy",
                         api_name="/explore")
    summary = out[0]
    assert "heads" in summary and "selected" in summary
    preset = L.app_config(ctx.task, "ga", "mape")
    out = client.predict(str(cid), "ga", "mape", 0.9, preset.lr, preset.epochs,
                         api_name="/unlearn")
    run_md, before_after = out[0], out[1]
    row = before_after["data"][0]
    assert row[0] == cid
    assert row[4] != row[3] and row[6] == row[3], "the canary's prediction flips to the rule's label"
    assert "parameter entries changed" in run_md


def test_three_concurrent_clients_get_their_own_results(served, ctx):
    from gradio_client import Client

    from mape_viz.ui import app_logic as L

    _, url = served
    ids = ctx.canary_ids()[3:6]
    preset = L.app_config(ctx.task, "ga", "mape")
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def one(cid: int) -> None:
        try:
            client = Client(url, verbose=False)
            results[cid] = client.predict(str(cid), "ga", "mape", 0.9, preset.lr, preset.epochs,
                                          api_name="/unlearn")
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


def test_ui_errors_are_messages_not_tracebacks(served):
    from gradio_client import Client

    _, url = served
    client = Client(url, verbose=False)
    with pytest.raises(Exception) as info:
        client.predict("not-an-id", "ga", "mape", 0.9, 1e-3, 2, api_name="/unlearn")
    assert "integers" in str(info.value)
    assert "Traceback" not in str(info.value)


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_browser_explore_unlearn_sweep_export(served, tmp_path):
    """Drives every tab; MAPE_VIZ_SCREENSHOT_DIR=docs refreshes the README's screenshots."""
    from playwright.sync_api import sync_playwright

    _, url = served
    out = Path(os.environ.get("MAPE_VIZ_SCREENSHOT_DIR", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url, wait_until="load", timeout=120_000)
            page.wait_for_selector("#score-btn", timeout=120_000)
            page.get_by_role("button", name="Compute scores").click()
            page.wait_for_function(
                "document.querySelector('#explore-summary')?.innerText.includes('selected')",
                timeout=300_000)
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            time.sleep(1)
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
        finally:
            browser.close()
