"""Sparsity / granularity on the frontier rule (paper Fig. 2 / Fig. 7 at equal efficacy):
:func:`frontier_by_setting` on hand-made records, its flat points and table, and a tiny
:func:`sweep_frontier` run (docs/design.md §6)."""

from __future__ import annotations

import warnings

import pytest
import torch

from mape_viz.experiments.frontier import FrontierConfig
from mape_viz.experiments.sweep import (frontier_by_setting, frontier_points,
                                        frontier_setting_markdown, sweep_frontier)
from mape_viz.viz import sparsity_curves
from tiny_tasks import tiny_task

ORIG = {"method": "original", "forget": 1.0, "test": 0.99}
RT = {"method": "rt", "forget": 0.0, "test": 0.99}


def R(sp, gran, seed, forget, test, sel="mape"):
    return {"method": "ga", "selector": sel, "sparsity": sp, "granularity": gran, "seed": seed,
            "forget": forget, "test": test}


def test_each_setting_gets_its_own_front():
    recs = [
        # sparsity 0.5: reaches forget 0.05 at test 0.90 (seed 0) and 0.80 (seed 1)
        R(0.5, "both", 0, 0.05, 0.90), R(0.5, "both", 0, 0.5, 0.98),
        R(0.5, "both", 1, 0.05, 0.80),
        # sparsity 0.9: never below 0.3; its points must not mix with 0.5's
        R(0.9, "both", 0, 0.3, 0.985), R(0.9, "both", 1, 0.6, 0.99),
        R(0.9, "heads", 0, 0.0, 0.70),
        R(0.0, "all", 0, 0.0, 0.60, sel="full"),
        {"method": "rt", "forget": 0.0, "test": 0.99},
    ]
    rows = frontier_by_setting(recs, ORIG, RT)
    got = {(r["selector"], r["granularity"], r["sparsity"]): r for r in rows}
    assert list(got) == [("full", "all", 0.0), ("mape", "both", 0.5), ("mape", "both", 0.9),
                         ("mape", "heads", 0.9)]
    fae = got[("mape", "both", 0.5)]["fidelity_at_efficacy"]
    assert fae["values"] == pytest.approx([0.90, 0.80]) and fae["n"] == 2
    assert got[("mape", "both", 0.9)]["fidelity_at_efficacy"]["n"] == 0  # not reached
    # efficacy at test >= 0.98: seed 0 at 0.5 is the run at (0.5, 0.98); seed 1 interpolates
    # from (0.05, 0.80) to the anchor (1.0, 0.99): 0.05 + 0.95 * (0.18 / 0.19) = 0.95
    assert got[("mape", "both", 0.5)]["efficacy_at_fidelity"]["values"] == pytest.approx(
        [0.5, 0.95])
    # 0.9 seed 0: between (0.3, 0.985) and the anchor (1.0, 0.99) -> 0.3 exactly at 0.98
    assert got[("mape", "both", 0.9)]["efficacy_at_fidelity"]["values"][0] == pytest.approx(0.3)
    # heads: from (0.0, 0.70) towards the anchor (1.0, 0.99) at forget 0.05: 0.70 + 0.05 * 0.29
    assert got[("mape", "heads", 0.9)]["fidelity_at_efficacy"]["values"] == pytest.approx(
        [0.7145])

    pts = frontier_points(rows)
    p = next(q for q in pts if q["sparsity"] == 0.5)
    assert p["test_at_efficacy"] == pytest.approx(0.85) and p["test_at_efficacy_n"] == 2
    assert next(q for q in pts if q["sparsity"] == 0.9 and q["granularity"] == "both"
                )["test_at_efficacy"] is None
    fig = sparsity_curves([q for q in pts if q["selector"] == "mape"], y="forget_at_fidelity",
                          color="granularity", dash=None)
    assert len(fig.data) >= 2

    md = frontier_setting_markdown(rows, ORIG, RT, FrontierConfig())
    assert "| MAPE-GA (both, 0.5) |" in md and "| MAPE-GA (heads, 0.9) |" in md
    assert "| GA |" in md and "not reached (0/2)" in md and "Rule (the same" in md


def test_sweep_frontier_on_a_tiny_task():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fc = FrontierConfig(methods=("ga",), selectors=("mape",), multipliers=(0.5, 2.0),
                            seeds=(0,))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sweep_frontier(tiny_task(), ["ga"], ["full", "mape"], [0.5, 0.9],
                                 ["both", "heads"], fc,
                                 config=dict(lr=1e-2, epochs=1, batch_size=4,
                                             score_max_retain=16), progress=False)
    finally:
        torch.set_num_threads(before)
    recs = res["records"]
    settings = sorted({(r["selector"], r["sparsity"], r["granularity"]) for r in recs})
    assert settings == [("full", 0.0, "all"), ("mape", 0.5, "both"), ("mape", 0.5, "heads"),
                        ("mape", 0.9, "both"), ("mape", 0.9, "heads")]
    assert len(recs) == 5 * 2 and all(r["experiment"] == "frontier" for r in recs)
    assert res["retrained"]["method"] == "rt" and len(res["summary"]) == 5
