"""The explore tab's greedy-swap panel (mape_viz.viz.swaps.swap_changes) at the app's widths:
subplot titles that cannot overlap, layer axes that are exactly the layers, and a note inside
the plot area that says why the greedy made no swap (with the candidate count it checked)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mape_viz.selection import select_modules
from mape_viz.types import ModuleMask, ModuleScores, ModuleTerms, SwapRecord
from mape_viz.viz import swaps as S

L, H, F = 4, 8, 64


def _scores(seed: int = 0, factor: bool = False) -> ModuleScores:
    gen = torch.Generator().manual_seed(seed)
    gh, gf = torch.randn(L, H, generator=gen), torch.randn(L, F, generator=gen)
    fh, ff = torch.rand(L, H, generator=gen), torch.rand(L, F, generator=gen)
    fac = None
    if factor:  # a block Fisher with strong couplings, so that the greedy does swap
        N = 6
        fac = ModuleTerms(torch.randn(N, L, H, generator=gen), torch.randn(N, L, F, generator=gen))
        fh = (fac.heads ** 2).mean(0)
        ff = (fac.filters ** 2).mean(0)
    return ModuleScores(heads=gh + fh / 2, filters=gf + ff / 2, grad=ModuleTerms(gh, gf),
                        fisher=ModuleTerms(fh, ff), objective="mlf", selector="mape",
                        family="bert", factor=fac, n_fisher=6 if factor else None)


def _width_px(text: str) -> float:
    return max(len(line) for line in text.split("<br>")) * S.CHAR_PX


def _domain(fig, axis: str) -> tuple[float, float]:
    return tuple(fig.layout[axis].domain)


def _check_layout(fig, n_kinds: int) -> None:
    """Titles of one row do not overlap and lie inside the figure; notes fit their subplot."""
    plot_px = S.MIN_WIDTH - S.MARGIN["l"] - S.MARGIN["r"]
    titles = [a for a in fig.layout.annotations if a.name != "no-swap note"]
    assert len(titles) == 2 * n_kinds, "one title per subplot, each a separate annotation"
    for _, row in itertools.groupby(sorted(titles, key=lambda a: (a.y, a.x)), key=lambda a: a.y):
        spans = sorted((a.x * plot_px - _width_px(a.text) / 2, a.x * plot_px + _width_px(a.text) / 2)
                       for a in row)
        assert spans[0][0] >= -S.MARGIN["l"] and spans[-1][1] <= plot_px + S.MARGIN["r"]
        for (_, right), (left, _) in zip(spans, spans[1:]):
            assert right < left, f"subplot titles overlap at {S.MIN_WIDTH} px: {spans}"
    # the two-line title, centred in the top margin, ends above the top row's titles
    top_px = (1 - max(a.y for a in titles)) * (680 - S.MARGIN["t"] - S.MARGIN["b"])
    title_bottom = S.MARGIN["t"] / 2 + 20
    assert title_bottom < S.MARGIN["t"] - top_px - 8 - (S.TEXT_SIZE + 1)


def test_no_swaps_note_inside_the_empty_row_with_the_candidate_count():
    scores = _scores()
    mask = select_modules(scores, sparsity=0.75, refine="greedy")
    mask.swaps = []  # as on the toy worlds (docs/design.md §7): the greedy found nothing
    fig = S.swap_changes(mask)
    _check_layout(fig, 2)
    notes = [a for a in fig.layout.annotations if a.name == "no-swap note"]
    assert len(notes) == 1, "one note across the top row when no kind has a swap"
    note = notes[0]
    n_h, n_f = S.swap_candidates(mask, "heads"), S.swap_candidates(mask, "filters")
    text = note.text.replace("<br>", " ")
    assert text.startswith("no swaps: greedy checked")
    assert f"{n_h + n_f:,} candidate swaps (heads {n_h:,}, filters {n_f:,}) in {L} layers" in text
    assert "none lowered the layer cost" in text
    # inside the plot area: paper coordinates within the top row's domain, lines that fit it
    assert note.xref == note.yref == "paper"
    x0, x1 = _domain(fig, "xaxis")[0], _domain(fig, "xaxis2")[1]
    y0, y1 = _domain(fig, "yaxis")
    assert x0 < note.x < x1 and y0 < note.y < y1
    plot_px = S.MIN_WIDTH - S.MARGIN["l"] - S.MARGIN["r"]
    assert _width_px(note.text) <= (x1 - x0) * plot_px
    lines = note.text.count("<br>") + 1
    assert lines * S.TEXT_SIZE * 1.3 < (y1 - y0) * (680 - S.MARGIN["t"] - S.MARGIN["b"])
    # the empty axes are hidden (plotly.js draws trace-less subplots wrongly), not left bare
    assert fig.layout.xaxis.visible is False and fig.layout.yaxis2.visible is False


def test_layer_axes_are_exactly_the_layers():
    mask = select_modules(_scores(), sparsity=0.75, refine="greedy")
    mask.swaps = [SwapRecord(2, "filters", entered=3, left=40, delta=-0.1, round=0)]
    fig = S.swap_changes(mask)
    _check_layout(fig, 2)
    layer_axes = [name for name in fig.layout if name.startswith("xaxis")
                  and fig.layout[name].visible is not False]
    assert len(layer_axes) == 3  # filters' swaps + both cost rows; heads' swap axes hidden
    for name in layer_axes:
        ax = fig.layout[name]
        assert ax.title.text == "layer"
        assert list(ax.range) == [-0.5, L - 0.5]
        assert list(ax.tickvals) == list(range(L)) and ax.tickmode == "array"
    # the kind without a swap says why in its own column, and only there
    notes = [a for a in fig.layout.annotations if a.name == "no-swap note"]
    assert len(notes) == 1 and "heads" not in notes[0].text
    assert notes[0].text.replace("<br>", " ") == S._wrap(S.no_swap_note(mask, "heads"), 1e9)
    assert _domain(fig, "xaxis")[0] < notes[0].x < _domain(fig, "xaxis")[1]
    assert "filters: 1 swap" in [a.text for a in fig.layout.annotations]
    assert [t.name for t in fig.data if t.meta == "legend"] == [
        "cost: warm start", "cost: refined", "entered", "left"]


def test_candidate_count_matches_the_naive_greedy(monkeypatch):
    """swap_candidates = Σ rounds·|P|·|U|: what the plain reference greedy prices, counted."""
    import naive_greedy as ref

    scores = _scores(seed=3, factor=True)
    mask = select_modules(scores, sparsity=0.7, granularity="filters", refine="converge")
    assert mask.swaps, "this problem makes swaps (so rounds > 1 somewhere)"
    priced = []
    real_order = ref._visit_order

    def counting(score, frozen):
        order = real_order(score, frozen)
        priced.append(len(order) * int((~frozen).sum()))
        return order

    monkeypatch.setattr(ref, "_visit_order", counting)
    for l in range(L):
        warm = ~mask.warm_start.filters[l].numpy()
        res = ref.greedy_swap_reference(scores.grad.filters[l], scores.factor.filters[:, l],
                                        warm, scores.filters[l], n_fisher=6, rounds=None)
        assert res.rounds == mask.meta["rounds"]["filters"][l]
    assert S.swap_candidates(mask, "filters") == sum(priced)
    assert S.swap_candidates(mask, "heads") is None  # not refined at this granularity
    # by hand: 2 layers of 4, selected {1} and {0, 2}: 1·3 + 2·2 = 7 pairs in one round each
    sel = torch.tensor([[False, True, False, False], [True, False, True, False]])
    hand = ModuleMask(heads=sel, filters=sel.clone(), meta={"refine": "greedy",
                                                           "rounds": {"heads": [1, 1]}})
    assert S.swap_candidates(hand, "heads") == 7


@pytest.mark.parametrize("refine, granularity, expected", [
    (None, "both", "no swaps: refinement is off; the selection is the global top-k warm start"),
    ("greedy", "heads", "Filters: filters were not refined (granularity heads)."),
    ("exact", "both", "Heads: the exact search over every frozen set kept the warm start in all"),
])
def test_the_note_says_why(refine, granularity, expected):
    mask = select_modules(_scores(), sparsity=0.75, granularity=granularity, refine=refine)
    mask.swaps = []
    fig = S.swap_changes(mask)
    _check_layout(fig, 2)
    note = [a for a in fig.layout.annotations if a.name == "no-swap note"][0]
    assert expected in note.text.replace("<br>", " ")


def test_maximised_cost_says_raised():
    scores = _scores()
    scores.maximise = True
    mask = select_modules(scores, sparsity=0.75, refine="greedy")
    mask.swaps = []
    assert S.no_swap_note(mask, "heads").endswith("none raised the layer cost")
    assert np.isfinite(S.swap_candidates(mask, "heads"))
