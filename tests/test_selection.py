"""Module selection: warm start, greedy swap refinement, exact solver, save/load.

Unit tier — no models: ModuleScores are built by hand from a random factor G (per-sample mask
gradients), g random, fisher = mean(G²), scores = g + fisher/2. Every cost is recomputed here
with the direct O(n²) formula ``g·p + ½ pᵀ F p``, independently of mape_viz.refine.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from mape_viz import refine as R
from mape_viz.mask_io import JSON_FILE, load_mask, save_mask
from mape_viz.selection import layer_cost, n_to_select, select_modules, swap_delta, warm_start
from mape_viz.types import MODULE_KINDS, ModuleMask, ModuleScores, ModuleTerms
from naive_greedy import greedy_swap_reference

# ----------------------------------------------------------------------------------------------
# helpers


def make_scores(L=3, H=6, F=40, N=24, seed=0, factor=True, ties=False) -> ModuleScores:
    gen = torch.Generator().manual_seed(seed)
    G = {"heads": torch.randn(N, L, H, generator=gen), "filters": torch.randn(N, L, F, generator=gen)}
    if ties:  # coarse values: many exactly equal scores
        G = {k: torch.round(v) for k, v in G.items()}
    g = {k: torch.randn(L, v.shape[2], generator=gen) for k, v in G.items()}
    if ties:
        g = {k: torch.round(v) for k, v in g.items()}
    fisher = {k: (v**2).mean(0) for k, v in G.items()}
    return ModuleScores(
        heads=g["heads"] + fisher["heads"] / 2,
        filters=g["filters"] + fisher["filters"] / 2,
        grad=ModuleTerms(**g),
        fisher=ModuleTerms(**fisher),
        factor=ModuleTerms(**G) if factor else None,
        n_fisher=N,
        objective="mlr",
        selector="mape",
        family="bert",
    )


def block_F(scores: ModuleScores, kind: str, l: int) -> np.ndarray:
    """The layer's block Fisher, formed directly (float64)."""
    if scores.factor is None:
        return np.diag(scores.fisher[kind][l].double().numpy())
    G = scores.factor[kind][:, l].double().numpy()
    return G.T @ G / scores.n_fisher


def direct_cost(g: np.ndarray, F: np.ndarray, frozen: np.ndarray) -> float:
    p = frozen.astype(np.float64)
    return float(g @ p + 0.5 * p @ F @ p)


def layer_g(scores: ModuleScores, kind: str, l: int) -> np.ndarray:
    return scores.grad[kind][l].double().numpy()


def scale_of(g: np.ndarray, F: np.ndarray) -> float:
    return float(np.abs(g).max() + F.shape[0] * np.abs(F).max())


def replay(mask: ModuleMask, scores: ModuleScores) -> None:
    """Replay the swaps on the warm start: each recorded Δ must equal the cost change it causes,
    and the replay must end at the returned mask."""
    frozen = {k: (~mask.warm_start[k]).numpy().copy() for k in MODULE_KINDS}
    for s in mask.swaps:
        fr = frozen[s.kind][s.layer]
        assert fr[s.entered] and not fr[s.left], "a swap must bring in a frozen module for a selected one"
        g, F = layer_g(scores, s.kind, s.layer), block_F(scores, s.kind, s.layer)
        before = direct_cost(g, F, fr)
        fr[s.entered], fr[s.left] = False, True
        after = direct_cost(g, F, fr)
        assert s.delta == pytest.approx(after - before, rel=1e-9, abs=1e-10 * scale_of(g, F))
        assert s.delta < 0
    for k in MODULE_KINDS:
        assert np.array_equal(~frozen[k], mask[k].numpy())


def naive_greedy(g: np.ndarray, F: np.ndarray, frozen: np.ndarray, score: np.ndarray, rounds=1):
    """The textbook greedy: Δ as a difference of two directly computed costs."""
    fr = frozen.copy()
    swaps = []
    for rnd in range(rounds):
        made = 0
        P0 = np.flatnonzero(fr)
        for i in P0[np.argsort(-score[P0], kind="stable")]:
            base = direct_cost(g, F, fr)
            best, best_j = 0.0, None
            for j in np.flatnonzero(~fr):
                t = fr.copy()
                t[i], t[j] = False, True
                dlt = direct_cost(g, F, t) - base
                if dlt < best - 1e-9:
                    best, best_j = dlt, int(j)
            if best_j is not None:
                fr[i], fr[best_j] = False, True
                swaps.append((int(i), best_j, rnd))
                made += 1
        if not made:
            break
    return fr, swaps


