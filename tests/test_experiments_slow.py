"""Experiments end to end on the embedded worlds (loads or trains and caches the tiny models:
minutes on first use).

- The relearning attack brings canaries back: after unlearning the 32 memorised canaries,
  fine-tuning on 20 % of them raises forget accuracy again (on the 2-layer
  ``toy-sentiment-small``, whose bench presets were tuned there: on the 4-layer world 4 epochs
  at 1e-3 brought full-GD's relearned rows from 0.0 to 0.71, not all the way back).
- ``mape-viz bench --quick`` runs end to end through ``mape_viz.cli.main``.
"""

from __future__ import annotations

import json

import pytest
import torch

import mape_viz.cli.bench  # noqa: F401  (registers the bench subcommand)
from mape_viz.cli import main
from mape_viz.experiments import relearn
from mape_viz.presets import preset_targets
from mape_viz.tasks import load_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def task():
    torch.set_num_threads(1)  # shared CI cores: oversubscribed threads are many times slower
    return load_task("toy-sentiment-small", forget="canaries")


def test_relearning_raises_forget_accuracy_again(task):
    recs = relearn(task, ["gd"], ("full", "mape"), epochs=4, lr=1e-3,
                   overrides=preset_targets("toy-sentiment-small", "bench"), progress=False)
    by = {(r["selector"], r["epoch"]): r for r in recs}
    print("\n" + "\n".join(f"{s} epoch {e}: forget {r['forget_acc']:.3f} held-out "
                            f"{r['heldout_acc']:.3f} relearn rows {r['relearnset_acc']:.3f}"
                            for (s, e), r in sorted(by.items())))
    for sel in ("full", "mape"):
        start, end = by[(sel, 0)], by[(sel, 4)]
        assert start["n_relearn"] == 7 and start["n_heldout"] == 25  # ceil(20 % of 32)
        assert start["unlearn_ok"]
        # unlearning removed part of the canaries ...
        assert start["forget_acc"] <= 0.8
        # ... and relearning 7 of them brings forget accuracy back up (≥ 2 more canaries)
        assert end["relearnset_acc"] == 1.0 > start["relearnset_acc"]
        assert end["forget_acc"] >= start["forget_acc"] + 2 / 32


def test_bench_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--task", "toy-sentiment", "--quick", "--out", str(out),
                 "--figures", "--quiet"]) == 0
    printed = capsys.readouterr().out
    lines = [ln for ln in printed.splitlines() if ln.startswith("|")]
    names = [ln.split("|")[1].strip().strip("*") for ln in lines[2:]]
    assert names == ["Original", "RT", "SA", "GA", "MAPE-GA", "NPO", "MAPE-NPO"]
    doc = json.loads((out / "records.json").read_text())
    assert doc["task_options"] == {"forget": "canaries"} and doc["quick"]
    recs = {r["name"]: r for r in doc["experiments"]["compare"]}
    assert recs["Original"]["forget_acc"] == 1.0  # the canaries are memorised
    assert recs["RT"]["forget_acc"] <= 0.1  # ... and unknown to the retrained model
    assert all(r["ok"] for r in recs.values())
    assert recs["MAPE-GA"]["n_changed_params"] < 0.2 * recs["GA"]["n_changed_params"]
    assert (out / "figures" / "comparison_table.html").is_file()
    assert doc["seconds"] < 600
