"""Confidence-based membership inference attack (MIA), docs/design.md §6.

The attacker sees one number per sample, the model's confidence in the true label
(p_y, or any increasing function of it such as log p_y), and learns to tell members from
non-members on two sets whose status is known: the retain set D_r (members, label 1) and the
test set (non-members, label 0). It is then applied to the forget set D_f: the fraction of
D_f predicted as members is the MIA number (lower = better forgetting; compare with the
retrained model, RT).

Attack model: a single threshold ``t``, "member iff conf >= t", chosen to maximise the
*balanced* accuracy ``(TPR + TNR) / 2`` on retain vs test. Why a threshold and not a
logistic regression: on one scalar feature, any monotone classifier (logistic regression,
an SVM, a decision stump) is a threshold, and a threshold fitted directly on balanced
accuracy (i) is exact with no optimiser, learning rate or regularisation, (ii) is invariant
to monotone transforms of the feature (probability, log-probability, logit margin all give
the same predictions), (iii) is class-balanced by construction (balanced accuracy weights
each class by 1/n_class, equivalent to a class-weighted fit) with no subsampling noise.
Among equally good thresholds the median candidate is taken; the threshold itself lies
midway between the two neighbouring training values. The direction (higher confidence ⇒
member) is fixed, as in the confidence attacks the paper cites.

AUC: the rank (Mann–Whitney U) statistic, ``P(x_pos > x_neg) + ½ P(x_pos = x_neg)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from .classification import to_numpy


def _vec(x: Any, name: str) -> np.ndarray:
    v = to_numpy(x, np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    if np.any(np.isnan(v)):
        raise ValueError(f"{name} contains NaN")
    return v


def auc_score(positive: Any, negative: Any) -> float:
    """Rank-based AUC of scores ``positive`` (class 1) vs ``negative`` (class 0).

    ``AUC = (Σ rank(pos) − n₁(n₁+1)/2) / (n₁ n₀)`` with average ranks over the pooled
    sample, i.e. the Mann–Whitney U / (n₁ n₀): ties count one half.

    Args:
        positive: (n₁,) scores of the positive class.
        negative: (n₀,) scores of the negative class.
    """
    pos, neg = _vec(positive, "positive scores"), _vec(negative, "negative scores")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks on ties
    n1, n0 = pos.size, neg.size
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def fit_threshold(member: Any, nonmember: Any) -> tuple[float, float]:
    """The threshold ``t`` maximising balanced accuracy of "member iff x >= t".

    Args:
        member: (n₁,) feature of known members.
        nonmember: (n₀,) feature of known non-members.

    Returns:
        ``(t, balanced_accuracy)``. ``t`` is midway between the two training values that it
        separates (``-inf`` = everything is a member, ``+inf`` = nothing is).
    """
    m, n = np.sort(_vec(member, "member scores")), np.sort(_vec(nonmember, "non-member scores"))
    cand = np.unique(np.concatenate([m, n]))
    cand = np.append(cand, np.inf)  # j = len: predict nobody as member
    tpr = (m.size - np.searchsorted(m, cand, side="left")) / m.size  # #m >= c
    tnr = np.searchsorted(n, cand, side="left") / n.size              # #n <  c
    bal = 0.5 * (tpr + tnr)
    best = np.flatnonzero(bal >= bal.max() - 1e-12)
    j = int(best[(len(best) - 1) // 2])
    if j == 0:
        t = -np.inf
    elif np.isinf(cand[j]):
        t = np.inf
    else:
        lo, hi = cand[j - 1], cand[j]
        t = hi if np.isinf(lo) else lo + 0.5 * (hi - lo)
    return float(t), float(bal[j])


@dataclass
class MIAResult:
    """Outcome of :func:`mia`.

    Attributes:
        forget_member_rate: fraction of the forget set predicted as members (the MIA
            number of the paper's tables; lower = more forgotten).
        auc: AUC of retain (members) vs test (non-members): how well confidence separates
            them at all (0.5 = the attack has nothing to learn).
        forget_auc: AUC of forget vs test (0.5 = the forget set looks like unseen data).
        threshold: the fitted threshold, in the units of the confidences given.
        balanced_accuracy: the attack's balanced accuracy on retain vs test.
        n_retain, n_test, n_forget: set sizes.
    """

    forget_member_rate: float
    auc: float
    forget_auc: float
    threshold: float
    balanced_accuracy: float
    n_retain: int
    n_test: int
    n_forget: int

    def as_dict(self, prefix: str = "mia") -> dict[str, float]:
        """Flat ``{prefix: rate, prefix_auc: .., prefix_forget_auc: .., ...}``."""
        d = asdict(self)
        out = {prefix: float(d.pop("forget_member_rate"))}
        out.update({f"{prefix}_{k}": float(v) for k, v in d.items()})
        return out


def mia(retain_conf: Any, test_conf: Any, forget_conf: Any) -> MIAResult:
    """Confidence-based MIA: fit on retain (members) vs test (non-members), apply to forget.

    Args:
        retain_conf: (n_r,) true-label confidence on the retain set (or its log; any
            increasing function of p_y, the same for all three arguments).
        test_conf: (n_t,) the same on the test set.
        forget_conf: (n_f,) the same on the forget set.

    Returns:
        :class:`MIAResult` with the forget-as-member fraction and both AUCs.
    """
    r, t, f = _vec(retain_conf, "retain_conf"), _vec(test_conf, "test_conf"), \
        _vec(forget_conf, "forget_conf")
    thr, bal = fit_threshold(r, t)
    return MIAResult(
        forget_member_rate=float(np.mean(f >= thr)),
        auc=auc_score(r, t),
        forget_auc=auc_score(f, t),
        threshold=thr,
        balanced_accuracy=bal,
        n_retain=int(r.size), n_test=int(t.size), n_forget=int(f.size),
    )
