"""Efficacy–fidelity frontiers: the Pareto front (brute force), the interpolation rule on
hand-made fronts, the summary and its table, the figure's traces, a tiny grid run and
``mape-viz bench --experiments frontier`` (docs/design.md §6)."""

from __future__ import annotations

import json
import random
import warnings

import pytest

from mape_viz import experiments as ex
from mape_viz.cli import main
from mape_viz.experiments.frontier import (FrontierConfig, at_efficacy, at_fidelity,
                                           front_rows, frontier_markdown, frontier_plan,
                                           mean_points, pareto_front, run_frontier, summarise)
from mape_viz.tasks import TASKS
from mape_viz.unlearning import UnlearnConfig
from mape_viz.viz import frontier as frontier_figure
from tiny_tasks import tiny_task


pytestmark = pytest.mark.usefixtures("one_thread")


def P(x, y, **kw):
    return {"forget": x, "test": y, **kw}


# ---------------------------------------------------------------------------------------------
# Pareto front


def brute_front(points):
    """Non-dominated points by definition (min forget, max test), first of equal ones kept."""
    keep = []
    for i, p in enumerate(points):
        dominated = any((q["forget"] <= p["forget"] and q["test"] >= p["test"]
                         and (q["forget"] < p["forget"] or q["test"] > p["test"]))
                        for q in points)
        duplicate = any(q["forget"] == p["forget"] and q["test"] == p["test"]
                        for q in points[:i])
        if not dominated and not duplicate:
            keep.append(p)
    return sorted(keep, key=lambda p: p["forget"])


@pytest.mark.parametrize("seed", range(20))
def test_pareto_front_equals_brute_force(seed):
    rng = random.Random(seed)
    grid = [i / 8 for i in range(9)]  # a coarse grid makes ties and duplicates common
    pts = [P(rng.choice(grid), rng.choice(grid), id=i) for i in range(rng.randint(1, 25))]
    front = pareto_front(pts)
    assert [p["id"] for p in front] == [p["id"] for p in brute_front(pts)]
    assert all(a["forget"] < b["forget"] and a["test"] < b["test"]
               for a, b in zip(front, front[1:]))


def test_pareto_front_skips_missing_values():
    pts = [P(0.1, 0.9, id=0), P(None, 1.0, id=1), P(0.0, float("nan"), id=2), P(0.5, 0.95, id=3)]
    assert [p["id"] for p in pareto_front(pts)] == [0, 3]
    assert pareto_front([]) == []


# ---------------------------------------------------------------------------------------------
# The interpolation rule on a hand-made front

FRONT = [P(0.0, 0.5, mia=0.1, retain=0.6), P(0.2, 0.9, mia=0.3, retain=0.9),
         P(0.6, 0.98, mia=0.5, retain=0.99), P(1.0, 0.99, mia=0.9, retain=1.0)]


@pytest.mark.parametrize("tau,y,mia,between", [
    (0.1, 0.7, 0.2, (0, 1)),          # halfway between the first two points
    (0.2, 0.9, 0.3, (1, 2)),          # exactly on a point (weight 0 towards the next)
    (0.5, 0.96, 0.45, (1, 2)),        # 3/4 of the way from 0.2 to 0.6
    (1.0, 0.99, 0.9, (3, 3)),         # the last point
    (1.3, 0.99, 0.9, (3, 3)),         # past the front: its last point
])
def test_fidelity_at_equal_efficacy_interpolates_along_the_front(tau, y, mia, between):
    got = at_efficacy(FRONT, tau)
    assert got["test"] == pytest.approx(y) and got["mia"] == pytest.approx(mia)
    assert got["forget"] == pytest.approx(min(tau, 1.0)) and got["between"] == between


def test_fidelity_at_equal_efficacy_not_reached():
    assert at_efficacy(FRONT, -0.01) is None
    assert at_efficacy([], 0.5) is None


@pytest.mark.parametrize("sigma,x,retain", [
    (0.94, 0.4, 0.945),   # halfway between 0.9 and 0.98
    (0.985, 0.8, 0.995),  # halfway between 0.98 and 0.99
    (0.5, 0.0, 0.6),      # the first point already keeps that much
    (0.3, 0.0, 0.6),
    (0.99, 1.0, 1.0),
])
def test_efficacy_at_equal_fidelity_interpolates_along_the_front(sigma, x, retain):
    got = at_fidelity(FRONT, sigma)
    assert got["forget"] == pytest.approx(x) and got["retain"] == pytest.approx(retain)
    assert got["test"] == pytest.approx(max(sigma, 0.5))


