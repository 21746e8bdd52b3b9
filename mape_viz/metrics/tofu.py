"""TOFU-style metrics (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs").

All functions take plain arrays / lists; shapes: N questions, K perturbed answers (or wrong
options) per question. "Normalised probability" always means the length-normalised
probability ``P(a|q)^{1/|a|} = exp(log P(a|q) / |a|)`` (|a| = answer tokens scored).

- ROUGE-L recall: ``LCS(pred, ref) / |ref|`` on normalised word tokens.
- normalised probability: ``exp(sum_logprob / n_tokens)``; on Real Authors / World Facts the
  TOFU paper divides by the sum over all options: ``p(a) / (p(a) + Σ_k p(ã_k))``.
- truth ratio: ``R = mean_k p(â_k) / p(ã)`` with â_k the perturbed (wrong) answers and ã the
  paraphrased answer; the forget set reports ``mean R``, the utility sets report
  ``mean max(0, 1 - R)``.
- forget quality: p-value of the two-sample KS test between the per-question truth ratios of
  the unlearned and of the retrained model on the forget set.
- model utility: harmonic mean of the nine (prob, ROUGE-L, truth ratio) numbers of the
  retain / real-authors / world-facts sets, 0 if any is 0.

See docs/metrics.md for where we follow the paper and where its reference code differs.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from .classification import to_numpy

#: The sets whose metrics enter model utility, and the metrics taken from each.
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
UTILITY_METRICS = ("prob", "rouge", "truth_ratio")

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


# ---------------------------------------------------------------------------------- ROUGE-L

def rouge_tokens(text: str) -> list[str]:
    """Word tokens for ROUGE: lower-case, every run of non ``[a-z0-9]`` is a separator
    (the tokenisation of Google's ``rouge_score``, without stemming)."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (O(|a|·|b|) DP)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_recall(prediction: str, reference: str) -> float:
    """ROUGE-L recall ``LCS(pred, ref) / |ref|`` on :func:`rouge_tokens`; 0 for an empty
    reference."""
    ref = rouge_tokens(reference)
    if not ref:
        return 0.0
    return lcs_length(rouge_tokens(prediction), ref) / len(ref)


def rouge_l_recall_batch(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N,) ROUGE-L recall of each prediction against its reference."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return np.array([rouge_l_recall(p, r) for p, r in zip(predictions, references)],
                    dtype=np.float64)


# ----------------------------------------------------------------------------- probability

def normalised_logprob(sum_logprob: Any, n_tokens: Any) -> np.ndarray:
    """``log P(a|q) / |a|`` elementwise (any shape); raises on a non-positive token count."""
    lp = to_numpy(sum_logprob, np.float64)
    n = to_numpy(n_tokens, np.float64)
    if np.any(n <= 0):
        raise ValueError("every answer needs at least one scored token (n_tokens >= 1)")
    return lp / n


def normalised_probability(sum_logprob: Any, n_tokens: Any) -> np.ndarray | float:
    """Length-normalised answer probability ``P(a|q)^{1/|a|} = exp(sum_logprob / n_tokens)``.

    Args:
        sum_logprob: summed log-probability of the answer tokens, any shape (e.g. (N,)).
        n_tokens: number of answer tokens scored, same shape.

    Returns:
        array of the same shape (a float for scalar input), values in (0, 1].
    """
    out = np.exp(normalised_logprob(sum_logprob, n_tokens))
    return float(out) if out.ndim == 0 else out


def option_probability(answer_prob: Any, option_probs: Any) -> np.ndarray:
    """TOFU's probability on Real Authors / World Facts: the correct answer's normalised
    probability divided by the sum over all options.

    Args:
        answer_prob: (N,) normalised probability of the correct answer.
        option_probs: (N, K) normalised probabilities of the K wrong options (NaN = absent).

    Returns:
        (N,) ``p(a) / (p(a) + Σ_k p(ã_k))``.
    """
    p = to_numpy(answer_prob, np.float64).reshape(-1)
    o = to_numpy(option_probs, np.float64)
    if o.ndim == 1:
        o = o[:, None]
    return p / (p + np.nansum(o, axis=1))


# ----------------------------------------------------------------------------- truth ratio

def truth_ratio_from_logprobs(paraphrased_logprob: Any, perturbed_logprobs: Any,
                              mean: Literal["arithmetic", "geometric"] = "arithmetic"
                              ) -> np.ndarray:
    """Truth ratio from *normalised* log-probabilities (``log P^{1/|a|}``), in log space.

    Args:
        paraphrased_logprob: (N,) normalised log-probability of the paraphrased answer ã.
        perturbed_logprobs: (N, K) normalised log-probabilities of the perturbed answers
            â_k; NaN entries are ignored (ragged K).
        mean: ``"arithmetic"`` (the TOFU paper's formula, default) or ``"geometric"`` (the
            TOFU reference code, which averages per-token losses before exponentiating).

    Returns:
        (N,) ``R = mean_k P(â_k)^{1/|â_k|} / P(ã)^{1/|ã|}``.
    """
    lp = to_numpy(paraphrased_logprob, np.float64).reshape(-1)
    pert = to_numpy(perturbed_logprobs, np.float64)
    if pert.ndim == 1:
        pert = pert[:, None]
    if pert.shape[0] != lp.shape[0]:
        raise ValueError(f"{pert.shape[0]} rows of perturbed answers for {lp.shape[0]} questions")
    present = ~np.isnan(pert)
    k = present.sum(1)
    if np.any(k == 0):
        raise ValueError("every question needs at least one perturbed answer")
    if mean == "arithmetic":
        log_mean = logsumexp(np.where(present, pert, -np.inf), axis=1) - np.log(k)
    elif mean == "geometric":
        log_mean = np.where(present, pert, 0.0).sum(1) / k
    else:
        raise ValueError(f"mean must be 'arithmetic' or 'geometric', got {mean!r}")
    return np.exp(log_mean - lp)


