"""The naive greedy swap (test-only reference): formed n×n F, a Python loop over candidates.

:func:`mape_viz.refine.greedy_swap` must make exactly these swaps, in this order
(tests/test_selection.py); benchmarks/bench_refine.py times both side by side. The visit
order and the improvement tolerance are the library's own, so that both versions decide on
the same rule; everything else is written plainly.
"""

from __future__ import annotations

import numpy as np

from mape_viz.refine import (MAX_ROUNDS, ArrayLike, LayerResult, _bool1d, _formed, _np64,
                             _tolerance, _visit_order, one_thread)


def greedy_swap_reference(
    g: ArrayLike,
    fisher: ArrayLike,
    frozen: ArrayLike,
    score: ArrayLike,
    n_fisher: float | None = None,
    rounds: int | None = 1,
) -> LayerResult:
    """The same greedy as :func:`mape_viz.refine.greedy_swap`, written plainly: formed n×n F, a Python loop over
    candidates, ``v`` updated by ``F[:, j] − F[:, i]``. Slow; the tests and the benchmark use it
    as the reference the fast version must match swap for swap."""
    g64 = _np64(g, "g").reshape(-1)
    n = g64.shape[0]
    fr = _bool1d(frozen, n)
    sc = _np64(score, "score").reshape(-1)
    with one_thread():  # same threading as greedy_swap, so that timings compare
        F = _formed(fisher, n, n_fisher)
    d = np.diag(F).copy()
    tol = _tolerance(g64, d, int(fr.sum()))

    def cost(p: np.ndarray) -> float:
        return float(g64[p].sum() + 0.5 * F[np.ix_(p, p)].sum())

    res = LayerResult(frozen=fr, engine="reference", cost_before=cost(fr))
    v = F[:, fr].sum(axis=1)
    limit = MAX_ROUNDS if rounds is None else int(rounds)
    for rnd in range(limit):
        made = 0
        for i in _visit_order(sc, fr):
            U = np.flatnonzero(~fr)
            if U.size == 0:
                break
            delta = g64[U] - g64[i] + v[U] - v[i] + 0.5 * (d[i] + d[U]) - F[i, U]
            c = int(np.argmin(delta))  # U is sorted: first minimum = lowest module index
            if delta[c] < -tol:
                j = int(U[c])
                res.swaps.append((int(i), j, float(delta[c]), rnd))
                fr[i], fr[j] = False, True
                v += F[j] - F[i]  # F is symmetric; rows read contiguously
                made += 1
        res.rounds = rnd + 1
        if made == 0:
            res.converged = True
            break
    res.cost_after = cost(fr)
    return res