def test_efficacy_at_equal_fidelity_not_reached():
    assert at_fidelity(FRONT, 0.995) is None


# ---------------------------------------------------------------------------------------------
# Summary rows and the table

ORIGINAL = {"forget": 1.0, "test": 0.99, "mia": 0.9, "retain": 1.0}
RT = {"forget": 0.05, "test": 0.985, "mia": 0.1, "retain": 0.99}


def rec(method, selector, seed, lr, x, y, **kw):
    return {"method": method, "selector": selector, "seed": seed, "step_field": "lr",
            "step_size": lr, "forget": x, "test": y, "mia": kw.pop("mia", 0.5),
            "retain": kw.pop("retain", 0.9), "n_changed_params": kw.pop("n", 100),
            "seconds": kw.pop("seconds", 1.0), "steps": kw.pop("steps", 10), **kw}


def hand_records():
    return [
        # MAPE-GA seed 0: (0.0, 0.95) (0.5, 0.98) and a dominated run
        rec("ga", "mape", 0, 1e-3, 0.5, 0.98), rec("ga", "mape", 0, 4e-3, 0.0, 0.95),
        rec("ga", "mape", 0, 2e-3, 0.6, 0.97),
        # seed 1: (0.2, 0.96) (0.5, 0.985)
        rec("ga", "mape", 1, 1e-3, 0.5, 0.985), rec("ga", "mape", 1, 4e-3, 0.2, 0.96),
        rec("ga", "mape", 1, 2e-3, 0.9, 0.97),
        # GA seed 0 only: never below forget 0.3
        rec("ga", "full", 0, 1e-3, 0.3, 0.90, n=1000), rec("ga", "full", 0, 4e-3, 0.8, 0.99,
                                                            n=1000),
    ]


def test_summary_follows_the_rule_per_seed():
    fc = FrontierConfig()
    rows = {r["name"]: r for r in summarise(hand_records(), ORIGINAL, RT, fc)}
    assert set(rows) == {"MAPE-GA", "GA"}
    m = rows["MAPE-GA"]
    assert m["tau"] == pytest.approx(0.10) and m["sigma"] == pytest.approx(0.98)
    # seed 0 front: (0, .95) (.5, .98) (1, .99 anchor); at forget .10: .95 + .2·.03
    # seed 1 front: (.2, .96) (.5, .985) (1, .99): forget .10 is below the front: not reached
    fae = m["fidelity_at_efficacy"]
    assert fae["values"][0] == pytest.approx(0.956) and fae["values"][1] is None
    assert (fae["n"], fae["of"], fae["sd"]) == (1, 2, 0.0)
    # at test .98: seed 0 exactly its point (.5, .98); seed 1 between (.2,.96) and (.5,.985)
    eaf = m["efficacy_at_fidelity"]
    assert eaf["values"][0] == pytest.approx(0.5)
    assert eaf["values"][1] == pytest.approx(0.2 + 0.3 * (0.02 / 0.025))
    assert eaf["mean"] == pytest.approx((0.5 + 0.44) / 2)
    assert eaf["sd"] == pytest.approx(abs(0.5 - 0.44) / 2 ** 0.5)
    assert (eaf["min"], eaf["max"]) == (pytest.approx(0.44), 0.5)
    assert m["mia_at_efficacy"]["values"][0] == pytest.approx(0.5)
    assert m["runs"] == 6 and m["n_changed_params"] == 100
    g = rows["GA"]
    # GA front (.3, .9) (.8, .99) (1, .99 anchor dominated by (.8, .99)): .10 not reached;
    # at test .98: between (.3,.9) and (.8,.99): .3 + .5·(.08/.09)
    assert g["fidelity_at_efficacy"]["n"] == 0
    assert g["efficacy_at_fidelity"]["values"] == [pytest.approx(0.3 + 0.5 * 0.08 / 0.09)]