def truth_ratio(paraphrased_prob: Any, perturbed_probs: Any,
                mean: Literal["arithmetic", "geometric"] = "arithmetic") -> np.ndarray:
    """Per-question truth ratio from normalised probabilities.

    ``R_truth = mean_k P(â_k|q)^{1/|â_k|} / P(ã|q)^{1/|ã|}`` (TOFU, §2.5.1): below 1 when
    the model prefers the paraphrased correct answer to the perturbed wrong ones.

    Args:
        paraphrased_prob: (N,) normalised probability of the paraphrased answer.
        perturbed_probs: (N, K) normalised probabilities of the perturbed answers (NaN =
            absent).
        mean: ``"arithmetic"`` (paper) or ``"geometric"`` (TOFU code).

    Returns:
        (N,) truth ratios, each > 0.
    """
    with np.errstate(divide="ignore"):
        return truth_ratio_from_logprobs(np.log(to_numpy(paraphrased_prob, np.float64)),
                                         np.log(to_numpy(perturbed_probs, np.float64)), mean)


def truth_ratio_score(ratios: Any, forget: bool) -> float:
    """The reported truth-ratio number of one set (TOFU paper).

    - forget set: ``mean_i R_i`` (raw; lower = the model still knows the answers);
    - retain / real authors / world facts: ``mean_i max(0, 1 - R_i)`` (higher is better).
    """
    r = to_numpy(ratios, np.float64).reshape(-1)
    if r.size == 0:
        return float("nan")
    return float(r.mean() if forget else np.maximum(0.0, 1.0 - r).mean())


def truth_ratio_symmetric(ratios: Any) -> float:
    """``mean_i min(R_i, 1/R_i)``: what the TOFU reference code reports on the forget set
    (1 = no preference between paraphrased and perturbed answers)."""
    r = to_numpy(ratios, np.float64).reshape(-1)
    if r.size == 0:
        return float("nan")
    return float(np.minimum(r, 1.0 / r).mean())


# ---------------------------------------------------------------- forget quality / utility

def forget_quality(unlearned_ratios: Any, retrained_ratios: Any) -> float:
    """Forget quality: ``scipy.stats.ks_2samp(unlearned, retrained).pvalue``.

    Args:
        unlearned_ratios: (N,) truth ratios of the unlearned model on the forget set.
        retrained_ratios: (M,) truth ratios of the retrained (gold standard) model.

    Returns:
        the two-sided KS p-value in [0, 1]; high = indistinguishable from retraining. The
        KS test is invariant under monotone maps, so R or 1/R give the same value.
    """
    a = to_numpy(unlearned_ratios, np.float64).reshape(-1)
    b = to_numpy(retrained_ratios, np.float64).reshape(-1)
    if a.size == 0 or b.size == 0:
        raise ValueError("forget quality needs truth ratios of both models")
    return float(stats.ks_2samp(a, b).pvalue)


def harmonic_mean(values: Iterable[float]) -> float:
    """``n / Σ 1/x_i``, explicitly 0 when any value is 0; NaN if any is NaN.

    Raises ``ValueError`` for negative values or an empty input.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("harmonic mean of no values")
    if np.any(np.isnan(x)):
        return float("nan")
    if np.any(x < 0):
        raise ValueError(f"harmonic mean needs non-negative values, got {x.min()}")
    if np.any(x == 0):
        return 0.0
    return float(x.size / np.sum(1.0 / x))


def model_utility(metrics: Mapping[str, float] | Mapping[str, Mapping[str, float]]
                  | Sequence[float]) -> float:
    """Model utility: harmonic mean of the 9 numbers (prob, ROUGE-L, truth ratio) of the
    retain, real-authors and world-facts sets.

    Args:
        metrics: either the 9 numbers as a sequence, a nested mapping
            ``{split: {"prob": .., "rouge": .., "truth_ratio": ..}}`` over
            :data:`UTILITY_SPLITS`, or a flat mapping with keys ``f"{split}_{metric}"``
            (as :func:`mape_viz.metrics.evaluate` returns). Truth ratios must already be
            the reported ``max(0, 1 - R)`` numbers.

    Returns:
        the harmonic mean, 0 when any of the numbers is 0.
    """
    if isinstance(metrics, Mapping):
        values = []
        for split in UTILITY_SPLITS:
            for m in UTILITY_METRICS:
                if split in metrics and isinstance(metrics[split], Mapping):
                    v = metrics[split].get(m)
                else:
                    v = metrics.get(f"{split}_{m}")
                if v is None:
                    raise KeyError(f"model utility needs {split} {m}; got keys {sorted(metrics)}")
                values.append(float(v))
    else:
        values = [float(v) for v in metrics]
    return harmonic_mean(values)


__all__ = [
    "UTILITY_SPLITS", "UTILITY_METRICS", "rouge_tokens", "lcs_length", "rouge_l_recall",
    "rouge_l_recall_batch", "normalised_logprob", "normalised_probability",
    "option_probability", "truth_ratio", "truth_ratio_from_logprobs", "truth_ratio_score",
    "truth_ratio_symmetric", "forget_quality", "harmonic_mean", "model_utility",
]
