"""Figures of mape_viz.viz on hand-made ModuleScores / ModuleMask / tidy records with known
values: traces, shapes, overlay coordinates, labels, hover fields, point budgets, export."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from mape_viz import viz
from mape_viz.types import ModuleMask, ModuleScores, ModuleTerms, SwapRecord

L, H, F = 3, 4, 10


def make_scores(L: int = L, H: int = H, F: int = F, seed: int = 0) -> ModuleScores:
    """Scores with g ~ N(0,1), F ~ U(0,1) and score = g + ½F exactly (as MAPE's)."""
    gen = torch.Generator().manual_seed(seed)
    gh, gf = torch.randn(L, H, generator=gen), torch.randn(L, F, generator=gen)
    fh, ff = torch.rand(L, H, generator=gen), torch.rand(L, F, generator=gen)
    return ModuleScores(heads=gh + fh / 2, filters=gf + ff / 2, grad=ModuleTerms(gh, gf),
                        fisher=ModuleTerms(fh, ff), objective="mlr", selector="mape",
                        family="bert")


def make_mask(scores: ModuleScores) -> ModuleMask:
    """A refined-looking mask: refined heads differ from the warm start in layer 0."""
    heads = torch.zeros(L, H, dtype=torch.bool)
    heads[0, 1] = heads[1, 3] = heads[2, 0] = True
    warm_h = heads.clone()
    warm_h[0, 1], warm_h[0, 2] = False, True          # head (0,2) left, (0,1) entered
    filters = torch.zeros(L, F, dtype=torch.bool)
    filters[0, [2, 5]] = True
    filters[2, 9] = True
    warm_f = filters.clone()
    warm_f[2, 9], warm_f[2, 4] = False, True           # filter (2,4) left, (2,9) entered
    swaps = [SwapRecord(0, "heads", entered=1, left=2, delta=-0.25, round=0),
             SwapRecord(2, "filters", entered=9, left=4, delta=-0.125, round=0)]
    return ModuleMask(heads=heads, filters=filters, warm_start=ModuleTerms(warm_h, warm_f),
                      swaps=swaps,
                      cost_before={"heads": torch.tensor([1.0, 2.0, 3.0]),
                                   "filters": torch.tensor([4.0, 5.0, 6.0])},
                      cost_after={"heads": torch.tensor([0.75, 2.0, 3.0]),
                                  "filters": torch.tensor([4.0, 5.0, 5.875])},
                      meta={"sparsity": 0.75, "granularity": "both", "refine": "greedy"})


@pytest.fixture
def scores() -> ModuleScores:
    return make_scores()


@pytest.fixture
def mask(scores) -> ModuleMask:
    return make_mask(scores)


def n_points(fig: go.Figure) -> int:
    """Drawn points / cells: z cells of heatmaps, x entries of every other trace."""
    total = 0
    for t in fig.data:
        if getattr(t, "z", None) is not None:
            total += int(np.asarray(t.z).size)
        elif getattr(t, "x", None) is not None:
            total += len(t.x)
    return total


def coords(trace) -> set[tuple[int, int]]:
    """(layer, module) pairs of an overlay trace (x = module, y = layer)."""
    return {(int(y), int(x)) for x, y in zip(trace.x, trace.y)}


def true_cells(t: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in torch.nonzero(t).tolist()}


# ------------------------------------------------------------------------- head heatmap

@pytest.mark.parametrize("term,src", [("score", lambda s: s.heads),
                                      ("grad", lambda s: s.grad.heads),
                                      ("fisher", lambda s: s.fisher.heads)])
def test_head_heatmap_values_and_overlay(scores, mask, term, src):
    fig = viz.head_heatmap(scores, mask, term=term)
    assert isinstance(fig, go.Figure)
    hm, ov = fig.data
    assert isinstance(hm, go.Heatmap) and isinstance(ov, go.Scatter)
    z = np.asarray(hm.z)
    assert z.shape == (L, H)
    np.testing.assert_allclose(z, src(scores).double().numpy(), rtol=1e-6)
    assert coords(ov) == true_cells(mask.heads)
    assert hm.colorbar.title.text
    assert fig.layout.title.text and "Attention heads" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "head" and fig.layout.yaxis.title.text == "layer"


def test_head_heatmap_hover_names_layer_head_g_F_rank(scores, mask):
    hm = viz.head_heatmap(scores, mask).data[0]
    for word in ("layer", "head", "g =", "F =", "score", "rank", "selected"):
        assert word in hm.hovertemplate
    cd = np.asarray(hm.customdata, dtype=float)
    assert cd.shape == (L, H, 6)
    np.testing.assert_allclose(cd[..., 1], scores.grad.heads.numpy(), rtol=1e-6)
    np.testing.assert_allclose(cd[..., 2], scores.fisher.heads.numpy(), rtol=1e-6)
    # global rank 1 is the highest score; the layer rank restarts in each layer
    top = np.unravel_index(np.argmax(scores.heads.numpy()), (L, H))
    assert cd[top][3] == 1
    assert sorted(cd[..., 3].ravel().astype(int).tolist()) == list(range(1, L * H + 1))
    for layer in range(L):
        assert sorted(cd[layer, :, 4].astype(int).tolist()) == list(range(1, H + 1))
    np.testing.assert_array_equal(cd[..., 5].astype(bool), mask.heads.numpy())


def test_head_heatmap_without_mask_and_bad_inputs(scores, mask):
    fig = viz.head_heatmap(scores)
    assert len(fig.data) == 1
    with pytest.raises(ValueError, match="term"):
        viz.head_heatmap(scores, term="nope")
    bad = ModuleMask(heads=torch.zeros(L + 1, H, dtype=torch.bool), filters=mask.filters)
    with pytest.raises(ValueError, match="shape"):
        viz.head_heatmap(scores, bad)


def test_head_heatmap_signed_values_use_a_centred_diverging_scale(scores):
    hm = viz.head_heatmap(scores, term="grad").data[0]
    assert hm.zmid == 0
    hm = viz.head_heatmap(scores, term="fisher").data[0]   # F ≥ 0: sequential
    assert hm.zmid is None


# ------------------------------------------------------------------------- filter view

def test_filter_view_sorted_small(scores, mask):
    fig = viz.filter_view(scores, mask, mode="sorted")
    lines = [t for t in fig.data if isinstance(t, go.Scatter)]
    assert len(lines) == L
    for layer, t in enumerate(lines):
        y = np.asarray(t.y)
        assert np.all(np.diff(y) <= 0), "scores are drawn in descending order"
        idx = np.asarray(t.customdata)[:, 0].astype(int)
        np.testing.assert_allclose(y, scores.filters[layer, idx].double().numpy(), rtol=1e-6)
        sizes = np.asarray(t.marker.size)
        np.testing.assert_array_equal(sizes > 0, mask.filters[layer, idx].numpy())
        assert f"{int(mask.filters[layer].sum())}/{F} selected" in t.name
        for word in (f"layer {layer} ·", "filter", "g =", "F =", "rank"):
            assert word in t.hovertemplate
    assert fig.layout.xaxis.title.text.startswith("rank") and fig.layout.yaxis.title.text


def test_filter_view_binned_known_maxima(scores, mask):
    fig = viz.filter_view(scores, mask, mode="binned", bins=5)
    hm, cnt = fig.data
    z = np.asarray(hm.z)
    assert z.shape == (L, 5)
    s = scores.filters.double().numpy()
    np.testing.assert_allclose(z, s.reshape(L, 5, 2).max(axis=2), rtol=1e-6)
    cd = np.asarray(hm.customdata, dtype=float)
    argmax = s.reshape(L, 5, 2).argmax(axis=2) + np.arange(0, 10, 2)
    np.testing.assert_array_equal(cd[..., 2], argmax)
    counts = np.asarray(cnt.z)
    np.testing.assert_array_equal(counts, mask.filters.numpy().reshape(L, 5, 2).sum(axis=2))
    assert counts.sum() == int(mask.filters.sum())
    assert "max at filter" in hm.hovertemplate and "rank" in hm.hovertemplate
    assert hm.colorbar.title.text and cnt.colorbar.title.text


@pytest.mark.parametrize("mode", ["sorted", "binned"])
def test_filter_view_large_layer_is_decimated(mode):
    big = make_scores(L=12, H=12, F=3072, seed=1)
    flat = big.filters.flatten()
    m = ModuleMask(heads=torch.zeros(12, 12, dtype=torch.bool),
                   filters=big.filters >= flat.topk(3687).values[-1])
    fig = viz.filter_view(big, m, mode=mode)
    assert n_points(fig) <= 12 * 300 if mode == "sorted" else n_points(fig) == 2 * 12 * 64
    assert len(fig.to_json()) < 1_500_000


def test_filter_view_rejects_bad_mode(scores):
    with pytest.raises(ValueError, match="mode"):
        viz.filter_view(scores, mode="scatter")


# --------------------------------------------------------------------- per layer, g vs F

def test_selected_per_layer_counts(mask):
    fig = viz.selected_per_layer(mask)
    bars = {t.name: t for t in fig.data}
    np.testing.assert_array_equal(bars["selected heads"].y, mask.heads.sum(1).numpy())
    np.testing.assert_array_equal(bars["selected filters"].y, mask.filters.sum(1).numpy())
    np.testing.assert_array_equal(bars["selected heads"].x, np.arange(L))
    frac = viz.selected_per_layer(mask, fraction=True)
    np.testing.assert_allclose(frac.data[1].y, mask.filters.sum(1).numpy() / F)
    assert "layer" in bars["selected heads"].hovertemplate
    assert fig.layout.title.text


@pytest.mark.parametrize("kind", ["heads", "filters"])
def test_g_vs_fisher_points_and_colours(scores, mask, kind):
    fig = viz.g_vs_fisher(scores, mask, kind=kind)
    frozen, sel = fig.data
    assert frozen.name.startswith("frozen") and sel.name.startswith("selected")
    m = mask[kind].numpy()
    g, f = scores.grad[kind].double().numpy(), scores.fisher[kind].double().numpy()
    np.testing.assert_allclose(sorted(sel.x), sorted(g[m]), rtol=1e-6)
    np.testing.assert_allclose(sorted(sel.y), sorted(f[m]), rtol=1e-6)
    assert len(frozen.x) == (~m).sum()
    cd = np.asarray(sel.customdata, dtype=float)
    assert {(int(a), int(b)) for a, b in cd[:, :2]} == true_cells(mask[kind])
    for word in ("layer", "g =", "F =", "score", "rank"):
        assert word in sel.hovertemplate
    assert fig.layout.xaxis.title.text.startswith("g")
    assert fig.layout.yaxis.title.text.startswith("F")
    marker_colours = {frozen.marker.color, sel.marker.color}
    assert len(marker_colours) == 2


def test_g_vs_fisher_log_and_decimation():
    big = make_scores(L=4, H=4, F=5000, seed=2)
    fig = viz.g_vs_fisher(big, kind="filters", scale="log", max_points=1000)
    (t,) = fig.data
    assert len(t.x) == 1000 and fig.layout.yaxis.type == "log"
    assert "1000 of 20000 shown" in fig.layout.title.text
    assert "asinh" in fig.layout.xaxis.title.text
    # the top-scored quarter is always kept
    cd = np.asarray(t.customdata, dtype=float)
    assert set(range(1, 251)) <= set(cd[:, 5].astype(int).tolist())


# -------------------------------------------------------------------------------- swaps

def test_swap_changes_markers_and_costs(mask):
    fig = viz.swap_changes(mask)
    by = {t.name: t for t in fig.data}
    ent, left = by["heads: entered"], by["heads: left"]
    np.testing.assert_allclose(ent.x, [0 - 0.15])
    np.testing.assert_array_equal(ent.y, [1])
    np.testing.assert_array_equal(left.y, [2])
    assert "Δ cost" in ent.hovertemplate and "entered" in ent.hovertemplate
    np.testing.assert_allclose(np.asarray(ent.customdata, float)[0], [0, 1, 2, -0.25, 0])
    np.testing.assert_array_equal(by["filters: entered"].y, [9])
    np.testing.assert_array_equal(by["filters: left"].y, [4])
    np.testing.assert_allclose(by["heads: cost before"].y, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(by["filters: cost after"].y, [4.0, 5.0, 5.875])
    assert "2 swaps" in fig.layout.title.text


def test_swap_changes_without_swaps(scores):
    m = ModuleMask(heads=torch.zeros(L, H, dtype=torch.bool),
                   filters=torch.zeros(L, F, dtype=torch.bool))
    fig = viz.swap_changes(m)
    assert not [t for t in fig.data if "entered" in (t.name or "")]
    assert any("no swaps" in a.text for a in fig.layout.annotations)


def test_warm_vs_refined_states(scores, mask):
    fig = viz.warm_vs_refined(scores, mask, kind="heads")
    warm, ref = fig.data
    zw, zr = np.asarray(warm.z), np.asarray(ref.z)
    assert zw.shape == zr.shape == (L, H)
    w, r = mask.warm_start.heads.numpy(), mask.heads.numpy()
    np.testing.assert_array_equal(zw > 0, w)
    np.testing.assert_array_equal(zr > 0, r)
    assert zw[0, 2] == 2 and zr[0, 1] == 2            # left / entered by the swap
    assert (zw == 2).sum() == 1 and (zr == 2).sum() == 1
    assert "%{text}" in warm.hovertemplate and "rank" in warm.hovertemplate
    assert np.asarray(warm.text)[0, 2] == "selected → frozen"
    assert np.asarray(ref.text)[0, 1] == "frozen → selected"
    np.testing.assert_allclose(np.asarray(warm.customdata, float)[..., 0],
                               scores.heads.double().numpy(), rtol=1e-6)
    assert list(ref.colorbar.ticktext) == ["frozen", "selected", "swapped"]


def test_warm_vs_refined_filters_keeps_changed_columns_only(scores, mask):
    fig = viz.warm_vs_refined(scores, mask, kind="filters", max_columns=5)
    assert list(fig.data[0].x) == ["4", "9"]
    assert np.asarray(fig.data[0].z).shape == (L, 2)


def test_warm_vs_refined_needs_a_warm_start(scores):
    m = ModuleMask(heads=torch.zeros(L, H, dtype=torch.bool),
                   filters=torch.zeros(L, F, dtype=torch.bool))
    with pytest.raises(ValueError, match="warm start"):
        viz.warm_vs_refined(scores, m)


# ------------------------------------------------------------------------------- curves

def sweep_records() -> list[dict]:
    rows = []
    for method in ("so", "ga"):
        for selector in ("mape", "sure"):
            for sp in (0.5, 0.9, 0.0):            # unsorted on purpose
                for seed in (0, 1):
                    rows.append({"method": method, "selector": selector, "granularity": "both",
                                 "sparsity": sp, "seed": seed,
                                 "test_acc": sp + (0.1 if selector == "mape" else 0) + 0.02 * seed,
                                 "forget_acc": 1 - sp, "retain_acc": 0.9, "mia": 0.5})
    return rows


def test_sparsity_curves_groups_means_and_std():
    fig = viz.sparsity_curves(sweep_records())
    assert len(fig.data) == 4                        # 2 methods (panels) × 2 selectors
    t = next(t for t in fig.data if t.meta["facet"] == "so" and t.meta["color"] == "mape")
    np.testing.assert_allclose(t.x, [0.0, 0.5, 0.9])
    np.testing.assert_allclose(t.y, [0.11, 0.61, 1.01])
    np.testing.assert_allclose(t.error_y.array, [np.std([0, 0.02], ddof=1)] * 3)
    assert "n = " in t.hovertemplate
    assert fig.layout.xaxis.title.text == "sparsity"
    assert fig.layout.yaxis.title.text == "test accuracy"
    assert {a.text for a in fig.layout.annotations} >= {"method = so", "method = ga"}
    # granularity has one value only: no dashes by it
    assert all(t.meta["dash"] is None for t in fig.data)


def test_sparsity_curves_several_metrics_and_dataframe():
    pd = pytest.importorskip("pandas")
    fig = viz.sparsity_curves(pd.DataFrame(sweep_records()), y=["test_acc", "forget_acc"],
                              facet=None)
    assert len(fig.data) == 4                        # 2 metrics × 2 selectors
    assert {t.meta["y"] for t in fig.data} == {"test_acc", "forget_acc"}


def test_missing_group_values_form_their_own_line():
    pd = pytest.importorskip("pandas")
    rows = [{"sparsity": sp, "selector": sel, "method": "so", "test_acc": sp}
            for sp in (0.0, 0.9) for sel in ("mape", None)]
    df = pd.DataFrame(rows)
    df.loc[df.selector.isna(), "selector"] = np.nan      # as a DataFrame holds a gap
    fig = viz.sparsity_curves(df)
    assert sorted(len(t.x) for t in fig.data) == [2, 2]
    assert {t.name for t in fig.data} == {"mape", "full"}


def test_curves_reject_missing_columns():
    with pytest.raises(ValueError, match="no column"):
        viz.sparsity_curves(sweep_records(), y="f1")


def test_successive_and_relearn_curves():
    succ = [{"request": r, "selector": s, "method": "so", "test_acc": 0.8 - 0.01 * r}
            for r in range(1, 6) for s in ("full", "mape")]
    fig = viz.successive_curves(succ)
    assert len(fig.data) == 2 and fig.layout.xaxis.title.text == "removal requests"
    rel = [{"epoch": e, "method": m, "selector": s, "forget_acc": 0.1 * e}
           for e in range(4) for m in ("ga", "npo") for s in ("full", "mape")]
    fig = viz.relearn_curves(rel)
    dashes = {(t.meta["facet"], t.meta["color"]): t.line.dash for t in fig.data}
    assert dashes == {("ga", "full"): "dash", ("ga", "mape"): "solid",
                      ("npo", "full"): "dash", ("npo", "mape"): "solid"}
    assert fig.layout.xaxis.title.text == "relearning epoch"


def comparison_records() -> list[dict]:
    cols = ("method", "selector", "forget", "mia", "retain", "test")
    table = [("rt", "full", 0.70, 0.60, 0.99, 0.80),
             ("so", "full", 0.78, 0.68, 0.93, 0.73),
             ("so", "sure", 0.79, 0.71, 0.92, 0.72),
             ("so", "mape", 0.77, 0.66, 0.94, 0.74),
             ("ga", "full", 0.76, 0.75, 0.87, 0.72),
             ("ga", "mape", 0.75, 0.70, 0.90, 0.75),
             ("ga", "mape", 0.75, 0.72, 0.90, 0.75)]    # a second seed: averaged
    return [dict(zip(cols, row)) for row in table]


def test_comparison_rows_best_within_method():
    rows = viz.comparison_rows(comparison_records())
    names = [r["name"] for r in rows]
    assert names == ["RT", "SO", "SURE-SO", "MAPE-SO", "GA", "MAPE-GA"]
    best = {r["name"]: r["best"] for r in rows}
    assert best["RT"] == set()                        # the reference is never bold
    assert best["MAPE-SO"] == {"forget", "mia", "retain", "test"}
    assert best["MAPE-GA"] == {"forget", "mia", "retain", "test"}
    mape_ga = rows[-1]
    assert mape_ga["n"] == 2 and mape_ga["values"]["mia"] == pytest.approx(0.71)


def test_comparison_table_bold_and_arrows():
    fig = viz.comparison_table(comparison_records())
    (tab,) = fig.data
    assert isinstance(tab, go.Table)
    header = list(tab.header.values)
    assert header[0] == "Method"
    groups = [h.split("<br>")[0] for h in header[1:]]
    assert groups == ["Efficacy", "Efficacy", "Fidelity", "Fidelity"]
    assert header[1].endswith("↓") and header[2].endswith("↓")
    assert header[3].endswith("↑") and header[4].endswith("↑")
    cols = [list(c) for c in tab.cells.values]
    assert cols[0][0] == "<i>RT</i>"
    assert cols[1][3] == "<b>0.7700</b>" and cols[1][1] == "0.7800"
    assert not any("<b>" in c[0] for c in cols[1:])
    assert fig.layout.title.text


# ------------------------------------------------------------------------------- export

def test_to_html_is_standalone_and_refuses_overwrite(tmp_path, scores, mask):
    fig = viz.head_heatmap(scores, mask)
    path = viz.to_html(fig, tmp_path / "sub" / "heads.html")
    text = path.read_text(encoding="utf-8")
    assert len(text) > 1_000_000                    # plotly.js is inside
    assert "Plotly.newPlot" in text and "plotly.js" in text.lower()
    assert '<script src="http' not in text             # nothing loaded from the network
    with pytest.raises(FileExistsError, match="overwrite=True"):
        viz.to_html(fig, path)
    viz.to_html(viz.selected_per_layer(mask), path, overwrite=True)
    assert "Selected modules per layer" in path.read_text(encoding="utf-8")


def test_write_figures_checks_every_target_first(tmp_path, scores, mask):
    figs = {"heads": viz.head_heatmap(scores, mask), "layers.html": viz.selected_per_layer(mask)}
    out = viz.write_figures(figs, tmp_path / "figs")
    assert sorted(p.name for p in out.values()) == ["heads.html", "layers.html"]
    before = (tmp_path / "figs" / "heads.html").stat().st_mtime_ns
    figs2 = {"new": viz.swap_changes(mask), "heads": viz.head_heatmap(scores)}
    with pytest.raises(FileExistsError):
        viz.write_figures(figs2, tmp_path / "figs")
    assert not (tmp_path / "figs" / "new.html").exists()     # nothing written on refusal
    assert (tmp_path / "figs" / "heads.html").stat().st_mtime_ns == before
    out = viz.write_figures(figs2, tmp_path / "figs", overwrite=True, index=True)
    assert "new.html" in out["index"].read_text()
    with pytest.raises(ValueError, match="safe file name"):
        viz.write_figures({"../evil": figs["heads"]}, tmp_path / "figs")


def test_figures_never_show(monkeypatch, scores, mask):
    monkeypatch.setattr(go.Figure, "show", lambda *a, **k: pytest.fail("show() called"))
    for fig in (viz.head_heatmap(scores, mask), viz.filter_view(scores, mask),
                viz.filter_view(scores, mask, mode="binned"), viz.selected_per_layer(mask),
                viz.g_vs_fisher(scores, mask), viz.swap_changes(mask),
                viz.warm_vs_refined(scores, mask), viz.sparsity_curves(sweep_records()),
                viz.comparison_table(comparison_records())):
        assert isinstance(fig, go.Figure)
        fig.to_json()                                # serialisable (customdata included)