def test_no_anchor_and_no_rt():
    fc = FrontierConfig(anchor_original=False)
    rows = {r["name"]: r for r in summarise(hand_records(), ORIGINAL, None, fc)}
    assert rows["MAPE-GA"]["tau"] is None
    assert rows["MAPE-GA"]["fidelity_at_efficacy"]["n"] == 0
    md = frontier_markdown(list(rows.values()), ORIGINAL, None, fc)
    assert "– (no RT)" in md and "| *RT* |" not in md


def test_markdown_states_the_rule_and_the_spread():
    fc = FrontierConfig()
    rows = summarise(hand_records(), ORIGINAL, RT, fc)
    md = frontier_markdown(rows, ORIGINAL, RT, fc)
    lines = md.splitlines()
    assert lines[0].startswith("| Method | Fidelity at equal efficacy: test acc. (%) at "
                               "forget acc. ≤ RT + 5 pts ↑ | Efficacy at equal fidelity: "
                               "forget acc. (%) at test acc. ≥ original − 1 pt ↓")
    assert lines[2].startswith("| *Original* | test acc. 99.0 | forget acc. 100.0 |")
    assert lines[3].startswith("| *RT* | test acc. 98.5 | forget acc. 5.0 |")
    mape = next(line for line in lines if line.startswith("| MAPE-GA |"))
    assert "| 95.6 ± 0.0 [95.6–95.6] (1/2 seeds) | 47.0 ± 4.2 [44.0–50.0] |" in mape
    assert "| GA | not reached (0/1) |" in md
    assert "Rule (the same for every row)" in md and "RT's + 5 points" in md


def test_front_rows_flag_the_runs_on_their_seeds_front():
    rows = front_rows(hand_records(), FrontierConfig(), ORIGINAL)
    on = [(r["selector"], r["seed"], r["step_size"]) for r in rows if r["on_front"]]
    assert on == [("mape", 0, 1e-3), ("mape", 0, 4e-3), ("mape", 1, 1e-3), ("mape", 1, 4e-3),
                  ("full", 0, 1e-3), ("full", 0, 4e-3)]


def test_frontier_config_refuses_bad_values():
    with pytest.raises(ValueError, match="methods \\['nope'\\]"):
        FrontierConfig(methods=("nope",))
    with pytest.raises(ValueError, match="multipliers"):
        FrontierConfig(multipliers=(1.0, -2.0))
    with pytest.raises(ValueError, match="efficacy_margin"):
        FrontierConfig(efficacy_margin=5)


# ---------------------------------------------------------------------------------------------
# The figure


def test_figure_has_one_front_per_method_selector_and_the_references():
    recs = hand_records() + [rec("ga", "mape", 1, 8e-3, 0.1, 0.5)]
    fig = frontier_figure(recs, original=ORIGINAL, retrained=RT)
    names = [t.name for t in fig.data]
    assert names == ["MAPE-GA runs", "MAPE-GA", "GA runs", "GA", "Original", "RT"]
    curve = fig.data[1]
    # the curve: the Pareto front of the seed-mean points per lr, plus the original
    means = mean_points([r for r in recs if r["selector"] == "mape"])
    by_lr = {p["step_size"]: (p["forget"], p["test"]) for p in means}
    assert by_lr[1e-3] == (pytest.approx(0.5), pytest.approx(0.9825))
    pts = [P(*v) for v in by_lr.values()] + [P(1.0, 0.99)]
    expect = brute_front(pts)
    assert list(curve.x) == pytest.approx([p["forget"] for p in expect])
    assert list(curve.y) == pytest.approx([p["test"] for p in expect])
    assert len(fig.data[0].x) == 7  # every MAPE-GA run as a dot
    assert (fig.data[4].x[0], fig.data[5].x[0]) == (1.0, 0.05)
    assert fig.layout.xaxis.title.text.startswith("forget accuracy: share of forget rows")
    assert fig.layout.yaxis.title.text.startswith("test accuracy")
    guides = [s.x0 if s.x0 == s.x1 else s.y0 for s in fig.layout.shapes]
    assert guides == [pytest.approx(0.10), pytest.approx(0.98)]


def test_figure_without_runs_says_why():
    fig = frontier_figure([{"method": "original", "forget": 1.0, "test": 0.99}])
    assert "no frontier runs" in fig.layout.annotations[0].text


# ---------------------------------------------------------------------------------------------
# Running a grid


@pytest.fixture(scope="module")
def task():
    return tiny_task()


