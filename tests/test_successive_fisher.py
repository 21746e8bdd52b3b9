"""Eq. 12 (``successive_so``) with D's Fisher estimated on a sample of D's rows
(``UnlearnConfig.fisher_max_samples``; mape_viz/unlearning/successive.py, docs/design.md §5).

The reference is computed independently: per-sample gradients by a plain autograd loop over
the rows, the sampled positions drawn by the documented recipe (``random.Random(seed)``).
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from conftest import make_batch, make_model
from mape_viz.gradients import accumulate_mask_grads
from mape_viz.sitemaps import get_sites
from mape_viz.unlearning import successive_so
from mape_viz.unlearning.successive import fisher_sample_rows, take_rows
from test_unlearn import per_sample_grads  # the plain per-row autograd loop


pytestmark = pytest.mark.usefixtures("one_thread")


def test_sample_rows_recipe_and_take_rows():
    assert fisher_sample_rows(10, 0) is None and fisher_sample_rows(10, 10) is None
    assert fisher_sample_rows(10, 4, seed=7) == sorted(random.Random(7).sample(range(10), 4))
    with pytest.raises(ValueError):
        fisher_sample_rows(10, -1)
    D = [make_batch("classification", bsz=5, seed=70 + i) for i in range(3)]
    got = take_rows(D, [1, 4, 5, 13])
    assert [int(b["input_ids"].shape[0]) for b in got] == [2, 1, 1]
    assert torch.equal(got[0]["input_ids"], D[0]["input_ids"][[1, 4]])
    assert torch.equal(got[1]["labels"], D[1]["labels"][[0]])
    assert torch.equal(got[2]["attention_mask"], D[2]["attention_mask"][[3]])
    with pytest.raises(ValueError):
        take_rows(D, [15])


@pytest.mark.parametrize("selector", ["mape", "full"])
def test_subsampled_fisher_is_the_fisher_of_exactly_those_rows(selector):
    model = make_model("bert")
    D = [make_batch("classification", bsz=5, seed=70 + i) for i in range(3)]
    sl = lambda b, i, j: {k: v[i:j] for k, v in b.items()}  # noqa: E731
    requests = [[sl(D[0], 0, 2)], [sl(D[1], 1, 3), sl(D[2], 4, 5)]]
    removed = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 4)]
    eta, lam, m, seed = 1e-3, 1e-2, 6, 3
    models = []
    out = successive_so(model, requests,
                        dict(eta=eta, damping=lam, fisher_batch_size=4, fisher_max_samples=m),
                        data=D, selector=selector, sparsity=0.5, seed=seed,
                        metrics=lambda mm, t: models.append(copy.deepcopy(mm)) or {})
    sample = sorted(random.Random(seed).sample(range(15), m))
    assert out.fisher_rows == sample
    g = per_sample_grads(copy.deepcopy(model), D, "classification")  # (15, ...) in D's order
    P = dict(model.named_parameters())
    sites = get_sites(model)
    counts = [2, 5]
    for t, m_t in enumerate(models[1:]):
        gone = [b * 5 + i for b, i in removed[:counts[t]]]
        mask = out.masks[t]
        allowed = sites.param_masks(mask.heads, mask.filters, P) if mask is not None else None
        got = dict(m_t.named_parameters())
        n_changed = 0
        for n, p in P.items():
            S = (15 / m * (g[n][sample] ** 2).sum(0) - (g[n][gone] ** 2).sum(0)).clamp(min=0)
            exp = p + eta * g[n][gone].sum(0) / (S / (15 - len(gone)) + lam)
            a = allowed.get(n, torch.zeros_like(p, dtype=torch.bool)) if allowed is not None \
                else torch.ones_like(p, dtype=torch.bool)
            torch.testing.assert_close(got[n][a], exp[a], rtol=1e-7, atol=1e-12, msg=n)
            assert torch.equal(got[n][~a], p[~a]), n
            n_changed += int((got[n] != p).sum())
        assert n_changed > 0
        assert out.steps[t]["n_retain"] == 15 - len(gone)
    if selector == "mape":
        # Eq. 13 warm start: the largest mask Fisher on the sampled rows (not on all of D)
        st = accumulate_mask_grads(model, take_rows(D, sample), "classification", max_factor=0)
        for kind in ("heads", "filters"):
            fisher = st.sq_sum[kind].flatten()
            k = int(out.masks[0].warm_start[kind].sum())
            top = set(torch.argsort(fisher, descending=True, stable=True)[:k].tolist())
            assert set(torch.nonzero(out.masks[0].warm_start[kind].flatten()).flatten()
                       .tolist()) == top


def test_no_subsample_keeps_all_of_d():
    model = make_model("bert")
    D = [make_batch("classification", bsz=5, seed=70 + i) for i in range(3)]
    req = [[{k: v[0:2] for k, v in D[0].items()}]]
    a = successive_so(model, req, dict(eta=1e-3, damping=1e-2), data=D, selector="full")
    b = successive_so(model, req, dict(eta=1e-3, damping=1e-2, fisher_max_samples=15), data=D,
                      selector="full")
    assert a.fisher_rows is None and b.fisher_rows is None
    for (n, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(p, q), n