def random_layer(n, N, frac_frozen, seed):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((N, n))
    g = rng.standard_normal(n)
    d = (G**2).mean(0)
    score = g + d / 2
    frozen = np.zeros(n, bool)
    frozen[np.argsort(-score, kind="stable")[round((1 - frac_frozen) * n) :]] = True
    return g, G, frozen, score


# ----------------------------------------------------------------------------------------------
# warm start


def exact_count(n: int, S: float) -> int:
    return math.ceil((1 - Fraction(repr(S))) * n)


@pytest.mark.parametrize("S", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("ties", [False, True])
def test_exact_count_per_kind(S, ties):
    sc = make_scores(L=4, H=12, F=50, ties=ties)
    for refine in (None, "greedy"):
        m = select_modules(sc, S, refine=refine)
        for kind, n in (("heads", 4 * 12), ("filters", 4 * 50)):
            assert int(m[kind].sum()) == exact_count(n, S) == n_to_select(n, S)
            assert m[kind].dtype == torch.bool
            # refinement keeps each layer's count
            assert torch.equal(m[kind].sum(1), m.warm_start[kind].sum(1))


def test_ceil_float_error():
    assert n_to_select(10, 0.9) == 1  # (1-0.9)*10 = 0.9999999999999998
    assert n_to_select(10, 0.7) == 3  # (1-0.7)*10 = 3.0000000000000004
    assert n_to_select(352256, 0.9) == exact_count(352256, 0.9)
    assert n_to_select(144, 0.999) == 1
    assert n_to_select(144, 0.0) == 144


def test_warm_start_is_global_top_k_with_stable_ties():
    sc = make_scores(L=3, H=4, F=8)
    sc.heads = torch.zeros(3, 4)  # all tied: the lowest flat indices win
    sc.heads[2, 3] = 1.0  # the single best is taken first, wherever it is
    w = warm_start(sc, sparsity=0.5)
    expected = torch.zeros(12, dtype=torch.bool)
    expected[[11, 0, 1, 2, 3, 4]] = True
    assert torch.equal(w.heads.reshape(-1), expected)
    flat = sc.filters.reshape(-1)
    chosen = flat[w.filters.reshape(-1)]
    assert chosen.min() >= flat[~w.filters.reshape(-1)].max()


# ----------------------------------------------------------------------------------------------
# known answer


def known_answer_layer():
    """4 modules; 0 and 1 are redundant (F_01 = 0.9), so freezing both is expensive.

    g = [0.1, 0, 0.5, 0.3], F = [[1, .9], [.9, 1]] ⊕ I. Scores g + ½F_ii = [.6, .5, 1, .8]: the
    warm start selects {2, 3} and freezes P = {0, 1} (cost 0.1 + ½·3.8 = 2.0).
    Visit 0 (higher score): v = F 1_P = [1.9, 1.9, 0, 0];
      Δ(0, 2) = .5 − .1 + (0 − 1.9) + 1 − 0 = −0.5,  Δ(0, 3) = .3 − .1 − 1.9 + 1 = −0.7 → swap 0↔3.
    Visit 1: P = {1, 3}, v = [.9, 1, 0, 1];
      Δ(1, 0) = .1 + (.9 − 1) + 1 − .9 = 0.1,  Δ(1, 2) = .5 − 1 + 1 = 0.5 → no swap.
    Final P = {1, 3}, cost 1.3 — also the optimum over all six 2-subsets.
    """
    g = np.array([0.1, 0.0, 0.5, 0.3])
    F = np.eye(4)
    F[0, 1] = F[1, 0] = 0.9
    return g, F


def test_known_answer_formed_F():
    g, F = known_answer_layer()
    score = g + np.diag(F) / 2
    frozen = np.array([True, True, False, False])
    res = R.greedy_swap(g, F, frozen, score)
    assert [(i, j, r) for i, j, _, r in res.swaps] == [(0, 3, 0)]
    assert res.swaps[0][2] == pytest.approx(-0.7)
    assert res.cost_before == pytest.approx(2.0) and res.cost_after == pytest.approx(1.3)
    assert res.frozen.tolist() == [False, True, False, True]
    assert R.exact_frozen(g, F, 2)[1] == pytest.approx(1.3)
    assert swap_delta(g, F, frozen, 0, 2) == pytest.approx(-0.5)


def test_known_answer_through_select_modules():
    g, F = known_answer_layer()
    N = 4
    G = math.sqrt(N) * np.linalg.cholesky(F).T  # GᵀG / N = F
    gh = torch.tensor(g, dtype=torch.float64)[None]
    gf = torch.zeros(1, 3, dtype=torch.float64)
    sc = ModuleScores(
        heads=gh + torch.tensor(np.diag(F))[None] / 2,
        filters=gf.clone(),
        grad=ModuleTerms(heads=gh, filters=gf),
        fisher=ModuleTerms(heads=torch.tensor(np.diag(F))[None], filters=gf.clone()),
        factor=ModuleTerms(heads=torch.tensor(G)[:, None, :], filters=torch.zeros(N, 1, 3, dtype=torch.float64)),
        n_fisher=N,
    )
    m = select_modules(sc, sparsity=0.5, granularity="heads")
    assert m.warm_start.heads.tolist() == [[False, False, True, True]]
    assert m.heads.tolist() == [[True, False, True, False]]
    [s] = m.swaps
    assert (s.layer, s.kind, s.entered, s.left, s.round) == (0, "heads", 0, 3, 0)
    assert s.delta == pytest.approx(-0.7)
    assert m.cost_before["heads"].tolist() == pytest.approx([2.0])
    assert m.cost_after["heads"].tolist() == pytest.approx([1.3])


# ----------------------------------------------------------------------------------------------
# greedy properties


@pytest.mark.parametrize("refine", ["greedy", "converge", "exact"])
@pytest.mark.parametrize("seed", [0, 1])
def test_costs_never_rise_and_swaps_replay(refine, seed):
    sc = make_scores(L=3, H=8, F=60, N=16, seed=seed)
    m = select_modules(sc, 0.75, refine=refine)
    assert m.swaps, "random problems of this size should have improving swaps"
    for kind in MODULE_KINDS:
        for l in range(3):
            g, F = layer_g(sc, kind, l), block_F(sc, kind, l)
            before = direct_cost(g, F, ~m.warm_start[kind][l].numpy())
            after = direct_cost(g, F, ~m[kind][l].numpy())
            tol = 1e-9 * scale_of(g, F)
            assert m.cost_before[kind][l].item() == pytest.approx(before, abs=tol)
            assert m.cost_after[kind][l].item() == pytest.approx(after, abs=tol)
            assert after <= before + tol
            assert m.cost_before[kind].dtype == torch.float64 and m.cost_before[kind].shape == (3,)
    replay(m, sc)


def test_converge_leaves_no_improving_swap():
    sc = make_scores(L=2, H=8, F=30, N=12, seed=3)
    m = select_modules(sc, 0.6, refine="converge")
    assert max(max(r) for r in m.meta["rounds"].values()) >= 2
    for kind in MODULE_KINDS:
        for l in range(2):
            g, F = layer_g(sc, kind, l), block_F(sc, kind, l)
            fr = ~m[kind][l].numpy()
            base = direct_cost(g, F, fr)
            for i in np.flatnonzero(fr):
                for j in np.flatnonzero(~fr):
                    t = fr.copy()
                    t[i], t[j] = False, True
                    assert direct_cost(g, F, t) - base >= -1e-9 * scale_of(g, F)


def test_exact_matches_brute_force_and_beats_greedy():
    sc = make_scores(L=4, H=10, F=20, N=4, seed=10)
    ex = select_modules(sc, 0.6, refine="exact")
    gr = select_modules(sc, 0.6, refine="greedy")
    gaps = ex.meta["exact_gap"]["heads"]
    assert len(gaps) == 4
    assert any(gap > 0 for gap in gaps), "expected the one-round greedy to miss the optimum somewhere"
    for l in range(4):
        g, F = layer_g(sc, "heads", l), block_F(sc, "heads", l)
        p = int((~ex.warm_start.heads[l]).sum())
        brute = min(direct_cost(g, F, np.isin(np.arange(10), c)) for c in itertools.combinations(range(10), p))
        tol = 1e-9 * scale_of(g, F)
        assert ex.cost_after["heads"][l].item() == pytest.approx(brute, abs=tol)
        greedy_cost = gr.cost_after["heads"][l].item()
        assert brute <= greedy_cost + tol
        assert gaps[l] >= 0 and gaps[l] == pytest.approx(greedy_cost - brute, abs=tol)
    # filters in "exact" mode are refined by "converge"
    cv = select_modules(sc, 0.6, refine="converge")
    assert torch.equal(ex.filters, cv.filters)
    replay(ex, sc)


def test_exact_refuses_huge_enumeration():
    sc = make_scores(L=1, H=24, F=4, N=4)
    with pytest.raises(ValueError, match="converge"):
        select_modules(sc, 0.5, refine="exact")


# ----------------------------------------------------------------------------------------------
# fast greedy == naive greedy, swap for swap


@pytest.mark.parametrize("n,N,frac,rounds", [(6, 4, 0.5, 1), (12, 8, 0.75, 1), (25, 6, 0.8, 1), (25, 30, 0.6, None)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_textbook_greedy(n, N, frac, rounds, seed):
    g, G, frozen, score = random_layer(n, N, frac, seed)
    F = G.T @ G / N
    fr_naive, swaps_naive = naive_greedy(g, F, frozen, score, rounds=1 if rounds == 1 else 50)
    for engine in ("dense", "lowrank"):
        res = R.greedy_swap(g, G, frozen, score, n_fisher=N, rounds=rounds, engine=engine, block=2)
        assert [(i, j, r) for i, j, _, r in res.swaps] == swaps_naive
        assert np.array_equal(res.frozen, fr_naive)


@pytest.mark.parametrize(
    "n,N,frac", [(40, 16, 0.9), (300, 64, 0.9), (300, 500, 0.5), (1500, 128, 0.9), (2000, 96, 0.95)]
)
@pytest.mark.parametrize("rounds", [1, None])
def test_fast_equals_reference_greedy(n, N, frac, rounds):
    g, G, frozen, score = random_layer(n, N, frac, seed=n + N)
    ref = greedy_swap_reference(g, G, frozen, score, n_fisher=N, rounds=rounds)
    assert ref.swaps
    for engine, block in (("auto", 64), ("lowrank", 3), ("dense", 1000)):
        res = R.greedy_swap(g, G, frozen, score, n_fisher=N, rounds=rounds, engine=engine, block=block)
        assert [(i, j, r) for i, j, _, r in res.swaps] == [(i, j, r) for i, j, _, r in ref.swaps]
        np.testing.assert_allclose([s[2] for s in res.swaps], [s[2] for s in ref.swaps], rtol=1e-9, atol=1e-9)
        assert np.array_equal(res.frozen, ref.frozen)
        assert res.cost_after == pytest.approx(ref.cost_after, rel=1e-12)
        assert res.converged == ref.converged and res.rounds == ref.rounds


def test_exact_ties_pick_lowest_index():
    # identical modules: every Δ ties; the greedy must pick the lowest-index j like the reference
    n, N = 8, 3
    G = np.ones((N, n))
    g = np.zeros(n)
    g[:4] = 1.0  # frozen modules have a higher g, so swapping helps, equally with any j
    frozen = np.array([True] * 4 + [False] * 4)
    score = np.zeros(n)
    res = R.greedy_swap(g, G, frozen, score, n_fisher=N, engine="lowrank")
    ref = greedy_swap_reference(g, G, frozen, score, n_fisher=N)
    assert (
        [(i, j) for i, j, _, _ in res.swaps] == [(i, j) for i, j, _, _ in ref.swaps] == [(0, 4), (1, 5), (2, 6), (3, 7)]
    )


def test_layer_cost_and_swap_delta_agree_across_fisher_forms():
    g, G, frozen, _ = random_layer(20, 7, 0.6, seed=9)
    F = G.T @ G / 7
    want = direct_cost(g, F, frozen)
    assert layer_cost(g, G, frozen, n_fisher=7) == pytest.approx(want, rel=1e-12)
    assert layer_cost(g, F, frozen) == pytest.approx(want, rel=1e-12)
    assert layer_cost(g, np.diag(F), frozen) == pytest.approx(direct_cost(g, np.diag(np.diag(F)), frozen))
    for i in np.flatnonzero(frozen)[:4]:
        for j in np.flatnonzero(~frozen)[:4]:
            t = frozen.copy()
            t[i], t[j] = False, True
            diff = direct_cost(g, F, t) - want
            assert swap_delta(g, G, frozen, i, j, n_fisher=7) == pytest.approx(diff, abs=1e-12)
            assert swap_delta(g, F, frozen, i, j) == pytest.approx(diff, abs=1e-12)
    with pytest.raises(ValueError, match="frozen"):
        swap_delta(g, F, frozen, int(np.flatnonzero(~frozen)[0]), int(np.flatnonzero(~frozen)[1]))


def test_costs_compare_exactly_across_modes():
    sc = make_scores(seed=2)
    modes = {r: select_modules(sc, 0.7, refine=r) for r in (None, "greedy", "converge", "exact")}
    for kind in MODULE_KINDS:
        for m in modes.values():  # the same warm start, priced by the same formula
            assert torch.equal(m.cost_before[kind], modes[None].cost_before[kind])
        assert bool((modes["converge"].cost_after[kind] <= modes["greedy"].cost_after[kind] + 1e-9).all())
    assert bool((modes["exact"].cost_after["heads"] <= modes["converge"].cost_after["heads"] + 1e-9).all())


def test_layer_api_validation_and_threads():
    g, G, frozen, score = random_layer(10, 4, 0.5, seed=0)
    for bad in ({"rounds": 0}, {"block": 0}, {"engine": "gpu"}, {"n_fisher": 0}, {"n_fisher": True}):
        with pytest.raises(ValueError):
            R.greedy_swap(g, G, frozen, score, **{"n_fisher": 4, **bad})
    with pytest.raises(ValueError, match=r"\(4, 9\)"):
        R.greedy_swap(g, G[:, :-1], frozen, score, n_fisher=4)
    Gnan = G.copy()
    Gnan[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        R.greedy_swap(g, Gnan, frozen, score, n_fisher=4, engine="lowrank")
    before = torch.get_num_threads()
    select_modules(make_scores(), 0.5)
    with pytest.raises(ValueError):
        select_modules(make_scores(), 2.0)
    assert torch.get_num_threads() == before  # one_thread() restores the setting


def test_diagonal_fallback_without_factor():
    sc = make_scores(L=3, H=6, F=30, factor=False)
    m = select_modules(sc, 0.8, refine="converge")
    assert m.swaps == []  # scores = g + ½F rank exactly like the diagonal cost
    assert m.meta["fisher"] == {"heads": "diagonal", "filters": "diagonal"}
    for kind in MODULE_KINDS:
        assert torch.equal(m[kind], m.warm_start[kind])
        for l in range(3):
            g, F = layer_g(sc, kind, l), block_F(sc, kind, l)
            assert m.cost_after[kind][l].item() == pytest.approx(direct_cost(g, F, ~m[kind][l].numpy()))
    # scores that disagree with g + ½F: the diagonal greedy does swap, and never raises a cost
    sc.heads = -sc.heads
    m = select_modules(sc, 0.5, refine="greedy", granularity="heads")
    assert m.swaps and bool((m.cost_after["heads"] <= m.cost_before["heads"] + 1e-12).all())
    replay(m, sc)


# ----------------------------------------------------------------------------------------------
# mlf-argmax: Eq. 17/18 read as written (argmax of Σ(1−mᵢ)(gᵢ + ½Fᵢ)), checked by brute force


def literal_objective(g: np.ndarray, F: np.ndarray, m: np.ndarray) -> float:
    """Σ(1−mᵢ)gᵢ + ½(1−m)ᵀF(1−m), written from the mask m (1 = selected) as in Eq. 18."""
    u = 1.0 - m.astype(np.float64)
    return float(u @ g + 0.5 * u @ F @ u)


def argmax_scores(**kw) -> ModuleScores:
    sc = make_scores(**kw)
    sc.objective, sc.maximise = "mlf-argmax", True
    return sc


def naive_greedy_max(g, F, frozen, score, rounds=1):
    """The textbook greedy for the maximisation, written without the mirror: frozen modules in
    ascending score, each swapped with the selected module that raises the objective most."""
    fr = frozen.copy()
    swaps = []
    for rnd in range(rounds):
        made = 0
        P0 = np.flatnonzero(fr)
        for i in P0[np.argsort(score[P0], kind="stable")]:
            base = literal_objective(g, F, ~fr)
            best, best_j = 0.0, None
            for j in np.flatnonzero(~fr):
                t = fr.copy()
                t[i], t[j] = False, True
                gain = literal_objective(g, F, ~t) - base
                if gain > best + 1e-9:
                    best, best_j = gain, int(j)
            if best_j is not None:
                fr[i], fr[best_j] = False, True
                swaps.append((int(i), best_j, rnd))
                made += 1
        if not made:
            break
    return fr, swaps


def test_argmax_warm_start_selects_the_lowest_scores():
    sc = argmax_scores(L=3, H=4, F=8)
    w = warm_start(sc, sparsity=0.5)
    for kind in MODULE_KINDS:
        flat, sel = sc[kind].reshape(-1), w[kind].reshape(-1)
        assert int(sel.sum()) == n_to_select(flat.numel(), 0.5)
        assert flat[sel].max() <= flat[~sel].min()
    # the same scores read as mlf select the complement (no ties in random scores, even split)
    sc.maximise = False
    w_mlf = warm_start(sc, sparsity=0.5)
    assert torch.equal(w_mlf.heads, ~w.heads) and torch.equal(w_mlf.filters, ~w.filters)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_argmax_exact_is_the_brute_force_maximum_of_eq18(seed):
    """Every mask of each tiny layer is enumerated; refine='exact' must reach the largest
    value of the literal objective, the greedy never lowers it, and its gap is exact − greedy."""
    sc = argmax_scores(L=2, H=7, F=9, N=5, seed=seed)
    S = 0.6
    ex = select_modules(sc, S, refine="exact")
    gr = select_modules(sc, S, refine="greedy")
    assert ex.meta["maximise"] and gr.meta["maximise"]
    for kind, n in (("heads", 7), ("filters", 9)):
        for l in range(2):
            g, F = layer_g(sc, kind, l), block_F(sc, kind, l)
            k = int(ex.warm_start[kind][l].sum())
            values = [literal_objective(g, F, np.isin(np.arange(n), c)) for c in itertools.combinations(range(n), k)]
            tol = 1e-9 * scale_of(g, F)
            warm = literal_objective(g, F, ex.warm_start[kind][l].numpy())
            greedy = literal_objective(g, F, gr[kind][l].numpy())
            assert gr.cost_before[kind][l].item() == pytest.approx(warm, abs=tol)
            assert gr.cost_after[kind][l].item() == pytest.approx(greedy, abs=tol)
            assert warm - tol <= greedy <= max(values) + tol
            if kind == "heads":
                assert literal_objective(g, F, ex.heads[l].numpy()) == pytest.approx(max(values), abs=tol)
                assert ex.meta["exact_gap"]["heads"][l] == pytest.approx(max(values) - greedy, abs=tol)
    assert gr.swaps, "the greedy should improve on the warm start somewhere: a non-trivial problem"


@pytest.mark.parametrize("n,N,frac,rounds", [(6, 4, 0.5, 1), (12, 8, 0.75, 1), (25, 6, 0.8, 1), (25, 30, 0.6, None)])
@pytest.mark.parametrize("seed", [0, 1])
def test_argmax_greedy_equals_textbook_maximising_greedy(n, N, frac, rounds, seed):
    g, G, frozen, score = random_layer(n, N, frac, seed)
    frozen = np.zeros(n, bool)  # warm start of the argmax: freeze the highest scores
    frozen[np.argsort(score, kind="stable")[round((1 - frac) * n):]] = True
    F = G.T @ G / N
    fr_naive, swaps_naive = naive_greedy_max(g, F, frozen, score, rounds=1 if rounds == 1 else 50)
    for engine in ("dense", "lowrank"):
        res = R.greedy_swap(g, G, frozen, score, n_fisher=N, rounds=rounds, engine=engine, block=2, maximize=True)
        assert [(i, j, r) for i, j, _, r in res.swaps] == swaps_naive
        assert np.array_equal(res.frozen, fr_naive)
        assert all(d > 0 for _, _, d, _ in res.swaps)  # deltas in the objective's own sign
        assert res.cost_after == pytest.approx(literal_objective(g, F, ~fr_naive), rel=1e-12)
    res = R.greedy_swap(g, F, frozen, score, rounds=rounds, maximize=True)  # formed F
    assert [(i, j, r) for i, j, _, r in res.swaps] == swaps_naive


def test_argmax_swaps_replay_and_converge_leaves_no_improving_swap():
    sc = argmax_scores(L=2, H=8, F=30, N=12, seed=3)
    m = select_modules(sc, 0.6, refine="converge")
    assert m.swaps
    frozen = {k: (~m.warm_start[k]).numpy().copy() for k in MODULE_KINDS}
    for s in m.swaps:  # each Δ is the change of the literal objective, and positive
        g, F = layer_g(sc, s.kind, s.layer), block_F(sc, s.kind, s.layer)
        fr = frozen[s.kind][s.layer]
        before = literal_objective(g, F, ~fr)
        fr[s.entered], fr[s.left] = False, True
        assert s.delta == pytest.approx(literal_objective(g, F, ~fr) - before, abs=1e-9 * scale_of(g, F))
        assert s.delta > 0
    for kind in MODULE_KINDS:
        assert np.array_equal(~frozen[kind], m[kind].numpy())
        for l in range(2):
            g, F = layer_g(sc, kind, l), block_F(sc, kind, l)
            sel = m[kind][l].numpy()
            base = literal_objective(g, F, sel)
            for i in np.flatnonzero(~sel):
                for j in np.flatnonzero(sel):
                    t = sel.copy()
                    t[i], t[j] = True, False
                    assert literal_objective(g, F, t) - base <= 1e-9 * scale_of(g, F)


def test_argmax_diagonal_warm_start_is_already_optimal():
    # without a factor the literal objective is Σ_{frozen}(g + ½F): freezing the highest scores
    # (the argmax warm start) is its maximum, so no swap can help
    sc = argmax_scores(L=3, H=6, F=30, factor=False)
    m = select_modules(sc, 0.8, refine="converge")
    assert m.swaps == []
    assert bool((m.cost_after["heads"] == m.cost_before["heads"]).all())


def test_mlf_still_selects_the_highest_and_minimises():
    """``maximise=False`` (mlr, mlf) is the minimising greedy as before: the existing textbook
    comparison, on the same layer the argmax test maximises."""
    g, G, frozen, score = random_layer(25, 6, 0.8, seed=0)
    F = G.T @ G / 6
    fr_naive, swaps_naive = naive_greedy(g, F, frozen, score)
    res = R.greedy_swap(g, G, frozen, score, n_fisher=6)
    assert [(i, j, r) for i, j, _, r in res.swaps] == swaps_naive and swaps_naive
    sc = make_scores(L=2, H=6, F=20, seed=5)
    sc.objective = "mlf"
    m = select_modules(sc, 0.5, refine="greedy")
    assert not m.meta["maximise"]
    assert bool((m.cost_after["filters"] <= m.cost_before["filters"] + 1e-9).all())
    replay(m, sc)


# ----------------------------------------------------------------------------------------------
# options and bad input


def test_granularity():
    sc = make_scores()
    h = select_modules(sc, 0.5, granularity="heads")
    assert not h.filters.any() and int(h.heads.sum()) == exact_count(18, 0.5)
    assert {s.kind for s in h.swaps} <= {"heads"}
    assert torch.equal(h.cost_before["filters"], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(h.cost_after["filters"], torch.zeros(3, dtype=torch.float64))
    f = select_modules(sc, 0.5, granularity="filters")
    assert not f.heads.any() and int(f.filters.sum()) == exact_count(120, 0.5)
    assert {s.kind for s in f.swaps} == {"filters"}
    b = select_modules(sc, 0.5, granularity="both")
    assert torch.equal(b.heads, h.heads) and torch.equal(b.filters, f.filters)
    assert b.meta["n_selected"] == {"heads": 9, "filters": 60}
    assert b.meta["shapes"] == {"heads": [3, 6], "filters": [3, 40]}
    with pytest.raises(ValueError, match="heads.*filters.*both"):
        select_modules(sc, 0.5, granularity="layers")


def test_meta_and_refine_none():
    sc = make_scores()
    m = select_modules(sc, 0.7, refine=None, seed=7)
    assert m.swaps == [] and torch.equal(m.heads, m.warm_start.heads)
    for key in ("family", "shapes", "sparsity", "objective", "selector", "granularity", "refine", "seed", "n_selected"):
        assert key in m.meta
    assert (m.meta["family"], m.meta["sparsity"], m.meta["objective"], m.meta["seed"]) == ("bert", 0.7, "mlr", 7)
    assert torch.equal(m.cost_before["filters"], m.cost_after["filters"])
    json.dumps(m.meta)  # saveable


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf"), "0.9", None, True, [0.9]])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match=r"sparsity.*\[0, 1\)") as e:
        select_modules(make_scores(), bad)
    assert repr(bad) in str(e.value)


def test_bad_refine_and_seed():
    with pytest.raises(ValueError, match="greedy.*converge.*exact"):
        select_modules(make_scores(), 0.9, refine="twice")
    with pytest.raises(ValueError, match="seed"):
        select_modules(make_scores(), 0.9, seed="abc")


def test_bad_scores():
    sc = make_scores()
    sc.heads[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        select_modules(sc)
    sc = make_scores()
    sc.grad.filters = sc.grad.filters[:, :-1]
    with pytest.raises(ValueError, match="grad.filters"):
        select_modules(sc)
    sc = make_scores()
    sc.factor.heads = sc.factor.heads[:, :2]
    with pytest.raises(ValueError, match="factor.heads"):
        select_modules(sc)
    sc = make_scores()
    sc.filters = sc.filters[:2]
    with pytest.raises(ValueError, match="shape|layers"):
        select_modules(sc)
    sc = make_scores()
    sc.heads = sc.heads.reshape(-1)
    with pytest.raises(ValueError, match="2-D"):
        select_modules(sc)
    sc = make_scores()
    sc.n_fisher = 0
    with pytest.raises(ValueError, match="n_fisher"):
        select_modules(sc)
    sc = make_scores()
    sc.factor.filters[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="factor.filters"):
        select_modules(sc)
    with pytest.raises(TypeError):
        select_modules({"heads": torch.zeros(2, 2)})


# ----------------------------------------------------------------------------------------------
# save / load


def assert_masks_equal(a: ModuleMask, b: ModuleMask) -> None:
    for kind in MODULE_KINDS:
        assert a[kind].dtype == b[kind].dtype == torch.bool and torch.equal(a[kind], b[kind])
        assert torch.equal(a.warm_start[kind], b.warm_start[kind])
    for x, y in ((a.cost_before, b.cost_before), (a.cost_after, b.cost_after)):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k])
    assert a.swaps == b.swaps
    assert a.meta == b.meta


def test_save_load_round_trip(tmp_path):
    sc = make_scores(seed=4)
    m = select_modules(sc, 0.75, refine="exact", seed=3)
    out = save_mask(m, tmp_path / "mask")
    assert sorted(p.name for p in out.iterdir()) == ["mask.json", "mask.safetensors"]
    back = load_mask(out)
    assert_masks_equal(m, back)
    assert back.meta["exact_gap"] == m.meta["exact_gap"]
    assert [p.name for p in tmp_path.iterdir()] == ["mask"]  # no temporary leftovers


def test_save_load_round_trip_keeps_wanda_entries(tmp_path):
    m = select_modules(make_scores(seed=4), 0.75, refine="greedy")
    g = torch.Generator().manual_seed(0)
    m.entries = {"bert.encoder.layer.0.attention.self.query.weight": torch.rand(8, 16, generator=g) > 0.9,
                 "bert.encoder.layer.1.output.dense.bias": torch.rand(4, generator=g) > 0.5}
    back = load_mask(save_mask(m, tmp_path / "mask"))
    assert_masks_equal(m, back)
    assert back.entries.keys() == m.entries.keys()
    for name, t in m.entries.items():
        assert back.entries[name].dtype == torch.bool and torch.equal(back.entries[name], t)
    assert load_mask(save_mask(select_modules(make_scores(seed=4), 0.75), tmp_path / "plain")).entries is None


def test_save_refuses_overwrite(tmp_path):
    sc = make_scores(seed=4)
    m1 = select_modules(sc, 0.75, refine=None)
    m2 = select_modules(sc, 0.75, refine="greedy")
    path = tmp_path / "m"
    save_mask(m1, path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_mask(m2, path)
    assert_masks_equal(load_mask(path), m1)  # untouched
    save_mask(m2, path, overwrite=True)
    assert_masks_equal(load_mask(path), m2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    # never replace something that is not a saved mask, even with overwrite=True
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a saved ModuleMask"):
        save_mask(m2, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"
    f = tmp_path / "file.json"
    f.write_text("{}")
    with pytest.raises(FileExistsError):
        save_mask(m2, f, overwrite=True)


def test_load_rejects_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mask(tmp_path / "missing")
    (tmp_path / JSON_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a mape_viz.ModuleMask"):
        load_mask(tmp_path)