def test_plan_scales_each_runs_base_step_size(task):
    fc = FrontierConfig(methods=("ga", "so"), selectors=("full", "mape"), multipliers=(0.5, 2),
                        seeds=(0, 1), grid={"so/full": [1e-3]})
    plan = frontier_plan(task, fc, UnlearnConfig(lr=1e-2),
                         {"masked": {"lr": 4e-2, "eta": 1e-4}})
    got = [(p["seed"], p["method"], p["selector"], p["step_field"], p["step_size"],
            p["multiplier"]) for p in plan]
    one = [("ga", "full", "lr", 5e-3, 0.5), ("ga", "full", "lr", 2e-2, 2),
           ("ga", "mape", "lr", 2e-2, 0.5), ("ga", "mape", "lr", 8e-2, 2),
           ("so", "full", "eta", 1e-3, None),
           ("so", "mape", "eta", 5e-5, 0.5), ("so", "mape", "eta", 2e-4, 2)]
    assert got == [(s, *r) for s in (0, 1) for r in one]
    assert all(getattr(p["config"], p["step_field"]) == p["step_size"] for p in plan)


def test_run_frontier_on_a_tiny_task(task):
    fc = FrontierConfig(methods=("ga",), selectors=("full", "mape"), sparsity=0.5,
                        multipliers=(0.25, 1.0), seeds=(0,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_frontier(task, fc, config=dict(lr=1e-2, epochs=2, batch_size=4,
                                                 score_max_retain=16, stop_when="flipped"),
                           progress=False)
    assert len(res.records) == 4 and res.retrained["method"] == "rt"
    assert res.original["forget"] == 1.0 == res.original["test"]
    for r in res.records:
        assert r["experiment"] == "frontier" and r["lr"] == r["step_size"]
        assert r["stop_reason"] in ("criterion", "epochs done") and r["steps"] <= 4
        assert {"forget", "test", "retain", "mia", "n_changed_params", "seconds"} <= set(r)
    assert {s["name"] for s in res.summary} == {"GA", "MAPE-GA"}
    assert "| MAPE-GA |" in res.markdown()
    fig = frontier_figure(res)
    assert [t.name for t in fig.data][-2:] == ["Original", "RT"]
    json.dumps(ex.records.jsonable(res.to_dict()))


def test_bench_cli_writes_the_frontier(tmp_path, capsys):
    name = "tiny-frontier-bench"
    if name not in TASKS:
        TASKS.register(name, help="tiny frontier task (tests)")(lambda: tiny_task(name=name))
    out = tmp_path / "bench"
    argv = ["bench", "--task", name, "--experiments", "frontier", "--methods", "ga,so",
            "--selectors", "full,mape", "--sparsity", "0.5", "--seeds", "0", "--grid", "0.5,2",
            "--epochs", "1", "--batch-size", "4", "--score-max-retain", "16",
            "--fisher-max-samples", "16", "--override", "*:lr=0.01", "--override",
            "so:eta=0.0005", "--out", str(out), "--figures", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Efficacy–fidelity frontier" in printed and "| MAPE-SO |" in printed
    assert {p.name for p in out.iterdir()} == {"records.json", "frontier.csv", "table.md",
                                               "figures"}
    doc = json.loads((out / "records.json").read_text())
    recs = doc["experiments"]["frontier"]
    assert len(recs) == 8 and all("on_front" in r for r in recs)
    sizes = sorted((r["method"], r["selector"], r["step_size"]) for r in recs)
    assert sizes == sorted([("ga", s, v) for s in ("full", "mape") for v in (5e-3, 2e-2)]
                           + [("so", s, v) for s in ("full", "mape") for v in (2.5e-4, 1e-3)])
    assert doc["frontier"]["rule"].startswith("Rule (the same for every row)")
    assert len(doc["frontier"]["summary"]) == 4
    assert "Rule (the same for every row)" in (out / "table.md").read_text()
    rows = ex.read_csv(out / "frontier.csv")
    assert len(rows) == 8 and "on_front" in rows[0]
    html = (out / "figures" / "frontier.html").read_text()
    assert 'src="http' not in html and "Efficacy–fidelity frontier" in html
    assert main(argv[:-4] + ["--grid", "0,1", "--out", str(tmp_path / "x")]) == 2
    assert "--grid" in capsys.readouterr().err and not (tmp_path / "x").exists()
