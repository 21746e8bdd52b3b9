"""The app on your own model and data (``python app.py --model DIR --data DIR --forget ...``),
served and driven through gradio_client and headless Chromium: no toy-only columns, the forget
rows play the canaries' role, and Explore → Unlearn works end to end (docs/design.md §9)."""

from __future__ import annotations

import re
import shutil
import time

import pytest

import app
from app_helpers import app_page, serve
from test_byod import _glue_folder  # a GLUE-layout folder and a tiny BERT classifier on disk

pytestmark = pytest.mark.slow

FORGET = [0, 1, 2]



@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("byod-app")
    data, model = _glue_folder(tmp)
    ctx = app.context_from_args(app.parse_args(
        ["--model", model, "--data", data, "--forget", "ids:" + ",".join(map(str, FORGET))]))
    demo = app.build_app(ctx)
    with serve(demo) as url:
        yield ctx, url


def test_client_explores_and_unlearns_your_rows(served):
    from gradio_client import Client

    ctx, url = served
    client = Client(url, verbose=False)
    ids = ",".join(map(str, FORGET))
    out = client.predict(ids, "mlf", "mape", "both", 0.5, "greedy", api_name="/explore")
    assert out[-1] == "", f"explore failed: {out[-1]}"
    n_layers = ctx.task.model.config.num_hidden_layers
    n_heads = ctx.task.model.config.num_attention_heads
    heads, total = re.search(r"(\d+) of (\d+) heads", out[0]).groups()
    assert int(total) == n_layers * n_heads and int(heads) == n_layers * n_heads // 2
    # ids, method, modules, objective, selector, granularity, sparsity, refine, lr, epochs, full
    run_md, before_after, metrics, _, status = client.predict(
        ids, "ga", "explore", "mlf", "mape", "both", 0.5, "greedy", None, 5, False,
        api_name="/unlearn")
    assert status == "", f"unlearn failed: {status}"
    assert f"mask from Explore: {heads} of {total} heads" in run_md
    assert "No retrained reference" in run_md  # none was built for a user model
    assert [r[0] for r in before_after["data"]] == FORGET
    assert not any(str(h).startswith(("rule", "canary")) for h in before_after["headers"])
    assert not any(r[0].startswith("retrained") for r in metrics["data"])


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_browser_shows_your_data_without_toy_columns(served):
    ctx, url = served
    with app_page(url, 1400, 1600, "#samples thead th") as page:
        headers = [h.strip().lower() for h in page.locator("#samples thead th").all_inner_texts()]
        assert "text" in headers and "label" in headers
        assert "canary" not in headers and "rule label" not in headers
        # the landing page already explored the first forget row: its heatmap is drawn
        page.wait_for_selector("#swaps-plot .js-plotly-plot", timeout=120_000)
        page.fill("#forget-ids textarea", ",".join(map(str, FORGET)))
        page.get_by_role("button", name="Compute scores").click()
        page.wait_for_function(
            "document.querySelector('#explore-summary')?.innerText.includes('selected')",
            timeout=300_000)
        time.sleep(1)
        assert page.inner_text("#explore-status").strip() == ""
        summary = page.inner_text("#explore-summary")
        total = ctx.task.model.config.num_hidden_layers * ctx.task.model.config.num_attention_heads
        assert f"of {total} heads" in summary
